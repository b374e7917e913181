# Compiled business-time core: declarations and inline kernels shared with other compiled modules.
#
# A ClockView points into a CalendarSet's packed arrays. For calendar c, intervals
# [opens[i], closes[i]) with cums[i] = open seconds before opens[i] occupy positions
# last[c-1]+1 .. last[c]; position last[c] is a sentinel (opens = closes = INT64_MAX,
# cums = total open seconds). day_first[c * days + d] is the first position whose close is after
# the UTC midnight start + d * 86400. All instants are int64 UTC epoch seconds within
# [start, end]; callers check that before calling the inline kernels.

from libc.stdint cimport int64_t

cdef extern from *:
    """
    #include <stdint.h>
    #define EFFIGATE_NO_INSTANT INT64_MIN
    #define EFFIGATE_SECONDS_PER_DAY 86400
    """
    const int64_t NO_INSTANT "EFFIGATE_NO_INSTANT"
    const int64_t SECONDS_PER_DAY "EFFIGATE_SECONDS_PER_DAY"


cdef struct ClockView:
    const int64_t* opens
    const int64_t* closes
    const int64_t* cums
    const int64_t* day_first
    const int64_t* last
    int64_t days
    int64_t ncal
    int64_t start
    int64_t end


cdef class PackedClock:
    cdef ClockView view
    cdef object _arrays


cdef inline int64_t locate(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """Position of the first interval of `cal` that closes after t (the sentinel if none)."""
    cdef int64_t i = v.day_first[cal * v.days + (t - v.start) // SECONDS_PER_DAY]
    while v.closes[i] <= t:
        i += 1
    return i


cdef inline int64_t open_before(const ClockView* v, int64_t i, int64_t t) noexcept nogil:
    """F(t): open seconds before t, given i = locate(cal, t)."""
    if v.opens[i] <= t:
        return v.cums[i] + (t - v.opens[i])
    return v.cums[i]


cdef inline int64_t business_before(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """F(t) of calendar `cal`."""
    return open_before(v, locate(v, cal, t), t)


cdef inline int64_t instant_at(const ClockView* v, int64_t cal, int64_t i, int64_t target) noexcept nogil:
    """Earliest t with F(t) >= target, searching from position i (F(opens[i]) <= target is
    required, target > cums[i] unless target is reached at position i itself).

    Gallops forward then bisects over cums, so a deadline k intervals away costs O(log k).
    Returns NO_INSTANT when the target lies past the horizon.
    """
    cdef int64_t last = v.last[cal]
    cdef int64_t lo, hi, mid, step
    if target > v.cums[last]:
        return NO_INSTANT
    # smallest k in [i + 1, last] with cums[k] >= target; the answer lies in interval k - 1.
    lo = i + 1
    hi = lo
    step = 1
    while v.cums[hi] < target:
        lo = hi + 1
        hi += step
        step <<= 1
        if hi > last:
            hi = last
    while lo < hi:
        mid = (lo + hi) >> 1
        if v.cums[mid] >= target:
            hi = mid
        else:
            lo = mid + 1
    return v.opens[lo - 1] + (target - v.cums[lo - 1])


cdef inline int64_t deadline_of(const ClockView* v, int64_t cal, int64_t a, int64_t d) noexcept nogil:
    """Earliest t >= a with F(t) - F(a) >= d (d >= 0); NO_INSTANT past the horizon."""
    cdef int64_t i
    if d == 0:
        return a
    i = locate(v, cal, a)
    return instant_at(v, cal, i, open_before(v, i, a) + d)
