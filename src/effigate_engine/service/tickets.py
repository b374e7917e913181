"""Tickets and their events.

A ticket's state is a fold of its events in time order (ties by event id): the first
``RESPONDED`` stops first response, the first ``PLAN_PROVIDED`` the resolution plan, each
``PAUSED`` … ``RESUMED`` (or ``RESOLVED`` … ``REOPENED``) is a pause, the last ``RESOLVED`` not
followed by a reopen stops resolution, and the latest ``PRIORITY_CHANGED`` gives the current
priority (which re-targets the whole ticket). Creating a ticket records a ``CREATED`` event
carrying its first priority, so the stored row is always recomputable from events and events
may arrive in any order. Events are idempotent by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import pyarrow as pa

from effigate_engine.errors import EffigateError
from effigate_engine.priority import normalise_priority
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.sla import schemas as sla_schemas
from effigate_engine.store import catalog
from effigate_engine.store import tickets as stored
from effigate_engine.store.batches import STORED_TICKET_EVENTS, STORED_TICKETS, IngestResult
from effigate_engine.store.bulk import ingest
from effigate_engine.store.database import Store
from effigate_engine.store.tickets import Event, TicketHistory, TicketRecord

__all__ = ["IngestResult", "TicketRecord"]

EVENT_KINDS = (
    "CREATED",
    "RESPONDED",
    "PLAN_PROVIDED",
    "PAUSED",
    "RESUMED",
    "RESOLVED",
    "REOPENED",
    "PRIORITY_CHANGED",
)
DEFAULT_PAUSE_STATUS = "WAITING_ON_CLIENT"


@dataclass
class Timeline:
    """A ticket's state folded from its events (see the module docstring)."""

    priority: str
    status: str = "OPEN"
    first_response_at: datetime | None = None
    resolution_plan_at: datetime | None = None
    resolved_at: datetime | None = None
    pauses: list[tuple[datetime, datetime | None, str]] = field(default_factory=list)


def fold(events: Iterable[Event], priority: str) -> Timeline:
    """Fold ``(event_id, kind, occurred_at, detail)`` events into a :class:`Timeline`.

    ``priority`` is the ticket's priority before any ``CREATED``/``PRIORITY_CHANGED`` event.
    """
    line = Timeline(priority)
    open_pause: tuple[datetime, str] | None = None
    for _, kind, at, detail in sorted(events, key=lambda e: (e[2], e[0])):
        if kind in ("CREATED", "PRIORITY_CHANGED") and detail:
            line.priority = detail
        elif kind == "RESPONDED":
            line.first_response_at = line.first_response_at or at
        elif kind == "PLAN_PROVIDED":
            line.resolution_plan_at = line.resolution_plan_at or at
        elif kind == "PAUSED" and open_pause is None and line.status != "RESOLVED":
            open_pause = (at, detail or DEFAULT_PAUSE_STATUS)
            line.status = open_pause[1]
        elif kind == "RESUMED" and open_pause is not None and line.status != "RESOLVED":
            line.pauses.append((open_pause[0], at, open_pause[1]))
            open_pause = None
            line.status = "OPEN"
        elif kind == "RESOLVED" and line.status != "RESOLVED":
            if open_pause is not None:
                line.pauses.append((open_pause[0], at, open_pause[1]))
                open_pause = None
            line.resolved_at = at
            line.status = "RESOLVED"
        elif kind == "REOPENED" and line.status == "RESOLVED" and line.resolved_at is not None:
            line.pauses.append((line.resolved_at, at, "RESOLVED"))
            line.resolved_at = None
            line.status = "OPEN"
    if open_pause is not None:
        line.pauses.append((open_pause[0], None, open_pause[1]))
    return line


def _aware(name: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise EffigateError(f"{name}: {value.isoformat()!r} has no time zone")
    return value


async def fetch_ticket(
    conn: asyncpg.Connection, principal: Principal, ticket_id: str
) -> TicketRecord:
    """The ticket ``ticket_id``; a portal principal sees only its client's tickets."""
    return visible(principal, ticket_id, await stored.load_ticket(conn, ticket_id))


def visible(principal: Principal, ticket_id: str, ticket: TicketRecord | None) -> TicketRecord:
    """``ticket`` (the stored ticket ``ticket_id``) if ``principal`` may see it, else
    :class:`NotFound`."""
    if ticket is None or (principal.is_portal and ticket.client_id != principal.client_id):
        raise NotFound("ticket_id", ticket_id, "is not a ticket of this tenant")
    return ticket


async def _require_client_contract(
    conn: asyncpg.Connection, client_id: int, contract_id: int | None
) -> None:
    """Refuse (NOT_FOUND) a client or a contract that is not the tenant's."""
    if not await catalog.client_exists(conn, client_id):
        raise NotFound("client_id", client_id, "is not a client of this tenant")
    if contract_id is not None and not await catalog.contract_exists(conn, contract_id):
        raise NotFound("contract_id", contract_id, "is not a contract of this tenant")


async def create_ticket(
    store: Store,
    principal: Principal,
    ticket_id: str,
    client_id: int,
    priority: str,
    created_at: datetime,
    contract_id: int | None = None,
) -> TicketRecord:
    """Create a ticket (idempotent by id: an identical resend returns the stored ticket; a
    resend with other content is refused). A portal token may raise tickets for its client."""
    if not ticket_id:
        raise EffigateError("ticket_id: '' is empty")
    principal.require_client(client_id, "client_id")
    first = normalise_priority(priority)
    _aware("created_at", created_at)
    async with store.transaction(principal) as conn:
        await _require_client_contract(conn, client_id, contract_id)
        created = await stored.insert_ticket(
            conn, ticket_id, client_id, contract_id, first, created_at, principal.actor
        )
        if created is not None:
            return created
        existing = await fetch_ticket(conn, principal, ticket_id)
        sent = (client_id, contract_id, created_at)
        if (existing.client_id, existing.contract_id, existing.created_at) != sent:
            raise FailedPrecondition(
                "ticket_id",
                ticket_id,
                "already exists with another client, contract or creation time",
            )
        return existing


async def record_event(
    store: Store,
    principal: Principal,
    event_id: str,
    ticket_id: str,
    kind: str,
    occurred_at: datetime,
    *,
    status: str = "",
    priority: str = "",
    actor: str = "",
) -> TicketRecord:
    """Record one event (idempotent by ``event_id``) and refold the ticket's stored state."""
    if kind not in EVENT_KINDS or kind == "CREATED":
        raise EffigateError(f"kind: {kind!r} is not one of {', '.join(EVENT_KINDS[1:])}")
    if not event_id:
        raise EffigateError("event_id: '' is empty")
    _aware("occurred_at", occurred_at)
    detail: str | None = None
    if kind == "PRIORITY_CHANGED":
        detail = normalise_priority(priority)
    elif kind == "PAUSED":
        detail = status or DEFAULT_PAUSE_STATUS
    async with store.transaction(principal) as conn:
        ticket = await fetch_ticket(conn, principal, ticket_id)
        if occurred_at < ticket.created_at:
            raise EffigateError(
                f"occurred_at: {occurred_at.isoformat()!r} is before the ticket was created"
                f" ({ticket.created_at.isoformat()})"
            )
        inserted = await stored.insert_event(
            conn, event_id, ticket_id, kind, occurred_at, actor or principal.actor, detail
        )
        if not inserted:
            if not await stored.same_event(conn, event_id, ticket_id, kind, occurred_at):
                raise FailedPrecondition(
                    "event_id", event_id, "already exists with another ticket, kind or time"
                )
            return ticket
        line = fold(await stored.load_events(conn, ticket.id), ticket.priority)
        return await stored.store_state(
            conn, ticket.id, line.priority, line.status, line.first_response_at, line.resolved_at
        )


async def get_ticket(store: Store, principal: Principal, ticket_id: str) -> TicketRecord:
    """The stored ticket ``ticket_id``."""
    async with store.transaction(principal) as conn:
        return await fetch_ticket(conn, principal, ticket_id)


async def list_tickets(
    store: Store,
    principal: Principal,
    client_id: int | None = None,
    limit: int = 100,
    after_id: str = "",
) -> list[TicketRecord]:
    """Tickets by id (bytewise), ``limit`` at most 10,000, after ``after_id``."""
    if principal.is_portal:
        client_id = principal.client_id
    limit = max(1, min(limit or 100, 10_000))
    async with store.transaction(principal) as conn:
        return await stored.load_ticket_page(conn, client_id, limit, after_id)


async def load_timelines(
    conn: asyncpg.Connection,
    principal: Principal,
    client_id: int | None = None,
    ticket_ids: Sequence[str] | None = None,
    as_of: datetime | None = None,
) -> pa.Table:
    """Stored tickets (of one client, or the given ids) folded into the SLA engine's
    :data:`~effigate_engine.sla.schemas.TICKETS` batch. With ``as_of``, as known then: only
    events at or before it are folded (a priority changed later is not, a reopening later is
    not), and a client's tickets created after it are left out."""
    if principal.is_portal:
        client_id = principal.client_id
    return timelines_table(await stored.load_histories(conn, client_id, ticket_ids, as_of))


def timelines_table(histories: Iterable[TicketHistory]) -> pa.Table:
    """Tickets and their events folded into the SLA engine's
    :data:`~effigate_engine.sla.schemas.TICKETS` batch (one row per ticket, in order)."""
    rows = []
    for history in histories:
        t = history.ticket
        line = fold(history.events, t.priority)
        rows.append(
            {
                "ticket_id": t.id,
                "client_id": str(t.client_id),
                "contract_id": None if t.contract_id is None else str(t.contract_id),
                "priority": line.priority,
                "created_at": t.created_at,
                "first_response_at": line.first_response_at,
                "resolution_plan_at": line.resolution_plan_at,
                "resolved_at": line.resolved_at,
                "pauses": [{"start": s, "end": e, "status": st} for s, e, st in line.pauses],
            }
        )
    return pa.Table.from_pylist(rows, schema=sla_schemas.TICKETS)


async def ingest_rows(
    store: Store, principal: Principal, kind: str, table: pa.Table, skip_invalid_rows: bool
) -> IngestResult:
    """Store a batch of tickets (``kind`` ``"tickets"``) or ticket events (``"events"``), the
    columns of :data:`~effigate_engine.store.bulk.STORED_TICKETS` /
    :data:`~effigate_engine.store.bulk.STORED_TICKET_EVENTS`, upserted by id (staff only).
    With ``skip_invalid_rows`` the rows that cannot be stored are returned, the rest stored."""
    principal.require_staff("bulk-ingest tickets")
    spec = STORED_TICKETS if kind == "tickets" else STORED_TICKET_EVENTS
    async with store.adbc() as conn:
        return await ingest(conn, spec, principal.key, table, skip_invalid_rows)
