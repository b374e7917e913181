"""SLA result rows (:data:`effigate_engine.sla.SLA_RESULTS`) as typed ``MetricStatus``
messages (the answer of ``SlaService.Evaluate`` and ``TicketService.GetTicketStatus``), and
the stored tickets a report left out as ``TicketFailure`` messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from effigate.v1 import common_pb2
from effigate.v1 import sla_pb2 as pb
from effigate_engine.service import evaluations
from effigate_engine.service.evaluations import MAX_LISTED_FAILURES
from effigate_engine.sla import few
from effigate_engine.sla.few import MetricRow


def metric_statuses(results: pa.Table) -> list[pb.MetricStatus]:
    """Typed messages of SLA result rows (:data:`effigate_engine.sla.SLA_RESULTS`), with the
    policy and calendar versions the results were stamped with."""
    _, policy_version, calendar_versions = evaluations.stamped_versions(results)
    return metric_messages(few.rows_of(results), policy_version, calendar_versions)


def metric_messages(
    rows: Iterable[MetricRow],
    policy_version: int,
    calendar_versions: Mapping[str, int],
    into: Any = None,
) -> Any:
    """Typed messages of SLA result rows given as plain values (instants in epoch seconds),
    computed with ``policy_version`` of the policy and ``calendar_versions`` (by name): added
    to the repeated field ``into`` (a response's, so they are not copied there), else
    returned as a list."""
    out = [] if into is None else into
    add = pb.MetricStatus if into is None else into.add
    for row in rows:
        message = add(
            ticket_id=row.ticket_id,
            metric=row.metric,
            status=row.status,
            target_seconds=row.target_seconds,
            elapsed_seconds=row.elapsed_seconds,
            remaining_seconds=row.remaining_seconds,
            escalation_level=row.escalation_level,
            escalation_notify=row.escalation_notify or "",
            calendar=row.calendar,
            rule=row.rule,
            policy_version=policy_version,
            calendar_version=calendar_versions.get(row.calendar, 0),
        )
        # setting a Timestamp's seconds marks it present (nanos stay 0: whole seconds)
        if row.deadline is not None:
            message.deadline.seconds = row.deadline
        if row.stopped_at is not None:
            message.stopped_at.seconds = row.stopped_at
        if row.breached_at is not None:
            message.breached_at.seconds = row.breached_at
        if row.next_escalation_at is not None:
            message.next_escalation_at.seconds = row.next_escalation_at
        if row.breach_seconds is not None:
            message.breach_seconds = row.breach_seconds
        if into is None:
            out.append(message)
    return out


def ticket_failures(failures: pa.Table) -> list[common_pb2.TicketFailure]:
    """Typed messages of the first :data:`MAX_LISTED_FAILURES` stored tickets left out
    (:data:`effigate_engine.sla.screening.REJECTED_ROWS`)."""
    return [
        common_pb2.TicketFailure(
            ticket_id=r["ticket_id"] or "", field=r["field"], message=r["message"]
        )
        for r in failures.slice(0, MAX_LISTED_FAILURES).to_pylist()
    ]
