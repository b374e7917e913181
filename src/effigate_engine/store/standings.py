"""SLA standings loaded back from a scale-out job (migration 0017), the tenant-wide reads a
dataset export takes besides the aggregates' own (breach records), and the owner's list of
tenants. Standings and breach reads run on a connection inside a tenant-bound transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from effigate_engine.store.errors import StoreError

#: The columns of a standing, in the order :func:`upsert_standings` takes them.
STANDING_COLUMNS = (
    "ticket_id",
    "metric",
    "status",
    "deadline",
    "elapsed_seconds",
    "remaining_seconds",
    "stopped_at",
    "escalation_level",
    "policy",
    "evaluated_at",
)

#: One standing: the values of :data:`STANDING_COLUMNS` (instants aware, seconds integers).
StandingRow = tuple[str, str, str, datetime | None, int, int, datetime | None, int, str, datetime]

_STAGING = "sla_standings_load"

_UPSERT_SQL = (
    f"INSERT INTO sla_standings ({', '.join(STANDING_COLUMNS)})"
    f" SELECT {', '.join(STANDING_COLUMNS)} FROM {_STAGING}"
    " ON CONFLICT (tenant_id, ticket_id, metric) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in STANDING_COLUMNS[2:])
    + ", loaded_at = now()"
    " WHERE sla_standings.evaluated_at <= EXCLUDED.evaluated_at"
    " RETURNING (xmax = 0) AS inserted"
)
_COUNTED_UPSERT_SQL = (
    f"WITH done AS ({_UPSERT_SQL})"
    " SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) AS stored FROM done"
)


@dataclass(frozen=True)
class Upserted:
    """What one upsert did: rows inserted, rows replaced (by a result evaluated at the same or
    a later instant), and rows left as they were (a newer result is stored)."""

    inserted: int
    replaced: int
    kept: int


async def upsert_standings(conn: asyncpg.Connection, rows: Sequence[StandingRow]) -> Upserted:
    """Store ``rows`` (one per ticket and metric) in the caller's transaction: COPY into a
    temporary table dropped at commit, then one upsert that replaces a stored standing only
    with one evaluated at the same or a later instant. A ticket the tenant does not have is a
    :class:`~effigate_engine.store.errors.StoreError` naming it (the caller's transaction
    then stores nothing)."""
    await conn.execute(
        f'CREATE TEMPORARY TABLE {_STAGING} (ticket_id text COLLATE "C", metric text,'
        " status text, deadline timestamptz, elapsed_seconds bigint, remaining_seconds bigint,"
        " stopped_at timestamptz, escalation_level integer, policy text,"
        " evaluated_at timestamptz) ON COMMIT DROP"
    )
    await conn.copy_records_to_table(_STAGING, records=rows, columns=list(STANDING_COLUMNS))
    unknown = await conn.fetchval(
        f"SELECT s.ticket_id FROM {_STAGING} s WHERE NOT EXISTS"
        " (SELECT 1 FROM tickets t WHERE t.id = s.ticket_id) ORDER BY s.ticket_id LIMIT 1"
    )
    if unknown is not None:
        raise StoreError("sla_standings.ticket_id", unknown, "is not a ticket of this tenant")
    done = await conn.fetchrow(_COUNTED_UPSERT_SQL)
    inserted, stored = int(done["inserted"]), int(done["stored"])
    return Upserted(inserted, stored - inserted, len(rows) - stored)


async def load_standings(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The tenant's standings (the :data:`STANDING_COLUMNS`), by ticket and metric."""
    return await conn.fetch(
        f"SELECT {', '.join(STANDING_COLUMNS)} FROM sla_standings ORDER BY ticket_id, metric"
    )


async def tenant_breaches(conn: asyncpg.Connection, until: datetime | None) -> list[dict[str, Any]]:
    """The tenant's breach records breached by ``until`` (every one when ``None``) in
    (breached at, id) order, each with its ticket's priority (``ticket_priority``): the rows
    :func:`~effigate_engine.store.invoices.settlement_inputs` gives for one contract."""
    rows = await conn.fetch(
        "SELECT b.id, b.ticket_id, b.contract_id, b.metric, b.breached_at, b.evidence,"
        " t.priority AS ticket_priority FROM breach_records b"
        " LEFT JOIN tickets t ON t.tenant_id = b.tenant_id AND t.id = b.ticket_id"
        " WHERE $1::timestamptz IS NULL OR b.breached_at <= $1"
        " ORDER BY b.breached_at, b.id",
        until,
    )
    return [dict(r) for r in rows]


async def tenant_ids(admin: asyncpg.Connection) -> list[UUID]:
    """Every tenant's id, sorted (the owner's connection: ``effigate_tenant_ids``)."""
    rows = await admin.fetch("SELECT * FROM effigate_tenant_ids() AS t(id)")
    return [r["id"] for r in rows]
