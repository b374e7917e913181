"""Tickets and their events.

A ticket's state is a fold of its events (:mod:`effigate_engine.service.ticket_fold`): pauses,
stops, and the current priority, support level, job type, assignee, queue and tags. Creating a
ticket records a ``CREATED`` event carrying its initial values, so the stored row is always
recomputable from events, a fold as of an instant is exact, and events may arrive in any order.
Events are idempotent by id. A ticket's support level and job type stay within its contract's
scope (:mod:`effigate_engine.service.ticket_scope`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import ticket_fields
from effigate_engine.errors import EffigateError
from effigate_engine.instants import ARROW_INPUT_ERRORS
from effigate_engine.priority import normalise_priority
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.service.ticket_batches import timelines_table
from effigate_engine.service.ticket_fold import (
    DEFAULT_PAUSE_STATUS,
    EVENT_KINDS,
    Timeline,
    created_detail,
    fold,
)
from effigate_engine.service.ticket_scope import (
    event_rows_check,
    require_in_scope,
    ticket_rows_check,
)
from effigate_engine.store import batches as stored_batches
from effigate_engine.store import catalog
from effigate_engine.store import tickets as stored
from effigate_engine.store.batches import STORED_TICKET_EVENTS, STORED_TICKETS, IngestResult
from effigate_engine.store.bulk import ingest
from effigate_engine.store.database import Store
from effigate_engine.store.tickets import Event, TicketFields, TicketRecord

__all__ = [
    "DEFAULT_PAUSE_STATUS",
    "EVENT_KINDS",
    "IngestResult",
    "TicketFields",
    "TicketRecord",
    "Timeline",
    "apply_events",
    "fold",
]


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


def ticket_fields_of(
    *,
    support_level: str | None = None,
    job_type: str | None = None,
    after_hours: bool = False,
    channel: str | None = None,
    subject: str | None = None,
    requester: str | None = None,
    queue: str | None = None,
    assignee: str | None = None,
    asset: str | None = None,
    tags: Iterable[str] = (),
) -> TicketFields:
    """The descriptive fields of a new ticket in normal form (:mod:`effigate_engine.
    ticket_fields`; empty text is "not set"); a value without one is an input error naming
    the field."""
    return TicketFields(
        ticket_fields.support_level(support_level),
        ticket_fields.job_type(job_type),
        bool(after_hours),
        ticket_fields.channel(channel),
        ticket_fields.subject(subject),
        ticket_fields.requester(requester),
        ticket_fields.name(queue, "queue"),
        ticket_fields.name(assignee, "assignee"),
        ticket_fields.asset(asset),
        tuple(ticket_fields.tags(tags)),
    )


async def _scope_of_contract(
    conn: asyncpg.Connection, contract_id: int | None
) -> stored.Scope | None:
    if contract_id is None:
        return None
    return (await stored.contract_scopes(conn, [contract_id])).get(contract_id)


async def create_ticket(
    store: Store,
    principal: Principal,
    ticket_id: str,
    client_id: int,
    priority: str,
    created_at: datetime,
    contract_id: int | None = None,
    fields: TicketFields | None = None,
) -> TicketRecord:
    """Create a ticket (idempotent by id: an identical resend returns the stored ticket; a
    resend with another client, contract, creation time, after-hours flag, channel, subject,
    requester or asset is refused). ``fields`` are in normal form (:func:`ticket_fields_of`).
    A support level or job type outside the contract's scope is refused (FAILED_PRECONDITION).
    A portal token may raise tickets for its client, without a queue or assignee."""
    if not ticket_id:
        raise EffigateError("ticket_id: '' is empty")
    principal.require_client(client_id, "client_id")
    first = normalise_priority(priority)
    _aware("created_at", created_at)
    fields = fields or TicketFields()
    if fields.queue is not None or fields.assignee is not None:
        principal.require_staff("set a ticket's queue or assignee")
    detail = created_detail(
        first, fields.support_level, fields.job_type, fields.queue, fields.assignee, fields.tags
    )
    async with store.transaction(principal) as conn:
        await _require_client_contract(conn, client_id, contract_id)
        scope = await _scope_of_contract(conn, contract_id)
        require_in_scope(scope, "support_level", fields.support_level)
        require_in_scope(scope, "job_type", fields.job_type)
        created = await stored.insert_ticket(
            conn,
            ticket_id,
            client_id,
            contract_id,
            first,
            created_at,
            principal.actor,
            fields,
            detail,
        )
        if created is not None:
            await _reschedule(conn, principal, [created.id])
            return created
        existing = await fetch_ticket(conn, principal, ticket_id)
        sent = (
            client_id,
            contract_id,
            created_at,
            fields.after_hours,
            fields.channel,
            fields.subject,
            fields.requester,
            fields.asset,
        )
        kept = (
            existing.client_id,
            existing.contract_id,
            existing.created_at,
            existing.after_hours,
            existing.channel,
            existing.subject,
            existing.requester,
            existing.asset,
        )
        if kept != sent:
            raise FailedPrecondition(
                "ticket_id",
                ticket_id,
                "already exists with another client, contract, creation time, after-hours"
                " flag, channel, subject, requester or asset",
            )
        return existing


def event_detail(
    kind: str,
    *,
    status: str = "",
    priority: str = "",
    support_level: str = "",
    job_type: str = "",
    assignee: str = "",
    queue: str = "",
    tags: Iterable[str] = (),
) -> str | None:
    """The stored detail of an event of ``kind`` from the request's fields (normal form); an
    input error naming the field when a required one is missing or has no normal form."""
    if kind == "PRIORITY_CHANGED":
        return normalise_priority(priority)
    if kind == "PAUSED":
        return status or DEFAULT_PAUSE_STATUS
    if kind == "SUPPORT_LEVEL_CHANGED":
        level = ticket_fields.support_level(support_level)
        if level is None:
            raise EffigateError("support_level: is required for SUPPORT_LEVEL_CHANGED")
        return level
    if kind == "JOB_TYPE_CHANGED":
        job = ticket_fields.job_type(job_type)
        if job is None:
            raise EffigateError("job_type: is required for JOB_TYPE_CHANGED")
        return job
    if kind == "ASSIGNED":
        return ticket_fields.name(assignee, "assignee")
    if kind == "QUEUE_CHANGED":
        return ticket_fields.name(queue, "queue")
    if kind == "TAGS_CHANGED":
        return ticket_fields.tags_detail(ticket_fields.tags(tags)) or None
    return None


def _check_kind(kind: str, field: str = "kind") -> None:
    if kind not in EVENT_KINDS or kind == "CREATED":
        raise EffigateError(f"{field}: {kind!r} is not one of {', '.join(EVENT_KINDS[1:])}")


#: Events only staff record: where a ticket is worked and by whom is the desk's decision.
STAFF_EVENTS = frozenset({"ASSIGNED", "QUEUE_CHANGED"})


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
    support_level: str = "",
    job_type: str = "",
    assignee: str = "",
    queue: str = "",
    tags: Iterable[str] = (),
) -> TicketRecord:
    """Record one event (idempotent by ``event_id``: a resend with the same ticket, kind, time
    and detail returns the ticket; another is refused) and refold the ticket's stored state.
    ``ASSIGNED`` and ``QUEUE_CHANGED`` are staff's (a portal token: PERMISSION_DENIED).
    ``SUPPORT_LEVEL_CHANGED`` / ``JOB_TYPE_CHANGED`` outside the contract's scope are refused
    (FAILED_PRECONDITION)."""
    _check_kind(kind)
    if kind in STAFF_EVENTS:
        principal.require_staff(f"record {kind} events")
    detail = event_detail(
        kind,
        status=status,
        priority=priority,
        support_level=support_level,
        job_type=job_type,
        assignee=assignee,
        queue=queue,
        tags=tags,
    )
    async with store.transaction(principal) as conn:
        return await _record(
            conn, principal, ticket_id, [(event_id, kind, occurred_at, detail)], actor
        )


async def apply_events(
    conn: asyncpg.Connection,
    principal: Principal,
    ticket_id: str,
    events: Sequence[tuple[str, str, datetime, str | None]],
) -> TicketRecord:
    """Record ``(event_id, kind, occurred_at, detail)`` events of ticket ``ticket_id`` inside
    the caller's tenant-bound transaction ``conn`` and refold the stored row; the stored
    ticket.

    For other services (routing, assignment): ``detail`` is as :func:`event_detail` stores it
    (``QUEUE_CHANGED``: the queue; ``ASSIGNED``: the agent id, ``None`` or empty: unassigned;
    ``PRIORITY_CHANGED``: a priority; ``SUPPORT_LEVEL_CHANGED``: a level; ``TAGS_CHANGED``:
    the tags comma-joined) and is normalised here. Idempotent by event id (an event already
    stored with the same ticket, kind, time and detail is skipped; another is refused with
    :class:`FailedPrecondition`); a level or job type outside the contract's scope, an
    unknown kind or an instant before the ticket's creation is refused and nothing of the
    call is stored (the caller's transaction decides). The ticket row is locked until the
    transaction ends."""
    prepared = []
    for i, (event_id, kind, occurred_at, detail) in enumerate(events):
        _check_kind(kind, f"events[{i}].kind")
        if kind in STAFF_EVENTS:
            principal.require_staff(f"record {kind} events")
        text = detail or ""
        prepared.append(
            (
                event_id,
                kind,
                occurred_at,
                event_detail(
                    kind,
                    status=text,
                    priority=text,
                    support_level=text,
                    job_type=text,
                    assignee=text,
                    queue=text,
                    tags=ticket_fields.tags_of_detail(detail),
                ),
            )
        )
    return await _record(conn, principal, ticket_id, prepared, "")


async def _record(
    conn: asyncpg.Connection,
    principal: Principal,
    ticket_id: str,
    events: Sequence[Event],
    actor: str,
) -> TicketRecord:
    """Store ``events`` (details in normal form) of one ticket and refold it."""
    ticket = visible(principal, ticket_id, await stored.lock_ticket(conn, ticket_id))
    scope = await _scope_of_contract(conn, ticket.contract_id)
    inserted_any = False
    for event_id, kind, occurred_at, detail in events:
        if not event_id:
            raise EffigateError("event_id: '' is empty")
        _aware("occurred_at", occurred_at)
        if occurred_at < ticket.created_at:
            raise EffigateError(
                f"occurred_at: {occurred_at.isoformat()!r} is before the ticket was created"
                f" ({ticket.created_at.isoformat()})"
            )
        if kind == "SUPPORT_LEVEL_CHANGED":
            require_in_scope(scope, "support_level", detail)
        elif kind == "JOB_TYPE_CHANGED":
            require_in_scope(scope, "job_type", detail)
        inserted = await stored.insert_event(
            conn, event_id, ticket_id, kind, occurred_at, actor or principal.actor, detail
        )
        if not inserted and not await stored.same_event(
            conn, event_id, ticket_id, kind, occurred_at, detail
        ):
            raise FailedPrecondition(
                "event_id", event_id, "already exists with another ticket, kind, time or detail"
            )
        inserted_any = inserted_any or inserted
    if not inserted_any:
        return ticket
    line = fold(await stored.load_events(conn, ticket.id), ticket)
    record = await stored.store_state(conn, ticket.id, line.state())
    await _reschedule(conn, principal, [ticket.id])
    return record


async def _reschedule(conn: asyncpg.Connection, principal: Principal, ids: list[str]) -> None:
    """Move the SLA transitions of tickets ``ids`` in the caller's transaction."""
    from effigate_engine.service import sla_schedule, wall_clock

    await sla_schedule.reschedule(conn, principal.tenant_id, ids, wall_clock.now())


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
    created: tuple[datetime, datetime] | None = None,
) -> pa.Table:
    """Stored tickets (of one client, or the given ids) folded into the SLA engine's
    :data:`~effigate_engine.sla.schemas.TICKETS` batch. With ``as_of``, as known then: only
    events at or before it are folded (a priority changed later is not, a reopening later is
    not), and a client's tickets created after it are left out. With ``created``
    (``[from, before)``), only the tickets created in that window."""
    if principal.is_portal:
        client_id = principal.client_id
    return timelines_table(await stored.load_histories(conn, client_id, ticket_ids, as_of, created))


async def ingest_rows(
    store: Store, principal: Principal, kind: str, table: pa.Table, skip_invalid_rows: bool
) -> IngestResult:
    """Store a batch of tickets (``kind`` ``"tickets"``) or ticket events (``"events"``), the
    columns of :data:`~effigate_engine.store.bulk.STORED_TICKETS` /
    :data:`~effigate_engine.store.bulk.STORED_TICKET_EVENTS`, upserted by id (staff only).
    A ticket's support level or job type outside its contract's scope (a ticket row, or a
    ``SUPPORT_LEVEL_CHANGED`` / ``JOB_TYPE_CHANGED`` event row) is an invalid row. With
    ``skip_invalid_rows`` the rows that cannot be stored are returned, the rest stored."""
    principal.require_staff("bulk-ingest tickets")
    spec = STORED_TICKETS if kind == "tickets" else STORED_TICKET_EVENTS
    check = await _bulk_check(store, principal, kind, table)
    async with store.adbc() as conn:
        result = await ingest(conn, spec, principal.key, table, skip_invalid_rows, check)
    from effigate_engine.service import sla_schedule

    # the SLA schedule of the tickets stored, in transactions of their own right after
    # (docs/events-scheduler.md: the bulk path is the one that is not one transaction)
    ids = pc.unique(pc.cast(table.column(_ID_COLUMN[kind]), pa.string())).to_pylist()
    await sla_schedule.reschedule_in_chunks(store, principal, [i for i in ids if i])
    return result


#: The column naming the ticket of a bulk row.
_ID_COLUMN = {"tickets": "id", "events": "ticket_id"}


async def _bulk_check(
    store: Store, principal: Principal, kind: str, table: pa.Table
) -> stored_batches.RowCheck | None:
    """The contract-scope check of a bulk batch (``None`` when it cannot refuse any row). A
    column that cannot be read as its type is left to the batch's own checks, which refuse
    the whole batch."""
    names = set(table.column_names)
    if kind == "tickets":
        if "contract_id" not in names or not {"support_level", "job_type"} & names:
            return None
        ids = [c for c in _distinct(table, "contract_id", pa.int64()) if c is not None]
        if not ids:
            return None
        async with store.transaction(principal) as conn:
            scopes = await stored.contract_scopes(conn, ids)
        return ticket_rows_check(scopes)
    if not {"kind", "ticket_id", "detail"} <= names:
        return None
    try:
        kinds = pc.cast(table.column("kind"), pa.string())
    except ARROW_INPUT_ERRORS:
        return None
    scoped = pc.fill_null(
        pc.is_in(kinds, value_set=pa.array(["SUPPORT_LEVEL_CHANGED", "JOB_TYPE_CHANGED"])), False
    )
    if not pc.any(scoped).as_py():
        return None
    ticket_ids = _distinct(table.filter(scoped), "ticket_id", pa.string())
    async with store.transaction(principal) as conn:
        scopes = await stored.ticket_scopes(conn, [t for t in ticket_ids if t is not None])
    return event_rows_check(scopes)


def _distinct(table: pa.Table, column: str, kind: pa.DataType) -> list[Any]:
    """The distinct values of ``column`` read as ``kind`` (none when it cannot be)."""
    try:
        return pc.unique(pc.cast(table.column(column), kind)).to_pylist()
    except ARROW_INPUT_ERRORS:
        return []
