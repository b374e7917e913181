"""Agents' workload: the work weight of a ticket, and per agent its open tickets, weighted load
and how recently it was assigned — what assignment balances on.

Work weight = priority weight (CRITICAL 8, HIGH 4, MEDIUM 2, LOW 1) × urgency, where urgency
follows the business seconds remaining on the ticket's most urgent open SLA metric: none
(no SLA) 1; ≤ 0 (breached) 4; ≤ 1 h 3; ≤ 4 h 2; more 1. Integers throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.errors import BatchError
from effigate_engine.instants import NO_INSTANT
from effigate_engine.priority import PRIORITIES
from effigate_engine.routing.schemas import AGENT_WORKLOAD
from effigate_engine.routing.ticket_fields import (
    priority_codes,
    read_tickets,
    remaining_seconds,
    string_column,
)
from effigate_engine.sla.ticket_columns import instant_column

#: Weight of a ticket of each priority, in PRIORITIES order.
PRIORITY_WEIGHTS = np.array([8, 4, 2, 1], np.int64)
#: (remaining business seconds at most, urgency factor), most urgent first; more: factor 1.
URGENCY_STEPS = ((0, 4), (3_600, 3), (14_400, 2))
#: Urgency of a ticket without an SLA (no remaining time).
NO_SLA_URGENCY = 1
NEVER = -1


def urgency(remaining: np.ndarray, no_sla: np.ndarray) -> np.ndarray:
    """The urgency factor of each remaining time (business seconds; ``no_sla`` masks nulls)."""
    out = np.ones(remaining.shape[0], np.int64)
    for bound, factor in reversed(URGENCY_STEPS):
        out[remaining <= bound] = factor
    out[no_sla] = NO_SLA_URGENCY
    return out


def work_weights(priority: np.ndarray, remaining: np.ndarray, no_sla: np.ndarray) -> np.ndarray:
    """Work weight per ticket from priority codes (index of ``PRIORITIES``), remaining business
    seconds and the mask of tickets without an SLA."""
    return PRIORITY_WEIGHTS[priority] * urgency(remaining, no_sla)


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """One agent's workload: open assigned tickets, their summed work weight, and the sequence
    number of its latest assignment (-1: never assigned)."""

    open_count: int = 0
    load: int = 0
    last_assigned: int = NEVER


@dataclass(frozen=True)
class Workload:
    """Every agent's workload (an agent not listed has none) and the sequence number the next
    assignment takes."""

    agents: Mapping[str, AgentLoad] = field(default_factory=dict)
    sequence: int = 0

    def of(self, agent_id: str) -> AgentLoad:
        """The workload of one agent."""
        return self.agents.get(agent_id, AgentLoad())

    def to_table(self) -> pa.Table:
        """The agents' workloads as an :data:`AGENT_WORKLOAD` table, sorted by agent id."""
        ids = sorted(self.agents, key=lambda a: a.encode())
        loads = [self.agents[a] for a in ids]
        return pa.table(
            {
                "agent_id": pa.array(ids, pa.string()),
                "open_count": pa.array([x.open_count for x in loads], pa.int64()),
                "load": pa.array([x.load for x in loads], pa.int64()),
                "last_assigned": pa.array([x.last_assigned for x in loads], pa.int64()),
            },
            schema=AGENT_WORKLOAD,
        )


def workload(open_tickets: pa.Table | pa.RecordBatch) -> Workload:
    """The workload agents hold from their open assigned tickets: one row per open ticket with
    ``assignee`` (null rows are skipped), ``priority`` and ``remaining_seconds`` (as in
    ``ROUTING_TICKETS``) and, to know who was assigned most recently, either ``sequence`` (the
    assignment's sequence number, as in ``ASSIGNMENTS``) or ``assigned_at`` (an instant; agents
    are then ranked by their latest one, ties by id). ``sequence`` of the result follows the
    latest assignment."""
    table = read_tickets(open_tickets)
    assignee = string_column(table, "assignee")
    keep = pc.is_valid(assignee)
    if keep.false_count:
        table = table.filter(keep)
        assignee = string_column(table, "assignee")
    if table.num_rows == 0:
        return Workload({}, 0)
    priority = priority_codes(table)
    remaining, no_sla = remaining_seconds(table)
    weight = work_weights(priority, remaining, no_sla)
    encoded = pc.dictionary_encode(assignee)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = encoded.dictionary.to_pylist()
    count = np.bincount(codes, minlength=len(ids))
    load = np.bincount(codes, weights=weight, minlength=len(ids)).astype(np.int64)
    last = np.full(len(ids), NEVER, np.int64)
    sequence = 0
    if "sequence" in table.column_names:
        seq = string_free_int(table, "sequence")
        np.maximum.at(last, codes, seq)
        sequence = int(last.max()) + 1
    elif "assigned_at" in table.column_names:
        at, _ = instant_column(table, "assigned_at")
        latest = np.full(len(ids), NO_INSTANT, np.int64)
        np.maximum.at(latest, codes, at)
        seen = np.flatnonzero(latest != NO_INSTANT)
        order = sorted(seen, key=lambda k: (latest[k], ids[k].encode()))
        for rank, k in enumerate(order):
            last[k] = rank
        sequence = len(order)
    return Workload(
        {a: AgentLoad(int(count[k]), int(load[k]), int(last[k])) for k, a in enumerate(ids)},
        sequence,
    )


def string_free_int(table: pa.Table, name: str) -> np.ndarray:
    """An integer column as int64 (nulls: -1)."""
    column = table.column(name).combine_chunks()
    if not pa.types.is_integer(column.type):
        raise BatchError(name, 0, str(column.type), "is not an integer column")
    return column.cast(pa.int64()).fill_null(NEVER).to_numpy(zero_copy_only=False)


__all__ = [
    "PRIORITIES",
    "PRIORITY_WEIGHTS",
    "URGENCY_STEPS",
    "AgentLoad",
    "Workload",
    "urgency",
    "work_weights",
    "workload",
]
