"""Tickets and their events: the SQL of the ticket aggregate.

A ticket row holds its state as last folded from its events (``service.tickets.fold``);
:func:`load_histories` returns tickets with their events so a caller can fold them as known at
any instant. Every function runs on a connection inside a tenant-bound transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from effigate_engine.store.tenant import TenantKey, verify_bound

#: One event of a ticket: ``(event_id, kind, occurred_at, detail)``.
Event = tuple[str, str, datetime, str | None]


@dataclass(frozen=True)
class TicketRecord:
    """A stored ticket (instants are aware UTC datetimes)."""

    id: str
    client_id: int
    contract_id: int | None
    priority: str
    status: str
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    support_level: str | None = None
    job_type: str | None = None
    after_hours: bool = False
    channel: str | None = None
    subject: str | None = None
    requester: str | None = None
    queue: str | None = None
    assignee: str | None = None
    asset: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TicketFields:
    """What a new ticket is created with besides its id, client, contract, priority and creation
    instant, in normal form (:mod:`effigate_engine.ticket_fields`)."""

    support_level: str | None = None
    job_type: str | None = None
    after_hours: bool = False
    channel: str | None = None
    subject: str | None = None
    requester: str | None = None
    queue: str | None = None
    assignee: str | None = None
    asset: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoldedState:
    """A ticket's state as folded from its events: what :func:`store_state` writes."""

    priority: str
    status: str
    first_response_at: datetime | None
    resolved_at: datetime | None
    support_level: str | None
    job_type: str | None
    queue: str | None
    assignee: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class TicketHistory:
    """A stored ticket with its events (those known at the instant asked for), unordered."""

    ticket: TicketRecord
    events: list[Event]


def ticket_record(row: asyncpg.Record) -> TicketRecord:
    """The :class:`TicketRecord` of a ``tickets`` row."""
    return TicketRecord(
        row["id"],
        row["client_id"],
        row["contract_id"],
        row["priority"],
        row["status"],
        row["created_at"],
        row["first_response_at"],
        row["resolved_at"],
        row["support_level"],
        row["job_type"],
        row["after_hours"],
        row["channel"],
        row["subject"],
        row["requester"],
        row["queue"],
        row["assignee"],
        row["asset"],
        tuple(row["tags"] or ()),
    )


async def load_ticket(conn: asyncpg.Connection, ticket_id: str) -> TicketRecord | None:
    """The stored ticket ``ticket_id``."""
    row = await conn.fetchrow("SELECT * FROM tickets WHERE id = $1", ticket_id)
    return None if row is None else ticket_record(row)


async def insert_ticket(
    conn: asyncpg.Connection,
    ticket_id: str,
    client_id: int,
    contract_id: int | None,
    priority: str,
    created_at: datetime,
    actor: str,
    fields: TicketFields = TicketFields(),
    created_detail: str | None = None,
) -> TicketRecord | None:
    """Store a new open ticket and its ``CREATED`` event (its detail ``created_detail``, by
    default the plain ``priority``); ``None`` (and nothing stored) when the id is taken."""
    row = await conn.fetchrow(
        """INSERT INTO tickets (id, client_id, contract_id, priority, status, created_at,
               support_level, job_type, after_hours, channel, subject, requester, queue,
               assignee, asset, tags)
           VALUES ($1, $2, $3, $4, 'OPEN', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           ON CONFLICT (tenant_id, id) DO NOTHING RETURNING *""",
        ticket_id,
        client_id,
        contract_id,
        priority,
        created_at,
        fields.support_level,
        fields.job_type,
        fields.after_hours,
        fields.channel,
        fields.subject,
        fields.requester,
        fields.queue,
        fields.assignee,
        fields.asset,
        list(fields.tags),
    )
    if row is None:
        return None
    await conn.execute(
        """INSERT INTO ticket_events (id, ticket_id, kind, occurred_at, actor, detail)
           VALUES ($1, $2, 'CREATED', $3, $4, $5) ON CONFLICT (tenant_id, id) DO NOTHING""",
        f"{ticket_id}:created",
        ticket_id,
        created_at,
        actor,
        priority if created_detail is None else created_detail,
    )
    return ticket_record(row)


async def insert_event(
    conn: asyncpg.Connection,
    event_id: str,
    ticket_id: str,
    kind: str,
    occurred_at: datetime,
    actor: str,
    detail: str | None,
) -> bool:
    """Store an event; ``False`` (nothing stored) when its id is taken."""
    inserted = await conn.fetchval(
        """INSERT INTO ticket_events (id, ticket_id, kind, occurred_at, actor, detail)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, id) DO NOTHING
           RETURNING 1""",
        event_id,
        ticket_id,
        kind,
        occurred_at,
        actor,
        detail,
    )
    return inserted is not None


async def same_event(
    conn: asyncpg.Connection,
    event_id: str,
    ticket_id: str,
    kind: str,
    occurred_at: datetime,
    detail: str | None,
) -> bool:
    """Whether the stored event ``event_id`` has this ticket, kind, time and detail."""
    return bool(
        await conn.fetchval(
            "SELECT ticket_id = $2 AND kind = $3 AND occurred_at = $4"
            " AND detail IS NOT DISTINCT FROM $5 FROM ticket_events WHERE id = $1",
            event_id,
            ticket_id,
            kind,
            occurred_at,
            detail,
        )
    )


async def load_events(conn: asyncpg.Connection, ticket_id: str) -> list[Event]:
    """Every event of ticket ``ticket_id``, unordered."""
    rows = await conn.fetch(
        "SELECT id, kind, occurred_at, detail FROM ticket_events WHERE ticket_id = $1",
        ticket_id,
    )
    return [(r["id"], r["kind"], r["occurred_at"], r["detail"]) for r in rows]


async def event_instants(
    conn: asyncpg.Connection, ticket_id: str, until: datetime
) -> list[datetime]:
    """The instants of ticket ``ticket_id``'s events at or before ``until``."""
    rows = await conn.fetch(
        "SELECT occurred_at FROM ticket_events WHERE ticket_id = $1 AND occurred_at <= $2",
        ticket_id,
        until,
    )
    return [r["occurred_at"] for r in rows]


async def store_state(conn: asyncpg.Connection, ticket_id: str, state: FoldedState) -> TicketRecord:
    """Write a ticket's folded state; the stored ticket."""
    row = await conn.fetchrow(
        """UPDATE tickets SET priority = $2, status = $3, first_response_at = $4,
               resolved_at = $5, support_level = $6, job_type = $7, queue = $8,
               assignee = $9, tags = $10
           WHERE id = $1 RETURNING *""",
        ticket_id,
        state.priority,
        state.status,
        state.first_response_at,
        state.resolved_at,
        state.support_level,
        state.job_type,
        state.queue,
        state.assignee,
        list(state.tags),
    )
    return ticket_record(row)


async def lock_ticket(conn: asyncpg.Connection, ticket_id: str) -> TicketRecord | None:
    """The stored ticket ``ticket_id``, locked until the transaction ends (events of one
    ticket recorded concurrently are folded one after the other)."""
    row = await conn.fetchrow("SELECT * FROM tickets WHERE id = $1 FOR UPDATE", ticket_id)
    return None if row is None else ticket_record(row)


@dataclass(frozen=True)
class Scope:
    """What a contract's terms allow a ticket to carry (``None``: anything)."""

    contract_id: int
    support_levels: tuple[str, ...] | None
    job_types: tuple[str, ...] | None


async def contract_scopes(
    conn: asyncpg.Connection, contract_ids: Sequence[int]
) -> dict[int, Scope]:
    """The scope (``terms.scope.support_levels`` / ``job_types``) of each of the tenant's
    contracts among ``contract_ids``; contracts that are not the tenant's are left out."""
    rows = await conn.fetch(
        """SELECT id, terms -> 'scope' -> 'support_levels' AS levels,
                  terms -> 'scope' -> 'job_types' AS job_types
           FROM contracts WHERE id = ANY($1::bigint[])""",
        list(contract_ids),
    )
    return {r["id"]: Scope(r["id"], _strings(r["levels"]), _strings(r["job_types"])) for r in rows}


async def ticket_scopes(conn: asyncpg.Connection, ticket_ids: Sequence[str]) -> dict[str, Scope]:
    """The contract scope of each of the tenant's tickets among ``ticket_ids`` that has a
    contract (tickets without one are left out)."""
    rows = await conn.fetch(
        """SELECT t.id AS ticket_id, c.id, c.terms -> 'scope' -> 'support_levels' AS levels,
                  c.terms -> 'scope' -> 'job_types' AS job_types
           FROM tickets t JOIN contracts c ON c.tenant_id = t.tenant_id AND c.id = t.contract_id
           WHERE t.id = ANY($1::text[])""",
        list(ticket_ids),
    )
    return {
        r["ticket_id"]: Scope(r["id"], _strings(r["levels"]), _strings(r["job_types"]))
        for r in rows
    }


def _strings(value: str | None) -> tuple[str, ...] | None:
    """A JSON list of strings (asyncpg returns ``jsonb`` as text); ``None`` when absent."""
    if value is None:
        return None
    parsed = json.loads(value)
    return None if parsed is None else tuple(str(v) for v in parsed)


async def load_ticket_page(
    conn: asyncpg.Connection, client_id: int | None, limit: int, after_id: str
) -> list[TicketRecord]:
    """Up to ``limit`` tickets (of ``client_id`` if given) with ids after ``after_id``,
    by id (bytewise)."""
    rows = await conn.fetch(
        """SELECT * FROM tickets WHERE id > $1 AND ($2::bigint IS NULL OR client_id = $2)
           ORDER BY id LIMIT $3""",
        after_id,
        client_id,
        limit,
    )
    return [ticket_record(r) for r in rows]


async def load_histories(
    conn: asyncpg.Connection,
    client_id: int | None = None,
    ticket_ids: Sequence[str] | None = None,
    as_of: datetime | None = None,
    created: tuple[datetime, datetime] | None = None,
) -> list[TicketHistory]:
    """Stored tickets (of one client, or the given ids), by id, with their events; with
    ``as_of``, only events at or before it, and a client's tickets created after it left
    out; with ``created`` (``[from, before)``), only tickets created in that window."""
    ids = list(ticket_ids) if ticket_ids is not None else None
    since, before = created if created is not None else (None, None)
    where = (
        "($1::bigint IS NULL OR t.client_id = $1) AND ($2::text[] IS NULL OR t.id = ANY($2))"
        " AND ($4::timestamptz IS NULL OR t.created_at >= $4)"
        " AND ($5::timestamptz IS NULL OR t.created_at < $5)"
    )
    tickets = await conn.fetch(
        f"""SELECT t.* FROM tickets t WHERE {where}
            AND ($3::timestamptz IS NULL OR $2::text[] IS NOT NULL OR t.created_at <= $3)
            ORDER BY t.id""",
        client_id,
        ids,
        as_of,
        since,
        before,
    )
    events = await conn.fetch(
        f"""SELECT e.ticket_id, e.id, e.kind, e.occurred_at, e.detail
            FROM ticket_events e JOIN tickets t ON t.tenant_id = e.tenant_id
                 AND t.id = e.ticket_id
            WHERE {where} AND ($3::timestamptz IS NULL OR e.occurred_at <= $3)
            ORDER BY e.ticket_id""",
        client_id,
        ids,
        as_of,
        since,
        before,
    )
    by_ticket: dict[str, list[Event]] = {}
    for e in events:
        by_ticket.setdefault(e["ticket_id"], []).append(
            (e["id"], e["kind"], e["occurred_at"], e["detail"])
        )
    return [TicketHistory(ticket_record(t), by_ticket.get(t["id"], [])) for t in tickets]


async def created_months(conn: asyncpg.Connection, as_of: datetime) -> list[datetime]:
    """The first instants (UTC) of the months in which the tenant's tickets created by
    ``as_of`` were created, in order."""
    rows = await conn.fetch(
        """SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC') AS month
           FROM tickets WHERE created_at <= $1 ORDER BY month""",
        as_of,
    )
    return [r["month"].replace(tzinfo=UTC) for r in rows]


@dataclass(frozen=True)
class StatusInputs:
    """What a ticket's SLA status is computed from, read in one statement
    (:func:`load_status_inputs`): the ticket with its events as known at the instant asked for
    (``None``: no such ticket), the SLA policy asked for or else the one of the ticket's
    contract (``policy_id`` ``None``: neither), its current version (``None``: no live policy
    of that id) and the tenant's calendars key
    (:data:`~effigate_engine.store.catalog.CALENDARS_KEY_SQL`)."""

    history: TicketHistory | None
    policy_id: int | None
    policy_version: int | None
    calendars_key: str


async def load_status_inputs(
    conn: asyncpg.Connection,
    key: TenantKey,
    ticket_id: str,
    as_of: datetime,
    policy_id: int | None,
) -> StatusInputs:
    """:class:`StatusInputs` of ticket ``ticket_id`` at ``as_of``, for the tenant of ``key``'s
    token: one statement on a connection outside any transaction (it binds its own, see
    migration 0010). A token the database refuses raises SQLSTATE 28000, nothing read."""
    row = await conn.fetchrow(
        "SELECT * FROM effigate_ticket_status_inputs($1, $2, $3, $4)",
        key.token,
        ticket_id,
        as_of,
        policy_id,
    )
    verify_bound(row["tenant_id"], key)
    history = None
    if row["id"] is not None:
        events = list(
            zip(
                row["event_ids"] or (),
                row["event_kinds"] or (),
                row["event_times"] or (),
                row["event_details"] or (),
                strict=True,
            )
        )
        history = TicketHistory(ticket_record(row), events)
    return StatusInputs(
        history,
        None if row["policy_id"] is None else int(row["policy_id"]),
        row["policy_version"],
        row["calendars"],
    )
