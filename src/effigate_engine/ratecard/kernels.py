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
#: Work-order sort of one contract's drawing parts: radix digits of at most 13 bits (a 64 KiB
#: count table; two passes cover two years of starts), insertion sort up to 32 parts.
SEGMENT_BITS = 13
SEGMENT_INSERTION = 32
#: Width of a condition-table slot (seconds): a divisor of every UTC offset and of every
#: whole-quarter-hour opening time, so a slot rarely holds an opening or closing.
SLOT_SECONDS = 900
SECONDS_PER_DAY = 86_400
SLOTS_PER_DAY = SECONDS_PER_DAY // SLOT_SECONDS
#: A day profile packs the three condition calendars' seconds (at most a day) into one int64,
#: this many bits apart.
PACK_BITS = 21
PACK_MASK = (1 << PACK_BITS) - 1
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
    part_log: np.ndarray,
    part_no: np.ndarray,
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
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
    part_log: np.ndarray,
    part_no: np.ndarray,
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
) -> tuple[int, int]:
    """Split logs at period boundaries (local midnights at period ends).

    Part ``i`` is the first part of log ``i``; the later parts of split logs follow from ``n``
    on, in log order. Each part gets its period ordinal and the global index of the frozen
    rate-card version in force at its start. ``bounds[bound_first[c]:bound_last[c]]`` are
    contract ``c``'s period starts plus the end of its last period (epoch seconds, rising).
    ``hint[c, w]`` is the index in ``bounds`` of contract ``c``'s last boundary at or before
    ``origin + (w << shift)`` (seconds), or its first: the period of a start is found from there
    by a short forward scan instead of a binary search, whose data-dependent steps cost a branch
    misprediction each.

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
                    part_log,
                    part_no,
                    part_start,
                    part_end,
                    part_period,
                    part_version,
                )
            k += 1
            j += 1
    return -1, k


@njit(cache=True, nogil=True, error_model="numpy")
def measure_parts(
    part_start: np.ndarray,
    part_end: np.ndarray,
    part_version: np.ndarray,
    version_triple: np.ndarray,
    condition_days: np.ndarray,
    profiles: np.ndarray,
    origin: int,
    actual: np.ndarray,
    deferred: np.ndarray,
) -> int:
    """Seconds of each part per time condition, ``actual[k]`` = (REGULAR, AFTER_HOURS, WEEKEND,
    HOLIDAY), from the condition tables of ``ContractBook.conditions`` (``origin``: epoch
    seconds of their first UTC midnight): ``F(t)`` of a calendar is the day's base plus the
    profile's cumulative seconds at the slot's start plus, for a slot open all through, the
    seconds into it. Then ``HOLIDAY = holiday``, ``WEEKEND = non-working - holiday``,
    ``REGULAR = regular``, ``AFTER_HOURS = duration - non-working - regular``.

    A part whose start or end lies inside a slot where a calendar opens or closes (or every
    part, when ``condition_days`` is empty) is listed in ``deferred`` (as long as the parts)
    instead, for the clock to measure. Returns the number of deferred parts."""
    nq = 0
    if condition_days.shape[1] == 0:
        for k in range(part_start.shape[0]):
            deferred[k] = k
        return part_start.shape[0]
    for k in range(part_start.shape[0]):
        s = part_start[k]
        duration = part_end[k] - s
        g = version_triple[part_version[k]]
        a = s - origin
        ds = a // SECONDS_PER_DAY
        a -= ds * SECONDS_PER_DAY
        js = a // SLOT_SECONDS
        rs = a - js * SLOT_SECONDS
        a = s + duration - origin
        de = a // SECONDS_PER_DAY
        a -= de * SECONDS_PER_DAY
        je = a // SLOT_SECONDS
        re = a - je * SLOT_SECONDS
        ps = condition_days[g, ds, 3] + js
        pe = condition_days[g, de, 3] + je
        slope_s = profiles[ps, 1]
        slope_e = profiles[pe, 1]
        if (rs != 0 and slope_s < 0) or (re != 0 and slope_e < 0):
            deferred[nq] = k
            nq += 1
            continue
        fs = profiles[ps, 0] + rs * slope_s
        fe = profiles[pe, 0] + re * slope_e
        nw = condition_days[g, de, 0] - condition_days[g, ds, 0]
        nw += (fe & PACK_MASK) - (fs & PACK_MASK)
        reg = condition_days[g, de, 1] - condition_days[g, ds, 1]
        reg += (fe >> PACK_BITS & PACK_MASK) - (fs >> PACK_BITS & PACK_MASK)
        hol = condition_days[g, de, 2] - condition_days[g, ds, 2]
        hol += (fe >> (2 * PACK_BITS)) - (fs >> (2 * PACK_BITS))
        actual[k, 0] = reg
        actual[k, 1] = duration - nw - reg
        actual[k, 2] = nw - hol
        actual[k, 3] = hol
    return nq


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
    return (
        2 * label + hp
        if label <= HIGH_PRIORITY
        else 2 * HIGH_PRIORITY + 2 + label - ADDITIONAL_HOURS
    )


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
    burn: np.ndarray,
    covered: np.ndarray,
    overage: np.ndarray,
    draw_part: np.ndarray,
    draw_contract: np.ndarray,
    draw_start: np.ndarray,
    draw_prefix: np.ndarray,
    draw_need: np.ndarray,
    table: np.ndarray,
    used: np.ndarray,
    dense: np.ndarray,
    vp_offset: np.ndarray,
    n_levels: int,
    n_jobs: int,
    slot_keys: np.ndarray,
) -> tuple[np.ndarray, int, int]:
    """Round, share and price every part, and add every part that does not draw from grants
    to the lines. Returns ``(table, bad, drawing)``: the (possibly grown) hash table, -1 or
    the first part whose (support level, job type) has no base rate on its card, and the
    number of drawing parts.

    ``actual`` holds each part's seconds per time condition (:func:`measure_parts`).
    Billed seconds are shared among conditions in proportion to actual seconds by largest
    remainder, ties to the higher precedence. The parts a drawdown contract draws from its
    grants (priced after the drawdown, by :func:`draw_down`) are listed in part order in the
    ``draw_*`` arrays (as long as the parts): part, contract, start (epoch
    seconds), line-key prefix (version, period, level, job) and burn-weighted billed seconds.
    ``covered`` gets the billed seconds of parts a fixed price covers; every part's ``covered``
    and ``overage`` are written (0 when none).
    """
    want_slots = slot_keys.shape[0] > 0
    buf_key = np.empty(CHUNK * SLOTS, np.int64)
    buf_idx = np.empty(CHUNK * SLOTS, np.int64)
    buf_sec = np.empty(CHUNK * SLOTS, np.int64)
    nbuf = 0
    nd = 0
    for k in range(part_log.shape[0]):
        if nbuf > (CHUNK - 1) * SLOTS:
            table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
            nbuf = 0
        i = part_log[k]
        v = part_version[k]
        c = log_contract[i]
        lv, jb = log_level[i], log_job[i]
        if not base_known[v, lv, jb]:
            return table, k, nd
        s = part_start[k]
        duration = part_end[k] - s
        act0 = actual[k, 0]
        act1 = actual[k, 1]
        act2 = actual[k, 2]
        act3 = actual[k, 3]
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
        hp = high_table[v, log_priority[i]]
        high[k] = hp
        scope = scope_table[c, lv, jb]
        out_of_scope[k] = scope != IN_SCOPE
        bt = log_billable[i]
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
            # Burn weighting rounds half-up once per condition of the part.
            draw_part[nd] = k
            draw_contract[nd] = c
            draw_start[nd] = s
            draw_prefix[nd] = _pack(v, p, lv, jb, 0, 0)
            draw_need[nd] = (
                (2 * b0 * burn[c, 0] + BP) // (2 * BP)
                + (2 * b1 * burn[c, 1] + BP) // (2 * BP)
                + (2 * b2 * burn[c, 2] + BP) // (2 * BP)
                + (2 * b3 * burn[c, 3] + BP) // (2 * BP)
            )
            nd += 1
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
    return table, -1, nd


@njit(cache=True, nogil=True, inline="always")
def _compare_ids(
    a: int, b: int, part_log: np.ndarray, part_no: np.ndarray, offsets: np.ndarray, data: np.ndarray
) -> int:
    """Order of parts ``a`` and ``b`` by (log id, part number): -1, 0 or 1. Log ids compare
    as UTF-8 bytes, which is code-point order."""
    ra, rb = part_log[a], part_log[b]
    a0, a1 = np.int64(offsets[ra]), np.int64(offsets[ra + 1])
    b0, b1 = np.int64(offsets[rb]), np.int64(offsets[rb + 1])
    la, lb = a1 - a0, b1 - b0
    for j in range(min(la, lb)):
        x, y = data[a0 + j], data[b0 + j]
        if x != y:
            return -1 if x < y else 1
    if la != lb:
        return -1 if la < lb else 1
    if part_no[a] != part_no[b]:
        return -1 if part_no[a] < part_no[b] else 1
    return 0


@njit(cache=True, nogil=True)
def _order_ties(
    o: np.ndarray,
    lo: int,
    hi: int,
    parts: np.ndarray,
    part_log: np.ndarray,
    part_no: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
) -> int:
    """Sort ``o[lo:hi]`` (positions in ``parts`` of parts with one start) by log id, then part
    number (stable insertion sort: such runs are short). Returns -1, or the batch row of a
    part whose log id and part number repeat the previous one's."""
    for x in range(lo + 1, hi):
        y = o[x]
        z = x
        while (
            z > lo and _compare_ids(parts[o[z - 1]], parts[y], part_log, part_no, offsets, data) > 0
        ):
            o[z] = o[z - 1]
            z -= 1
        o[z] = y
    for x in range(lo + 1, hi):
        if _compare_ids(parts[o[x - 1]], parts[o[x]], part_log, part_no, offsets, data) == 0:
            return part_log[parts[o[x]]]
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


@njit(cache=True, nogil=True, error_model="numpy")
def draw_down(
    draw_part: np.ndarray,
    draw_contract: np.ndarray,
    draw_start: np.ndarray,
    draw_prefix: np.ndarray,
    draw_need: np.ndarray,
    part_log: np.ndarray,
    part_no: np.ndarray,
    id_offsets: np.ndarray,
    id_data: np.ndarray,
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
    seg_part: np.ndarray,
    seg_start: np.ndarray,
    seg_prefix: np.ndarray,
    seg_need: np.ndarray,
    seg_got: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Draw the burn-weighted seconds of the drawing parts (listed by :func:`price_parts` in
    part order: part, contract, start, line-key prefix, need) from their contract's grants in
    work order (start, then log id, then part number), oldest grant first; a part straddling
    exhaustion is split into covered and overage seconds, written to ``covered`` and
    ``overage``. Adds the ``INCLUDED`` and ``ADDITIONAL_HOURS`` lines.

    The parts are grouped by contract (a counting sort into the ``seg_*`` arrays, as long as
    the list); each contract's group, small enough to stay in cache, is sorted by start
    (radix), ties ordered by log id (``id_offsets``/``id_data``: the log-id string column's
    offsets and UTF-8 bytes) and drawn; the covered seconds go back to the parts in one
    pass in part order (no scattered writes into the per-part arrays). ``grant_left``
    (seconds) is consumed in place; a grant counts for parts starting in
    ``[grant_from, grant_until)``; each contract's grants are sorted by ``grant_from``.
    Returns ``(table, duplicate)``: the (possibly grown) hash table, and -1 or the batch row
    of a log whose id and start repeat another's (then ``covered`` and ``overage`` are
    incomplete).
    """
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
        parts = seg_part[a : a + size]
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
            duplicate = _order_ties(o, x, y + 1, parts, part_log, part_no, id_offsets, id_data)
            if duplicate >= 0:
                return flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf), duplicate
            x = y + 1
        # In work order a contract's parts come in rising start: a leading grant that is used
        # up or has expired stays so, and grants (sorted by start) past one not yet valid are
        # not valid.
        live = grant_first[c]
        end = grant_last[c]
        for x in range(size):
            if nbuf > (CHUNK - 1) * SLOTS:
                table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
                nbuf = 0
            r = a + o[x]
            t = seg_start[r]
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
    # Covered and overage seconds back to the parts, in part order.
    fill = group[:-1].copy()
    for j in range(count):
        c = draw_contract[j]
        at = fill[c]
        fill[c] = at + 1
        k = draw_part[j]
        covered[k] = seg_got[at]
        overage[k] = seg_need[at] - seg_got[at]
    return flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf), -1
