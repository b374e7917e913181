"""The duplicate-log-id check (Numba): hashed, partitioned by the hash's top bits, each
partition checked with a small open-addressing table that stays in cache."""

from __future__ import annotations

import numpy as np
from numba import njit

from effigate_engine.ratecard.kernels import GOLDEN

#: Rows per partition the duplicate-id check aims at: its hash table (twice as many int32
#: slots) then stays in the core's cache, and the partitioning pass writes to few enough
#: places at once.
ID_PARTITION_ROWS = 1 << 15


@njit(cache=True, nogil=True, inline="always")
def _id_hash(offsets: np.ndarray, data: np.ndarray, row: int) -> np.uint64:
    """A 64-bit hash of row ``row``'s UTF-8 bytes, eight bytes a step."""
    a, z = np.int64(offsets[row]), np.int64(offsets[row + 1])
    h = np.uint64(z - a) * GOLDEN
    while a < z:
        word = np.uint64(0)
        top = min(a + 8, z)
        shift = np.uint64(0)
        for j in range(a, top):
            word |= np.uint64(data[j]) << shift
            shift += np.uint64(8)
        h = (h ^ word) * GOLDEN
        h ^= h >> np.uint64(29)
        a = top
    return h


@njit(cache=True, nogil=True, inline="always")
def _same_id(offsets: np.ndarray, data: np.ndarray, x: int, y: int) -> bool:
    a0, a1 = np.int64(offsets[x]), np.int64(offsets[x + 1])
    b0, b1 = np.int64(offsets[y]), np.int64(offsets[y + 1])
    if a1 - a0 != b1 - b0:
        return False
    for j in range(a1 - a0):  # noqa: SIM110 (a loop Numba compiles)
        if data[a0 + j] != data[b0 + j]:
            return False
    return True


@njit(cache=True, nogil=True)
def repeated_id(
    offsets: np.ndarray,
    data: np.ndarray,
    hashes: np.ndarray,
    spread: np.ndarray,
    order: np.ndarray,
) -> tuple[int, int]:
    """The first pair of rows ``(earlier, later)`` found whose ids (a string column's offsets and
    UTF-8 bytes) are equal, or ``(-1, -1)``. Rows are hashed, partitioned by the hash's top
    bits (a stable counting sort: hashes into ``spread``, rows into ``order``) and each
    partition is checked with a small open-addressing table, so the work is linear and the
    table stays in cache. ``hashes``, ``spread`` and ``order`` hold a row each."""
    n = offsets.shape[0] - 1
    if n < 2:
        return -1, -1
    bits = 0
    while (n >> bits) > ID_PARTITION_ROWS:
        bits += 1
    parts = 1 << bits
    counts = np.zeros(parts + 1, np.int64)
    top = np.uint64(64 - bits) if bits else np.uint64(63)
    keep = 1 if bits else 0
    for i in range(n):
        h = _id_hash(offsets, data, i)
        hashes[i] = h
        counts[np.int64(h >> top) * keep + 1] += 1
    widest = 0
    for d in range(parts):
        widest = max(widest, counts[d + 1])
        counts[d + 1] += counts[d]
    fill = counts[:-1].copy()
    for i in range(n):
        h = hashes[i]
        d = np.int64(h >> top) * keep
        x = fill[d]
        spread[x] = h
        order[x] = i
        fill[d] = x + 1
    size = 16
    while size < 2 * widest:
        size *= 2
    table = np.empty(size, np.int32)
    for d in range(parts):
        lo, hi = counts[d], counts[d + 1]
        if hi - lo < 2:
            continue
        slots = 16
        while slots < 2 * (hi - lo):
            slots *= 2
        mask = np.uint64(slots - 1)
        table[:slots] = -1
        for x in range(lo, hi):
            h = spread[x]
            s = np.int64((h >> np.uint64(7)) & mask)
            while table[s] >= 0:
                y = lo + np.int64(table[s])
                if spread[y] == h and _same_id(offsets, data, order[y], order[x]):
                    return np.int64(order[y]), np.int64(order[x])
                s = (s + 1) & (slots - 1)
            table[s] = x - lo
    return -1, -1
