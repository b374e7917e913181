# cython: language_level=3
"""Assignment of tickets to agents, one ticket after another, GIL released.

Tickets are taken in the order given (the caller sorts them by assign instant, then id). For
a ticket in queue q, each agent working q is eligible when it takes the ticket's support level
and job type, is on shift at the ticket's assign instant (its own calendar, else the queue's,
else always) and holds fewer open tickets than its capacity; the eligible agent with the least
load wins, ties going to the least recently assigned, then to the lower agent index (agents are
indexed in bytewise id order). The winner's load grows by the ticket's work weight, its open
count by one, and it takes the next sequence number. With no eligible agent, a ticket at risk
(``escalate``) moves along its queue's escalation chain, each queue at most once.
The on-shift test is the clock's (``open_at`` from ``_clock.pxd``).
"""

from libc.stdint cimport INT64_MAX, INT64_MIN, int8_t, int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc

import numpy as np

from effigate_engine._clock cimport ClockView, PackedClock, open_at

# Why a ticket was or was not assigned: positions in schemas.REASONS.
cdef enum:
    ASSIGNED = 0
    ESCALATED_AND_ASSIGNED = 1
    NO_QUEUE = 2
    NO_AGENT_IN_QUEUE = 3
    NO_ELIGIBLE_AGENT = 4
    ALL_AT_CAPACITY = 5

# Support level codes are bit positions of an agent's level mask.
cdef enum:
    MAX_LEVELS = 8


cdef class Roster:
    """Queues and agents, flattened. Queue q's slots are ``queue_first[q] ..
    queue_first[q + 1] - 1``, one per active agent working it, in ascending agent index:
    ``slot_agent[s]`` and the calendar deciding its shift there, ``slot_calendar[s]`` (-1:
    always on shift). ``escalation[q]`` is the queue q escalates to (-1: none). Per agent:
    ``levels[a]`` has bit l set when it takes support level code l; ``capacity[a]``."""

    cdef const int64_t[::1] queue_first
    cdef const int32_t[::1] slot_agent
    cdef const int32_t[::1] slot_calendar
    cdef const int32_t[::1] escalation
    cdef const uint8_t[::1] levels
    cdef const int64_t[::1] capacity
    cdef readonly Py_ssize_t queues
    cdef readonly Py_ssize_t agents

    def __init__(self, queue_first, slot_agent, slot_calendar, escalation, levels, capacity):
        self.queue_first = queue_first
        self.slot_agent = slot_agent
        self.slot_calendar = slot_calendar
        self.escalation = escalation
        self.levels = levels
        self.capacity = capacity
        self.queues = self.escalation.shape[0]
        self.agents = self.levels.shape[0]
        if self.queue_first.shape[0] != self.queues + 1:
            raise ValueError("queue_first must have one entry per queue, plus one")
        if self.capacity.shape[0] != self.agents:
            raise ValueError("capacity must have one entry per agent")
        slots = self.slot_agent.shape[0]
        if self.slot_calendar.shape[0] != slots or self.queue_first[self.queues] != slots:
            raise ValueError("the queues' slots must cover slot_agent and slot_calendar")
        for q in range(self.queues):
            if not 0 <= self.queue_first[q] <= self.queue_first[q + 1]:
                raise ValueError("queue_first must ascend from 0")
            if not -1 <= self.escalation[q] < self.queues:
                raise ValueError("escalation must name a queue or be -1")
        for s in range(slots):
            if not 0 <= self.slot_agent[s] < self.agents:
                raise ValueError("slot_agent must name agents")


cdef class AssignColumns:
    """The tickets, one entry each: ``order`` the processing order (a permutation of the
    rows); ``queue`` code (-1: none), ``level`` support level code (-1: null), ``job`` job type
    code (-1: null) with ``skill_ok[a, job + 1]`` saying whether agent a takes it; ``at`` the
    assign instant (epoch seconds, inside the calendars' horizon); ``escalate`` 1 when the
    ticket is at risk (its SLA in warning or breached); ``weight`` its work weight."""

    cdef const int64_t[::1] order
    cdef const int32_t[::1] queue
    cdef const int8_t[::1] level
    cdef const int32_t[::1] job
    cdef const uint8_t[:, ::1] skill_ok
    cdef const int64_t[::1] at
    cdef const uint8_t[::1] escalate
    cdef const int64_t[::1] weight
    cdef readonly Py_ssize_t tickets

    def __init__(self, order, queue, level, job, skill_ok, at, escalate, weight):
        self.order = order
        self.queue = queue
        self.level = level
        self.job = job
        self.skill_ok = skill_ok
        self.at = at
        self.escalate = escalate
        self.weight = weight
        self.tickets = self.order.shape[0]
        for column in (queue, level, job, at, escalate, weight):
            if len(column) != self.tickets:
                raise ValueError("every ticket column must have one entry per ticket")


cdef class AgentLoads:
    """Per agent (mutable, updated by :func:`assign_tickets`): open assigned tickets, load
    (summed work weight), sequence number of its latest assignment (-1: never); and the
    sequence number the next assignment takes."""

    cdef readonly object open_count, load, last_assigned
    cdef int64_t[::1] _open
    cdef int64_t[::1] _load
    cdef int64_t[::1] _last
    cdef public int64_t sequence

    def __init__(self, open_count, load, last_assigned, int64_t sequence):
        self.open_count = np.ascontiguousarray(open_count, np.int64).copy()
        self.load = np.ascontiguousarray(load, np.int64).copy()
        self.last_assigned = np.ascontiguousarray(last_assigned, np.int64).copy()
        self._open = self.open_count
        self._load = self.load
        self._last = self.last_assigned
        self.sequence = sequence
        if not self._open.shape[0] == self._load.shape[0] == self._last.shape[0]:
            raise ValueError("open_count, load and last_assigned must have one entry per agent")


cdef class AssignmentBuffers:
    """The result per ticket (in row order): agent index (-1: none), final queue code (-1:
    none), reason code, escalated flag, sequence number (-1: none)."""

    cdef readonly object agent, queue, reason, escalated, sequence
    cdef int32_t[::1] _agent
    cdef int32_t[::1] _queue
    cdef int8_t[::1] _reason
    cdef uint8_t[::1] _escalated
    cdef int64_t[::1] _sequence

    def __init__(self, Py_ssize_t tickets):
        self.agent = np.empty(tickets, np.int32)
        self.queue = np.empty(tickets, np.int32)
        self.reason = np.empty(tickets, np.int8)
        self.escalated = np.empty(tickets, np.uint8)
        self.sequence = np.empty(tickets, np.int64)
        self._agent = self.agent
        self._queue = self.queue
        self._reason = self.reason
        self._escalated = self.escalated
        self._sequence = self.sequence


def assign_tickets(PackedClock clock, Roster roster, AssignColumns tickets, AgentLoads loads,
                   AssignmentBuffers out) -> int:
    """Assign every ticket in ``tickets.order``, updating ``loads`` and writing ``out``.
    ``clock`` may be None when no slot has a calendar (everyone always on shift).
    Returns -1, or the first row whose codes, instant or calendar the tables cannot take
    (nothing is assigned then)."""
    cdef const ClockView* v = NULL if clock is None else &clock.view
    cdef int64_t ncal = 0 if clock is None else v.ncal
    cdef int64_t start = INT64_MIN if clock is None else v.start
    cdef int64_t end = INT64_MAX if clock is None else v.end
    cdef Py_ssize_t n = tickets.tickets, i, s, k
    cdef Py_ssize_t nq = roster.queues, na = roster.agents
    cdef Py_ssize_t jobs = tickets.skill_ok.shape[1]
    cdef int64_t t, stamp = 0
    cdef int32_t q, next_q, a, best, c, lvl
    cdef bint escalated, fits
    cdef const int64_t[::1] queue_first = roster.queue_first
    cdef const int32_t[::1] slot_agent = roster.slot_agent
    cdef const int32_t[::1] slot_calendar = roster.slot_calendar
    cdef const int32_t[::1] escalation = roster.escalation
    cdef const uint8_t[::1] levels = roster.levels
    cdef const int64_t[::1] capacity = roster.capacity
    cdef const int64_t[::1] order = tickets.order
    cdef const int32_t[::1] queue = tickets.queue
    cdef const int8_t[::1] level = tickets.level
    cdef const int32_t[::1] job = tickets.job
    cdef const uint8_t[:, ::1] skill_ok = tickets.skill_ok
    cdef const int64_t[::1] at = tickets.at
    cdef const uint8_t[::1] escalate = tickets.escalate
    cdef const int64_t[::1] weight = tickets.weight
    cdef int64_t[::1] open_count = loads._open
    cdef int64_t[::1] load = loads._load
    cdef int64_t[::1] last = loads._last
    cdef int64_t sequence = loads.sequence
    cdef int32_t[::1] out_agent = out._agent
    cdef int32_t[::1] out_queue = out._queue
    cdef int8_t[::1] out_reason = out._reason
    cdef uint8_t[::1] out_escalated = out._escalated
    cdef int64_t[::1] out_sequence = out._sequence
    cdef int64_t* visited
    if open_count.shape[0] != na or skill_ok.shape[0] != na:
        raise ValueError("loads and skill_ok must have one entry per agent of the roster")
    if out_agent.shape[0] != n:
        raise ValueError("out must have one entry per ticket")
    for s in range(slot_calendar.shape[0]):
        if not -1 <= slot_calendar[s] < ncal:
            raise ValueError("slot_calendar must name calendars of the clock")
    cdef Py_ssize_t bad = -1
    with nogil:
        for k in range(n):
            if (not 0 <= order[k] < n or not -1 <= queue[k] < nq or not -1 <= level[k] < MAX_LEVELS
                    or not -1 <= job[k] < jobs - 1 or not start <= at[k] <= end):
                bad = k
                break
    if bad >= 0:
        return bad
    visited = <int64_t*>malloc((nq + 1) * sizeof(int64_t))
    if visited == NULL:
        raise MemoryError()
    with nogil:
        for k in range(nq):
            visited[k] = 0
        for i in range(n):
            t = order[i]
            q = queue[t]
            out_agent[t] = -1
            out_sequence[t] = -1
            out_escalated[t] = 0
            out_queue[t] = q
            if q < 0:
                out_reason[t] = NO_QUEUE
                continue
            stamp += 1
            escalated = False
            lvl = level[t]
            while True:
                visited[q] = stamp
                best = -1
                fits = False
                for s in range(queue_first[q], queue_first[q + 1]):
                    a = slot_agent[s]
                    if lvl >= 0 and not (levels[a] >> lvl) & 1:
                        continue
                    if not skill_ok[a, job[t] + 1]:
                        continue
                    c = slot_calendar[s]
                    if c >= 0 and not open_at(v, c, at[t]):
                        continue
                    fits = True
                    if open_count[a] >= capacity[a]:
                        continue
                    if best < 0 or load[a] < load[best] or (
                            load[a] == load[best] and last[a] < last[best]):
                        best = a
                if best >= 0:
                    load[best] += weight[t]
                    open_count[best] += 1
                    last[best] = sequence
                    out_agent[t] = best
                    out_sequence[t] = sequence
                    sequence += 1
                    out_reason[t] = ESCALATED_AND_ASSIGNED if escalated else ASSIGNED
                    break
                next_q = escalation[q]
                if escalate[t] and next_q >= 0 and visited[next_q] != stamp:
                    q = next_q
                    escalated = True
                    continue
                if queue_first[q] == queue_first[q + 1]:
                    out_reason[t] = NO_AGENT_IN_QUEUE
                elif fits:
                    out_reason[t] = ALL_AT_CAPACITY
                else:
                    out_reason[t] = NO_ELIGIBLE_AGENT
                break
            out_queue[t] = q
            out_escalated[t] = escalated
    free(visited)
    loads.sequence = sequence
    return -1
