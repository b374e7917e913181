# cython: language_level=3
"""Batch business-time kernels over int64 arrays (UTC epoch seconds), GIL released.

Each entry point checks its inputs element by element inside the nogil loop and returns the
position of the first invalid element (or -1); the Python layer (``effigate_engine.clock``)
turns that into an error naming the field, the position and the value. Broadcast arguments
(calendar index, duration) have length 1 or n.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t


cdef class PackedClock:
    """Holds a CalendarSet's packed arrays and the C view the kernels read."""

    def __cinit__(self, opens, closes, cums, day_first, last, int64_t start, int64_t end):
        cdef const int64_t[::1] o = opens
        cdef const int64_t[::1] c = closes
        cdef const int64_t[::1] s = cums
        cdef const int64_t[:, ::1] f = day_first
        cdef const int64_t[::1] l = last
        if o.shape[0] != c.shape[0] or o.shape[0] != s.shape[0]:
            raise ValueError("opens, closes and cums must have the same length")
        if f.shape[0] != l.shape[0]:
            raise ValueError("day_first must have one row per calendar")
        if f.shape[1] != (end - start) // SECONDS_PER_DAY + 1:
            raise ValueError("day_first must have one column per UTC day of the horizon, plus one")
        self._arrays = (opens, closes, cums, day_first, last)
        self.view.opens = &o[0]
        self.view.closes = &c[0]
        self.view.cums = &s[0]
        self.view.day_first = &f[0, 0]
        self.view.last = &l[0]
        self.view.days = f.shape[1]
        self.view.ncal = f.shape[0]
        self.view.start = start
        self.view.end = end

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


def elapsed(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] a,
            const int64_t[::1] b, int64_t[::1] out) -> int:
    """out[k] = F(b[k]) - F(a[k]) of calendar cal[k]: business seconds from a to b."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef int64_t c
    with nogil:
        for k in range(n):
            c = cal[k * cs]
            if _bad_calendar(v, c) or _bad_instant(v, a[k]) or _bad_instant(v, b[k]):
                bad = k
                break
            out[k] = business_before(v, c, b[k]) - business_before(v, c, a[k])
    return bad


def deadline(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] a,
             const int64_t[::1] seconds, int64_t[::1] out) -> int:
    """out[k] = earliest t >= a[k] with seconds[k] business seconds of cal[k] in [a[k], t)."""
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out.shape[0], k, bad = -1
    cdef Py_ssize_t cs = 1 if cal.shape[0] == n else 0
    cdef Py_ssize_t ds = 1 if seconds.shape[0] == n else 0
    cdef int64_t c, d, t
    with nogil:
        for k in range(n):
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
            out[k] = v.opens[locate(v, c, t[k])] <= t[k]
    return bad


def next_open(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
              int64_t[::1] out) -> int:
    """out[k] = earliest instant >= t[k] at which cal[k] is open (t[k] itself when open);
    NO_INSTANT (INT64_MIN) when it does not open again within the horizon."""
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
            if v.opens[i] <= t[k]:
                out[k] = t[k]
            elif i == v.last[c]:
                out[k] = NO_INSTANT
            else:
                out[k] = v.opens[i]
    return bad


def next_close(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
               int64_t[::1] out) -> int:
    """out[k] = earliest instant >= t[k] at which cal[k] is closed (t[k] itself when closed);
    NO_INSTANT when it stays open to the end of the horizon."""
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
            if v.opens[i] > t[k]:
                out[k] = t[k]
            elif v.closes[i] >= v.end:
                out[k] = NO_INSTANT
            else:
                out[k] = v.closes[i]
    return bad


def business_before_batch(PackedClock clock, const int64_t[::1] cal, const int64_t[::1] t,
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
            out[k] = business_before(v, c, t[k])
    return bad
