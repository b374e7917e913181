# Compiled business-time core: declarations and inline kernels shared with other compiled modules.
#
# A ClockView points into a CalendarSet's packed arrays. For calendar c, the open intervals
# iv[i] = {open, close, cum, cum_end} (UTC epoch seconds; cum = open seconds before `open`,
# cum_end = cum + close - open) occupy positions last[c-1]+1 .. last[c]-1, and position last[c]
# is a sentinel (open = close = INT64_MAX, cum = cum_end = total open seconds). One record is 32
# bytes, so the fields a query reads share a cache line.
# day_first[c * days + d] is the first position of calendar c whose close is after the UTC
# midnight start + d * 86400 (relative to the calendar's first position).
# by_open[bucket_first[c] + k] is the first position (relative) of calendar c whose cum_end
# reaches k * BUSINESS_BUCKET open seconds, so a deadline search starts next to its answer.
# open_at_end[c] is 1 when calendar c is open at the instant `end` itself: the intervals stop at
# `end`, so the state at that last instant of the closed horizon [start, end] is kept apart.
# All instants must lie within [start, end]; callers check that before calling the kernels.

from libc.stdint cimport int32_t, int64_t, uint8_t

cdef extern from *:
    """
    #include <stdint.h>
    #define EFFIGATE_NO_INSTANT INT64_MIN
    #define EFFIGATE_SECONDS_PER_DAY 86400
    #define EFFIGATE_BUSINESS_BUCKET 28800
    """
    const int64_t NO_INSTANT "EFFIGATE_NO_INSTANT"
    const int64_t SECONDS_PER_DAY "EFFIGATE_SECONDS_PER_DAY"
    const int64_t BUSINESS_BUCKET "EFFIGATE_BUSINESS_BUCKET"


cdef struct Interval:
    int64_t open
    int64_t close
    int64_t cum
    int64_t cum_end


cdef struct ClockView:
    const Interval* iv
    const int64_t* first      # first position of each calendar
    const int64_t* last       # sentinel position of each calendar
    const int32_t* day_first
    const int32_t* by_open
    const int64_t* bucket_first
    const uint8_t* open_at_end  # per calendar: open at the instant `end`
    int64_t days
    int64_t ncal
    int64_t start
    int64_t end


cdef class PackedClock:
    cdef ClockView view
    cdef object _arrays


cdef inline int64_t locate(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """Position of the first interval of `cal` that closes after t (the sentinel if none)."""
    cdef int64_t i = v.first[cal] + v.day_first[cal * v.days + (t - v.start) // SECONDS_PER_DAY]
    # Most days hold one or two intervals: two branch-free steps, then a rarely taken loop.
    i += v.iv[i].close <= t
    i += v.iv[i].close <= t
    while v.iv[i].close <= t:
        i += 1
    return i


cdef inline int64_t open_before(const ClockView* v, int64_t i, int64_t t) noexcept nogil:
    """F(t): open seconds before t, given i = locate(cal, t)."""
    if v.iv[i].open <= t:
        return v.iv[i].cum + (t - v.iv[i].open)
    return v.iv[i].cum


cdef inline bint open_at(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """Whether calendar `cal` is open at t (the horizon's last instant answers by open_at_end)."""
    return v.iv[locate(v, cal, t)].open <= t or (t == v.end and v.open_at_end[cal])


cdef inline int64_t open_seconds_before(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """F(t) of calendar `cal`."""
    return open_before(v, locate(v, cal, t), t)


cdef inline int64_t instant_at(const ClockView* v, int64_t cal, int64_t i, int64_t target) noexcept nogil:
    """Earliest t with F(t) >= target, target > 0, searching from position i, which must not be
    past the answer (iv[i - 1].cum_end < target).

    Gallops forward then bisects over cum_end, so an answer k intervals away costs O(log k).
    Returns NO_INSTANT when the target lies past the horizon.
    """
    cdef int64_t last = v.last[cal]
    cdef int64_t lo, hi, mid, step
    if target > v.iv[last].cum_end:
        return NO_INSTANT
    if v.iv[i].cum_end < target:
        lo = i + 1
        hi = lo
        step = 1
        while v.iv[hi].cum_end < target:
            lo = hi + 1
            hi += step
            step <<= 1
            if hi > last:
                hi = last
        while lo < hi:
            mid = (lo + hi) >> 1
            if v.iv[mid].cum_end >= target:
                hi = mid
            else:
                lo = mid + 1
        i = lo
    return v.iv[i].open + (target - v.iv[i].cum)


cdef inline int64_t deadline_from(const ClockView* v, int64_t cal, int64_t i, int64_t target) noexcept nogil:
    """Earliest t with F(t) >= target, given i = locate(cal, a) for some a with F(a) < target.

    Most deadlines end within a few intervals of their start, whose records share cache lines:
    four branch-free steps find those. A farther one starts from the bucket index.
    """
    cdef int64_t j
    if target > v.iv[v.last[cal]].cum_end:
        return NO_INSTANT
    # The sentinel's cum_end is the total, so these steps never run past it.
    j = i
    j += v.iv[j].cum_end < target
    j += v.iv[j].cum_end < target
    j += v.iv[j].cum_end < target
    j += v.iv[j].cum_end < target
    if v.iv[j].cum_end < target:
        i = v.first[cal] + v.by_open[v.bucket_first[cal] + target // BUSINESS_BUCKET]
        j = instant_at(v, cal, i if i > j else j + 1, target)
        return j
    return v.iv[j].open + (target - v.iv[j].cum)


cdef inline int64_t deadline_of(const ClockView* v, int64_t cal, int64_t a, int64_t d) noexcept nogil:
    """Earliest t >= a with F(t) - F(a) >= d (d >= 0); NO_INSTANT past the horizon."""
    cdef int64_t i
    if d == 0:
        return a
    i = locate(v, cal, a)
    return deadline_from(v, cal, i, open_before(v, i, a) + d)
