"""Assigning a batch of routed tickets to agents, sequentially and deterministically (Arrow in,
:data:`~effigate_engine.routing.schemas.ASSIGNMENTS` out, the agents' workload carried over).

Tickets are taken in ``(assign_at, ticket_id)`` order. Each goes to the eligible agent of its
queue with the least load (ties: least recently assigned, then agent id bytewise); a ticket at
risk (SLA ``WARNING`` or ``BREACHED``) that nobody in its queue can take follows the queue's
escalation chain. Semantics: ``docs/routing.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import BatchError
from effigate_engine.instants import ARROW_INPUT_ERRORS, to_column
from effigate_engine.routing import _assign
from effigate_engine.routing.agents import Agent, Queue, check_roster
from effigate_engine.routing.rules import RoutingError
from effigate_engine.routing.schemas import ASSIGNMENTS, REASONS
from effigate_engine.routing.ticket_fields import (
    level_codes,
    priority_codes,
    read_tickets,
    remaining_seconds,
    required,
    status_codes,
    string_column,
)
from effigate_engine.routing.workload import AgentLoad, Workload, work_weights
from effigate_engine.sla.policy import SUPPORT_LEVELS
from effigate_engine.sla.schemas import STATUSES
from effigate_engine.sla.ticket_columns import dictionary_codes

#: SLA statuses that let a ticket nobody in its queue can take escalate.
AT_RISK = ("WARNING", "BREACHED")
_AT_RISK_CODES = np.array([s in AT_RISK for s in STATUSES] + [False], bool)  # -1: null
_REASON_NAMES = pa.array(REASONS, pa.string())


@dataclass(frozen=True)
class _Roster:
    agents: list[Agent]  # in bytewise id order: the kernel's agent index
    queue_names: list[str]  # the queues given, then queue names only the tickets use
    kernel: _assign.Roster


def _roster(
    queues: Sequence[Queue],
    agents: Sequence[Agent],
    calendars: CalendarSet | None,
    extra_queues: Sequence[str],
) -> _Roster:
    check_roster(queues, agents)
    position = {id(a): i for i, a in enumerate(agents)}
    ordered = sorted(agents, key=lambda a: a.id.encode())

    def calendar_index(name: str | None, path: str) -> int:
        if name is None:
            return -1
        if calendars is None or name not in calendars.names:
            known = sorted(calendars.names) if calendars is not None else []
            raise RoutingError(path, name, f"is not a calendar of the set ({', '.join(known)})")
        return calendars.names[name]

    queue_names = [q.name for q in queues] + list(extra_queues)
    index = {name: i for i, name in enumerate(queue_names)}
    queue_calendar = [
        calendar_index(q.calendar, f"queues[{i}].calendar") for i, q in enumerate(queues)
    ] + [-1] * len(extra_queues)
    agent_calendar = [
        calendar_index(a.calendar, f"agents[{position[id(a)]}].calendar") for a in ordered
    ]
    first, slot_agent, slot_calendar = [0], [], []
    for q, name in enumerate(queue_names):
        for k, agent in enumerate(ordered):
            if agent.active and name in agent.queues:
                slot_agent.append(k)
                own = agent_calendar[k]
                slot_calendar.append(own if own >= 0 else queue_calendar[q])
        first.append(len(slot_agent))
    escalation = [
        -1 if q.escalation_queue is None else index[q.escalation_queue] for q in queues
    ] + [-1] * len(extra_queues)
    levels = [sum(1 << SUPPORT_LEVELS.index(lv) for lv in a.support_levels) for a in ordered]
    return _Roster(
        ordered,
        queue_names,
        _assign.Roster(
            np.array(first, np.int64),
            np.array(slot_agent, np.int32),
            np.array(slot_calendar, np.int32),
            np.array(escalation, np.int32),
            np.array(levels, np.uint8),
            np.array([a.capacity for a in ordered], np.int64),
        ),
    )


def assign(
    tickets: pa.Table | pa.RecordBatch | str | Path,
    queues: Sequence[Queue],
    agents: Sequence[Agent],
    calendars: CalendarSet | None = None,
    state: Workload | None = None,
) -> tuple[pa.Table, Workload]:
    """Assign every ticket (a :data:`~effigate_engine.routing.schemas.ROUTING_TICKETS` table,
    batch or Parquet path, with ``queue`` and ``assign_at``) to an agent: one
    :data:`ASSIGNMENTS` row per ticket in the order given, and the agents' workload after the
    batch (``state`` is the workload before it; ``None``: nobody holds anything). Calendars
    named by queues and agents are looked up in ``calendars`` by name.
    :class:`~effigate_engine.routing.rules.RoutingError` names a bad queue or agent field,
    :class:`~effigate_engine.errors.BatchError` a bad ticket field and row."""
    table = read_tickets(tickets)
    state = state if state is not None else Workload()
    n = table.num_rows
    required(table, "ticket_id")
    ticket_ids = string_column(table, "ticket_id")
    queue_codes, queue_values = dictionary_codes(string_column(table, "queue"))
    defined = {q.name for q in queues if isinstance(q, Queue)}
    extra = sorted(v for v in queue_values if v not in defined)
    roster = _roster(queues, agents, calendars, extra)
    name_index = {name: i for i, name in enumerate(roster.queue_names)}
    lookup = np.array([name_index[v] for v in queue_values] + [-1], np.int32)
    queue = lookup[queue_codes]
    priority = priority_codes(table)
    remaining, no_sla = remaining_seconds(table)
    weight = work_weights(priority, remaining, no_sla)
    at = _assign_instants(table, calendars)
    job_codes, job_values = dictionary_codes(string_column(table, "job_type"))
    skill_ok = np.ones((len(roster.agents), len(job_values) + 1), np.uint8)
    for k, agent in enumerate(roster.agents):
        if agent.skills is not None:
            skill_ok[k, 1:] = [v in agent.skills for v in job_values]
    escalate = _AT_RISK_CODES[status_codes(table)].astype(np.uint8)
    order = pc.sort_indices(
        pa.table({"at": at, "id": ticket_ids}),
        sort_keys=[("at", "ascending"), ("id", "ascending")],
    ).to_numpy()
    columns = _assign.AssignColumns(
        np.ascontiguousarray(order, np.int64),
        queue,
        level_codes(table),
        job_codes.astype(np.int32),
        skill_ok,
        at,
        escalate,
        weight,
    )
    before = [state.of(a.id) for a in roster.agents]
    last = np.array([x.last_assigned for x in before], np.int64)
    sequence = max(
        state.sequence, max((x.last_assigned for x in state.agents.values()), default=-1) + 1
    )
    loads = _assign.AgentLoads(
        np.array([x.open_count for x in before], np.int64),
        np.array([x.load for x in before], np.int64),
        last,
        sequence,
    )
    out = _assign.AssignmentBuffers(n)
    bad = _assign.assign_tickets(
        calendars.packed if calendars is not None else None, roster.kernel, columns, loads, out
    )
    if bad >= 0:  # every code and instant was checked above: this cannot be the caller's
        raise AssertionError(f"assignment inputs of ticket {bad} lie outside the kernel's tables")
    after = dict(state.agents)
    for k, agent in enumerate(roster.agents):
        after[agent.id] = AgentLoad(
            int(loads.open_count[k]), int(loads.load[k]), int(loads.last_assigned[k])
        )
    result = pa.Table.from_arrays(
        [
            ticket_ids,
            pa.DictionaryArray.from_arrays(
                pa.array(out.queue, pa.int32(), mask=out.queue < 0),
                pa.array(roster.queue_names, pa.string()),
            ),
            pa.DictionaryArray.from_arrays(
                pa.array(out.agent, pa.int32(), mask=out.agent < 0),
                pa.array([a.id for a in roster.agents], pa.string()),
            ),
            pa.array(out.escalated.view(bool), pa.bool_()),
            pa.DictionaryArray.from_arrays(pa.array(out.reason, pa.int8()), _REASON_NAMES),
            pa.array(weight, pa.int64()),
            pa.array(out.sequence, pa.int64(), mask=out.sequence < 0),
        ],
        schema=ASSIGNMENTS,
    )
    return result, Workload(after, int(loads.sequence))


def _assign_instants(table: pa.Table, calendars: CalendarSet | None) -> np.ndarray:
    """``assign_at`` as epoch seconds, required in every row and, when calendars decide who
    is on shift, inside their horizon."""
    column = required(table, "assign_at")
    try:
        at = to_column(column, "assign_at").values
    except ARROW_INPUT_ERRORS as exc:
        raise BatchError("assign_at", 0, str(column.type), f"cannot be read: {exc}") from exc
    if calendars is not None and at.size:
        outside = (at < calendars.horizon.start) | (at > calendars.horizon.end)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise BatchError(
                "assign_at",
                row,
                _iso(int(at[row])),
                f"is outside the calendars' horizon {calendars.horizon}",
            )
    return np.ascontiguousarray(at, np.int64)


def _iso(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{t} s since the epoch"


__all__ = ["AT_RISK", "assign"]
