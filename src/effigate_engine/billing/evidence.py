"""Evidence of time lines: the ids of the logs each line prices, for many lines at once.

A classification made with ``evidence=True`` keeps, per part, the packed keys of the lines the
part feeds (``Classification.slot_keys``, ``(parts, 4)``, -1 = none). Parts come in batch
order and lines by contract, so citing the logs of every line is a permutation of the whole
batch; :func:`line_log_ids` does it in passes linear in parts + lines whose random accesses
stay inside the cache:

1. the chosen lines are cut into buckets of whole contracts (about :data:`BUCKET_LINES`
   lines each; contracts are contiguous in the line table);
2. one pass over the parts counts, per bucket, the slots that name a chosen line's contract
   and period and their log ids' bytes; a second pass copies each such slot's key and log id
   (read in batch order, so sequentially) into its bucket;
3. per bucket, in cache: the keys are looked up in a small table of the bucket's lines, the
   slots grouped by line (counting sort), each line's ids sorted (UTF-8 bytes, which is
   code-point order: Python's ``sorted``; an 8-byte prefix decides most comparisons),
   repeated ids dropped (a part whose conditions share a line feeds it twice) and the ids
   written over the bucket's own input, line after line; the buckets' outputs are closed up
   into one Arrow string array.

With several threads the two part passes run on slices of the parts (each slice fills its
own share of every bucket) and the buckets are split into slices. The big buffers come from
Arrow's memory pool, which keeps freed memory for the next run.

Per line the ids equal ``tuple(sorted(set(ids)))``, what
:func:`~effigate_engine.billing.time_lines.time_lines` cites one contract at a time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from effigate_engine import parallel
from effigate_engine.errors import BillingError
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.time_logs import string_buffers, string_column

#: Chosen lines per bucket (whole contracts are kept together): a bucket's slots, ids and
#: lookup table then fit in a core's cache.
BUCKET_LINES = 1_024
#: Insertion sort up to this many ids per line; merge sort above.
INSERTION_MAX = 16
#: An id this long or longer has a five-byte length header in a bucket (else one byte).
LONG_ID = 255
#: Ids are copied in blocks of this many bytes (the last block may run past the id's end into
#: slack that is written over or left unused).
COPY_BLOCK = 8
#: Parts below which one thread does the whole pass.
PARALLEL_MIN_PARTS = 1 << 18
#: Arrow ``string`` offsets are int32: a run's chosen lines cite fewer bytes of ids.
OFFSET_LIMIT = (1 << 31) - 1
_PERIOD_MASK = (1 << K.KEY_BITS[1]) - 1


def line_log_ids(
    classification: Classification, rows: np.ndarray, *, threads: int | None = None
) -> tuple[np.ndarray, pa.Array]:
    """The log ids priced by the lines at ``rows`` (ascending) of ``classification.lines``:
    ``(counts, ids)`` with ``counts[j]`` the number of distinct log ids of line ``rows[j]`` and
    ``ids`` (``string``) those ids, line after line, each line's sorted. Needs
    ``classify(..., evidence=True)``. ``threads``: as for the clock (default
    :data:`~effigate_engine.parallel.DEFAULT_THREADS`); batches of fewer than
    :data:`PARALLEL_MIN_PARTS` parts run on one."""
    slot_keys = classification.slot_keys
    if slot_keys is None:
        raise BillingError("classification", "evidence", "is missing; classify(evidence=True)")
    rows = np.asarray(rows, np.int64)
    if rows.size > 1 and (np.diff(rows) <= 0).any():
        raise BillingError("rows", "order", "are not ascending line rows")
    book = classification.book
    chosen = np.ascontiguousarray(classification.line_keys[rows], np.int64)
    version = chosen >> K.SHIFT_VERSION
    contract = book.version_contract[version]
    period = (chosen >> K.SHIFT_PERIOD) & _PERIOD_MASK
    # Buckets of whole contracts: the line table is sorted by contract, so a contract's
    # chosen lines are contiguous.
    first = np.flatnonzero(np.r_[True, contract[1:] != contract[:-1]]) if rows.size else rows
    cuts = first[np.r_[True, np.diff(first // BUCKET_LINES) > 0]] if first.size else first
    bucket_first_line = np.r_[cuts, rows.size].astype(np.int64)
    n_contracts = len(book.contracts)
    bucket_of_contract = np.full(n_contracts, -1, np.int32)
    bucket_of_contract[contract] = np.searchsorted(cuts, np.arange(rows.size), "right") - 1
    # A contract whose chosen lines share one period only lends slots of that period.
    low = np.full(n_contracts, _PERIOD_MASK + 1, np.int64)
    high = np.full(n_contracts, -1, np.int64)
    np.minimum.at(low, contract, period)
    np.maximum.at(high, contract, period)
    only = np.where(low == high, low, -1)
    bucket_of_version = np.ascontiguousarray(bucket_of_contract[book.version_contract])
    period_of_version = np.ascontiguousarray(only[book.version_contract])

    offsets, data = string_buffers(string_column(classification.logs, "log_id"))
    part_log = np.ascontiguousarray(classification.parts["part_log"], np.int32)
    buckets = cuts.size
    # Slices of parts (counted and copied on their own threads, each into its own share of
    # every bucket), then slices of buckets.
    part_slices = parallel.slices(part_log.size, threads, PARALLEL_MIN_PARTS)
    share = {part: i for i, part in enumerate(part_slices)}
    pair_count = np.zeros((len(part_slices), buckets), np.int64)
    byte_count = np.zeros((len(part_slices), buckets), np.int64)
    parallel.run(
        lambda lo, hi: _count(
            slot_keys[lo:hi],
            part_log[lo:hi],
            offsets,
            bucket_of_version,
            period_of_version,
            pair_count[share[lo, hi]],
            byte_count[share[lo, hi]],
        ),
        part_slices,
    )
    pair_start = np.zeros(buckets + 1, np.int64)
    byte_start = np.zeros(buckets + 1, np.int64)
    np.cumsum(pair_count.sum(axis=0), out=pair_start[1:])
    # Each bucket's bytes end in COPY_BLOCK bytes of slack: ids are copied in whole blocks.
    np.cumsum(byte_count.sum(axis=0) + COPY_BLOCK, out=byte_start[1:])
    pairs, size = int(pair_start[-1]), int(byte_start[-1])
    if size > OFFSET_LIMIT:
        raise BillingError("log_ids", size, "exceed 2**31 bytes on the chosen lines")
    pair_cursor = pair_start[:-1] + np.cumsum(pair_count, axis=0) - pair_count
    byte_cursor = byte_start[:-1] + np.cumsum(byte_count, axis=0) - byte_count
    # Where each slice's share of a bucket ends: its last id may not be copied in blocks past
    # it (the next share may be written already), but the last share may use the slack.
    byte_limit = byte_cursor + byte_count
    byte_limit[-1] += COPY_BLOCK
    pair_key, _ = _pool_array(pairs, np.int64)
    pair_bytes, bytes_buffer = _pool_array(max(size, 1), np.uint8)
    parallel.run(
        lambda lo, hi: _fill(
            slot_keys[lo:hi],
            part_log[lo:hi],
            offsets,
            data,
            bucket_of_version,
            period_of_version,
            pair_cursor[share[lo, hi]],
            byte_cursor[share[lo, hi]],
            byte_limit[share[lo, hi]],
            pair_key,
            pair_bytes,
        ),
        part_slices,
    )
    # Each slice of buckets writes its ids over its own input (the bytes without their headers
    # and slack from its first bucket's first byte, the ids' ends over the keys it has read),
    # then the slices are closed up.
    distinct = np.zeros(rows.size, np.int64)
    bucket_slices = parallel.slices(buckets, threads, 2)
    written = parallel.run(
        lambda lo, hi: _bucket_lines(
            lo,
            hi,
            chosen,
            bucket_first_line,
            pair_start,
            byte_start,
            pair_key,
            pair_bytes,
            distinct,
        ),
        bucket_slices,
    )
    ids_offsets, offsets_buffer = _pool_array(sum(n for n, _ in written) + 1, np.int32)
    ids_offsets[0] = 0
    at = done = 0
    for (lo, _), (n, length) in zip(bucket_slices, written, strict=True):
        source = int(byte_start[lo])
        if source != at:
            pair_bytes[at : at + length] = pair_bytes[source : source + length]
        ends = int(pair_start[lo])
        ids_offsets[done + 1 : done + n + 1] = pair_key[ends : ends + n] + at
        at += length
        done += n
    ids = pa.StringArray.from_buffers(done, offsets_buffer, bytes_buffer.slice(0, max(at, 1)))
    return distinct, ids


def _pool_array(size: int, dtype: type) -> tuple[np.ndarray, pa.Buffer]:
    """An uninitialised NumPy array over a buffer of Arrow's memory pool: the pool keeps freed
    memory for the next run (fresh pages cost a fault each), and the result is Arrow anyway."""
    buffer = pa.allocate_buffer(size * np.dtype(dtype).itemsize)
    return np.frombuffer(buffer, dtype, size), buffer


@njit(cache=True, nogil=True, inline="always")
def _bucket(key: int, bucket_of_version: np.ndarray, period_of_version: np.ndarray) -> int:
    """Bucket of a slot's key, or -1 when it names no chosen contract or period."""
    if key == K.EMPTY:
        return -1
    v = key >> K.SHIFT_VERSION
    b = bucket_of_version[v]
    if b < 0:
        return -1
    want = period_of_version[v]
    if want >= 0 and (key >> K.SHIFT_PERIOD) & _PERIOD_MASK != want:
        return -1
    return b


@njit(cache=True, nogil=True, inline="always")
def _header(length: int) -> int:
    """Bytes of the length header of an id in a bucket: one below :data:`LONG_ID`, else five
    (the marker, then the length as four little-endian bytes)."""
    return 1 if length < LONG_ID else 5


@njit(cache=True, nogil=True)
def _count(
    slot_keys: np.ndarray,
    part_log: np.ndarray,
    offsets: np.ndarray,
    bucket_of_version: np.ndarray,
    period_of_version: np.ndarray,
    pair_count: np.ndarray,
    byte_count: np.ndarray,
) -> None:
    """Per bucket, the slots it gets and the bytes of their log ids with their headers."""
    for k in range(slot_keys.shape[0]):
        for q in range(K.SLOTS):
            b = _bucket(slot_keys[k, q], bucket_of_version, period_of_version)
            if b >= 0:
                log = part_log[k]
                length = offsets[log + 1] - offsets[log]
                pair_count[b] += 1
                byte_count[b] += length + _header(length)


@njit(cache=True, nogil=True)
def _fill(
    slot_keys: np.ndarray,
    part_log: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
    bucket_of_version: np.ndarray,
    period_of_version: np.ndarray,
    pair_fill: np.ndarray,
    byte_fill: np.ndarray,
    byte_limit: np.ndarray,
    pair_key: np.ndarray,
    pair_bytes: np.ndarray,
) -> None:
    """Copy each counted slot's key, and its log id (header and bytes), into this slice's
    share of its bucket (two sequential streams per bucket; ``byte_limit[b]``: where the share
    ends, for block copies)."""
    for k in range(slot_keys.shape[0]):
        for q in range(K.SLOTS):
            key = slot_keys[k, q]
            b = _bucket(key, bucket_of_version, period_of_version)
            if b < 0:
                continue
            log = part_log[k]
            a, z = np.int64(offsets[log]), np.int64(offsets[log + 1])
            at = pair_fill[b]
            pair_fill[b] = at + 1
            pair_key[at] = key
            w = byte_fill[b]
            length = z - a
            if length < LONG_ID:
                pair_bytes[w] = length
                w += 1
            else:
                pair_bytes[w] = LONG_ID
                for t in range(4):
                    pair_bytes[w + 1 + t] = (length >> (8 * t)) & 0xFF
                w += 5
            if w + length + COPY_BLOCK <= byte_limit[b]:
                _copy(pair_bytes, w, data, a, length)
            else:
                for t in range(length):
                    pair_bytes[w + t] = data[a + t]
            byte_fill[b] = w + length


@njit(cache=True, nogil=True, inline="always")
def _copy(target: np.ndarray, at: int, source: np.ndarray, start: int, length: int) -> None:
    """``target[at:at + length] = source[start:start + length]``, in whole :data:`COPY_BLOCK`
    blocks when the source has them (``target`` must have the slack)."""
    if start + length + COPY_BLOCK <= source.shape[0]:
        for t in range(0, length, COPY_BLOCK):
            for u in range(COPY_BLOCK):
                target[at + t + u] = source[start + t + u]
    else:
        for t in range(length):
            target[at + t] = source[start + t]


@njit(cache=True, nogil=True, inline="always")
def _prefix(data: np.ndarray, a: int, z: int) -> int:
    """An int64 that orders like the bytes ``data[a:z]`` as far as it goes (ties possible): the
    first eight bytes, zero-padded, big-endian, less the last bit."""
    high = 0
    low = 0
    for t in range(4):
        high = (high << 8) | (np.int64(data[a + t]) if a + t < z else 0)
        low = (low << 8) | (np.int64(data[a + 4 + t]) if a + 4 + t < z else 0)
    return (high << 31) | (low >> 1)


@njit(cache=True, nogil=True, inline="always")
def _order(
    a: int, b: int, prefix: np.ndarray, start: np.ndarray, length: np.ndarray, raw: np.ndarray
) -> int:
    """-1, 0 or 1 as id ``a`` sorts before, equal to or after id ``b`` (UTF-8 bytes
    ``raw[start:start + length]``; their prefixes decide first)."""
    if prefix[a] != prefix[b]:
        return -1 if prefix[a] < prefix[b] else 1
    a0, b0 = start[a], start[b]
    la, lb = length[a], length[b]
    for t in range(min(la, lb)):
        x, y = raw[a0 + t], raw[b0 + t]
        if x != y:
            return -1 if x < y else 1
    return -1 if la < lb else (1 if la > lb else 0)


@njit(cache=True, nogil=True, inline="always")
def _sort_ids(
    ids: np.ndarray,
    spare: np.ndarray,
    prefix: np.ndarray,
    start: np.ndarray,
    length: np.ndarray,
    raw: np.ndarray,
) -> None:
    """Sort ``ids`` (indexes into ``prefix``/``start``/``length``) in place by their bytes:
    insertion sort of runs of :data:`INSERTION_MAX`, then a bottom-up merge sort through
    ``spare`` (as long as ``ids``)."""
    size = ids.shape[0]
    for lo in range(0, size, INSERTION_MAX):
        hi = min(lo + INSERTION_MAX, size)
        for x in range(lo + 1, hi):
            y = ids[x]
            z = x
            while z > lo and _order(y, ids[z - 1], prefix, start, length, raw) < 0:
                ids[z] = ids[z - 1]
                z -= 1
            ids[z] = y
    src, dst = ids, spare
    width = INSERTION_MAX
    passes = 0
    while width < size:
        for lo in range(0, size, 2 * width):
            mid = min(lo + width, size)
            hi = min(lo + 2 * width, size)
            a, b, w = lo, mid, lo
            while a < mid and b < hi:
                if _order(src[b], src[a], prefix, start, length, raw) < 0:
                    dst[w] = src[b]
                    b += 1
                else:
                    dst[w] = src[a]
                    a += 1
                w += 1
            while a < mid:
                dst[w] = src[a]
                a += 1
                w += 1
            while b < hi:
                dst[w] = src[b]
                b += 1
                w += 1
        src, dst = dst, src
        width *= 2
        passes += 1
    if passes % 2:
        ids[:] = spare


@njit(cache=True, nogil=True)
def _bucket_lines(
    first: int,
    last: int,
    chosen: np.ndarray,
    bucket_first_line: np.ndarray,
    pair_start: np.ndarray,
    byte_start: np.ndarray,
    pair_key: np.ndarray,
    pair_bytes: np.ndarray,
    distinct: np.ndarray,
) -> tuple[int, int]:
    """Buckets ``first`` to ``last - 1``: read their ids, look their keys up among the
    bucket's lines, group them by line, sort each line's ids, drop repeats, and write them
    over the buckets' own input, one after the other: the ids' bytes from
    ``byte_start[first]`` in ``pair_bytes``, the end of each (relative to that start) from
    ``pair_start[first]`` in ``pair_key`` (a bucket's input is read before it is written
    over, and its output is never longer). ``distinct`` gets the ids of each line. Returns
    the ids and bytes written."""
    widest_lines = 1
    widest_pairs = 1
    widest_bytes = 1
    for b in range(first, last):
        widest_lines = max(widest_lines, bucket_first_line[b + 1] - bucket_first_line[b])
        widest_pairs = max(widest_pairs, pair_start[b + 1] - pair_start[b])
        widest_bytes = max(widest_bytes, byte_start[b + 1] - byte_start[b])
    bits = 4
    while (1 << bits) < 2 * widest_lines:
        bits += 1
    table = K.new_table(bits)
    mask = (1 << bits) - 1
    raw = np.empty(widest_bytes + COPY_BLOCK, np.uint8)
    line_of = np.empty(widest_pairs, np.int32)
    start = np.empty(widest_pairs, np.int64)
    length = np.empty(widest_pairs, np.int32)
    prefix = np.empty(widest_pairs, np.int64)
    order = np.empty(widest_pairs, np.int32)
    spare = np.empty(widest_pairs, np.int32)
    fill = np.empty(widest_lines + 1, np.int64)
    at = 0
    written = 0
    origin = byte_start[first] if last > first else 0
    ends = pair_start[first] if last > first else 0
    for b in range(first, last):
        j0, j1 = bucket_first_line[b], bucket_first_line[b + 1]
        p0, p1 = pair_start[b], pair_start[b + 1]
        lines = j1 - j0
        for j in range(lines):
            key = chosen[j0 + j]
            s = K._slot(key, bits)
            while table[s, 0] != K.EMPTY and table[s, 0] != key:
                s = (s + 1) & mask
            table[s, 0] = key
            table[s, 1] = j
        fill[: lines + 1] = 0
        base = byte_start[b]
        raw[: byte_start[b + 1] - base] = pair_bytes[base : byte_start[b + 1]]
        w = 0
        for x in range(p1 - p0):
            size = np.int64(raw[w])
            w += 1
            if size == LONG_ID:
                size = 0
                for t in range(4):
                    size |= np.int64(raw[w + t]) << (8 * t)
                w += 4
            start[x] = w
            length[x] = size
            prefix[x] = _prefix(raw, w, w + size)
            w += size
            key = pair_key[p0 + x]
            s = K._slot(key, bits)
            while table[s, 0] != K.EMPTY and table[s, 0] != key:
                s = (s + 1) & mask
            line = table[s, 1] if table[s, 0] == key else -1
            line_of[x] = line
            if line >= 0:
                fill[line + 1] += 1
        table[:, 0] = K.EMPTY
        for j in range(lines):
            fill[j + 1] += fill[j]
        for x in range(p1 - p0):
            line = line_of[x]
            if line >= 0:
                order[fill[line]] = x
                fill[line] += 1
        # ``fill[j]`` is now where line j's slots end (and line j + 1's start).
        lo = 0
        for j in range(lines):
            hi = fill[j]
            segment = order[lo:hi]
            _sort_ids(segment, spare[: hi - lo], prefix, start, length, raw)
            for x in range(hi - lo):
                y = segment[x]
                if x > 0 and _order(segment[x - 1], y, prefix, start, length, raw) == 0:
                    continue  # the same id again (sorted, so equal to the previous)
                _copy(pair_bytes, origin + at, raw, start[y], length[y])
                at += length[y]
                pair_key[ends + written] = at
                written += 1
                distinct[j0 + j] += 1
            lo = hi
    return written, at
