"""Period split (Numba): logs cut at their contracts' period boundaries, each part's frozen
rate-card version and its seconds per time condition from the condition tables."""

from __future__ import annotations

import numpy as np
from numba import njit

from effigate_engine.ratecard.kernels import (
    PACK_BITS,
    PACK_MASK,
    SECONDS_PER_DAY,
    SLOT_SECONDS,
    ConditionTables,
    DeferredParts,
    LogColumns,
    PartBuffers,
    PeriodIndex,
    VersionIndex,
)


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
    k: int, s: int, e: int, g: int, conditions: ConditionTables, actual: np.ndarray
) -> bool:
    """Write ``actual[k]`` (seconds per time condition of ``[s, e)`` under condition triple
    ``g``) from the condition tables; False (nothing written) when ``s`` or ``e`` lies inside
    a slot where a calendar opens or closes."""
    origin, condition_days, profiles = conditions
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
    logs: LogColumns,
    periods: PeriodIndex,
    versions: VersionIndex,
    conditions: ConditionTables,
    parts: PartBuffers,
    deferred_parts: DeferredParts,
) -> tuple[int, int, int]:
    """Split logs at period boundaries (local midnights at period ends) and measure each
    part's seconds per time condition.

    Part ``i`` is the first part of log ``i``; the later parts of split logs follow from ``n``
    on, in log order, and only they are listed in the ``parts.extra_*`` arrays (log row, part
    number, start and end in epoch seconds): a first part starts with its log and ends with it or at
    the next part's start. Each part gets its period ordinal (``parts.period``, int16: fewer
    than ``2**KEY_BITS[1]`` periods per contract, checked by the book), the global index of the
    frozen rate-card version in force at its start (``parts.version``, int32: fewer than
    ``2**KEY_BITS[0]`` versions) and ``actual[k]`` = (REGULAR, AFTER_HOURS, WEEKEND, HOLIDAY)
    seconds (int32: a part lies inside one period, shorter than ``2**31`` s, checked by the
    book). The period of a start is found from its contract's hint (:class:`PeriodIndex`) by a
    short forward scan instead of a binary search, whose data-dependent steps cost a branch
    misprediction each.

    The seconds come from the condition tables (:class:`ConditionTables`): ``F(t)`` of a calendar
    is the day's base plus the profile's cumulative seconds at the slot's start plus, for a
    slot open all through, the seconds into it. Then ``HOLIDAY = holiday``, ``WEEKEND =
    non-working - holiday``, ``REGULAR = regular``, ``AFTER_HOURS = duration - non-working -
    regular``. A part whose start or end lies inside a slot where a calendar opens or closes
    (or every part, when the tables are empty) is listed in ``deferred_parts`` (as long as the
    part arrays) for the clock to measure instead.

    Returns ``(bad, parts, deferred)``: ``bad`` is -1, or the first log that does not end
    after it starts, lies outside its contract's periods or spans more than 127 periods (the
    part number is int8), as ``-2 - row`` for the last; ``parts`` is the number of parts,
    which may exceed ``n + len(extra_log)`` (then nothing past it was written: call again
    with longer arrays); ``deferred`` the number of deferred parts.
    """
    contract, start, end = logs.contract, logs.start, logs.end
    bound_first, bound_last, bounds, hint, origin, shift = periods
    ver_first, ver_last, ver_starts, version_triple = (
        versions.first,
        versions.last,
        versions.starts,
        versions.triple,
    )
    condition_days = conditions.days
    part_period, part_version, actual = parts.period, parts.version, parts.actual
    extra_log, extra_no, extra_start, extra_end = (
        parts.extra_log,
        parts.extra_no,
        parts.extra_start,
        parts.extra_end,
    )
    deferred, deferred_start, deferred_end = deferred_parts
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
        if not (tabled and _measure(i, s, first_end, version_triple[v], conditions, actual)):
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
                if not (tabled and _measure(k, a, z, version_triple[w], conditions, actual)):
                    deferred[nq] = k
                    deferred_start[nq] = a
                    deferred_end[nq] = z
                    nq += 1
            k += 1
            j += 1
    return -1, k, nq
