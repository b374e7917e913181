"""Stored tickets as the SLA engine's ``TICKETS`` batch (folded from their events)."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from effigate_engine.service.ticket_fold import fold
from effigate_engine.sla import schemas as sla_schemas
from effigate_engine.store.tickets import TicketHistory


def timelines_table(histories: Iterable[TicketHistory]) -> pa.Table:
    """Tickets and their events folded into the SLA engine's
    :data:`~effigate_engine.sla.schemas.TICKETS` batch (one row per ticket, in order), with
    every field SLA rules match: priority, support level, job type (as folded), after-hours
    cover, client, and the assignee."""
    rows = []
    for history in histories:
        t = history.ticket
        line = fold(history.events, t)
        rows.append(
            {
                "ticket_id": t.id,
                "client_id": str(t.client_id),
                "contract_id": None if t.contract_id is None else str(t.contract_id),
                "priority": line.priority,
                "support_level": line.support_level,
                "job_type": line.job_type,
                "after_hours": t.after_hours,
                "assignee": line.assignee,
                "created_at": t.created_at,
                "first_response_at": line.first_response_at,
                "resolution_plan_at": line.resolution_plan_at,
                "resolved_at": line.resolved_at,
                "pauses": [{"start": s, "end": e, "status": st} for s, e, st in line.pauses],
            }
        )
    return pa.Table.from_pylist(rows, schema=sla_schemas.TICKETS)
