# cython: language_level=3
"""SLA evaluation of tickets, GIL released: rule matching, then every metric of each ticket.

`match_rules` finds each ticket's first matching rule (one lookup in its policy's decision
table, `RuleIndex`, or for a policy without one a first-match scan: per field, a table over the
field's dictionary codes says which values a rule accepts) and counts its result rows;
`evaluate_tickets` then evaluates each ticket's metrics into rows at the ticket's offset. Both
work on any slice of the tickets, so the caller splits a batch across threads.

Their arguments come grouped by meaning: the policies' rules (`RuleTable`) and metric promises
(`SpecTable`), built once per policy list; the tickets' matched fields (`MatchColumns`) and
evaluation inputs (`TicketColumns`); the result rows (`ResultBuffers`). Each group checks its
columns' lengths against each other when built, so the kernels index them unchecked.

Per metric (a "spec": calendar, target T and warning threshold W in business seconds, a bitmask
of the pause statuses that pause it, an escalation ladder) of a ticket with created instant C,
stop instant S (or none) and pauses (CSR, in any order). Semantics: docs/sla.md,
*Semantics, as pinned by the tests*.

* Active elapsed E = F(end) - F(C) - business seconds of the metric's pauses inside [C, end),
  where end = S when the metric stopped at or before `now`, else `now`.
* The time at which E reaches a target X walks the pauses: business time before each pause is
  spent, the pause is skipped; an open pause (still paused at `now`) leaves it undefined.
* deadline = that time for X = T; the warning instant X = W; fraction steps use
  X = ceil(fraction × T); offset steps fire at deadline + offset (wall clock).
The business-time arithmetic is the clock's (inline kernels cimported from `_clock.pxd`).
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc

import numpy as np

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
    # Matched fields of the decision tables: priority, support level, job type, client,
    # after-hours.
    MATCHED = 5

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


cdef inline int64_t _reach(const ClockView* v, int64_t cal, int64_t created, int64_t l_created,
                           int64_t f_created, int64_t target, Py_ssize_t npause,
                           const int64_t* pe, const int64_t* f_ps, const int64_t* f_pe,
                           const int64_t* l_pe) noexcept nogil:
    """Earliest instant at which active elapsed reaches `target` (> 0 unless created), given
    the interval positions of created (`l_created`) and of each pause's end (`l_pe`)."""
    cdef int64_t l_cur = l_created, f_cur = f_created, rem = target, budget, t
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
        l_cur = l_pe[k]
        f_cur = f_pe[k]
    t = deadline_from(v, cal, l_cur, f_cur + rem)
    return PAST_HORIZON if t == NO_INSTANT else t


cdef class RuleIndex:
    """Every policy's decision table (built by ``sla.rule_index``): per policy p, the first
    cell of its table in ``decision`` (``table_base[p]``; -1: the policy is matched by the
    scan) and per matched field f (priority, support level, job type, client, after-hours) the
    offset of its class map in ``cell_of``. A ticket's cell is ``table_base[p]`` plus, per
    field, ``cell_of[map_offset[p, f] + code + 1]`` (after-hours: flag + 1); the cell holds the
    global index of the first rule matching (-1: none).
    """

    cdef const int64_t[::1] table_base
    cdef const int64_t[:, ::1] map_offset
    cdef const int32_t[::1] cell_of
    cdef const int32_t[::1] decision

    def __init__(self, table_base, map_offset, cell_of, decision):
        self.table_base = table_base
        self.map_offset = map_offset
        self.cell_of = cell_of
        self.decision = decision
        if self.map_offset.shape[0] != self.table_base.shape[0]:
            raise ValueError("map_offset must have one row per policy")
        if self.map_offset.shape[1] != MATCHED:
            raise ValueError("map_offset must have one column per matched field")
        cdef Py_ssize_t k
        for k in range(self.cell_of.shape[0]):
            if self.cell_of[k] < 0:
                raise ValueError("cell_of must not be negative")


cdef class RuleTable:
    """Every rule of the policies evaluated, flattened: which rules each policy owns, which
    field values each rule accepts and which spec each of its metrics uses, and optionally the
    policies' decision tables (:class:`RuleIndex`; without one every policy is scanned).

    Per policy p: its rules are ``rule_first[p] .. rule_first[p] + rule_count[p] - 1``. Per
    rule g and matched field, ``*_ok[g, code + 1]`` says whether the rule accepts the value of
    dictionary code ``code`` (column 0: null); ``after_required[g]`` is -1 (any), 0 or 1;
    ``spec_grid[g, m]`` is the spec of metric m (-1: the rule does not define it).
    """

    cdef const int64_t[::1] rule_first
    cdef const int64_t[::1] rule_count
    cdef const uint8_t[:, ::1] priority_ok
    cdef const uint8_t[:, ::1] level_ok
    cdef const uint8_t[:, ::1] job_ok
    cdef const uint8_t[:, ::1] client_ok
    cdef const int8_t[::1] after_required
    cdef const int64_t[:, ::1] spec_grid
    cdef RuleIndex index

    def __init__(self, rule_first, rule_count, priority_ok, level_ok, job_ok, client_ok,
                 after_required, spec_grid, RuleIndex index=None):
        self.rule_first = rule_first
        self.rule_count = rule_count
        self.priority_ok = priority_ok
        self.level_ok = level_ok
        self.job_ok = job_ok
        self.client_ok = client_ok
        self.after_required = after_required
        self.spec_grid = spec_grid
        if self.rule_first.shape[0] != self.rule_count.shape[0]:
            raise ValueError("rule_first and rule_count must have one entry per policy")
        if self.spec_grid.shape[1] != METRICS:
            raise ValueError("spec_grid must have one column per metric")
        for table in (priority_ok, level_ok, job_ok, client_ok):
            if len(table) != self.spec_grid.shape[0]:
                raise ValueError("every acceptance table must have one row per rule")
        if self.after_required.shape[0] != self.spec_grid.shape[0]:
            raise ValueError("after_required must have one entry per rule")
        if index is not None:
            self._check_index(index)
        self.index = index

    cdef int _check_index(self, RuleIndex index) except -1:
        """Refuse a decision table reaching past its arrays or naming no rule."""
        cdef Py_ssize_t p, f, k, width
        cdef int64_t lo, cell, most
        cdef Py_ssize_t widths[MATCHED]
        widths[0] = self.priority_ok.shape[1]
        widths[1] = self.level_ok.shape[1]
        widths[2] = self.job_ok.shape[1]
        widths[3] = self.client_ok.shape[1]
        widths[4] = 3
        if index.table_base.shape[0] != self.rule_first.shape[0]:
            raise ValueError("the rule index must have one table per policy")
        for k in range(index.decision.shape[0]):
            if index.decision[k] < -1 or index.decision[k] >= self.spec_grid.shape[0]:
                raise ValueError("the rule index's decisions must name a rule or -1")
        for p in range(self.rule_first.shape[0]):
            if index.table_base[p] < 0:
                continue
            cell = index.table_base[p]
            for f in range(MATCHED):
                lo = index.map_offset[p, f]
                width = widths[f]
                if lo < 0 or lo + width > index.cell_of.shape[0]:
                    raise ValueError("the rule index's class maps must lie within cell_of")
                most = 0
                for k in range(width):
                    if index.cell_of[lo + k] > most:
                        most = index.cell_of[lo + k]
                cell += most
            if cell >= index.decision.shape[0]:
                raise ValueError("the rule index's tables must lie within decision")
        return 0


cdef class MatchColumns:
    """The ticket fields rules match on, one entry per ticket: the policy index (-2: a policy
    not among those given), the dictionary codes of priority, support level, job type and
    client (-1: null or a value no rule mentions) and the after-hours flag (-1 null, 0, 1)."""

    cdef const int64_t[::1] policy
    cdef const int64_t[::1] priority
    cdef const int64_t[::1] support_level
    cdef const int64_t[::1] job_type
    cdef const int64_t[::1] client
    cdef const int8_t[::1] after_hours

    def __init__(self, policy, priority, support_level, job_type, client, after_hours):
        self.policy = policy
        self.priority = priority
        self.support_level = support_level
        self.job_type = job_type
        self.client = client
        self.after_hours = after_hours
        n = self.policy.shape[0]
        for column in (priority, support_level, job_type, client):
            if len(column) != n:
                raise ValueError("every match column must have one entry per ticket")
        if self.after_hours.shape[0] != n:
            raise ValueError("after_hours must have one entry per ticket")


def match_rules(MatchColumns tickets, RuleTable rules):
    """Per ticket t: (rule[t], rows[t]), two int64 arrays: the global index of the first rule
    of the ticket's policy that matches it (-1: none) and how many metrics that rule defines.
    A policy with a decision table costs one lookup per ticket; one without, a scan of its
    rules up to the first match.
    """
    cdef Py_ssize_t n = tickets.policy.shape[0], t, g, m
    cdef int64_t p, found, rows, base
    cdef const int64_t[::1] ticket_policy = tickets.policy
    cdef const int64_t[::1] priority = tickets.priority
    cdef const int64_t[::1] support_level = tickets.support_level
    cdef const int64_t[::1] job_type = tickets.job_type
    cdef const int64_t[::1] client = tickets.client
    cdef const int8_t[::1] after_hours = tickets.after_hours
    cdef const int64_t[::1] rule_first = rules.rule_first
    cdef const int64_t[::1] rule_count = rules.rule_count
    cdef const uint8_t[:, ::1] priority_ok = rules.priority_ok
    cdef const uint8_t[:, ::1] level_ok = rules.level_ok
    cdef const uint8_t[:, ::1] job_ok = rules.job_ok
    cdef const uint8_t[:, ::1] client_ok = rules.client_ok
    cdef const int8_t[::1] after_required = rules.after_required
    cdef const int64_t[:, ::1] spec_grid = rules.spec_grid
    cdef const int64_t[::1] table_base
    cdef const int64_t[:, ::1] map_offset
    cdef const int32_t[::1] cell_of
    cdef const int32_t[::1] decision
    if rules.index is not None:
        table_base = rules.index.table_base
        map_offset = rules.index.map_offset
        cell_of = rules.index.cell_of
        decision = rules.index.decision
    else:  # every policy scans
        table_base = np.full(rule_first.shape[0], -1, np.int64)
        map_offset = np.zeros((rule_first.shape[0], MATCHED), np.int64)
        cell_of = np.zeros(0, np.int32)
        decision = np.zeros(0, np.int32)
    rule_array = np.empty(n, np.int64)
    rows_array = np.empty(n, np.int64)
    cdef int64_t[::1] out_rule = rule_array
    cdef int64_t[::1] out_rows = rows_array
    with nogil:
        for t in range(n):
            p = ticket_policy[t]
            found = -1
            if p >= 0:
                base = table_base[p]
                if base >= 0:
                    found = decision[
                        base
                        + cell_of[map_offset[p, 0] + priority[t] + 1]
                        + cell_of[map_offset[p, 1] + support_level[t] + 1]
                        + cell_of[map_offset[p, 2] + job_type[t] + 1]
                        + cell_of[map_offset[p, 3] + client[t] + 1]
                        + cell_of[map_offset[p, 4] + after_hours[t] + 1]
                    ]
                else:
                    for g in range(rule_first[p], rule_first[p] + rule_count[p]):
                        if (priority_ok[g, priority[t] + 1] and level_ok[g, support_level[t] + 1]
                                and job_ok[g, job_type[t] + 1] and client_ok[g, client[t] + 1]
                                and (after_required[g] < 0
                                     or after_hours[t] == after_required[g])):
                            found = g
                            break
            rows = 0
            if found >= 0:
                for m in range(METRICS):
                    rows += spec_grid[found, m] >= 0
            out_rule[t] = found
            out_rows[t] = rows
    return rule_array, rows_array


cdef extern from *:
    void prefetch "__builtin_prefetch"(const void*) noexcept nogil

# How many tickets ahead the evaluation prefetches a ticket's rule grid row (twice that) and
# spec record: with thousands of rules they are not in cache.
cdef enum:
    PREFETCH_AHEAD = 4


cdef struct SpecRecord:
    # A spec's fields the evaluation reads per result row, side by side: one cache line per
    # spec however many specs there are (a policy of 10,000 rules has 20,000 or more).
    int64_t cal
    int64_t target
    int64_t warning
    int64_t ladder
    uint64_t mask
    int32_t policy
    int32_t rule


cdef class SpecTable:
    """Every metric promise (spec) of the policies and their escalation ladders.

    Per spec: calendar index, target and warning threshold (business seconds), the bitmask of
    pause-status bits that pause it, its ladder (-1: none), its policy and its rule's index
    within that policy (int32, copied to the result rows), and its rule's spec grid row (see
    :class:`RuleTable`). Ladder L's steps are ``ladder_offsets[L] .. ladder_offsets[L + 1] - 1``;
    step k is a fraction step (``step_offset[k] < 0``) of ``step_numerator[k] /
    step_denominator[k]`` of the target, or fires ``step_offset[k]`` seconds after the deadline.
    ``resolved_status`` is the status bit of a resolution (-1: none).
    """

    cdef const int64_t[:, ::1] grid
    cdef const int64_t[::1] cal
    cdef const int64_t[::1] target
    cdef const int64_t[::1] warning
    cdef const uint64_t[::1] mask
    cdef const int64_t[::1] ladder
    cdef const int32_t[::1] policy
    cdef const int32_t[::1] rule
    cdef const int64_t[::1] ladder_offsets
    cdef const int64_t[::1] step_numerator
    cdef const int64_t[::1] step_denominator
    cdef const int64_t[::1] step_offset
    cdef int64_t[::1] step_target
    cdef readonly int64_t resolved_status
    cdef SpecRecord* records  # per spec, its columns as one record (built here)

    def __dealloc__(self):
        free(self.records)

    def __init__(self, grid, cal, target, warning, mask, ladder, policy, rule, ladder_offsets,
                 step_numerator, step_denominator, step_offset, int64_t resolved_status):
        self.grid = grid
        self.cal = cal
        self.target = target
        self.warning = warning
        self.mask = mask
        self.ladder = ladder
        self.policy = policy
        self.rule = rule
        self.ladder_offsets = ladder_offsets
        self.step_numerator = step_numerator
        self.step_denominator = step_denominator
        self.step_offset = step_offset
        self.resolved_status = resolved_status
        n = self.cal.shape[0]
        for column in (target, warning, ladder, policy, rule):
            if len(column) != n:
                raise ValueError("every spec column must have one entry per spec")
        if self.mask.shape[0] != n:
            raise ValueError("mask must have one entry per spec")
        steps = self.step_offset.shape[0]
        if self.step_numerator.shape[0] != steps or self.step_denominator.shape[0] != steps:
            raise ValueError("every step column must have one entry per ladder step")
        # A fraction step's target in business seconds, ceil(n × T / d) for n, T >= 0, d > 0,
        # once per step: each ladder serves one spec.
        self.step_target = np.zeros(steps, np.int64)
        owner = np.full(steps, -1, np.int64)
        cdef Py_ssize_t spec, k
        for spec in range(n):
            if self.ladder[spec] < 0:
                continue
            for k in range(self.ladder_offsets[self.ladder[spec]],
                           self.ladder_offsets[self.ladder[spec] + 1]):
                if owner[k] >= 0 and self.target[owner[k]] != self.target[spec]:
                    raise ValueError("a ladder serves specs of different targets")
                owner[k] = spec
                if self.step_offset[k] < 0:
                    self.step_target[k] = (
                        self.step_numerator[k] * self.target[spec] + self.step_denominator[k] - 1
                    ) // self.step_denominator[k]
        free(self.records)
        self.records = <SpecRecord*> malloc((n if n > 0 else 1) * sizeof(SpecRecord))
        if self.records == NULL:
            raise MemoryError("the spec records could not be allocated")
        for spec in range(n):
            self.records[spec].cal = self.cal[spec]
            self.records[spec].target = self.target[spec]
            self.records[spec].warning = self.warning[spec]
            self.records[spec].ladder = self.ladder[spec]
            self.records[spec].mask = self.mask[spec]
            self.records[spec].policy = self.policy[spec]
            self.records[spec].rule = self.rule[spec]


cdef class TicketColumns:
    """The tickets of one slice as the evaluation reads them, one entry per ticket (instants
    in epoch seconds, NO_INSTANT for none): created, the three metrics' stops, the matched
    rule (-1: none), the offset of its first result row, and its pauses as CSR
    (``pause_offsets`` has one entry more than the tickets; start, end (NO_INSTANT: open) and
    status bit per pause). ``max_pauses`` is the largest count of pauses on one ticket
    (computed from the offsets); ``first_backwards`` the position of the first pause that ends
    before it starts (-1: none).
    """

    cdef const int64_t[::1] created
    cdef const int64_t[::1] stop_first_response
    cdef const int64_t[::1] stop_resolution_plan
    cdef const int64_t[::1] stop_resolution
    cdef const int64_t[::1] rule
    cdef const int64_t[::1] row_offset
    cdef const int64_t[::1] pause_offsets
    cdef const int64_t[::1] pause_start
    cdef const int64_t[::1] pause_end
    cdef const int64_t[::1] pause_status
    cdef readonly Py_ssize_t max_pauses
    cdef readonly Py_ssize_t first_backwards

    def __init__(self, created, stop_first_response, stop_resolution_plan, stop_resolution,
                 rule, row_offset, pause_offsets, pause_start, pause_end, pause_status):
        self.created = created
        self.stop_first_response = stop_first_response
        self.stop_resolution_plan = stop_resolution_plan
        self.stop_resolution = stop_resolution
        self.rule = rule
        self.row_offset = row_offset
        self.pause_offsets = pause_offsets
        self.pause_start = pause_start
        self.pause_end = pause_end
        self.pause_status = pause_status
        n = self.created.shape[0]
        for column in (stop_first_response, stop_resolution_plan, stop_resolution, rule,
                       row_offset):
            if len(column) != n:
                raise ValueError("every ticket column must have one entry per ticket")
        if self.pause_offsets.shape[0] != n + 1:
            raise ValueError("pause_offsets must have one entry per ticket, plus one")
        pauses = self.pause_start.shape[0]
        if self.pause_end.shape[0] != pauses or self.pause_status.shape[0] != pauses:
            raise ValueError("every pause column must have one entry per pause")
        cdef Py_ssize_t t, most = 0
        for t in range(n):
            if self.pause_offsets[t + 1] - self.pause_offsets[t] > most:
                most = self.pause_offsets[t + 1] - self.pause_offsets[t]
            if self.pause_offsets[t] < 0 or self.pause_offsets[t + 1] > pauses:
                raise ValueError("pause_offsets must lie within the pause columns")
        self.max_pauses = most
        self.first_backwards = -1
        for t in range(pauses):
            if self.pause_end[t] != NO_INSTANT and self.pause_end[t] < self.pause_start[t]:
                self.first_backwards = t
                break


cdef class ResultBuffers:
    """The result rows the evaluation writes, one entry per (ticket, metric) row, as the
    columns of the results table: ticket position, metric, policy, rule (within its policy),
    calendar, target, deadline, active elapsed and remaining (business seconds), status code,
    stop, breach seconds, escalation level (1-based, 0: none), the global index of the step
    notified, the next escalation instant and the instant active elapsed reaches the warning
    threshold (instants in epoch seconds).

    The columns that may be null come with an Arrow validity bitmap (bit r of byte r // 8,
    least significant first; 1: valid): ``deadline_valid``, ``stopped_valid``,
    ``breached_valid`` (the row is BREACHED: its breached instant and breach seconds),
    ``notify_valid``, ``next_valid``, ``warning_valid``."""

    cdef readonly object ticket, metric, policy, rule, calendar, target, deadline, elapsed
    cdef readonly object remaining, status, stopped, breach, level, notify, next, warning_at
    cdef readonly object deadline_valid, stopped_valid, breached_valid, notify_valid
    cdef readonly object next_valid, warning_valid
    cdef int64_t[::1] _ticket
    cdef int8_t[::1] _metric
    cdef int32_t[::1] _policy
    cdef int32_t[::1] _rule
    cdef int32_t[::1] _calendar
    cdef int64_t[::1] _target
    cdef int64_t[::1] _deadline
    cdef int64_t[::1] _elapsed
    cdef int64_t[::1] _remaining
    cdef int8_t[::1] _status
    cdef int64_t[::1] _stopped
    cdef int64_t[::1] _breach
    cdef int32_t[::1] _level
    cdef int32_t[::1] _notify
    cdef int64_t[::1] _next
    cdef int64_t[::1] _warning_at
    cdef uint8_t[::1] _deadline_valid
    cdef uint8_t[::1] _stopped_valid
    cdef uint8_t[::1] _breached_valid
    cdef uint8_t[::1] _notify_valid
    cdef uint8_t[::1] _next_valid
    cdef uint8_t[::1] _warning_valid

    def __init__(self, Py_ssize_t rows):
        cdef Py_ssize_t nbytes = (rows + 7) // 8
        self.ticket = np.empty(rows, np.int64)
        self.metric = np.empty(rows, np.int8)
        self.policy = np.empty(rows, np.int32)
        self.rule = np.empty(rows, np.int32)
        self.calendar = np.empty(rows, np.int32)
        self.target = np.empty(rows, np.int64)
        self.deadline = np.empty(rows, np.int64)
        self.elapsed = np.empty(rows, np.int64)
        self.remaining = np.empty(rows, np.int64)
        self.status = np.empty(rows, np.int8)
        self.stopped = np.empty(rows, np.int64)
        self.breach = np.empty(rows, np.int64)
        self.level = np.empty(rows, np.int32)
        self.notify = np.empty(rows, np.int32)
        self.next = np.empty(rows, np.int64)
        self.warning_at = np.empty(rows, np.int64)
        # Zeroed: the kernel only sets the bits of valid rows.
        self.deadline_valid = np.zeros(nbytes, np.uint8)
        self.stopped_valid = np.zeros(nbytes, np.uint8)
        self.breached_valid = np.zeros(nbytes, np.uint8)
        self.notify_valid = np.zeros(nbytes, np.uint8)
        self.next_valid = np.zeros(nbytes, np.uint8)
        self.warning_valid = np.zeros(nbytes, np.uint8)
        self._ticket = self.ticket
        self._metric = self.metric
        self._policy = self.policy
        self._rule = self.rule
        self._calendar = self.calendar
        self._target = self.target
        self._deadline = self.deadline
        self._elapsed = self.elapsed
        self._remaining = self.remaining
        self._status = self.status
        self._stopped = self.stopped
        self._breach = self.breach
        self._level = self.level
        self._notify = self.notify
        self._next = self.next
        self._warning_at = self.warning_at
        self._deadline_valid = self.deadline_valid
        self._stopped_valid = self.stopped_valid
        self._breached_valid = self.breached_valid
        self._notify_valid = self.notify_valid
        self._next_valid = self.next_valid
        self._warning_valid = self.warning_valid

    @property
    def rows(self) -> int:
        return self._ticket.shape[0]


cdef inline void _valid(uint8_t* bits, Py_ssize_t r) noexcept nogil:
    bits[r >> 3] |= <uint8_t> (1 << (r & 7))


def evaluate_tickets(
    PackedClock clock, const int64_t[::1] now_rows, bint now_per_ticket,
    TicketColumns tickets, SpecTable specs, ResultBuffers out, Py_ssize_t ticket_base,
):
    """Evaluate every metric of tickets 0..n-1 of this slice into rows row_offset[t]...;
    out.ticket holds ticket_base + t. Returns (first bad ticket of the slice or -1, code).

    Each ticket is evaluated as known at its `now` (now_rows[t] when now_per_ticket, else
    now_rows[0]): stops after it are not known yet, pauses starting after it are ignored, a
    pause still running at it is open, and a resolution followed by a reopening after `now`
    (a pause of status `specs.resolved_status` running at `now`; -1: none) is the RESOLUTION
    metric's stop at the pause's start.

    Step k of ladder L is a fraction step (step_offset[k] < 0) firing when elapsed reaches
    ceil(numerator × T / denominator), or an offset step firing at deadline + step_offset[k].
    A step fires when its instant is <= now, or < S for a stopped metric (a stop at the same
    instant as a step wins). out.level is the 1-based index of the highest step fired and
    out.notify its global step index (-1: none).

    Work shared between a ticket's metrics is done once: its known pauses are sorted once,
    and F (open seconds before an instant) and the interval position of its created instant,
    pause bounds and `now` are computed once per calendar (tagged with the calendar they were
    computed for); a reach target equal to one already reached (the warning threshold and a
    fraction step often coincide) reuses its answer.
    """
    # The columns as local memoryviews: the loop below reads them as plain C arrays.
    cdef const int64_t[::1] created = tickets.created
    cdef const int64_t[::1] stop_first_response = tickets.stop_first_response
    cdef const int64_t[::1] stop_resolution_plan = tickets.stop_resolution_plan
    cdef const int64_t[::1] stop_resolution = tickets.stop_resolution
    cdef const int64_t[::1] rule = tickets.rule
    cdef const int64_t[::1] row_offset = tickets.row_offset
    cdef const int64_t[::1] pause_offsets = tickets.pause_offsets
    cdef const int64_t[::1] pause_start = tickets.pause_start
    cdef const int64_t[::1] pause_end = tickets.pause_end
    cdef const int64_t[::1] pause_status = tickets.pause_status
    cdef Py_ssize_t max_pauses = tickets.max_pauses
    cdef const int64_t[:, ::1] spec_grid = specs.grid
    cdef const SpecRecord* records = specs.records
    cdef const SpecRecord* record
    cdef const int64_t[::1] ladder_offsets = specs.ladder_offsets
    cdef const int64_t[::1] step_numerator = specs.step_numerator
    cdef const int64_t[::1] step_denominator = specs.step_denominator
    cdef const int64_t[::1] step_offset = specs.step_offset
    cdef const int64_t[::1] step_targets = specs.step_target
    cdef int64_t resolved_status = specs.resolved_status
    cdef int64_t* out_ticket = &out._ticket[0] if out.rows else NULL
    cdef int8_t* out_metric = &out._metric[0] if out.rows else NULL
    cdef int32_t* out_policy = &out._policy[0] if out.rows else NULL
    cdef int32_t* out_rule = &out._rule[0] if out.rows else NULL
    cdef int32_t* out_calendar = &out._calendar[0] if out.rows else NULL
    cdef int64_t* out_target = &out._target[0] if out.rows else NULL
    cdef int64_t* out_deadline = &out._deadline[0] if out.rows else NULL
    cdef int64_t* out_elapsed = &out._elapsed[0] if out.rows else NULL
    cdef int64_t* out_remaining = &out._remaining[0] if out.rows else NULL
    cdef int8_t* out_status = &out._status[0] if out.rows else NULL
    cdef int64_t* out_stopped = &out._stopped[0] if out.rows else NULL
    cdef int64_t* out_breach_seconds = &out._breach[0] if out.rows else NULL
    cdef int32_t* out_level = &out._level[0] if out.rows else NULL
    cdef int32_t* out_notify = &out._notify[0] if out.rows else NULL
    cdef int64_t* out_next = &out._next[0] if out.rows else NULL
    cdef int64_t* out_warning_at = &out._warning_at[0] if out.rows else NULL
    cdef uint8_t* deadline_valid = &out._deadline_valid[0] if out.rows else NULL
    cdef uint8_t* stopped_valid = &out._stopped_valid[0] if out.rows else NULL
    cdef uint8_t* breached_valid = &out._breached_valid[0] if out.rows else NULL
    cdef uint8_t* notify_valid = &out._notify_valid[0] if out.rows else NULL
    cdef uint8_t* next_valid = &out._next_valid[0] if out.rows else NULL
    cdef uint8_t* warning_valid = &out._warning_valid[0] if out.rows else NULL
    cdef const ClockView* v = &clock.view
    cdef Py_ssize_t n = created.shape[0], t, m, q, k, npause, r, width = max_pauses + 1, j, cnt
    cdef Py_ssize_t ncal = v.ncal
    cdef Py_ssize_t bad = -1
    cdef int code = 0
    cdef int64_t spec, cal, c, s, end, target, f_c, l_c, f_end, l_end, elapsed, covered
    cdef int64_t f_covered, a, b, f_a, f_b, l_b, deadline, raw_deadline, raw_warning, warning
    cdef int64_t fire, next_fire, step_target, ladder, warning_at, now = 0, c_tag, st
    cdef uint64_t mask
    cdef bint stopped, paused
    cdef int8_t status
    cdef int32_t level, notify
    # Per ticket, its known pauses sorted by start (start, end, status bit) with F and the
    # interval position of their bounds, each tagged with the calendar it was computed for;
    # per metric, the merged pauses (start, end, F of both, position of the end).
    cdef int64_t* buf = <int64_t*> malloc((14 * width + 3 * (ncal + 1)) * sizeof(int64_t))
    cdef int64_t* srt_start = buf
    cdef int64_t* srt_end = buf + width
    cdef int64_t* srt_status = buf + 2 * width
    cdef int64_t* fs = buf + 3 * width
    cdef int64_t* fs_tag = buf + 4 * width
    cdef int64_t* fe = buf + 5 * width
    cdef int64_t* le = buf + 6 * width
    cdef int64_t* fe_tag = buf + 7 * width
    cdef int64_t* ps = buf + 8 * width
    cdef int64_t* pe = buf + 9 * width
    cdef int64_t* f_ps = buf + 10 * width
    cdef int64_t* f_pe = buf + 11 * width
    cdef int64_t* l_pe = buf + 12 * width
    # Per calendar: F(now), the position of now, and the `now` they were computed for.
    cdef int64_t* now_f = buf + 14 * width
    cdef int64_t* now_l = now_f + (ncal + 1)
    cdef int64_t* now_key = now_l + (ncal + 1)
    if buf != NULL and now_rows.shape[0] < (created.shape[0] if now_per_ticket else 1):
        free(buf)
        raise ValueError("now_rows must have one instant, or one per ticket")
    if buf == NULL:
        return 0, ERR_MEMORY
    for j in range(ncal + 1):
        now_key[j] = NO_INSTANT
    with nogil:
        for t in range(n):
            if code:
                break
            if now_per_ticket or t == 0:
                now = now_rows[t] if now_per_ticket else now_rows[0]
                if _outside(v, now):
                    bad, code = t, ERR_NOW
                    break
            if t + 2 * PREFETCH_AHEAD < n and rule[t + 2 * PREFETCH_AHEAD] >= 0:
                prefetch(&spec_grid[rule[t + 2 * PREFETCH_AHEAD], 0])
            if t + PREFETCH_AHEAD < n and rule[t + PREFETCH_AHEAD] >= 0:
                for m in range(METRICS):
                    spec = spec_grid[rule[t + PREFETCH_AHEAD], m]
                    if spec >= 0:
                        prefetch(&records[spec])
                        break
            if rule[t] < 0:
                continue
            c = created[t]
            if _outside(v, c):
                bad, code = t, ERR_CREATED
                break
            # The ticket's pauses known at `now`, sorted by start (a ticket has a handful, in
            # any order: a stable insertion sort, so each metric's pauses keep their order).
            cnt = 0
            for q in range(pause_offsets[t], pause_offsets[t + 1]):
                a = pause_start[q]
                if a > now:  # not yet known at `now`
                    continue
                j = cnt
                while j > 0 and srt_start[j - 1] > a:
                    srt_start[j] = srt_start[j - 1]
                    srt_end[j] = srt_end[j - 1]
                    srt_status[j] = srt_status[j - 1]
                    j -= 1
                srt_start[j] = a
                srt_end[j] = pause_end[q]
                srt_status[j] = pause_status[q]
                fs_tag[cnt] = -1
                fe_tag[cnt] = -1
                cnt += 1
            c_tag = -1
            f_c = l_c = 0
            r = row_offset[t]
            for m in range(METRICS):
                spec = spec_grid[rule[t], m]
                if spec < 0:
                    continue
                record = &records[spec]
                cal = record.cal
                target = record.target
                mask = record.mask
                s = (stop_first_response[t] if m == 0 else
                     stop_resolution_plan[t] if m == 1 else stop_resolution[t])
                if cal < 0 or cal >= ncal:
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
                if c_tag != cal:
                    l_c = locate(v, cal, c)
                    f_c = open_before(v, l_c, c)
                    c_tag = cal
                if end == c:
                    l_end = l_c
                    f_end = f_c
                elif end == now:
                    if now_key[cal] != now:
                        now_l[cal] = locate(v, cal, now)
                        now_f[cal] = open_before(v, now_l[cal], now)
                        now_key[cal] = now
                    l_end = now_l[cal]
                    f_end = now_f[cal]
                else:
                    l_end = locate(v, cal, end)
                    f_end = open_before(v, l_end, end)
                elapsed = f_end - f_c

                # The metric's pauses, clipped to [created, end] and merged where they overlap.
                npause = 0
                covered = c
                f_covered = f_c
                paused = False
                for q in range(cnt):
                    if not (mask >> srt_status[q]) & 1:
                        continue
                    a = srt_start[q]
                    if a > end:
                        break
                    if a < covered:
                        a = covered
                        f_a = f_covered
                    else:
                        if fs_tag[q] != cal:
                            fs[q] = open_before(v, locate(v, cal, a), a)
                            fs_tag[q] = cal
                        f_a = fs[q]
                    b = srt_end[q]
                    if b == NO_INSTANT or b > end or b > now:
                        if not stopped:
                            ps[npause] = a
                            f_ps[npause] = f_a
                            pe[npause] = NO_INSTANT
                            f_pe[npause] = f_end
                            elapsed -= f_end - f_a
                            npause += 1
                            paused = True
                            break
                        b = end
                        f_b = f_end
                        l_b = l_end
                    else:
                        if b <= a:
                            continue
                        if fe_tag[q] != cal:
                            le[q] = locate(v, cal, b)
                            fe[q] = open_before(v, le[q], b)
                            fe_tag[q] = cal
                        f_b = fe[q]
                        l_b = le[q]
                    if b <= a:
                        continue
                    ps[npause] = a
                    f_ps[npause] = f_a
                    pe[npause] = b
                    f_pe[npause] = f_b
                    l_pe[npause] = l_b
                    elapsed -= f_b - f_a
                    covered = b
                    f_covered = f_b
                    npause += 1

                raw_deadline = _reach(v, cal, c, l_c, f_c, target, npause, pe, f_ps, f_pe, l_pe)
                if raw_deadline == PAST_HORIZON:
                    bad, code = t, ERR_DEADLINE
                    break
                deadline = NO_INSTANT if raw_deadline == OPEN_PAUSE else raw_deadline
                warning = record.warning
                raw_warning = (raw_deadline if warning == target else
                               _reach(v, cal, c, l_c, f_c, warning, npause, pe, f_ps, f_pe, l_pe))
                warning_at = (NO_INSTANT if raw_warning == OPEN_PAUSE
                              or raw_warning == PAST_HORIZON else raw_warning)
                if stopped:
                    status = MET if s <= deadline else BREACHED
                elif deadline != NO_INSTANT and now >= deadline:
                    status = BREACHED
                elif paused:
                    status = PAUSED
                elif elapsed >= warning:
                    status = WARNING
                else:
                    status = ON_TRACK

                level = 0
                notify = -1
                next_fire = NO_INSTANT
                ladder = record.ladder
                if ladder >= 0:
                    for k in range(ladder_offsets[ladder], ladder_offsets[ladder + 1]):
                        if step_offset[k] >= 0:
                            fire = NO_INSTANT if deadline == NO_INSTANT else deadline + step_offset[k]
                        else:
                            step_target = step_targets[k]
                            # Active elapsed E grows by at most one per second, so E at the
                            # end (`elapsed`) decides most steps without their instant: stopped,
                            # a step fired before S when E(S) > X and never when E(S) < X; not
                            # stopped, it fired by `now` when E(now) >= X.
                            if stopped and step_target != elapsed:
                                if step_target < elapsed:
                                    level = <int32_t> (k - ladder_offsets[ladder] + 1)
                                    notify = <int32_t> k
                                continue
                            if not stopped and step_target <= elapsed and now >= c:
                                level = <int32_t> (k - ladder_offsets[ladder] + 1)
                                notify = <int32_t> k
                                continue
                            if step_target == warning:
                                fire = raw_warning
                            elif step_target == target:
                                fire = raw_deadline
                            else:
                                fire = _reach(v, cal, c, l_c, f_c, step_target, npause, pe, f_ps,
                                              f_pe, l_pe)
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
                out_metric[r] = <int8_t> m
                out_policy[r] = record.policy
                out_rule[r] = record.rule
                out_calendar[r] = <int32_t> cal
                out_target[r] = target
                out_deadline[r] = deadline
                if deadline != NO_INSTANT:
                    _valid(deadline_valid, r)
                out_elapsed[r] = elapsed
                out_remaining[r] = target - elapsed
                out_status[r] = status
                if stopped:
                    out_stopped[r] = s
                    _valid(stopped_valid, r)
                else:
                    out_stopped[r] = NO_INSTANT
                if status == BREACHED:
                    out_breach_seconds[r] = elapsed - target
                    _valid(breached_valid, r)
                else:
                    out_breach_seconds[r] = 0
                out_level[r] = level
                out_notify[r] = notify
                if notify >= 0:
                    _valid(notify_valid, r)
                out_next[r] = next_fire
                if next_fire != NO_INSTANT:
                    _valid(next_valid, r)
                out_warning_at[r] = warning_at
                if warning_at != NO_INSTANT:
                    _valid(warning_valid, r)
                r += 1
    free(buf)
    return bad, code
