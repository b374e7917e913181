# cython: language_level=3
"""SLA timer evaluation over rows (ticket × metric), GIL released.

Per row: calendar, target T and warning threshold W (business seconds), stop instant S (or
none), the ticket's created instant C and its pauses (CSR, sorted by start), a bitmask of the
pause statuses that pause this metric, and an escalation ladder. Semantics: DESIGN §4.

* Active elapsed E = F(end) - F(C) - business seconds of the metric's pauses inside [C, end),
  where end = S when the metric stopped at or before `now`, else `now`.
* The time at which E reaches a target X walks the pauses: business time before each pause is
  spent, the pause is skipped; an open pause (still paused at `now`) leaves it undefined.
* deadline = that time for X = T; fraction steps use X = ceil(fraction × T); offset steps fire
  at deadline + offset (wall clock).
The business-time arithmetic is the clock's (inline kernels cimported from `_clock.pxd`).
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc

from effigate_engine._clock cimport (
    NO_INSTANT,
    ClockView,
    PackedClock,
    deadline_from,
    locate,
    open_before,
)

cdef enum:
    ON_TRACK = 0
    WARNING = 1
    PAUSED = 2
    MET = 3
    BREACHED = 4

# Error codes returned with the row position (0 = none).
cdef enum:
    ERR_CALENDAR = 1
    ERR_CREATED = 2
    ERR_STOP = 3
    ERR_NOW = 5
    ERR_DEADLINE = 6
    ERR_STOP_BEFORE_CREATED = 7
    ERR_MEMORY = 8

cdef extern from *:
    """
    #define EFFIGATE_OPEN_PAUSE (INT64_MIN + 1)
    #define EFFIGATE_PAST_HORIZON (INT64_MIN + 2)
    """
    # reach() results besides an instant: an open pause came first / past the horizon.
    const int64_t OPEN_PAUSE "EFFIGATE_OPEN_PAUSE"
    const int64_t PAST_HORIZON "EFFIGATE_PAST_HORIZON"


cdef inline bint _outside(const ClockView* v, int64_t t) noexcept nogil:
    return t < v.start or t > v.end


cdef inline int64_t _reach(const ClockView* v, int64_t cal, int64_t created, int64_t f_created,
                           int64_t target, Py_ssize_t npause, const int64_t* ps,
                           const int64_t* pe, const int64_t* f_ps, const int64_t* f_pe) noexcept nogil:
    """Earliest instant at which active elapsed reaches `target` (> 0 unless created)."""
    cdef int64_t cur = created, f_cur = f_created, rem = target, budget, t
    cdef Py_ssize_t k
    if target <= 0:
        return created
    for k in range(npause):
        budget = f_ps[k] - f_cur
        if budget >= rem:
            break
        rem -= budget
        if pe[k] == NO_INSTANT:
            return OPEN_PAUSE
        cur = pe[k]
        f_cur = f_pe[k]
    t = deadline_from(v, cal, locate(v, cal, cur), f_cur + rem)
    return PAST_HORIZON if t == NO_INSTANT else t


def evaluate_rows(
    PackedClock clock, int64_t now,
    const int64_t[::1] row_ticket, const int64_t[::1] row_cal, const int64_t[::1] row_target,
    const int64_t[::1] row_warning, const int64_t[::1] row_stop,
    const uint64_t[::1] row_pause_mask, const int64_t[::1] row_ladder,
    const int64_t[::1] created, const int64_t[::1] pause_offsets,
    const int64_t[::1] pause_start, const int64_t[::1] pause_end,
    const int64_t[::1] pause_status,
    const int64_t[::1] ladder_offsets, const int64_t[::1] step_numerator,
    const int64_t[::1] step_denominator, const int64_t[::1] step_offset,
    Py_ssize_t max_pauses,
    int64_t[::1] out_deadline, int64_t[::1] out_elapsed, int8_t[::1] out_status,
    int64_t[::1] out_breach_seconds, int32_t[::1] out_level, int64_t[::1] out_next,
):
    """Evaluate every row; returns (first bad row or -1, error code).

    Step k of ladder L is a fraction step (step_offset[k] < 0) firing when elapsed reaches
    ceil(numerator × T / denominator), or an offset step firing at deadline + step_offset[k].
    A step fires when its instant is <= now, or < S for a stopped metric (a stop at the same
    instant as a step wins). out_level is the 1-based index of the highest step fired.
    """
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = out_deadline.shape[0], r, p, q, k, npause
    cdef Py_ssize_t bad = -1
    cdef int code = 0
    cdef int64_t tk, cal, c, s, end, target, f_c, f_end, elapsed, covered, a, b, deadline
    cdef int64_t fire, next_fire, step_target
    cdef uint64_t mask
    cdef bint stopped, paused
    cdef int32_t level
    cdef int64_t* buf = <int64_t*> malloc(4 * (max_pauses + 1) * sizeof(int64_t))
    cdef int64_t* ps = buf
    cdef int64_t* pe = buf + (max_pauses + 1)
    cdef int64_t* f_ps = buf + 2 * (max_pauses + 1)
    cdef int64_t* f_pe = buf + 3 * (max_pauses + 1)
    if buf == NULL:
        return 0, ERR_MEMORY
    with nogil:
        if _outside(v, now):
            bad = 0
            code = ERR_NOW
        for r in range(n):
            if code:
                break
            tk = row_ticket[r]
            cal = row_cal[r]
            c = created[tk]
            s = row_stop[r]
            target = row_target[r]
            mask = row_pause_mask[r]
            if cal < 0 or cal >= v.ncal:
                bad, code = r, ERR_CALENDAR
                break
            if _outside(v, c):
                bad, code = r, ERR_CREATED
                break
            stopped = s != NO_INSTANT and s <= now
            if stopped:
                if _outside(v, s):
                    bad, code = r, ERR_STOP
                    break
                if s < c:
                    bad, code = r, ERR_STOP_BEFORE_CREATED
                    break
                end = s
            else:
                end = now if now > c else c
            f_c = open_before(v, locate(v, cal, c), c)
            f_end = open_before(v, locate(v, cal, end), end)
            elapsed = f_end - f_c

            # The metric's pauses, clipped to [created, end] and merged where they overlap.
            npause = 0
            covered = c
            paused = False
            for q in range(pause_offsets[tk], pause_offsets[tk + 1]):
                if not (mask >> pause_status[q]) & 1:
                    continue
                a = pause_start[q]
                if a > end:
                    break
                if a < covered:
                    a = covered
                b = pause_end[q]
                if b == NO_INSTANT or b > end:
                    b = end if stopped else NO_INSTANT
                if b != NO_INSTANT and b <= a:
                    continue
                ps[npause] = a
                f_ps[npause] = open_before(v, locate(v, cal, a), a)
                if b == NO_INSTANT:
                    pe[npause] = NO_INSTANT
                    f_pe[npause] = f_end
                    elapsed -= f_end - f_ps[npause]
                    npause += 1
                    paused = True
                    break
                pe[npause] = b
                f_pe[npause] = open_before(v, locate(v, cal, b), b)
                elapsed -= f_pe[npause] - f_ps[npause]
                covered = b
                npause += 1

            deadline = _reach(v, cal, c, f_c, target, npause, ps, pe, f_ps, f_pe)
            if deadline == PAST_HORIZON:
                bad, code = r, ERR_DEADLINE
                break
            if deadline == OPEN_PAUSE:
                deadline = NO_INSTANT
            if stopped:
                out_status[r] = MET if s <= deadline else BREACHED
            elif deadline != NO_INSTANT and now >= deadline:
                out_status[r] = BREACHED
            elif paused:
                out_status[r] = PAUSED
            elif elapsed >= row_warning[r]:
                out_status[r] = WARNING
            else:
                out_status[r] = ON_TRACK
            out_deadline[r] = deadline
            out_elapsed[r] = elapsed
            out_breach_seconds[r] = elapsed - target if out_status[r] == BREACHED else 0

            level = 0
            next_fire = NO_INSTANT
            if row_ladder[r] >= 0:
                for k in range(ladder_offsets[row_ladder[r]], ladder_offsets[row_ladder[r] + 1]):
                    if step_offset[k] >= 0:
                        fire = NO_INSTANT if deadline == NO_INSTANT else deadline + step_offset[k]
                    else:
                        # ceil(n × T / d) for n, T >= 0, d > 0 (C division truncates).
                        step_target = (step_numerator[k] * target + step_denominator[k] - 1) \
                            // step_denominator[k]
                        fire = _reach(v, cal, c, f_c, step_target, npause, ps, pe, f_ps, f_pe)
                        if fire == OPEN_PAUSE or fire == PAST_HORIZON:
                            fire = NO_INSTANT
                    if fire == NO_INSTANT:
                        continue
                    if (fire < s) if stopped else (fire <= now):
                        level = <int32_t> (k - ladder_offsets[row_ladder[r]] + 1)
                    elif not stopped and (next_fire == NO_INSTANT or fire < next_fire):
                        next_fire = fire
            out_level[r] = level
            out_next[r] = next_fire
    free(buf)
    return bad, code
