"""Numba kernels of classification: period split, rounding, sharing, pricing, drawdown and
line aggregation. Every array is NumPy; every duration is seconds; every rate int64 minor units
per hour. The kernels hold no Python objects, release the GIL and are cached on disk.

Time-condition index ``c``: 0 REGULAR, 1 AFTER_HOURS, 2 WEEKEND, 3 HOLIDAY (rising precedence).
Per-condition outputs are shaped ``(parts, 4)``: one 16-byte row per part keeps the hot loop to
a few memory streams.

Lines are accumulated by key: a key packs (version, period, level, job, label, priority
applied) and determines the line's rate, so rates are looked up once per line, not per part.
When the batch's key space is small enough the seconds go to a dense array (one cache line per
part); otherwise to an open-addressing table of int64 rows ``[key, seconds]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Condition codes shared with :class:`effigate_engine.ratecard.model.Condition`.
REGULAR, AFTER_HOURS, WEEKEND, HOLIDAY = 0, 1, 2, 3
HIGH_PRIORITY, ADDITIONAL_HOURS, OUT_OF_SCOPE, INCLUDED, NON_BILLABLE, WARRANTY = 4, 5, 6, 7, 8, 9
#: Time conditions per part.
N_TIME = 4
#: Part status codes.
PRICED, UNAPPROVED, REJECTED = 0, 1, 2
#: Billable-type codes.
BILLABLE, NON_BILLABLE_TYPE, WARRANTY_TYPE = 0, 1, 2
#: Scope codes per (contract, level, job): in scope, out of scope priced, out of scope rejected.
IN_SCOPE, SCOPE_PRICED, SCOPE_REJECTED = 0, 1, 2
#: Contract pricing modes: time priced at rates, drawn from grants (bucket, included hours),
#: or covered by a fixed price (fixed-price and scope contracts).
MODE_PRICED, MODE_DRAWDOWN, MODE_COVERED = 0, 1, 2
#: Increment modes.
ROUND_UP, ROUND_NEAREST = 0, 1
#: Line slots per part (at most one per time condition).
SLOTS = 4
#: Bits of each field of a packed line key (version, period, level, job, label, priority).
KEY_BITS = (20, 12, 8, 10, 4, 1)
#: Bit offsets of the version, period, level and job fields in a packed key.
SHIFT_JOB = KEY_BITS[4] + KEY_BITS[5]
SHIFT_LEVEL = SHIFT_JOB + KEY_BITS[3]
SHIFT_PERIOD = SHIFT_LEVEL + KEY_BITS[2]
SHIFT_VERSION = SHIFT_PERIOD + KEY_BITS[1]
#: Basis points in 1 (burn factors).
BP = 10_000
EMPTY = -1
#: Dense line slots per (version, period, level, job): the five labels a priority flag can
#: qualify (time conditions, HIGH_PRIORITY) × the flag, then the five others; 15 used of 16.
LABEL_SLOTS = 16
#: Initial line-table capacity (power of two); it doubles past half full.
INITIAL_BITS = 12
#: Parts between two flushes of the dense-line buffer.
CHUNK = 2048
#: Radix sort digit: 12 bits (a 32 KiB count table: three passes cover 36-bit keys).
RADIX_BITS = 12
RADIX = 1 << RADIX_BITS
#: Fibonacci hashing multiplier (2**64 / golden ratio).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def remap_codes(lookup: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = lookup[codes[i]]``: dictionary codes of a batch column mapped to the codes of
    the engine (codes are valid indexes of ``lookup``)."""
    for i in range(codes.shape[0]):
        out[i] = lookup[codes[i]]


@njit(cache=True, nogil=True, inline="always")
def _last_le(values: np.ndarray, lo: int, hi: int, x: int) -> int:
    """Largest index ``i`` in ``[lo, hi)`` with ``values[i] <= x``, or ``lo - 1``."""
    if hi <= lo or values[lo] > x:
        return lo - 1
    a = lo
    n = hi - lo
    while n > 1:
        half = n >> 1
        a = a + half if values[a + half] <= x else a
        n -= half
    return a


@njit(cache=True, nogil=True, inline="always")
def _write_part(
    k: int,
    i: int,
    j: int,
    s: int,
    e: int,
    p: int,
    c: int,
    bound_first: np.ndarray,
    ver_first: np.ndarray,
    ver_last: np.ndarray,
    ver_starts: np.ndarray,
    version_nonworking: np.ndarray,
    version_regular: np.ndarray,
    part_log: np.ndarray,
    part_no: np.ndarray,
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
    part_nonworking: np.ndarray,
    part_regular: np.ndarray,
) -> None:
    vf, vl = ver_first[c], ver_last[c]
    v = vf
    if vl - vf > 1:
        v = _last_le(ver_starts, vf, vl, s)
        v = v if v >= vf else vf
    part_log[k] = i
    part_no[k] = j
    part_start[k] = s
    part_end[k] = e
    part_period[k] = p - bound_first[c]
    part_version[k] = v
    part_nonworking[k] = version_nonworking[v]
    part_regular[k] = version_regular[v]


@njit(cache=True, nogil=True, error_model="numpy")
def split_parts(
    contract: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    bound_first: np.ndarray,
    bound_last: np.ndarray,
    bounds: np.ndarray,
    hint: np.ndarray,
    origin: int,
    shift: int,
    ver_first: np.ndarray,
    ver_last: np.ndarray,
    ver_starts: np.ndarray,
    version_nonworking: np.ndarray,
    version_regular: np.ndarray,
    part_log: np.ndarray,
    part_no: np.ndarray,
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
    part_nonworking: np.ndarray,
    part_regular: np.ndarray,
) -> tuple[int, int]:
    """Split logs at period boundaries (local midnights at period ends).

    Part ``i`` is the first part of log ``i``; the later parts of split logs follow from
    ``n`` on, in log order. Each part gets its period ordinal, the global index of the frozen
    rate-card version in force at its start, and its condition calendars (non-working,
    regular). ``bounds[bound_first[c]:bound_last[c]]`` are contract ``c``'s period starts plus
    the end of its last period (epoch seconds, rising). ``hint[c, w]`` is the index in
    ``bounds`` of contract ``c``'s last boundary at or before ``origin + (w << shift)`` (seconds),
    or its first: the period of a start is found from there by a short forward scan instead
    of a binary search, whose data-dependent steps cost a branch misprediction each.

    Returns ``(bad, parts)``: ``bad`` is -1 or the first log that does not end after it starts
    or lies outside its contract's periods; ``parts`` is the number of parts, which may exceed
    the arrays' length (then nothing past it was written: call again with longer arrays).
    """
    n = contract.shape[0]
    cap = part_log.shape[0]
    k = n
    for i in range(n):
        c = contract[i]
        lo, hi = bound_first[c], bound_last[c]
        s, e = start[i], end[i]
        if e <= s or s < bounds[lo] or e > bounds[hi - 1]:
            return i, 0
        # The last boundary <= s: from the hint (bounds[lo] <= s and e <= bounds[hi - 1] are
        # checked, so the scan stops before hi - 1).
        p = np.int64(hint[c, (s - origin) >> shift])
        while bounds[p + 1] <= s:
            p += 1
        first_end = e if e <= bounds[p + 1] else bounds[p + 1]
        vf, vl = ver_first[c], ver_last[c]
        v = vf
        if vl - vf > 1:
            while v + 1 < vl and ver_starts[v + 1] <= s:
                v += 1
        part_log[i] = i
        part_no[i] = 0
        part_start[i] = s
        part_end[i] = first_end
        part_period[i] = p - lo
        part_version[i] = v
        part_nonworking[i] = version_nonworking[v]
        part_regular[i] = version_regular[v]
        j = 1
        while e > bounds[p + j]:
            a = bounds[p + j]
            z = e if e <= bounds[p + j + 1] else bounds[p + j + 1]
            if k < cap:
                _write_part(
                    k,
                    i,
                    j,
                    a,
                    z,
                    p + j,
                    c,
                    bound_first,
                    ver_first,
                    ver_last,
                    ver_starts,
                    version_nonworking,
                    version_regular,
                    part_log,
                    part_no,
                    part_start,
                    part_end,
                    part_period,
                    part_version,
                    part_nonworking,
                    part_regular,
                )
            k += 1
            j += 1
    return -1, k


@njit(cache=True, nogil=True, error_model="numpy")
def plan_queries(
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_version: np.ndarray,
    nonworking: np.ndarray,
    version_regular: np.ndarray,
    version_holiday: np.ndarray,
    version_has_holidays: np.ndarray,
    query_calendar: np.ndarray,
    query_start: np.ndarray,
    query_end: np.ndarray,
) -> int:
    """The clock queries a part's other condition seconds still need, given its non-working
    seconds: its regular seconds unless the part is entirely non-working (the regular calendar
    is closed all non-working day, so they are 0), then its holiday seconds if it touches a
    non-working day of a calendar that has holidays (else they are 0). Queries are written in
    part order, regular before holiday; :func:`price_parts` consumes them by the same rule.
    Returns the number of queries (the arrays hold one per part and two per part at most)."""
    q = 0
    for k in range(part_start.shape[0]):
        s, e, v = part_start[k], part_end[k], part_version[k]
        nw = nonworking[k]
        if nw < e - s:
            query_calendar[q] = version_regular[v]
            query_start[q] = s
            query_end[q] = e
            q += 1
        if nw > 0 and version_has_holidays[v]:
            query_calendar[q] = version_holiday[v]
            query_start[q] = s
            query_end[q] = e
            q += 1
    return q


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def round_billed(actual: int, increment: int, mode: int, minimum: int) -> int:
    """``max(minimum, round_to_increment(actual))``: the minimum is a floor, never rounded."""
    rounded = actual
    if increment > 0:
        if mode == ROUND_UP:
            rounded = (actual + increment - 1) // increment * increment
        else:
            rounded = (2 * actual + increment) // (2 * increment) * increment
    return rounded if rounded > minimum else minimum


@njit(cache=True, nogil=True, inline="always")
def label_slot(label: int, hp: int) -> int:
    """Dense slot of a (label, priority flag) pair inside a (version, period, level, job)
    block."""
    if label <= HIGH_PRIORITY:
        return 2 * label + hp
    return 2 * HIGH_PRIORITY + 2 + label - ADDITIONAL_HOURS


@njit(cache=True, nogil=True, inline="always")
def _pack(v: int, period: int, level: int, job: int, label: int, hp: int) -> int:
    key = v
    key = (key << 12) | period
    key = (key << 8) | level
    key = (key << 10) | job
    key = (key << 4) | label
    return (key << 1) | hp


@njit(cache=True, nogil=True, inline="always")
def _slot(key: int, bits: int) -> int:
    h = np.uint64(key) * _GOLDEN
    return np.int64(h >> np.uint64(64 - bits))


@njit(cache=True, nogil=True)
def new_table(bits: int) -> np.ndarray:
    """An empty line table of ``2**bits`` rows ``[key, seconds]``."""
    table = np.zeros((1 << bits, 2), np.int64)
    table[:, 0] = EMPTY
    return table


@njit(cache=True, nogil=True)
def grow(table: np.ndarray) -> np.ndarray:
    """The table rehashed into twice the capacity."""
    size = table.shape[0] * 2
    bits = 0
    while (1 << bits) < size:
        bits += 1
    out = new_table(bits)
    for j in range(table.shape[0]):
        key = table[j, 0]
        if key != EMPTY:
            s = _slot(key, bits)
            while out[s, 0] != EMPTY:
                s = (s + 1) & (size - 1)
            out[s, 0] = key
            out[s, 1] = table[j, 1]
    return out


@njit(cache=True, nogil=True)
def flush(
    dense: np.ndarray,
    table: np.ndarray,
    used: np.ndarray,
    buf_key: np.ndarray,
    buf_idx: np.ndarray,
    buf_sec: np.ndarray,
    nbuf: int,
) -> np.ndarray:
    """Apply ``nbuf`` queued line additions: to the dense array when it is in use (a tight
    scatter whose cache misses overlap), else to the hash table, grown past half full.
    Called once per chunk of parts, never per part. Returns the (possibly new) table."""
    if dense.shape[0] > 0:
        for j in range(nbuf):
            dense[buf_idx[j]] += buf_sec[j]
        return table
    for j in range(nbuf):
        if 2 * (used[0] + 1) > table.shape[0]:
            table = grow(table)
        size = table.shape[0]
        bits = 0
        while (1 << bits) < size:
            bits += 1
        key = buf_key[j]
        s = _slot(key, bits)
        while table[s, 0] != EMPTY and table[s, 0] != key:
            s = (s + 1) & (size - 1)
        if table[s, 0] == EMPTY:
            table[s, 0] = key
            used[0] += 1
        table[s, 1] += buf_sec[j]
    return table


@njit(cache=True, nogil=True, error_model="numpy")
def price_parts(
    part_log: np.ndarray,
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
    nonworking: np.ndarray,
    answers: np.ndarray,
    version_has_holidays: np.ndarray,
    log_contract: np.ndarray,
    log_level: np.ndarray,
    log_job: np.ndarray,
    log_priority: np.ndarray,
    log_billable: np.ndarray,
    log_approved: np.ndarray,
    version_increment: np.ndarray,
    version_mode: np.ndarray,
    version_minimum: np.ndarray,
    label_table: np.ndarray,
    applied_table: np.ndarray,
    base_known: np.ndarray,
    high_table: np.ndarray,
    scope_table: np.ndarray,
    contract_mode: np.ndarray,
    actual: np.ndarray,
    billed: np.ndarray,
    status: np.ndarray,
    out_of_scope: np.ndarray,
    high: np.ndarray,
    draws: np.ndarray,
    burn: np.ndarray,
    need: np.ndarray,
    covered: np.ndarray,
    overage: np.ndarray,
    table: np.ndarray,
    used: np.ndarray,
    dense: np.ndarray,
    vp_offset: np.ndarray,
    n_levels: int,
    n_jobs: int,
    slot_keys: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Classify, round, share and price every part, and add every part that does not draw
    from grants to the lines. Returns ``(table, bad)``: the (possibly grown) hash table, and -1
    or the first part whose (support level, job type) has no base rate on its card.

    ``nonworking`` are the business seconds of each part in its non-working calendar and
    ``answers`` the results of the queries of :func:`plan_queries` (regular, then holiday
    seconds, only where not implied), read in the same order. Billed seconds are shared among
    conditions in proportion to actual seconds by largest remainder, ties to the higher
    precedence. ``draws`` marks the parts a drawdown
    contract draws from its grants (priced after the drawdown) and ``need`` their
    burn-weighted billed seconds; ``covered`` gets the billed seconds of parts a fixed price
    covers. Every part's ``need``, ``covered`` and ``overage`` are written (0 when none).
    """
    want_slots = slot_keys.shape[0] > 0
    buf_key = np.empty(CHUNK * SLOTS, np.int64)
    buf_idx = np.empty(CHUNK * SLOTS, np.int64)
    buf_sec = np.empty(CHUNK * SLOTS, np.int64)
    nbuf = 0
    q = 0
    for k in range(part_log.shape[0]):
        if nbuf > (CHUNK - 1) * SLOTS:
            table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
            nbuf = 0
        i = part_log[k]
        v = part_version[k]
        c = log_contract[i]
        lv, jb = log_level[i], log_job[i]
        duration = part_end[k] - part_start[k]
        nw = nonworking[k]
        reg = 0
        hol = 0
        if nw < duration:
            reg = answers[q]
            q += 1
        if nw > 0 and version_has_holidays[v]:
            hol = answers[q]
            q += 1
        act0 = reg
        act1 = duration - nw - reg
        act2 = nw - hol
        act3 = hol
        actual[k, 0] = act0
        actual[k, 1] = act1
        actual[k, 2] = act2
        actual[k, 3] = act3
        need[k] = 0
        covered[k] = 0
        overage[k] = 0
        total = round_billed(duration, version_increment[v], version_mode[v], version_minimum[v])
        b0 = b1 = b2 = b3 = 0
        if act0 == duration:
            b0 = total
        elif act1 == duration:
            b1 = total
        elif act2 == duration:
            b2 = total
        elif act3 == duration:
            b3 = total
        else:
            # Several conditions: shares floored, then the rest by largest remainder, ties to
            # the higher precedence (scan HOLIDAY first); an absent condition gets nothing.
            r0 = r1 = r2 = r3 = -1
            if act0 > 0:
                b0 = total * act0 // duration
                r0 = total * act0 - b0 * duration
            if act1 > 0:
                b1 = total * act1 // duration
                r1 = total * act1 - b1 * duration
            if act2 > 0:
                b2 = total * act2 // duration
                r2 = total * act2 - b2 * duration
            if act3 > 0:
                b3 = total * act3 // duration
                r3 = total * act3 - b3 * duration
            left = total - b0 - b1 - b2 - b3
            while left > 0:
                if r3 >= r2 and r3 >= r1 and r3 >= r0:
                    b3 += 1
                    r3 = -2
                elif r2 >= r1 and r2 >= r0:
                    b2 += 1
                    r2 = -2
                elif r1 >= r0:
                    b1 += 1
                    r1 = -2
                else:
                    b0 += 1
                    r0 = -2
                left -= 1
        billed[k, 0] = b0
        billed[k, 1] = b1
        billed[k, 2] = b2
        billed[k, 3] = b3
        if not base_known[v, lv, jb]:
            return table, k
        hp = high_table[v, log_priority[i]]
        high[k] = hp
        scope = scope_table[c, lv, jb]
        out_of_scope[k] = scope != IN_SCOPE
        bt = log_billable[i]
        draws[k] = False
        if want_slots:
            for m in range(SLOTS):
                slot_keys[k, m] = EMPTY
        if not log_approved[i]:
            status[k] = UNAPPROVED
            continue
        if scope == SCOPE_REJECTED and bt == BILLABLE:
            status[k] = REJECTED
            continue
        status[k] = PRICED
        p = part_period[k]
        vp = vp_offset[v] + p
        if bt != BILLABLE:
            label = NON_BILLABLE if bt == NON_BILLABLE_TYPE else WARRANTY
            if total > 0:
                key = _pack(v, p, lv, jb, label, 0)
                buf_key[nbuf] = key
                buf_idx[nbuf] = ((vp * n_levels + lv) * n_jobs + jb) * LABEL_SLOTS + label_slot(
                    label, 0
                )
                buf_sec[nbuf] = total
                nbuf += 1
                if want_slots:
                    slot_keys[k, 0] = key
            continue
        if scope == SCOPE_PRICED:
            if total > 0:
                key = _pack(v, p, lv, jb, OUT_OF_SCOPE, 0)
                buf_key[nbuf] = key
                buf_idx[nbuf] = ((vp * n_levels + lv) * n_jobs + jb) * LABEL_SLOTS + label_slot(
                    OUT_OF_SCOPE, 0
                )
                buf_sec[nbuf] = total
                nbuf += 1
                if want_slots:
                    slot_keys[k, 0] = key
            continue
        mode = contract_mode[c]
        if mode == MODE_DRAWDOWN:
            draws[k] = True
            # Burn weighting rounds half-up once per condition of the part.
            need[k] = (
                (2 * b0 * burn[c, 0] + BP) // (2 * BP)
                + (2 * b1 * burn[c, 1] + BP) // (2 * BP)
                + (2 * b2 * burn[c, 2] + BP) // (2 * BP)
                + (2 * b3 * burn[c, 3] + BP) // (2 * BP)
            )
            continue
        if mode == MODE_COVERED:
            covered[k] = total
            if total > 0:
                key = _pack(v, p, lv, jb, INCLUDED, 0)
                buf_key[nbuf] = key
                buf_idx[nbuf] = ((vp * n_levels + lv) * n_jobs + jb) * LABEL_SLOTS + label_slot(
                    INCLUDED, 0
                )
                buf_sec[nbuf] = total
                nbuf += 1
                if want_slots:
                    slot_keys[k, 0] = key
            continue
        n = 0
        for cond in range(N_TIME):
            sec = billed[k, cond]
            if sec > 0:
                label = label_table[v, lv, jb, cond, hp]
                flag = applied_table[v, lv, jb, cond, hp]
                key = _pack(v, p, lv, jb, label, flag)
                buf_key[nbuf] = key
                buf_idx[nbuf] = ((vp * n_levels + lv) * n_jobs + jb) * LABEL_SLOTS + label_slot(
                    label, flag
                )
                buf_sec[nbuf] = sec
                nbuf += 1
                if want_slots:
                    slot_keys[k, n] = key
                n += 1
    table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
    return table, -1


@njit(cache=True, nogil=True)
def radix_argsort(
    keys: np.ndarray,
    order: np.ndarray,
    spare: np.ndarray,
    current: np.ndarray,
    other: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Stable argsort of non-negative int64 keys: least-significant-digit radix, 12 bits a
    pass, as many passes as the largest key needs. ``order``, ``spare``, ``current`` and
    ``other`` are work arrays of the keys' length. Returns ``(order, sorted keys)`` (views of
    the work arrays)."""
    n = keys.shape[0]
    for i in range(n):
        order[i] = i
        current[i] = keys[i]
    if n < 2:
        return order, current
    top = 0
    for i in range(n):
        top = max(top, current[i])
    counts = np.zeros(RADIX + 1, np.int64)
    shift = 0
    while (top >> shift) > 0:
        counts[:] = 0
        for i in range(n):
            counts[((current[i] >> shift) & (RADIX - 1)) + 1] += 1
        for d in range(RADIX):
            counts[d + 1] += counts[d]
        for i in range(n):
            d = (current[i] >> shift) & (RADIX - 1)
            pos = counts[d]
            counts[d] = pos + 1
            other[pos] = current[i]
            spare[pos] = order[i]
        current, other = other, current
        order, spare = spare, order
        shift += RADIX_BITS
    return order, current


@njit(cache=True, nogil=True)
def count_drawing(draws: np.ndarray, part_start: np.ndarray) -> tuple[int, int, int]:
    """``(count, first, bits)`` of the drawing parts: how many, the earliest start, and the
    bits that hold the span of their starts."""
    count = 0
    lo = np.iinfo(np.int64).max
    hi = np.iinfo(np.int64).min
    for k in range(draws.shape[0]):
        if draws[k]:
            count += 1
            t = part_start[k]
            lo = min(lo, t)
            hi = max(hi, t)
    if count == 0:
        return 0, 0, 1
    bits = 1
    while (hi - lo) >> bits:
        bits += 1
    return count, lo, bits


@njit(cache=True, nogil=True)
def drawing_keys(
    draws: np.ndarray,
    part_log: np.ndarray,
    part_start: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
    log_contract: np.ndarray,
    log_level: np.ndarray,
    log_job: np.ndarray,
    need: np.ndarray,
    first: int,
    bits: int,
    idx: np.ndarray,
    key: np.ndarray,
    prefix: np.ndarray,
    wants: np.ndarray,
) -> None:
    """For each drawing part, in one sequential pass: its index, its work-order sort key
    ``contract << bits | (start - first)``, its line-key prefix (version, period, level, job)
    and its need, so the drawdown can then run in work order without random reads."""
    n = 0
    for k in range(draws.shape[0]):
        if draws[k]:
            i = part_log[k]
            idx[n] = k
            key[n] = (np.int64(log_contract[i]) << bits) | (part_start[k] - first)
            prefix[n] = _pack(part_version[k], part_period[k], log_level[i], log_job[i], 0, 0)
            wants[n] = need[k]
            n += 1


@njit(cache=True, nogil=True, error_model="numpy")
def draw_down(
    sorted_key: np.ndarray,
    order: np.ndarray,
    first: int,
    bits: int,
    prefix: np.ndarray,
    need: np.ndarray,
    grant_first: np.ndarray,
    grant_last: np.ndarray,
    grant_from: np.ndarray,
    grant_until: np.ndarray,
    grant_left: np.ndarray,
    covered: np.ndarray,
    overage: np.ndarray,
    table: np.ndarray,
    used: np.ndarray,
    dense: np.ndarray,
    vp_offset: np.ndarray,
    n_levels: int,
    n_jobs: int,
    slot_keys: np.ndarray,
) -> np.ndarray:
    """Draw the parts' burn-weighted seconds in work order, oldest grant first; a part
    straddling exhaustion is split into covered and overage seconds. ``sorted_key`` (contract
    and start), ``prefix`` (line-key prefix) and ``need`` are in work order; ``order`` maps
    them back to parts for ``covered``, ``overage`` and ``slot_keys``. ``grant_left`` is
    consumed in place; a grant counts for parts starting in ``[grant_from, grant_until)``.
    Adds the ``INCLUDED`` and ``ADDITIONAL_HOURS`` lines (in work order, a contract's lines
    are close together in memory) and returns the (possibly grown) hash table. Each
    contract's grants are sorted by ``grant_from``."""
    want_slots = slot_keys.shape[0] > 0
    buf_key = np.empty(CHUNK * SLOTS, np.int64)
    buf_idx = np.empty(CHUNK * SLOTS, np.int64)
    buf_sec = np.empty(CHUNK * SLOTS, np.int64)
    nbuf = 0
    mask = (np.int64(1) << bits) - 1
    current = -1
    live = 0
    for n in range(sorted_key.shape[0]):
        if nbuf > (CHUNK - 1) * SLOTS:
            table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
            nbuf = 0
        c = sorted_key[n] >> bits
        t = first + (sorted_key[n] & mask)
        if c != current:
            current = c
            live = grant_first[c]
        # A contract's parts come in rising start: a leading grant that is used up or has
        # expired stays so, and grants (sorted by start) past one not yet valid are not valid.
        while live < grant_last[c] and (grant_left[live] == 0 or grant_until[live] <= t):
            live += 1
        want = need[n]
        got = 0
        for g in range(live, grant_last[c]):
            if want == got or grant_from[g] > t:
                break
            if t < grant_until[g] and grant_left[g] > 0:
                take = min(grant_left[g], want - got)
                grant_left[g] -= take
                got += take
        k = order[n]
        covered[k] = got
        overage[k] = want - got
        head = prefix[n]
        v = head >> SHIFT_VERSION
        p = (head >> SHIFT_PERIOD) & ((1 << KEY_BITS[1]) - 1)
        lv = (head >> SHIFT_LEVEL) & ((1 << KEY_BITS[2]) - 1)
        jb = (head >> SHIFT_JOB) & ((1 << KEY_BITS[3]) - 1)
        base = ((vp_offset[v] + p) * n_levels + lv) * n_jobs + jb
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
    return flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
