"""Typed interface of the compiled assignment kernel (``_assign.pyx``).

Agents are indexed in bytewise id order; queues by the caller's numbering; instants are UTC
epoch seconds; loads and weights are integer work weights.
"""

import numpy as np
import numpy.typing as npt

from effigate_engine._clock import PackedClock

_I8 = npt.NDArray[np.int8]
_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]

class Roster:
    """Queues (CSR slots of their active agents, each with the calendar deciding its shift,
    -1 always on shift; escalation queue, -1 none) and agents (support level bitmask,
    capacity)."""

    queues: int
    agents: int
    def __init__(
        self,
        queue_first: _I64,
        slot_agent: _I32,
        slot_calendar: _I32,
        escalation: _I32,
        levels: _U8,
        capacity: _I64,
    ) -> None: ...

class AssignColumns:
    """The tickets: processing order, queue, support level and job type codes (-1 null), the
    agents' skill table over job codes (agents, jobs + 1), assign instants, at-risk flags and
    work weights."""

    tickets: int
    def __init__(
        self,
        order: _I64,
        queue: _I32,
        level: _I8,
        job: _I32,
        skill_ok: _U8,
        at: _I64,
        escalate: _U8,
        weight: _I64,
    ) -> None: ...

class AgentLoads:
    """Per agent, updated in place: open tickets, load, last sequence number (-1 never); and
    the next sequence number."""

    open_count: _I64
    load: _I64
    last_assigned: _I64
    sequence: int
    def __init__(
        self, open_count: _I64, load: _I64, last_assigned: _I64, sequence: int
    ) -> None: ...

class AssignmentBuffers:
    """Per ticket: agent index, final queue code, reason code, escalated flag, sequence
    number (-1: none)."""

    agent: _I32
    queue: _I32
    reason: _I8
    escalated: _U8
    sequence: _I64
    def __init__(self, tickets: int) -> None: ...

def assign_tickets(
    clock: PackedClock | None,
    roster: Roster,
    tickets: AssignColumns,
    loads: AgentLoads,
    out: AssignmentBuffers,
) -> int:
    """Assign the tickets in order, updating ``loads`` and writing ``out``; returns -1 or the
    first row the tables cannot take (then nothing is assigned)."""
