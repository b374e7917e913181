"""SLA result rows (:data:`effigate_engine.sla.SLA_RESULTS`) as typed ``MetricStatus``
messages (the answer of ``SlaService.Evaluate`` and ``TicketService.GetTicketStatus``), and
the stored tickets a report left out as ``TicketFailure`` messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa
from google.protobuf.timestamp_pb2 import Timestamp

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
    rows: Iterable[MetricRow], policy_version: int, calendar_versions: Mapping[str, int]
) -> list[pb.MetricStatus]:
    """Typed messages of SLA result rows given as plain values (instants in epoch seconds),
    computed with ``policy_version`` of the policy and ``calendar_versions`` (by name)."""
    out = []
    for row in rows:
        fields: dict[str, object] = {
            "ticket_id": row.ticket_id,
            "metric": row.metric,
            "status": row.status,
            "target_seconds": row.target_seconds,
            "elapsed_seconds": row.elapsed_seconds,
            "remaining_seconds": row.remaining_seconds,
            "escalation_level": row.escalation_level,
            "escalation_notify": row.escalation_notify or "",
            "calendar": row.calendar,
            "rule": row.rule,
            "policy_version": policy_version,
            "calendar_version": calendar_versions.get(row.calendar, 0),
        }
        for name in _INSTANTS:
            value = getattr(row, name)
            if value is not None:
                fields[name] = Timestamp(seconds=value)
        if row.breach_seconds is not None:
            fields["breach_seconds"] = row.breach_seconds
        out.append(pb.MetricStatus(**fields))
    return out


#: The instants of a result row a ``MetricStatus`` carries (``warning_at`` it does not).
_INSTANTS = ("deadline", "stopped_at", "breached_at", "next_escalation_at")


def ticket_failures(failures: pa.Table) -> list[common_pb2.TicketFailure]:
    """Typed messages of the first :data:`MAX_LISTED_FAILURES` stored tickets left out
    (:data:`effigate_engine.sla.screening.REJECTED_ROWS`)."""
    return [
        common_pb2.TicketFailure(
            ticket_id=r["ticket_id"] or "", field=r["field"], message=r["message"]
        )
        for r in failures.slice(0, MAX_LISTED_FAILURES).to_pylist()
    ]
