# cython: language_level=3
"""SLA evaluation of tickets, GIL released: rule matching, then every metric of each ticket.

`match_rules` finds each ticket's first matching rule (per field, a table over the field's
dictionary codes says which values a rule accepts) and counts its result rows;
`evaluate_tickets` then evaluates each ticket's metrics into rows at the ticket's offset. Both
work on any slice of the tickets, so the caller splits a batch across threads.

Per metric (a "spec": calendar, target T and warning threshold W in business seconds, a bitmask
of the pause statuses that pause it, an escalation ladder) of a ticket with created instant C,
stop instant S (or none) and pauses (CSR, in any order). Semantics: docs/sla.md,
*Semantics, as pinned by the tests*.

* Active elapsed E = F(end) - F(C) - business seconds of the metric's pauses inside [C, end),
  where end = S when the metric stopped at or before `now`, else `now`.
* The time at which E reaches a target X walks the pauses: business time before each pause is
  spent, the pause is skipped; an open pause (still paused at `now`) leaves it undefined.
* deadline = that time for X = T; fraction steps use X = ceil(fraction × T); offset steps fire
  at deadline + offset (wall clock).
The business-time arithmetic is the clock's (inline kernels cimported from `_clock.pxd`).
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint64_t
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

# Error codes returned with the ticket position (0 = none).
cdef enum:
    ERR_CALENDAR = 1
    ERR_CREATED = 2
    ERR_STOP = 3
    ERR_NOW = 5
    ERR_DEADLINE = 6
    ERR_STOP_BEFORE_CREATED = 7
    ERR_MEMORY = 8

cdef enum:
    METRICS = 3

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


def match_rules(
    const int64_t[::1] ticket_policy,
    const int64_t[::1] priority, const int64_t[::1] support_level, const int64_t[::1] job_type,
    const int64_t[::1] client, const int8_t[::1] after_hours,
    const int64_t[::1] rule_first, const int64_t[::1] rule_count,
    const uint8_t[:, ::1] priority_ok, const uint8_t[:, ::1] level_ok,
    const uint8_t[:, ::1] job_ok, const uint8_t[:, ::1] client_ok,
    const int8_t[::1] after_required, const int64_t[:, ::1] spec_grid,
    int64_t[::1] out_rule, int64_t[::1] out_rows,
):
    """out_rule[t] = global index of the first rule of the ticket's policy that matches it
    (-1: none), out_rows[t] = how many metrics that rule defines.

    Field codes are dictionary codes (-1 = null); table column code + 1 says whether the rule
    accepts that value (column 0: null). after_required is -1 (any), 0 or 1; after_hours is
    -1 (null), 0 or 1.
    """
    cdef Py_ssize_t n = out_rule.shape[0], t, g, m
    cdef int64_t p, found, rows
    with nogil:
        for t in range(n):
            p = ticket_policy[t]
            found = -1
            if p >= 0:
                for g in range(rule_first[p], rule_first[p] + rule_count[p]):
                    if (priority_ok[g, priority[t] + 1] and level_ok[g, support_level[t] + 1]
                            and job_ok[g, job_type[t] + 1] and client_ok[g, client[t] + 1]
                            and (after_required[g] < 0 or after_hours[t] == after_required[g])):
                        found = g
                        break
            rows = 0
            if found >= 0:
                for m in range(METRICS):
                    rows += spec_grid[found, m] >= 0
            out_rule[t] = found
            out_rows[t] = rows


cdef struct Buffers:
    int64_t* ps
    int64_t* pe
    int64_t* f_ps
    int64_t* f_pe
    int64_t* raw_start
    int64_t* raw_end


def evaluate_tickets(
    PackedClock clock, const int64_t[::1] now_rows, bint now_per_ticket, int64_t resolved_status,
    Py_ssize_t max_pauses,
    # per ticket
    const int64_t[::1] created, const int64_t[::1] stop_first_response,
    const int64_t[::1] stop_resolution_plan, const int64_t[::1] stop_resolution,
    const int64_t[::1] rule, const int64_t[::1] row_offset,
    const int64_t[::1] pause_offsets, const int64_t[::1] pause_start,
    const int64_t[::1] pause_end, const int64_t[::1] pause_status,
    # per rule / spec / ladder step
    const int64_t[:, ::1] spec_grid, const int64_t[::1] spec_cal, const int64_t[::1] spec_target,
    const int64_t[::1] spec_warning, const uint64_t[::1] spec_mask,
    const int64_t[::1] spec_ladder, const int64_t[::1] ladder_offsets,
    const int64_t[::1] step_numerator, const int64_t[::1] step_denominator,
    const int64_t[::1] step_offset,
    # per row
    int64_t[::1] out_ticket, int32_t[::1] out_spec, int8_t[::1] out_metric,
    int64_t[::1] out_stopped, int64_t[::1] out_deadline, int64_t[::1] out_elapsed,
    int8_t[::1] out_status, int64_t[::1] out_breach_seconds, int32_t[::1] out_level,
    int32_t[::1] out_notify, int64_t[::1] out_next,
    Py_ssize_t ticket_base,
):
    """Evaluate every metric of tickets 0..n-1 of this slice into rows row_offset[t]...;
    out_ticket holds ticket_base + t. Returns (first bad ticket of the slice or -1, code).

    Each ticket is evaluated as known at its `now` (now_rows[t] when now_per_ticket, else
    now_rows[0]): stops after it are not known yet, pauses starting after it are ignored, a
    pause still running at it is open, and a resolution followed by a reopening after `now`
    (a pause of status `resolved_status` running at `now`; -1: none) is the RESOLUTION
    metric's stop at the pause's start.

    Step k of ladder L is a fraction step (step_offset[k] < 0) firing when elapsed reaches
    ceil(numerator × T / denominator), or an offset step firing at deadline + step_offset[k].
    A step fires when its instant is <= now, or < S for a stopped metric (a stop at the same
    instant as a step wins). out_level is the 1-based index of the highest step fired and
    out_notify its global step index (-1: none).
    """
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = created.shape[0], t, m, q, k, npause, r, width = max_pauses + 1, j, cnt
    cdef Py_ssize_t bad = -1
    cdef int code = 0
    cdef int64_t spec, cal, c, s, end, target, f_c, f_end, elapsed, covered, a, b, deadline
    cdef int64_t fire, next_fire, step_target, ladder, now = now_rows[0]
    cdef uint64_t mask
    cdef bint stopped, paused
    cdef int32_t level, notify
    cdef int64_t* buf = <int64_t*> malloc(6 * width * sizeof(int64_t))
    cdef int64_t* ps = buf
    cdef int64_t* pe = buf + width
    cdef int64_t* f_ps = buf + 2 * width
    cdef int64_t* f_pe = buf + 3 * width
    cdef int64_t* raw_start = buf + 4 * width
    cdef int64_t* raw_end = buf + 5 * width
    if buf == NULL:
        return 0, ERR_MEMORY
    with nogil:
        for t in range(n):
            if code:
                break
            if now_per_ticket or t == 0:
                now = now_rows[t] if now_per_ticket else now_rows[0]
                if _outside(v, now):
                    bad, code = t, ERR_NOW
                    break
            if rule[t] < 0:
                continue
            c = created[t]
            if _outside(v, c):
                bad, code = t, ERR_CREATED
                break
            r = row_offset[t]
            for m in range(METRICS):
                spec = spec_grid[rule[t], m]
                if spec < 0:
                    continue
                cal = spec_cal[spec]
                target = spec_target[spec]
                mask = spec_mask[spec]
                s = (stop_first_response[t] if m == 0 else
                     stop_resolution_plan[t] if m == 1 else stop_resolution[t])
                if cal < 0 or cal >= v.ncal:
                    bad, code = t, ERR_CALENDAR
                    break
                stopped = s != NO_INSTANT and s <= now
                if not stopped and m == METRICS - 1 and resolved_status >= 0:
                    # Resolved by `now` and reopened after it: resolved, as known at `now`.
                    for q in range(pause_offsets[t], pause_offsets[t + 1]):
                        a = pause_start[q]
                        b = pause_end[q]
                        if (pause_status[q] == resolved_status and c <= now and a <= now
                                and (b == NO_INSTANT or b > now)):
                            a = a if a > c else c
                            if not stopped or a > s:
                                s = a
                            stopped = True
                if stopped:
                    if _outside(v, s):
                        bad, code = t, ERR_STOP
                        break
                    if s < c:
                        bad, code = t, ERR_STOP_BEFORE_CREATED
                        break
                    end = s
                else:
                    end = now if now > c else c
                f_c = open_before(v, locate(v, cal, c), c)
                f_end = open_before(v, locate(v, cal, end), end)
                elapsed = f_end - f_c

                # The ticket's pauses that pause this metric, sorted by start (a ticket has a
                # handful, in any order: insertion sort) ...
                cnt = 0
                for q in range(pause_offsets[t], pause_offsets[t + 1]):
                    if not (mask >> pause_status[q]) & 1:
                        continue
                    a = pause_start[q]
                    j = cnt
                    while j > 0 and raw_start[j - 1] > a:
                        raw_start[j] = raw_start[j - 1]
                        raw_end[j] = raw_end[j - 1]
                        j -= 1
                    raw_start[j] = a
                    raw_end[j] = pause_end[q]
                    cnt += 1
                # ... clipped to [created, end] and merged where they overlap.
                npause = 0
                covered = c
                paused = False
                for q in range(cnt):
                    a = raw_start[q]
                    if a > end or a > now:  # not yet known at `now` (also before creation)
                        break
                    if a < covered:
                        a = covered
                    b = raw_end[q]
                    if b == NO_INSTANT or b > end or b > now:
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
                    bad, code = t, ERR_DEADLINE
                    break
                if deadline == OPEN_PAUSE:
                    deadline = NO_INSTANT
                if stopped:
                    out_status[r] = MET if s <= deadline else BREACHED
                elif deadline != NO_INSTANT and now >= deadline:
                    out_status[r] = BREACHED
                elif paused:
                    out_status[r] = PAUSED
                elif elapsed >= spec_warning[spec]:
                    out_status[r] = WARNING
                else:
                    out_status[r] = ON_TRACK

                level = 0
                notify = -1
                next_fire = NO_INSTANT
                ladder = spec_ladder[spec]
                if ladder >= 0:
                    for k in range(ladder_offsets[ladder], ladder_offsets[ladder + 1]):
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
                            level = <int32_t> (k - ladder_offsets[ladder] + 1)
                            notify = <int32_t> k
                        elif not stopped and (next_fire == NO_INSTANT or fire < next_fire):
                            next_fire = fire
                out_ticket[r] = ticket_base + t
                out_spec[r] = <int32_t> spec
                out_metric[r] = <int8_t> m
                out_stopped[r] = s if stopped else NO_INSTANT
                out_deadline[r] = deadline
                out_elapsed[r] = elapsed
                out_breach_seconds[r] = elapsed - target if out_status[r] == BREACHED else 0
                out_level[r] = level
                out_notify[r] = notify
                out_next[r] = next_fire
                r += 1
    free(buf)
    return bad, code
