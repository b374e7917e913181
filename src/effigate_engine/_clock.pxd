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
# day_rec[c * days + d] (the day table; NULL when the set has none) describes calendar c's UTC day
# d in 8 bytes: the low 32 bits are F at its midnight, the high 32 bits a shape number s. Shape
# s > 0 is day_shape[4 s .. 4 s + 3] = {open1, len1, open2, len2}: the day's at most two openings
# as seconds after midnight and lengths (len 0: none), shared by every day of that shape, so
# F(t) is one 8-byte load, one hot shape row and two clamps, and a deadline scans days eight to
# a cache line. Shape 0 marks a day with more than two openings: it answers from the intervals.
# The table covers horizons shorter than 2^32 seconds (F fits 32 bits); a set over a longer
# horizon has none and every kernel answers from the intervals.
# All instants must lie within [start, end]; callers check that before calling the kernels.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

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
    const uint64_t* day_rec     # per calendar and UTC day: F at midnight | shape << 32, or NULL
    const int32_t* day_shape    # per shape: open1, len1, open2, len2 (seconds after midnight)


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
    if v.day_rec != NULL:
        return day_open_at(v, cal, t)
    return v.iv[locate(v, cal, t)].open <= t or (t == v.end and v.open_at_end[cal])


cdef inline int64_t open_seconds_before(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """F(t) of calendar `cal`."""
    if v.day_rec != NULL:
        return day_open_before(v, cal, t)
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
    if v.day_rec != NULL:
        return day_deadline_from(v, cal, a, day_open_before(v, cal, a) + d)
    i = locate(v, cal, a)
    return deadline_from(v, cal, i, open_before(v, i, a) + d)


# Day-table kernels (v.day_rec must not be NULL). The inline functions above use them when the
# table exists; kernels that hold a ClockView may also call them directly.

cdef inline uint64_t day_record(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """The day-table record of the UTC day holding t."""
    return v.day_rec[cal * v.days + <int64_t>(<uint64_t>(t - v.start) // SECONDS_PER_DAY)]


cdef inline const uint64_t* day_slot(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """Address of that record (for prefetching; t and cal need not be valid)."""
    return <const uint64_t*>(<size_t>v.day_rec + <size_t>(
        8 * (cal * v.days + <int64_t>(<uint64_t>(t - v.start) // SECONDS_PER_DAY))))


cdef inline int64_t _clamp_len(int64_t x, int64_t length) noexcept nogil:
    if x < 0:
        x = 0
    if x > length:
        x = length
    return x


cdef inline int64_t day_open_before(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """F(t) of calendar `cal`, from the day table."""
    cdef uint64_t rel = <uint64_t>(t - v.start)
    cdef uint64_t day = rel // SECONDS_PER_DAY
    cdef int64_t s = <int64_t>(rel - day * SECONDS_PER_DAY)
    cdef uint64_t rec = v.day_rec[cal * v.days + <int64_t>day]
    cdef const int32_t* sh = v.day_shape + 4 * (rec >> 32)
    if (rec >> 32) == 0:
        return open_before(v, locate(v, cal, t), t)
    return <int64_t>(rec & 0xFFFFFFFFu) + _clamp_len(s - sh[0], sh[1]) + _clamp_len(s - sh[2], sh[3])


cdef inline bint day_open_at(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    """Whether calendar `cal` is open at t, from the day table."""
    cdef uint64_t rel = <uint64_t>(t - v.start)
    cdef uint64_t day = rel // SECONDS_PER_DAY
    cdef int64_t s = <int64_t>(rel - day * SECONDS_PER_DAY)
    cdef uint64_t rec = v.day_rec[cal * v.days + <int64_t>day]
    cdef const int32_t* sh = v.day_shape + 4 * (rec >> 32)
    if (rec >> 32) == 0:
        return v.iv[locate(v, cal, t)].open <= t or (t == v.end and v.open_at_end[cal])
    return ((<uint64_t>(s - sh[0]) < <uint64_t>sh[1]) or (<uint64_t>(s - sh[2]) < <uint64_t>sh[3])
            or (t == v.end and v.open_at_end[cal]))


cdef inline int64_t day_deadline_from(const ClockView* v, int64_t cal, int64_t a, int64_t target) noexcept nogil:
    """Earliest t with F(t) >= target, given F(a) < target, from the day table.

    Most deadlines end within a few weeks of a: branch-free halving steps over the days' F at
    midnight (eight days to a cache line) find those; a farther one gallops then bisects.
    Returns NO_INSTANT when the target lies past the horizon.
    """
    cdef const uint64_t* row = v.day_rec + cal * v.days
    cdef int64_t top = v.days - 1  # the record of the instant `end`: F there is the total
    cdef int64_t day = <int64_t>(<uint64_t>(a - v.start) // SECONDS_PER_DAY)
    cdef int64_t lo, hi, mid, step, r
    cdef uint64_t rec
    cdef const int32_t* sh
    if target > <int64_t>(row[top] & 0xFFFFFFFFu):
        return NO_INSTANT
    # The answer's day is the first from a's with F at the next midnight >= target (F at `end`
    # is the total, so no search runs past it). Within 31 days of a's day, five branch-free
    # halving steps find it; a farther one gallops then bisects.
    if day + 32 <= top:
        day += 16 * (<int64_t>(row[day + 16] & 0xFFFFFFFFu) < target)
        day += 8 * (<int64_t>(row[day + 8] & 0xFFFFFFFFu) < target)
        day += 4 * (<int64_t>(row[day + 4] & 0xFFFFFFFFu) < target)
        day += 2 * (<int64_t>(row[day + 2] & 0xFFFFFFFFu) < target)
        day += <int64_t>(row[day + 1] & 0xFFFFFFFFu) < target
    if <int64_t>(row[day + 1] & 0xFFFFFFFFu) < target:
        lo = day + 1
        hi = lo
        step = 1
        while <int64_t>(row[hi + 1] & 0xFFFFFFFFu) < target:
            lo = hi + 1
            hi += step
            step <<= 1
            if hi > top - 1:
                hi = top - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if <int64_t>(row[mid + 1] & 0xFFFFFFFFu) >= target:
                hi = mid
            else:
                lo = mid + 1
        day = lo
    rec = row[day]
    if (rec >> 32) == 0:
        # F at this midnight is below the target, so the intervals' search may start there.
        mid = v.start + day * SECONDS_PER_DAY
        return deadline_from(v, cal, locate(v, cal, mid), target)
    sh = v.day_shape + 4 * (rec >> 32)
    r = target - <int64_t>(rec & 0xFFFFFFFFu)
    return v.start + day * SECONDS_PER_DAY + (sh[0] + r if r <= sh[1] else sh[2] + (r - sh[1]))
