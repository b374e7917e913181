# cython: language_level=3
"""Batch business-time kernels over int64 arrays (UTC epoch seconds), GIL released.

Each entry point checks its inputs element by element inside the nogil loop and returns the
position of the first invalid element (or -1); the Python layer (``effigate_engine.clock``)
turns that into an error naming the field, the position and the value. Broadcast arguments
(calendar index, duration) have length 1 or n.
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

#: Width (open seconds) of the buckets of the deadline index ``by_open``.
BUSINESS_BUCKET_SECONDS = BUSINESS_BUCKET

cdef extern from *:
    """
    #define effigate_prefetch(p) __builtin_prefetch((const void*)(p))
    """
    void prefetch "effigate_prefetch"(const void* p) noexcept nogil

# Random instants over decades touch megabytes of tables, so the batch loops run a software
# pipeline: PREFETCH_AHEAD elements ahead they request the day-table slot, half as far ahead
# they read it and request the interval record (and, for deadlines, the bucket), so the
# element being computed finds its data in cache.
cdef enum:
    PREFETCH_AHEAD = 16
    PREFETCH_NEAR = 8


cdef inline const int32_t* _day_slot(const ClockView* v, int64_t cal, int64_t t) noexcept nogil:
    return &v.day_first[cal * v.days + (t - v.start) // SECONDS_PER_DAY]


cdef inline bint _valid(const ClockView* v, int64_t c, int64_t t) noexcept nogil:
    return 0 <= c < v.ncal and v.start <= t <= v.end


cdef class PackedClock:
    """Holds a CalendarSet's packed arrays and the C view the kernels read."""

    def __cinit__(self, intervals, first, last, day_first, by_open, bucket_first,
                  open_at_end, int64_t start, int64_t end, day_rec=None, day_shape=None):
        cdef const int64_t[:, ::1] iv = intervals
        cdef const int64_t[::1] f = first
        cdef const int64_t[::1] l = last
        cdef const int32_t[:, ::1] d = day_first
        cdef const int32_t[::1] b = by_open
        cdef const int64_t[::1] bf = bucket_first
        cdef const uint8_t[::1] ae = open_at_end
        if iv.shape[1] != 4:
            raise ValueError("intervals must have four columns: open, close, cum, cum_end")
        if f.shape[0] != l.shape[0] or d.shape[0] != l.shape[0] or bf.shape[0] != l.shape[0] + 1:
            raise ValueError("first, last, day_first and bucket_first must match the calendars")
        if ae.shape[0] != l.shape[0]:
            raise ValueError("open_at_end must have one flag per calendar")
        if d.shape[1] != (end - start) // SECONDS_PER_DAY + 1:
            raise ValueError("day_first must have one column per UTC day of the horizon, plus one")
        cdef const uint64_t[:, ::1] dr
        cdef const int32_t[:, ::1] ds
        self._arrays = (intervals, first, last, day_first, by_open, bucket_first, open_at_end,
                        day_rec, day_shape)
        self.view.day_rec = NULL
        self.view.day_shape = NULL
        if day_rec is not None:
            dr = day_rec
            ds = day_shape
            if dr.shape[0] != d.shape[0] or dr.shape[1] != d.shape[1]:
                raise ValueError("day_rec must have the shape of day_first")
            if ds.shape[1] != 4 or ds.shape[0] < 1:
                raise ValueError("day_shape must have four columns and a row 0")
            self.view.day_rec = &dr[0, 0]
            self.view.day_shape = &ds[0, 0]
        self.view.iv = <const Interval*> &iv[0, 0]
        self.view.first = &f[0]
        self.view.last = &l[0]
        self.view.day_first = &d[0, 0]
        self.view.by_open = &b[0]
        self.view.bucket_first = &bf[0]
        self.view.open_at_end = &ae[0]
        self.view.days = d.shape[1]
        self.view.ncal = d.shape[0]
        self.view.start = start
        self.view.end = end

    @property
    def has_day_table(self) -> bool:
        return self.view.day_rec != NULL

    @property
    def calendars(self) -> int:
        return self.view.ncal

    @property
    def start(self) -> int:
        return self.view.start

    @property
    def end(self) -> int:
        return self.view.end


cdef inline bint _bad_instant(const ClockView* v, int64_t t) noexcept nogil:
    return t < v.start or t > v.end


cdef inline bint _bad_calendar(const ClockView* v, int64_t c) noexcept nogil:
    return c < 0 or c >= v.ncal


cdef Py_ssize_t _elapsed_days(const ClockView* v, const int64_t[::1] cal, const int64_t[::1] a,
                              const int64_t[::1] b, int64_t[::1] out) noexcept:
    """elapsed over the day table: each F is one 8-byte record, prefetched ahead (an address
    computed from the inputs alone, so no load waits on another)."""
    cdef Py_ssize_t n = out.shape[0], k, p, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c
    with nogil:
        for k in range(n):
            p = k + PREFETCH_AHEAD
            if p < n:
                c = cal[p * cs]
                prefetch(day_slot(v, c, a[p]))
                prefetch(day_slot(v, c, b[p]))
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, a[k]) or _bad_instant(v, b[k]):
                bad = k
                break
            out[k] = day_open_before(v, c, b[k]) - day_open_before(v, c, a[k])
    return bad


cdef int64_t _deadline_far(const ClockView* v, int64_t c, int64_t a, int64_t target) noexcept nogil:
    """The deadline of a target the inline steps of _deadline_days do not reach (kept out of
    line so that the loop stays small)."""
    return day_deadline_from(v, c, a, target)


cdef Py_ssize_t _deadline_days(const ClockView* v, const int64_t[::1] cal, const int64_t[::1] a,
                               const int64_t[::1] seconds, int64_t[::1] out) noexcept:
    """deadline over the day table, the start's records prefetched ahead.

    The common case runs inline and branch-free: F(a) from a's record, five halving steps over
    the next 31 days' F at midnight, then the answer inside its day's (at most two) openings.
    A deadline farther away, near the horizon's end or on a day of more openings takes
    day_deadline_from.
    """
    cdef Py_ssize_t n = out.shape[0], k, p, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef Py_ssize_t ds = 1 if seconds.shape[0] == n else 0
    cdef int64_t c, d, t, day, s, target, r, top = v.days - 1
    cdef uint64_t rel, rec
    cdef const uint64_t* row
    cdef const int32_t* sh
    with nogil:
        for k in range(n):
            p = k + PREFETCH_AHEAD
            if p < n:
                prefetch(day_slot(v, cal[p * cs], a[p]))
                prefetch(day_slot(v, cal[p * cs], a[p]) + 16)
            c = cal[k * cs]
            d = seconds[k * ds]
            if _bad_calendar(v, c) or _bad_instant(v, a[k]) or d < 0:
                bad = k
                break
            if d == 0:
                out[k] = a[k]
                continue
            row = v.day_rec + c * v.days
            rel = <uint64_t>(a[k] - v.start)
            day = <int64_t>(rel // SECONDS_PER_DAY)
            s = <int64_t>rel - day * SECONDS_PER_DAY
            rec = row[day]
            if (rec >> 32) == 0 or day + 32 > top:
                t = day_deadline_from(v, c, a[k], open_seconds_before(v, c, a[k]) + d)
            else:
                sh = v.day_shape + 4 * (rec >> 32)
                target = (<int64_t>(rec & 0xFFFFFFFFu) + _clamp_len(s - sh[0], sh[1])
                          + _clamp_len(s - sh[2], sh[3]) + d)
                day += 16 * (<int64_t>(row[day + 16] & 0xFFFFFFFFu) < target)
                day += 8 * (<int64_t>(row[day + 8] & 0xFFFFFFFFu) < target)
                day += 4 * (<int64_t>(row[day + 4] & 0xFFFFFFFFu) < target)
                day += 2 * (<int64_t>(row[day + 2] & 0xFFFFFFFFu) < target)
                day += <int64_t>(row[day + 1] & 0xFFFFFFFFu) < target
                rec = row[day]
                if <int64_t>(row[day + 1] & 0xFFFFFFFFu) < target or (rec >> 32) == 0:
                    t = _deadline_far(v, c, a[k], target)
                else:
                    sh = v.day_shape + 4 * (rec >> 32)
                    r = target - <int64_t>(rec & 0xFFFFFFFFu)
                    # Inside the first opening, or past it into the second (no branch).
                    t = (v.start + day * SECONDS_PER_DAY + sh[0] + r
                         + (r > sh[1]) * (sh[2] - sh[0] - sh[1]))
            if t == NO_INSTANT:
                bad = k
                break
            out[k] = t
    return bad


def elapsed(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] a,
            const int64_t[::1] b, int64_t[::1] out) -> int:
    """out[k] = F(b[k]) - F(a[k]) of calendar cal[k]: business seconds from a to b."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, p, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c
    if v.day_rec != NULL:
        return _elapsed_days(v, cal, a, b, out)
    with nogil:
        for k in range(n):
            p = k + PREFETCH_AHEAD
            if p < n:
                c = cal[p * cs]
                if _valid(v, c, a[p]) and _valid(v, c, b[p]):
                    prefetch(_day_slot(v, c, a[p]))
                    prefetch(_day_slot(v, c, b[p]))
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, a[k]) or _bad_instant(v, b[k]):
                bad = k
                break
            out[k] = open_seconds_before(v, c, b[k]) - open_seconds_before(v, c, a[k])
    return bad


def deadline(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] a,
             const int64_t[::1] seconds, int64_t[::1] out) -> int:
    """out[k] = earliest t >= a[k] with seconds[k] business seconds of cal[k] in [a[k], t)."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, p, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef Py_ssize_t ds = 1 if seconds.shape[0] == n else 0
    cdef int64_t c, d, t, i, target
    if v.day_rec != NULL:
        return _deadline_days(v, cal, a, seconds, out)
    with nogil:
        for k in range(n):
            p = k + PREFETCH_AHEAD
            if p < n:
                c = cal[p * cs]
                if _valid(v, c, a[p]):
                    prefetch(_day_slot(v, c, a[p]))
            c = cal[k * cs]
            d = seconds[k * ds]
            if _bad_calendar(v, c) or _bad_instant(v, a[k]) or d < 0:
                bad = k
                break
            t = deadline_of(v, c, a[k], d)
            if t == NO_INSTANT:
                bad = k
                break
            out[k] = t
    return bad


def is_open(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
            uint8_t[::1] out) -> int:
    """out[k] = 1 when cal[k] is open at t[k]."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c
    with nogil:
        for k in range(n):
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, t[k]):
                bad = k
                break
            out[k] = open_at(v, c, t[k])
    return bad


def next_open(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
              int64_t[::1] out) -> int:
    """out[k] = earliest instant in [t[k], end] at which cal[k] is open (t[k] itself when open);
    NO_INSTANT (INT64_MIN) when it does not open again by the horizon's end, end included."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c, i
    with nogil:
        for k in range(n):
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, t[k]):
                bad = k
                break
            i = locate(v, c, t[k])
            if v.iv[i].open <= t[k]:
                out[k] = t[k]
            elif i == v.last[c]:
                out[k] = v.end if v.open_at_end[c] else NO_INSTANT
            else:
                out[k] = v.iv[i].open
    return bad


def next_close(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
               int64_t[::1] out) -> int:
    """out[k] = earliest instant in [t[k], end] at which cal[k] is closed (t[k] itself when
    closed); NO_INSTANT when it stays open through the horizon's end, end included."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c, i
    with nogil:
        for k in range(n):
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, t[k]):
                bad = k
                break
            i = locate(v, c, t[k])
            if v.iv[i].open > t[k]:
                # Only the instant `end` can be open with no interval holding it.
                out[k] = NO_INSTANT if t[k] == v.end and v.open_at_end[c] else t[k]
            elif v.iv[i].close >= v.end:
                out[k] = NO_INSTANT if v.open_at_end[c] else v.end
            else:
                out[k] = v.iv[i].close
    return bad


def open_seconds_before_batch(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
                          int64_t[::1] out) -> int:
    """out[k] = F(t[k]): open seconds of cal[k] from the horizon start to t[k]."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c
    with nogil:
        for k in range(n):
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, t[k]):
                bad = k
                break
            out[k] = open_seconds_before(v, c, t[k])
    return bad
