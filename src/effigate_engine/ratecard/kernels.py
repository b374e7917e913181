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
def _measure(
    k: int,
    s: int,
    e: int,
    g: int,
    condition_days: np.ndarray,
    profiles: np.ndarray,
    origin: int,
    actual: np.ndarray,
) -> bool:
    """Write ``actual[k]`` (seconds per time condition of ``[s, e)`` under condition triple
    ``g``) from the condition tables; False (nothing written) when ``s`` or ``e`` lies inside
    a slot where a calendar opens or closes."""
    a = s - origin
    ds = a // SECONDS_PER_DAY
    a -= ds * SECONDS_PER_DAY
    js = a // SLOT_SECONDS
    rs = a - js * SLOT_SECONDS
    a = e - origin
    de = a // SECONDS_PER_DAY
    a -= de * SECONDS_PER_DAY
    je = a // SLOT_SECONDS
    re = a - je * SLOT_SECONDS
    ps = condition_days[g, ds, 3] + js
    pe = condition_days[g, de, 3] + je
    slope_s = profiles[ps, 1]
    slope_e = profiles[pe, 1]
    if (rs != 0 and slope_s < 0) or (re != 0 and slope_e < 0):
        return False
    fs = profiles[ps, 0] + rs * slope_s
    fe = profiles[pe, 0] + re * slope_e
    nw = condition_days[g, de, 0] - condition_days[g, ds, 0]
    nw += (fe & PACK_MASK) - (fs & PACK_MASK)
    reg = condition_days[g, de, 1] - condition_days[g, ds, 1]
    reg += (fe >> PACK_BITS & PACK_MASK) - (fs >> PACK_BITS & PACK_MASK)
    hol = condition_days[g, de, 2] - condition_days[g, ds, 2]
    hol += (fe >> (2 * PACK_BITS)) - (fs >> (2 * PACK_BITS))
    actual[k, 0] = reg
    actual[k, 1] = e - s - nw - reg
    actual[k, 2] = nw - hol
    actual[k, 3] = hol
    return True


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
    version_triple: np.ndarray,
    condition_days: np.ndarray,
    profiles: np.ndarray,
    condition_origin: int,
    part_period: np.ndarray,
    part_version: np.ndarray,
    actual: np.ndarray,
    extra_log: np.ndarray,
    extra_no: np.ndarray,
    extra_start: np.ndarray,
    extra_end: np.ndarray,
    deferred: np.ndarray,
    deferred_start: np.ndarray,
    deferred_end: np.ndarray,
) -> tuple[int, int, int]:
    """Split logs at period boundaries (local midnights at period ends) and measure each
    part's seconds per time condition.

    Part ``i`` is the first part of log ``i``; the later parts of split logs follow from ``n``
    on, in log order, and only they are listed in the ``extra_*`` arrays (log row, part number,
    start and end in epoch seconds): a first part starts with its log and ends with it or at
    the next part's start. Each part gets its period ordinal (``part_period``, int16: fewer
    than ``2**KEY_BITS[1]`` periods per contract, checked by the book), the global index of the
    frozen rate-card version in force at its start (``part_version``, int32: fewer than
    ``2**KEY_BITS[0]`` versions) and ``actual[k]`` = (REGULAR, AFTER_HOURS, WEEKEND, HOLIDAY)
    seconds (int32: a part lies inside one period, shorter than ``2**31`` s, checked by the
    book). ``bounds[bound_first[c]:bound_last[c]]`` are contract ``c``'s period starts plus
    the end of its last period (epoch seconds, rising). ``hint[c, w]`` is the index in
    ``bounds`` of contract ``c``'s last boundary at or before ``origin + (w << shift)``
    (seconds), or its first: the period of a start is found from there by a short forward
    scan instead of a binary search, whose data-dependent steps cost a branch misprediction
    each.

    The seconds come from the condition tables of ``ContractBook.conditions``
    (``condition_origin``: epoch seconds of their first UTC midnight): ``F(t)`` of a calendar
    is the day's base plus the profile's cumulative seconds at the slot's start plus, for a
    slot open all through, the seconds into it. Then ``HOLIDAY = holiday``, ``WEEKEND =
    non-working - holiday``, ``REGULAR = regular``, ``AFTER_HOURS = duration - non-working -
    regular``. A part whose start or end lies inside a slot where a calendar opens or closes
    (or every part, when ``condition_days`` is empty) is listed in ``deferred`` (part index,
    start, end; as long as the part arrays) for the clock to measure instead.

    Returns ``(bad, parts, deferred)``: ``bad`` is -1, or the first log that does not end
    after it starts, lies outside its contract's periods or spans more than 127 periods (the
    part number is int8), as ``-2 - row`` for the last; ``parts`` is the number of parts,
    which may exceed ``n + len(extra_log)`` (then nothing past it was written: call again
    with longer arrays); ``deferred`` the number of deferred parts.
    """
    n = contract.shape[0]
    cap = extra_log.shape[0]
    tabled = condition_days.shape[1] > 0
    k = n
    nq = 0
    for i in range(n):
        c = contract[i]
        lo, hi = bound_first[c], bound_last[c]
        s, e = start[i], end[i]
        if e <= s or s < bounds[lo] or e > bounds[hi - 1]:
            return i, 0, 0
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
        part_period[i] = p - lo
        part_version[i] = v
        if not (
            tabled
            and _measure(
                i,
                s,
                first_end,
                version_triple[v],
                condition_days,
                profiles,
                condition_origin,
                actual,
            )
        ):
            deferred[nq] = i
            deferred_start[nq] = s
            deferred_end[nq] = first_end
            nq += 1
        j = 1
        while e > bounds[p + j]:
            if j > 127:
                return -2 - i, 0, 0
            a = bounds[p + j]
            z = e if e <= bounds[p + j + 1] else bounds[p + j + 1]
            x = k - n
            if x < cap:
                w = vf
                if vl - vf > 1:
                    w = _last_le(ver_starts, vf, vl, a)
                    w = w if w >= vf else vf
                extra_log[x] = i
                extra_no[x] = j
                extra_start[x] = a
                extra_end[x] = z
                part_period[k] = p + j - lo
                part_version[k] = w
                if not (
                    tabled
                    and _measure(
                        k,
                        a,
                        z,
                        version_triple[w],
                        condition_days,
                        profiles,
                        condition_origin,
                        actual,
                    )
                ):
                    deferred[nq] = k
                    deferred_start[nq] = a
                    deferred_end[nq] = z
                    nq += 1
            k += 1
            j += 1
    return -1, k, nq


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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def share_billed(total: int, a0: int, a1: int, a2: int, a3: int) -> tuple[int, int, int, int]:
    """``total`` billed seconds shared among the four time conditions in proportion to their
    actual seconds ``a0..a3``: shares floored, then the rest by largest remainder, ties to the
    higher precedence (HOLIDAY first); an absent condition gets nothing."""
    duration = a0 + a1 + a2 + a3
    b0 = b1 = b2 = b3 = 0
    if a0 == duration:
        b0 = total
    elif a1 == duration:
        b1 = total
    elif a2 == duration:
        b2 = total
    elif a3 == duration:
        b3 = total
    else:
        r0 = r1 = r2 = r3 = -1
        if a0 > 0:
            b0 = total * a0 // duration
            r0 = total * a0 - b0 * duration
        if a1 > 0:
            b1 = total * a1 // duration
            r1 = total * a1 - b1 * duration
        if a2 > 0:
            b2 = total * a2 // duration
            r2 = total * a2 - b2 * duration
        if a3 > 0:
            b3 = total * a3 // duration
            r3 = total * a3 - b3 * duration
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
    return b0, b1, b2, b3


@njit(cache=True, nogil=True, error_model="numpy")
def billed_parts(
    actual: np.ndarray,
    part_version: np.ndarray,
    version_increment: np.ndarray,
    version_mode: np.ndarray,
    version_minimum: np.ndarray,
    billed: np.ndarray,
) -> None:
    """``billed[k]``: each part's billed seconds per time condition, rounded once per part
    (:func:`round_billed`) and shared (:func:`share_billed`) exactly as :func:`price_parts`
    prices them. The pricing pass does not store them; this fills the public per-part array
    on demand."""
    for k in range(actual.shape[0]):
        v = part_version[k]
        a0, a1, a2, a3 = actual[k, 0], actual[k, 1], actual[k, 2], actual[k, 3]
        total = round_billed(
            a0 + a1 + a2 + a3, version_increment[v], version_mode[v], version_minimum[v]
        )
        b0, b1, b2, b3 = share_billed(total, a0, a1, a2, a3)
        billed[k, 0] = b0
        billed[k, 1] = b1
        billed[k, 2] = b2
        billed[k, 3] = b3


#: Columns of a pricing row (:func:`price_parts`), one per (version, level, job).
ROW_DENSE, ROW_KEY, ROW_ROUNDING, ROW_INFO = 0, 1, 2, 3
#: Bit fields of a row's ``ROW_INFO`` word: scope (2 bits), contract mode (2), increment mode
#: (1), base rate known (1), priority flag per priority code (8), then the four time
#: conditions' line codes (``label << 1 | priority applied``, 5 bits each) without and with
#: the priority flag.
INFO_MODE, INFO_ROUND, INFO_KNOWN, INFO_HIGH, INFO_CODES = 2, 4, 5, 6, 14
#: Bits (one per priority) of a row's ``ROW_INFO`` word: the priority burns a bucket at the
#: high-priority factor (after the eight line codes of ``CODE_BITS`` each).
INFO_BURN_HIGH = 54
CODE_BITS = 5


@njit(cache=True, nogil=True, inline="always")
def code_slot(code: int) -> int:
    """Dense slot of a line code ``label << 1 | priority applied`` (:func:`label_slot`)."""
    return (
        code
        if code < 2 * HIGH_PRIORITY + 2
        else (code >> 1) + 2 * HIGH_PRIORITY + 2 - (ADDITIONAL_HOURS)
    )


@njit(cache=True, nogil=True, error_model="numpy")
def price_parts(
    extra_log: np.ndarray,
    extra_start: np.ndarray,
    part_period: np.ndarray,
    part_version: np.ndarray,
    start: np.ndarray,
    log_level: np.ndarray,
    log_job: np.ndarray,
    log_priority: np.ndarray,
    log_billable: np.ndarray,
    log_approved: np.ndarray,
    rows: np.ndarray,
    version_contract: np.ndarray,
    actual: np.ndarray,
    flags: np.ndarray,
    burn: np.ndarray,
    draw_part: np.ndarray,
    draw_contract: np.ndarray,
    draw_start: np.ndarray,
    draw_prefix: np.ndarray,
    draw_need: np.ndarray,
    table: np.ndarray,
    used: np.ndarray,
    dense: np.ndarray,
    n_levels: int,
    n_jobs: int,
    slot_keys: np.ndarray,
) -> tuple[np.ndarray, int, int]:
    """Round, share and price every part, and add every part that does not draw from grants
    to the lines. Returns ``(table, bad, drawing)``: the (possibly grown) hash table, -1 or
    the first part whose (support level, job type) has no base rate on its card, and the
    number of drawing parts.

    Parts ``k < n`` (``n`` = the batch's rows) are the first parts of logs ``k``; part
    ``n + x`` is the later part of log ``extra_log[x]`` starting at ``extra_start[x]``
    (:func:`split_parts`). ``actual`` holds each part's seconds per time condition; their sum
    is its duration.

    Everything a part's pricing needs from its contract, card version, level and job comes
    from one row of ``rows`` (int64, ``(versions × levels × jobs, 4)``, 32 bytes, row
    ``(version × n_levels + level) × n_jobs + job``): ``ROW_DENSE`` the dense index of the
    row's first line slot in period 0 (a period adds ``n_levels × n_jobs × LABEL_SLOTS``),
    ``ROW_KEY`` the packed line key with period, label and flag 0, ``ROW_ROUNDING`` the
    increment (low 32 bits) and minimum (high bits) in seconds, ``ROW_INFO`` the bit fields of
    ``INFO_*`` (scope, contract mode, increment mode, base known, priority flags, line codes).
    So a line addition is an add to a precomputed index, never a key packed and looked up.

    ``flags[k]`` gets the part's status (bits 0–1), out-of-scope flag (bit 2) and priority
    flag (bit 3); billed seconds are not stored (:func:`billed_parts` recomputes them).
    Billed seconds are shared among conditions in proportion to actual seconds by largest
    remainder, ties to the higher precedence. The parts a drawdown contract draws from its
    grants (priced after the drawdown, by :func:`draw_down`) are listed in part order in the
    ``draw_*`` arrays (as long as the parts): part, contract, start (epoch seconds), line-key
    prefix (version, period, level, job) and burn-weighted billed seconds (int32: the book
    bounds a part's billed seconds times the largest burn factor below ``2**31``).
    """
    n = log_level.shape[0]
    m = part_version.shape[0]
    want_slots = slot_keys.shape[0] > 0
    hashing = dense.shape[0] == 0
    keyed = hashing or want_slots
    stride = n_levels * n_jobs * LABEL_SLOTS
    buf_key = np.empty(CHUNK * SLOTS, np.int64)
    buf_idx = np.empty(CHUNK * SLOTS, np.int64)
    buf_sec = np.empty(CHUNK * SLOTS, np.int64)
    nbuf = 0
    nd = 0
    for k in range(m):
        if nbuf > (CHUNK - 1) * SLOTS:
            table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
            nbuf = 0
        i = k if k < n else np.int64(extra_log[k - n])
        v = np.int64(part_version[k])
        r = (v * n_levels + log_level[i]) * n_jobs + log_job[i]
        info = rows[r, ROW_INFO]
        if not (info >> INFO_KNOWN) & 1:
            return table, k, nd
        rounding = rows[r, ROW_ROUNDING]
        act0 = actual[k, 0]
        act1 = actual[k, 1]
        act2 = actual[k, 2]
        act3 = actual[k, 3]
        total = round_billed(
            act0 + act1 + act2 + act3,
            rounding & 0xFFFFFFFF,
            (info >> INFO_ROUND) & 1,
            rounding >> 32,
        )
        b0, b1, b2, b3 = share_billed(total, act0, act1, act2, act3)
        hp = (info >> (INFO_HIGH + log_priority[i])) & 1
        scope = info & 3
        bits = (hp << 3) | (4 if scope != IN_SCOPE else 0)
        bt = log_billable[i]
        if want_slots:
            for q in range(SLOTS):
                slot_keys[k, q] = EMPTY
        if scope == SCOPE_REJECTED:
            # Out of scope under REJECT: whatever its approval state or billable type.
            flags[k] = bits | REJECTED
            continue
        if not log_approved[i]:
            flags[k] = bits | UNAPPROVED
            continue
        flags[k] = bits | PRICED
        p = np.int64(part_period[k])
        mode = (info >> INFO_MODE) & 3
        if bt == BILLABLE and scope == IN_SCOPE and mode == MODE_DRAWDOWN:
            # Burn weighting rounds half-up once per condition of the part.
            c = version_contract[v]
            # A high-priority log burns at max(condition, priority) factors: columns 4..7.
            w = N_TIME * ((info >> (INFO_BURN_HIGH + log_priority[i])) & 1)
            draw_part[nd] = k
            draw_contract[nd] = c
            draw_start[nd] = start[i] if k < n else extra_start[k - n]
            draw_prefix[nd] = rows[r, ROW_KEY] | (p << SHIFT_PERIOD)
            draw_need[nd] = (
                (2 * b0 * burn[c, w] + BP) // (2 * BP)
                + (2 * b1 * burn[c, w + 1] + BP) // (2 * BP)
                + (2 * b2 * burn[c, w + 2] + BP) // (2 * BP)
                + (2 * b3 * burn[c, w + 3] + BP) // (2 * BP)
            )
            nd += 1
            continue
        base = rows[r, ROW_DENSE] + p * stride
        if bt != BILLABLE or scope == SCOPE_PRICED or mode == MODE_COVERED:
            if total > 0:
                if bt != BILLABLE:
                    label = NON_BILLABLE if bt == NON_BILLABLE_TYPE else WARRANTY
                elif scope == SCOPE_PRICED:
                    label = OUT_OF_SCOPE
                else:
                    label = INCLUDED
                buf_idx[nbuf] = base + label_slot(label, 0)
                buf_sec[nbuf] = total
                if keyed:
                    key = rows[r, ROW_KEY] | (p << SHIFT_PERIOD) | (label << 1)
                    buf_key[nbuf] = key
                    if want_slots:
                        slot_keys[k, 0] = key
                nbuf += 1
            continue
        codes = info >> (INFO_CODES + 4 * CODE_BITS * hp)
        q = 0
        for cond in range(N_TIME):
            sec = b0 if cond == 0 else (b1 if cond == 1 else (b2 if cond == 2 else b3))
            if sec > 0:
                code = (codes >> (CODE_BITS * cond)) & ((1 << CODE_BITS) - 1)
                buf_idx[nbuf] = base + code_slot(code)
                buf_sec[nbuf] = sec
                if keyed:
                    key = rows[r, ROW_KEY] | (p << SHIFT_PERIOD) | code
                    buf_key[nbuf] = key
                    if want_slots:
                        slot_keys[k, q] = key
                q += 1
                nbuf += 1
    table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
    return table, -1, nd


@njit(cache=True, nogil=True, inline="always")
def _log_of(k: int, n: int, extra_log: np.ndarray) -> int:
    """Batch row of part ``k`` (parts ``k < n`` are the first parts of logs ``k``)."""
    return k if k < n else np.int64(extra_log[k - n])


@njit(cache=True, nogil=True, inline="always")
def _compare_ids(
    a: int,
    b: int,
    n: int,
    extra_log: np.ndarray,
    extra_no: np.ndarray,
    offsets: np.ndarray,
    data: np.ndarray,
) -> int:
    """Order of parts ``a`` and ``b`` by (log id, part number): -1, 0 or 1. Log ids compare
    as UTF-8 bytes, which is code-point order."""
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
    o: np.ndarray,
    lo: int,
    hi: int,
    parts: np.ndarray,
    n: int,
    extra_log: np.ndarray,
    extra_no: np.ndarray,
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
            z > lo
            and _compare_ids(parts[o[z - 1]], parts[y], n, extra_log, extra_no, offsets, data) > 0
        ):
            o[z] = o[z - 1]
            z -= 1
        o[z] = y
    for x in range(lo + 1, hi):
        if _compare_ids(parts[o[x - 1]], parts[o[x]], n, extra_log, extra_no, offsets, data) == 0:
            return _log_of(np.int64(parts[o[x]]), n, extra_log)
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
def cap_rollover(
    grant_from: np.ndarray,
    grant_until: np.ndarray,
    grant_left: np.ndarray,
    grant_capped: np.ndarray,
    first: int,
    at: int,
    cap: int,
) -> int:
    """The rollover cap at the start of per-period grant ``at`` (instant ``s``): the
    per-period grants among ``first .. at - 1`` (sorted by start, so oldest first) that
    started before ``s`` and are still valid at ``s`` carry at most ``cap`` seconds into the
    new period; the excess is taken from the oldest first. Returns the seconds expired."""
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
    draw_part: np.ndarray,
    draw_contract: np.ndarray,
    draw_start: np.ndarray,
    draw_prefix: np.ndarray,
    draw_need: np.ndarray,
    n: int,
    extra_log: np.ndarray,
    extra_no: np.ndarray,
    id_offsets: np.ndarray,
    id_data: np.ndarray,
    grant_first: np.ndarray,
    grant_last: np.ndarray,
    grant_from: np.ndarray,
    grant_until: np.ndarray,
    grant_left: np.ndarray,
    grant_capped: np.ndarray,
    rollover_cap: np.ndarray,
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
    exhaustion is split into covered and overage seconds. Adds the ``INCLUDED`` and
    ``ADDITIONAL_HOURS`` lines.

    The parts are grouped by contract (a counting sort into the ``seg_*`` arrays, as long as
    the list); each contract's group, small enough to stay in cache, is sorted by start
    (radix), ties ordered by log id (``id_offsets``/``id_data``: the log-id string column's
    offsets and UTF-8 bytes; a part's log and part number from ``n``, ``extra_log`` and
    ``extra_no`` as in :func:`split_parts`) and drawn. ``seg_part``, ``seg_need`` and
    ``seg_got`` are left holding each drawing part (grouped by contract), its need and its
    covered seconds (int32, as ``draw_need``): the part's overage is ``need - got``; the
    per-part ``covered`` and ``overage`` arrays are built from them on demand.
    ``grant_left`` (seconds) is consumed in place; a grant counts for parts starting in
    ``[grant_from, grant_until)``; each contract's grants are sorted by ``grant_from``.
    ``rollover_cap[c]`` (seconds, -1 = none) caps what contract ``c``'s per-period grants
    (``grant_capped``) carry into each later period: at every such grant's start, before any
    part starting there draws, the excess over the cap of the earlier per-period grants still
    valid then expires, oldest first (:func:`cap_rollover`).
    Returns ``(table, duplicate)``: the (possibly grown) hash table, and -1 or the batch row
    of a log whose id and start repeat another's (then the ``seg_got`` are incomplete).
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
            duplicate = _order_ties(o, x, y + 1, parts, n, extra_log, extra_no, id_offsets, id_data)
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
                    if grant_capped[event]:
                        cap_rollover(
                            grant_from,
                            grant_until,
                            grant_left,
                            grant_capped,
                            grant_first[c],
                            event,
                            cap,
                        )
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


#: Rows per partition the duplicate-id check aims at: its hash table (twice as many int32
#: slots) then stays in the core's cache, and the partitioning pass writes to few enough
#: places at once.
ID_PARTITION_ROWS = 1 << 15


@njit(cache=True, nogil=True, inline="always")
def _id_hash(offsets: np.ndarray, data: np.ndarray, row: int) -> np.uint64:
    """A 64-bit hash of row ``row``'s UTF-8 bytes, eight bytes a step."""
    a, z = np.int64(offsets[row]), np.int64(offsets[row + 1])
    h = np.uint64(z - a) * _GOLDEN
    while a < z:
        word = np.uint64(0)
        top = min(a + 8, z)
        shift = np.uint64(0)
        for j in range(a, top):
            word |= np.uint64(data[j]) << shift
            shift += np.uint64(8)
        h = (h ^ word) * _GOLDEN
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
