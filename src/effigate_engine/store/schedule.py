"""The SLA transition schedule (migration 0015): per ticket metric, the next instant it warns,
escalates a step or breaches.

Writers run inside a tenant-bound transaction, the one of the change that moves the schedule.
The firing loop finds which tenants have something due with :func:`due_tenants` (a narrow
function of the owner's: tenants and instants only), binds a transaction to one of them with
:func:`bind_scheduled` and claims its due rows with :func:`claim_due` (``FOR UPDATE SKIP
LOCKED``: two server processes never fire the same row at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from effigate_engine.store.tenant import TenantKey, verify_bound
from effigate_engine.store.tickets import Event, TicketHistory, ticket_record

#: The channel migration 0015's triggers notify (payload: the tenant id) when rows change.
CHANNEL = "effigate_sla_schedule"


@dataclass(frozen=True)
class ScheduleRow:
    """The schedule of one ticket metric: the next transition (``next_at`` ``None``: nothing
    pending), its kind and ladder step, and whether the metric is still running."""

    ticket_id: str
    metric: str
    next_at: datetime | None
    next_kind: str | None
    step: int | None
    running: bool = True


async def write_schedule(
    conn: asyncpg.Connection,
    rows: Sequence[ScheduleRow],
    now: datetime,
    *,
    fired_through: datetime | None = None,
) -> None:
    """Upsert ``rows`` in one statement. A rescheduling (``fired_through`` ``None``) keeps a
    pending transition that is already due (``next_at <= now``, not fired yet: the loop
    evaluates it as of its own instant); a firing (``fired_through`` the instant fired) writes
    the rows as given."""
    if not rows:
        return
    firing = fired_through is not None
    await conn.execute(
        """INSERT INTO sla_schedule AS s (ticket_id, metric, next_at, next_kind, step, running,
                                          fired_through, updated_at)
           SELECT r.ticket_id, r.metric, r.next_at, r.next_kind, r.step, r.running, $7, now()
           FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int[],
                       $6::bool[]) AS r(ticket_id, metric, next_at, next_kind, step, running)
           ON CONFLICT (tenant_id, ticket_id, metric) DO UPDATE SET
               next_at = CASE WHEN NOT $8 AND s.next_at <= $9 THEN s.next_at
                              ELSE EXCLUDED.next_at END,
               next_kind = CASE WHEN NOT $8 AND s.next_at <= $9 THEN s.next_kind
                                ELSE EXCLUDED.next_kind END,
               step = CASE WHEN NOT $8 AND s.next_at <= $9 THEN s.step ELSE EXCLUDED.step END,
               running = EXCLUDED.running,
               fired_through = coalesce(EXCLUDED.fired_through, s.fired_through),
               updated_at = now()""",
        [r.ticket_id for r in rows],
        [r.metric for r in rows],
        [r.next_at for r in rows],
        [r.next_kind for r in rows],
        [r.step for r in rows],
        [r.running for r in rows],
        fired_through,
        firing,
        now,
    )


async def scheduled_metrics(
    conn: asyncpg.Connection, ticket_ids: Sequence[str]
) -> dict[tuple[str, str], bool]:
    """The (ticket, metric) pairs of ``ticket_ids`` the schedule has, and whether each was
    running when last scheduled."""
    rows = await conn.fetch(
        """SELECT s.ticket_id, s.metric, s.running FROM unnest($1::text[]) AS i(id)
           JOIN sla_schedule s ON s.tenant_id = (SELECT effigate_current_tenant())
                AND s.ticket_id = i.id""",
        list(ticket_ids),
    )
    return {(r["ticket_id"], r["metric"]): bool(r["running"]) for r in rows}


async def open_ticket_ids(conn: asyncpg.Connection) -> list[str]:
    """Every ticket of the tenant with a metric still running (what a policy or calendar change
    or a Recompute reschedules), by id."""
    rows = await conn.fetch(
        "SELECT DISTINCT ticket_id FROM sla_schedule WHERE running ORDER BY ticket_id"
    )
    return [r["ticket_id"] for r in rows]


async def unresolved_ticket_ids(conn: asyncpg.Connection) -> list[str]:
    """Every ticket of the tenant not resolved (a schedule is built for them), by id."""
    rows = await conn.fetch("SELECT id FROM tickets WHERE resolved_at IS NULL ORDER BY id")
    return [r["id"] for r in rows]


async def ticket_policies(
    conn: asyncpg.Connection, ticket_ids: Sequence[str]
) -> dict[str, tuple[int, int | None]]:
    """Per ticket: its client and the SLA policy of its contract (``None``: none)."""
    rows = await conn.fetch(
        """SELECT t.id, t.client_id, c.sla_policy_id FROM unnest($1::text[]) AS i(id)
           JOIN tickets t ON t.tenant_id = (SELECT effigate_current_tenant()) AND t.id = i.id
           LEFT JOIN contracts c ON c.tenant_id = t.tenant_id AND c.id = t.contract_id""",
        list(ticket_ids),
    )
    return {
        r["id"]: (
            int(r["client_id"]),
            None if r["sla_policy_id"] is None else int(r["sla_policy_id"]),
        )
        for r in rows
    }


async def known_keys(conn: asyncpg.Connection, dedupe_keys: Sequence[str]) -> set[str]:
    """Which of ``dedupe_keys`` the tenant's outbox already holds."""
    if not dedupe_keys:
        return set()
    rows = await conn.fetch(
        """SELECT e.dedupe_key FROM unnest($1::text[]) AS k(key)
           JOIN events e ON e.tenant_id = (SELECT effigate_current_tenant())
                AND e.dedupe_key = k.key""",
        list(dedupe_keys),
    )
    return {r["dedupe_key"] for r in rows}


@dataclass(frozen=True)
class DueRow:
    """A claimed due transition: ticket, metric and the instant it is due."""

    ticket_id: str
    metric: str
    due_at: datetime


async def claim_due(conn: asyncpg.Connection, until: datetime, limit: int) -> list[DueRow]:
    """Lock and return up to ``limit`` of the tenant's rows due at or before ``until``, earliest
    first; rows another transaction holds are skipped."""
    rows = await conn.fetch(
        """SELECT ticket_id, metric, next_at FROM sla_schedule
           WHERE next_at IS NOT NULL AND next_at <= $1
           ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        until,
        limit,
    )
    return [DueRow(r["ticket_id"], r["metric"], r["next_at"]) for r in rows]


async def due_tenants(
    conn: asyncpg.Connection, until: datetime, limit: int
) -> list[tuple[UUID, datetime]]:
    """(tenant, instant) pairs with a transition due at or before ``until``, earliest first, at
    most ``limit``, across tenants (no ticket of any tenant is revealed)."""
    rows = await conn.fetch("SELECT * FROM effigate_sla_due($1, $2)", until, limit)
    return [(r["tenant_id"], r["next_at"]) for r in rows]


async def overdue_tenants(conn: asyncpg.Connection, at: datetime) -> list[UUID]:
    """The tenants with an issued invoice past due at ``at`` and not settled (ids only)."""
    return [r[0] for r in await conn.fetch("SELECT * FROM effigate_overdue_tenants($1)", at)]


async def bind_scheduled(conn: asyncpg.Connection, tenant_id: UUID) -> UUID:
    """Bind the current transaction to ``tenant_id`` for the firing loop (only while the tenant
    has a pending SLA transition or an overdue invoice; SQLSTATE 28000 otherwise)."""
    if not conn.is_in_transaction():
        raise RuntimeError("bind outside a transaction would not last; open one first")
    bound = await conn.fetchval("SELECT effigate_bind_scheduled($1::uuid)", str(tenant_id))
    return verify_bound(bound, TenantKey(tenant_id))


async def listen(dsn: str, on_change: Callable[[str], None]) -> asyncpg.Connection:
    """A connection of its own at ``dsn`` listening on :data:`CHANNEL`; ``on_change`` is called
    with the tenant id (text) of every committed schedule change. Close it to stop."""
    conn = await asyncpg.connect(dsn)
    await conn.add_listener(CHANNEL, lambda *args: on_change(str(args[-1])))
    return conn


async def load_histories_by_ids(
    conn: asyncpg.Connection, ticket_ids: Sequence[str]
) -> list[TicketHistory]:
    """The tickets ``ticket_ids`` (those that exist), by id, with all their events: two
    statements that look each id up by its key (thousands of ids at once stay index lookups,
    where a list compared row by row would scan every ticket)."""
    ids = sorted(set(ticket_ids))
    tickets = await conn.fetch(
        """SELECT t.* FROM unnest($1::text[]) AS i(id)
           JOIN tickets t ON t.tenant_id = (SELECT effigate_current_tenant()) AND t.id = i.id
           ORDER BY t.id""",
        ids,
    )
    events = await conn.fetch(
        """SELECT e.ticket_id, e.id, e.kind, e.occurred_at, e.detail
           FROM unnest($1::text[]) AS i(id)
           JOIN ticket_events e ON e.tenant_id = (SELECT effigate_current_tenant())
                AND e.ticket_id = i.id""",
        ids,
    )
    by_ticket: dict[str, list[Event]] = {}
    for e in events:
        by_ticket.setdefault(e["ticket_id"], []).append(
            (e["id"], e["kind"], e["occurred_at"], e["detail"])
        )
    return [TicketHistory(ticket_record(t), by_ticket.get(t["id"], [])) for t in tickets]
