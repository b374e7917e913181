"""Arrow contract of the SLA engine: the tickets batch in, the results and breach records out.

Instants are ``timestamp[s, tz=UTC]`` (inputs may use any unit and zone), durations are int64
business seconds. A null instant means "has not happened".

**Tickets** (:data:`TICKETS`) — one row per ticket. Pauses are given as intervals (a list
column), each with the status that caused it: a ticket's status history reduces to them, and
the policy decides per metric which statuses pause it. The time between a resolution and a
reopening is a pause with status ``RESOLVED``; ``resolved_at`` is the final resolution. Pauses
of a ticket may come in any order and may overlap. Only ``ticket_id``, ``priority`` and
``created_at`` are required; absent optional columns are treated as all-null.

**Results** (:data:`SLA_RESULTS`) — one row per ticket × metric the matched rule defines.

**Breach records** (:data:`BREACH_RECORDS`) — one per breached ticket metric, the evidence
billing turns into credit lines; ``breach_id`` is ``"<ticket_id>:<metric>"`` so re-evaluating
never yields a second record for the same breach.
"""

from __future__ import annotations

import pyarrow as pa

INSTANT = pa.timestamp("s", tz="UTC")

PAUSE = pa.struct(
    [
        pa.field("start", INSTANT, nullable=False),
        pa.field("end", INSTANT),  # null: still paused
        pa.field("status", pa.string(), nullable=False),
    ]
)

TICKETS = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("tenant_id", pa.string()),
        pa.field("client_id", pa.string()),
        pa.field("contract_id", pa.string()),
        pa.field("policy", pa.string()),  # name of the policy to apply; null: the default policy
        pa.field("priority", pa.string(), nullable=False),  # CRITICAL/HIGH/MEDIUM/LOW or P1–P4
        pa.field("support_level", pa.string()),  # L1/L2/L3/SA
        pa.field("job_type", pa.string()),
        pa.field("after_hours", pa.bool_()),  # the contract buys after-hours cover
        pa.field("assignee", pa.string()),
        pa.field("created_at", INSTANT, nullable=False),
        pa.field("first_response_at", INSTANT),
        pa.field("resolution_plan_at", INSTANT),
        pa.field("resolved_at", INSTANT),
        pa.field("pauses", pa.list_(PAUSE)),
    ]
)

STATUSES = ("ON_TRACK", "WARNING", "PAUSED", "MET", "BREACHED")
#: Low-cardinality result columns are dictionary-encoded (cheap to build, compare and group).
SMALL_LABEL = pa.dictionary(pa.int8(), pa.string())
LABEL = pa.dictionary(pa.int32(), pa.string())

SLA_RESULTS = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("metric", SMALL_LABEL, nullable=False),
        pa.field("policy", LABEL, nullable=False),
        pa.field("rule", pa.int32(), nullable=False),  # index of the matched rule
        pa.field("target_seconds", pa.int64(), nullable=False),
        pa.field("calendar", LABEL, nullable=False),
        pa.field("deadline", INSTANT),  # null while paused and not breached
        pa.field("elapsed_seconds", pa.int64(), nullable=False),  # active business seconds
        pa.field("remaining_seconds", pa.int64(), nullable=False),  # target - elapsed
        pa.field("status", SMALL_LABEL, nullable=False),
        pa.field("stopped_at", INSTANT),  # the stop event, when it happened by `now`
        pa.field("breached_at", INSTANT),
        pa.field("breach_seconds", pa.int64()),  # elapsed - target when breached
        pa.field("escalation_level", pa.int32(), nullable=False),  # 0 = no step reached
        pa.field("escalation_notify", LABEL),  # who the highest step reached notifies
        pa.field("next_escalation_at", INSTANT),
        # when active elapsed reaches the warning threshold (null while an open pause comes first)
        pa.field("warning_at", INSTANT),
    ]
)

UNMATCHED = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("policy", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

BREACH_RECORDS = pa.schema(
    [
        pa.field("breach_id", pa.string(), nullable=False),
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("contract_id", pa.string()),
        pa.field("client_id", pa.string()),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("priority", pa.string(), nullable=False),
        pa.field("breached_at", INSTANT, nullable=False),
        pa.field("breach_seconds", pa.int64(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
    ]
)
