"""Drawdown (Numba): the parts of bucket and included-hours contracts drawn from their grants
in work order (start, then log id, then part number), oldest grant first, with the rollover
cap of per-period grants; covered and overage seconds become INCLUDED and ADDITIONAL_HOURS
lines."""

from __future__ import annotations

import numpy as np
from numba import njit

from effigate_engine.ratecard.kernels import (
    ADDITIONAL_HOURS,
    CHUNK,
    INCLUDED,
    KEY_BITS,
    LABEL_SLOTS,
    SEGMENT_BITS,
    SEGMENT_INSERTION,
    SHIFT_JOB,
    SHIFT_LEVEL,
    SHIFT_PERIOD,
    SHIFT_VERSION,
    SLOTS,
    Draws,
    Grants,
    LineSink,
    LogIds,
    PartBuffers,
    Segments,
    flush,
    label_slot,
)


@njit(cache=True, nogil=True, inline="always")
def _log_of(k: int, n: int, extra_log: np.ndarray) -> int:
    """Batch row of part ``k`` (parts ``k < n`` are the first parts of logs ``k``)."""
    return k if k < n else np.int64(extra_log[k - n])


@njit(cache=True, nogil=True, inline="always")
def _compare_ids(a: int, b: int, n: int, parts: PartBuffers, ids: LogIds) -> int:
    """Order of parts ``a`` and ``b`` by (log id, part number): -1, 0 or 1. Log ids compare
    as UTF-8 bytes, which is code-point order."""
    extra_log, extra_no = parts.extra_log, parts.extra_no
    offsets, data = ids
    ra, rb = _log_of(a, n, extra_log), _log_of(b, n, extra_log)
    a0, a1 = np.int64(offsets[ra]), np.int64(offsets[ra + 1])
    b0, b1 = np.int64(offsets[rb]), np.int64(offsets[rb + 1])
    la, lb = a1 - a0, b1 - b0
    for j in range(min(la, lb)):
        x, y = data[a0 + j], data[b0 + j]
        if x != y:
            return -1 if x < y else 1
    if la != lb:
        return -1 if la < lb else 1
    na = 0 if a < n else extra_no[a - n]
    nb = 0 if b < n else extra_no[b - n]
    if na != nb:
        return -1 if na < nb else 1
    return 0


@njit(cache=True, nogil=True)
def _order_ties(
    o: np.ndarray, lo: int, hi: int, seg: np.ndarray, n: int, parts: PartBuffers, ids: LogIds
) -> int:
    """Sort ``o[lo:hi]`` (positions in ``seg`` of parts with one start) by log id, then part
    number (stable insertion sort: such runs are short). Returns -1, or the batch row of a
    part whose log id and part number repeat the previous one's."""
    for x in range(lo + 1, hi):
        y = o[x]
        z = x
        while z > lo and _compare_ids(seg[o[z - 1]], seg[y], n, parts, ids) > 0:
            o[z] = o[z - 1]
            z -= 1
        o[z] = y
    for x in range(lo + 1, hi):
        if _compare_ids(seg[o[x - 1]], seg[o[x]], n, parts, ids) == 0:
            return _log_of(np.int64(seg[o[x]]), n, parts.extra_log)
    return -1


@njit(cache=True, nogil=True)
def _sort_segment(
    start: np.ndarray, n: int, order: np.ndarray, spare: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Stable argsort of ``start[:n]`` (epoch seconds): insertion sort for a few entries, else
    least-significant-digit radix over the span of the starts, at most :data:`SEGMENT_BITS`
    bits a pass. ``order``, ``spare`` hold ``n`` entries, ``counts`` ``2**SEGMENT_BITS + 1``.
    Returns the array (``order`` or ``spare``) holding the sorted positions."""
    for t in range(n):
        order[t] = t
    if n <= SEGMENT_INSERTION:
        for x in range(1, n):
            y = order[x]
            z = x
            while z > 0 and start[order[z - 1]] > start[y]:
                order[z] = order[z - 1]
                z -= 1
            order[z] = y
        return order
    lo = start[0]
    hi = start[0]
    for t in range(n):
        lo = min(lo, start[t])
        hi = max(hi, start[t])
    bits = 0
    while (hi - lo) >> bits:
        bits += 1
    passes = (bits + SEGMENT_BITS - 1) // SEGMENT_BITS
    if passes == 0:
        return order
    digit = (bits + passes - 1) // passes
    mask = (np.int64(1) << digit) - 1
    src, dst = order, spare
    shift = 0
    for _ in range(passes):
        counts[: (1 << digit) + 1] = 0
        for t in range(n):
            counts[((start[src[t]] - lo) >> shift & mask) + 1] += 1
        for d in range(1 << digit):
            counts[d + 1] += counts[d]
        for t in range(n):
            d = (start[src[t]] - lo) >> shift & mask
            dst[counts[d]] = src[t]
            counts[d] += 1
        src, dst = dst, src
        shift += digit
    return src


@njit(cache=True, nogil=True)
def cap_rollover(grants: Grants, first: int, at: int, cap: int) -> int:
    """The rollover cap at the start of per-period grant ``at`` (instant ``s``): the
    per-period grants among ``first .. at - 1`` (sorted by start, so oldest first) that
    started before ``s`` and are still valid at ``s`` carry at most ``cap`` seconds into the
    new period; the excess is taken from the oldest first. Returns the seconds expired."""
    grant_from, grant_until, grant_left, grant_capped = (
        grants.valid_from,
        grants.until,
        grants.left,
        grants.capped,
    )
    s = grant_from[at]
    carried = 0
    for g in range(first, at):
        if grant_capped[g] and grant_from[g] < s < grant_until[g]:
            carried += grant_left[g]
    excess = carried - cap
    expired = 0
    for g in range(first, at):
        if excess <= 0:
            break
        if grant_capped[g] and grant_from[g] < s < grant_until[g]:
            cut = min(grant_left[g], excess)
            grant_left[g] -= cut
            excess -= cut
            expired += cut
    return expired


@njit(cache=True, nogil=True, error_model="numpy")
def draw_down(
    draws: Draws,
    n: int,
    parts: PartBuffers,
    ids: LogIds,
    grants: Grants,
    table: np.ndarray,
    lines: LineSink,
    segments: Segments,
) -> tuple[np.ndarray, int]:
    """Draw the burn-weighted seconds of the drawing parts (listed by
    :func:`~effigate_engine.ratecard.pricing.price_parts` in part order) from their contract's
    grants in
    work order (start, then log id, then part number), oldest grant first; a part straddling
    exhaustion is split into covered and overage seconds. Adds the ``INCLUDED`` and
    ``ADDITIONAL_HOURS`` lines.

    The parts are grouped by contract (a counting sort into ``segments``, as long as the
    list); each contract's group, small enough to stay in cache, is sorted by start (radix),
    ties ordered by log id (``ids``; a part's log and part number from ``n`` (the batch's
    rows) and ``parts.extra_log`` / ``parts.extra_no`` as in
    :func:`~effigate_engine.ratecard.period_split.split_parts`) and drawn. ``segments.part``,
    ``.need`` and ``.got`` are left holding each drawing part (grouped by contract), its need
    and its covered seconds (int32, as ``draws.need``): the part's overage is ``need - got``;
    the per-part ``covered`` and ``overage`` arrays are built from them on demand.
    ``grants.left`` (seconds) is consumed in place (:class:`~kernels.Grants`). At every
    per-period grant's start, before any part starting there draws, the excess over the
    contract's rollover cap of the earlier per-period grants still valid then expires, oldest
    first (:func:`cap_rollover`).
    Returns ``(table, duplicate)``: the (possibly grown) hash table, and -1 or the batch row
    of a log whose id and start repeat another's (then the ``segments.got`` are incomplete).
    """
    draw_part, draw_contract, draw_start, draw_prefix, draw_need = draws
    grant_first, grant_last, grant_from, grant_until, grant_left = (
        grants.first,
        grants.last,
        grants.valid_from,
        grants.until,
        grants.left,
    )
    rollover_cap = grants.rollover_cap
    dense, used, vp_offset = lines.dense, lines.used, lines.vp_offset
    n_levels, n_jobs, slot_keys = lines.n_levels, lines.n_jobs, lines.slot_keys
    seg_part, seg_start, seg_prefix, seg_need, seg_got = segments
    n_contracts = grant_first.shape[0]
    count = draw_part.shape[0]
    group = np.zeros(n_contracts + 1, np.int64)
    for j in range(count):
        group[draw_contract[j] + 1] += 1
    widest = 0
    for c in range(n_contracts):
        widest = max(widest, group[c + 1])
        group[c + 1] += group[c]
    fill = group[:-1].copy()
    for j in range(count):
        c = draw_contract[j]
        at = fill[c]
        fill[c] = at + 1
        seg_part[at] = draw_part[j]
        seg_start[at] = draw_start[j]
        seg_prefix[at] = draw_prefix[j]
        seg_need[at] = draw_need[j]
    want_slots = slot_keys.shape[0] > 0
    buf_key = np.empty(CHUNK * SLOTS, np.int64)
    buf_idx = np.empty(CHUNK * SLOTS, np.int64)
    buf_sec = np.empty(CHUNK * SLOTS, np.int64)
    nbuf = 0
    order = np.empty(widest, np.int64)
    spare = np.empty(widest, np.int64)
    counts = np.empty((1 << SEGMENT_BITS) + 1, np.int64)
    for c in range(n_contracts):
        a, size = group[c], group[c + 1] - group[c]
        if size == 0:
            continue
        seg = seg_part[a : a + size]
        starts = seg_start[a : a + size]
        o = _sort_segment(starts, size, order, spare, counts)
        # Equal starts: order by log id, then part number.
        x = 0
        while x < size - 1:
            if starts[o[x + 1]] != starts[o[x]]:
                x += 1
                continue
            y = x + 1
            while y + 1 < size and starts[o[y + 1]] == starts[o[x]]:
                y += 1
            duplicate = _order_ties(o, x, y + 1, seg, n, parts, ids)
            if duplicate >= 0:
                return flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf), duplicate
            x = y + 1
        # In work order a contract's parts come in rising start: a leading grant that is used
        # up or has expired stays so, and grants (sorted by start) past one not yet valid are
        # not valid.
        live = grant_first[c]
        end = grant_last[c]
        cap = rollover_cap[c]
        event = grant_first[c]
        for x in range(size):
            if nbuf > (CHUNK - 1) * SLOTS:
                table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
                nbuf = 0
            r = a + o[x]
            t = seg_start[r]
            if cap >= 0:
                while event < end and grant_from[event] <= t:
                    if grants.capped[event]:
                        cap_rollover(grants, grant_first[c], event, cap)
                    event += 1
            while live < end and (grant_left[live] == 0 or grant_until[live] <= t):
                live += 1
            want = seg_need[r]
            got = 0
            for g in range(live, end):
                if want == got or grant_from[g] > t:
                    break
                if t < grant_until[g] and grant_left[g] > 0:
                    take = min(grant_left[g], want - got)
                    grant_left[g] -= take
                    got += take
            seg_got[r] = got
            head = seg_prefix[r]
            v = head >> SHIFT_VERSION
            p = (head >> SHIFT_PERIOD) & ((1 << KEY_BITS[1]) - 1)
            lv = (head >> SHIFT_LEVEL) & ((1 << KEY_BITS[2]) - 1)
            jb = (head >> SHIFT_JOB) & ((1 << KEY_BITS[3]) - 1)
            base = ((vp_offset[v] + p) * n_levels + lv) * n_jobs + jb
            k = seg_part[r]
            m = 0
            if got > 0:
                key = head | (INCLUDED << 1)
                buf_key[nbuf] = key
                buf_idx[nbuf] = base * LABEL_SLOTS + label_slot(INCLUDED, 0)
                buf_sec[nbuf] = got
                nbuf += 1
                if want_slots:
                    slot_keys[k, m] = key
                m += 1
            if want > got:
                key = head | (ADDITIONAL_HOURS << 1)
                buf_key[nbuf] = key
                buf_idx[nbuf] = base * LABEL_SLOTS + label_slot(ADDITIONAL_HOURS, 0)
                buf_sec[nbuf] = want - got
                nbuf += 1
                if want_slots:
                    slot_keys[k, m] = key
    return flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf), -1
