"""Arrow contract of the routing engine: the tickets batch in, the routes and assignments out.

**Tickets** (:data:`ROUTING_TICKETS`) — one row per ticket: the fields the SLA engine matches
on (``docs/sla.md``) plus what routing and assignment read. Only ``ticket_id`` and ``priority``
are required; an absent optional column is treated as all-null. Routing reads ``client_id``,
``priority``, ``support_level``, ``job_type``, ``after_hours``, ``channel``, ``subject``,
``requester`` and ``tags``; assignment reads ``queue``, ``priority``, ``support_level``,
``job_type``, ``assign_at`` (required there), ``sla_status`` and ``remaining_seconds``.
String columns may be dictionary-encoded; ``client_id`` may be an integer column;
``assign_at`` may be a timestamp of any unit with a zone, or int64 epoch seconds;
``remaining_seconds`` int64 business seconds or a ``duration``.

**Routes** (:data:`ROUTES`) — one row per ticket, in the order given: the index of the rule
that matched (-1: none, the fallback queue), the queue, the priority and support level after
the rule's overrides, and the tags after the rule's (sorted, no duplicates).

**Assignments** (:data:`ASSIGNMENTS`) — one row per ticket, in the order given: its final
queue (after escalation), the agent assigned (null: none), whether it was escalated, why
(:data:`REASONS`), its work weight, and the assignment's sequence number (null: unassigned).
"""

from __future__ import annotations

import pyarrow as pa

INSTANT = pa.timestamp("s", tz="UTC")
#: Low-cardinality result columns are dictionary-encoded (cheap to build, compare and group).
SMALL_LABEL = pa.dictionary(pa.int8(), pa.string())
LABEL = pa.dictionary(pa.int32(), pa.string())

ROUTING_TICKETS = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("client_id", pa.string()),
        pa.field("priority", pa.string(), nullable=False),  # CRITICAL/HIGH/MEDIUM/LOW or P1–P4
        pa.field("support_level", pa.string()),  # L1/L2/L3/SA
        pa.field("job_type", pa.string()),
        pa.field("after_hours", pa.bool_()),
        pa.field("channel", pa.string()),  # EMAIL/PORTAL/PHONE/CHAT/MONITORING/API
        pa.field("subject", pa.string()),
        pa.field("requester", pa.string()),  # an e-mail address; routing matches its domain
        pa.field("queue", pa.string()),  # the queue to assign from (after routing)
        pa.field("tags", pa.list_(pa.string())),
        pa.field("assign_at", INSTANT),  # the instant the assignment is made for
        pa.field("sla_status", pa.string()),  # ON_TRACK/WARNING/PAUSED/MET/BREACHED
        pa.field("remaining_seconds", pa.int64()),  # of the most urgent open metric
    ]
)

ROUTES = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("rule", pa.int32(), nullable=False),  # index of the matched rule, -1 fallback
        pa.field("queue", LABEL, nullable=False),
        pa.field("priority", SMALL_LABEL, nullable=False),
        pa.field("support_level", SMALL_LABEL),
        pa.field("tags", pa.list_(pa.string()), nullable=False),
    ]
)

#: Why a ticket was or was not assigned (about the last queue tried):
#: ``ASSIGNED`` in its own queue; ``ESCALATED_AND_ASSIGNED`` in a queue of its escalation
#: chain; ``NO_QUEUE`` it has none; ``NO_AGENT_IN_QUEUE`` no active agent works the queue;
#: ``NO_ELIGIBLE_AGENT`` none of them takes its level or job type or is on shift;
#: ``ALL_AT_CAPACITY`` every agent who could take it holds ``capacity`` open tickets.
REASONS = (
    "ASSIGNED",
    "ESCALATED_AND_ASSIGNED",
    "NO_QUEUE",
    "NO_AGENT_IN_QUEUE",
    "NO_ELIGIBLE_AGENT",
    "ALL_AT_CAPACITY",
)

ASSIGNMENTS = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("queue", LABEL),  # null only when the ticket had no queue
        pa.field("assignee", LABEL),  # agent id; null: unassigned
        pa.field("escalated", pa.bool_(), nullable=False),
        pa.field("reason", SMALL_LABEL, nullable=False),
        pa.field("weight", pa.int64(), nullable=False),  # work weight of the ticket
        pa.field("sequence", pa.int64()),  # the assignment's sequence number; null: none
    ]
)

#: Per agent, the workload assignment starts from and leaves (see ``workload.py``).
AGENT_WORKLOAD = pa.schema(
    [
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("open_count", pa.int64(), nullable=False),
        pa.field("load", pa.int64(), nullable=False),
        pa.field("last_assigned", pa.int64(), nullable=False),  # -1: never
    ]
)
