"""Events of many stored tickets recorded at once, inside the caller's transaction: the bulk
twin of :func:`effigate_engine.service.tickets.apply_events`, for the services that change
many tickets in one call (routing, assignment).

Same rules as ``apply_events``: details are normalised, kinds checked, an event may not
precede its ticket, a support level or job type must be within the ticket's contract scope,
events are idempotent by id (the same id with other content is refused), and each changed
ticket is refolded from all its events. The difference is the cost: five statements for the
whole batch (lock, scopes, insert, read the events, write the states) instead of five or more
per ticket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from effigate_engine import ticket_fields
from effigate_engine.errors import EffigateError
from effigate_engine.service import sla_schedule, wall_clock
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition
from effigate_engine.service.ticket_fold import EVENT_KINDS, fold
from effigate_engine.service.ticket_scope import require_in_scope
from effigate_engine.service.tickets import event_detail, visible
from effigate_engine.store import ticket_changes as stored
from effigate_engine.store import tickets as stored_tickets
from effigate_engine.store.tickets import TicketRecord

#: One event as callers give it: ``(event_id, kind, occurred_at, detail)``.
Change = tuple[str, str, datetime, str | None]
#: Kinds whose value a contract's scope restricts, and the field it restricts.
_SCOPED = {"SUPPORT_LEVEL_CHANGED": "support_level", "JOB_TYPE_CHANGED": "job_type"}


def _normal(kind: str, detail: str | None, field: str) -> str | None:
    if kind not in EVENT_KINDS or kind == "CREATED":
        raise EffigateError(f"{field}.kind: {kind!r} is not one of {', '.join(EVENT_KINDS[1:])}")
    text = detail or ""
    return event_detail(
        kind,
        status=text,
        priority=text,
        support_level=text,
        job_type=text,
        assignee=text,
        queue=text,
        tags=ticket_fields.tags_of_detail(detail),
    )


#: Event kinds that move no SLA clock (no rule matches on them): no rescheduling.
_UNTIMED = frozenset({"ASSIGNED", "QUEUE_CHANGED", "TAGS_CHANGED"})


async def apply_changes(
    conn: asyncpg.Connection,
    principal: Principal,
    changes: Mapping[str, Sequence[Change]],
) -> dict[str, TicketRecord]:
    """Record the events ``changes[ticket_id]`` of each ticket and refold the tickets that got
    a new event; the stored tickets so changed. Nothing of the batch is stored when one event
    is refused (the caller's transaction decides). The tickets are locked until the
    transaction ends."""
    ids = sorted(changes, key=str.encode)
    locked = {t.id: t for t in await stored.lock_tickets(conn, ids)}
    scoped = [i for i in ids if any(kind in _SCOPED for _, kind, _, _ in changes[i])]
    scopes = await stored_tickets.ticket_scopes(conn, scoped) if scoped else {}
    rows: list[stored.EventRow] = []
    for ticket_id in ids:
        ticket = visible(principal, ticket_id, locked.get(ticket_id))
        for n, (event_id, kind, occurred_at, detail) in enumerate(changes[ticket_id]):
            field = f"tickets[{ticket_id!r}].events[{n}]"
            if not event_id:
                raise EffigateError(f"{field}.event_id: '' is empty")
            if occurred_at.tzinfo is None:
                raise EffigateError(
                    f"{field}.occurred_at: {occurred_at.isoformat()!r} has no time zone"
                )
            if occurred_at < ticket.created_at:
                raise EffigateError(
                    f"{field}.occurred_at: {occurred_at.isoformat()!r} is before the ticket"
                    f" was created ({ticket.created_at.isoformat()})"
                )
            normal = _normal(kind, detail, field)
            if kind in _SCOPED:
                require_in_scope(scopes.get(ticket_id), _SCOPED[kind], normal)
            rows.append((event_id, ticket_id, kind, occurred_at, principal.actor, normal))
    inserted = await stored.insert_events(conn, rows)
    for event_id, ticket_id, kind, occurred_at, _, detail in rows:
        if event_id not in inserted and not await stored_tickets.same_event(
            conn, event_id, ticket_id, kind, occurred_at, detail
        ):
            raise FailedPrecondition(
                "event_id", event_id, "already exists with another ticket, kind, time or detail"
            )
    refold = sorted({r[1] for r in rows if r[0] in inserted}, key=str.encode)
    if not refold:
        return {}
    histories = await stored_tickets.load_histories(conn, ticket_ids=refold)
    states = {h.ticket.id: fold(h.events, h.ticket).state() for h in histories}
    changed = await stored.store_states(conn, states)
    timed = sorted({r[1] for r in rows if r[0] in inserted and r[2] not in _UNTIMED})
    if timed:
        await sla_schedule.reschedule(conn, principal.tenant_id, timed, wall_clock.now())
    return changed
