"""Time logs in the store: ingest keeping approvals, approval changes, and the approved logs an
invoice or a bucket balance prices (as the billing ``TIME_LOGS`` Arrow batch).

Logs are keyed by the caller's id. Logs overlapping a closed period of their contract, or on
an issued invoice, are read-only: the database refuses the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.store.batches import STORED_TIME_LOGS, IngestResult
from effigate_engine.store.bulk import bind_adbc, ingest_adbc
from effigate_engine.store.errors import from_adbc
from effigate_engine.store.tenant import TenantKey

#: Billable types that reach an invoice (non-billable and warranty as zero-priced lines).
BILLED_TYPES = ("BILLABLE", "NON_BILLABLE", "WARRANTY")
#: Priority given to a log stored without one (never a high priority on a default card).
DEFAULT_PRIORITY = "LOW"

_LOG_COLUMNS = (
    "l.id, l.ticket_id, l.task_ref, l.agent, l.support_level, l.job_type, l.priority,"
    " l.started_at, l.ended_at, l.billable_type, l.approval_state"
)

_STORED_LOGS_SQL = (
    f"SELECT {', '.join(f't.{n}' for n in STORED_TIME_LOGS.column_names)} FROM time_logs t"
    " JOIN unnest($1::text[]) AS u(id) ON t.id = u.id FOR UPDATE OF t"
)


def ingest_keeping_approval(conn: Any, tenant: TenantKey, batch: pa.Table) -> IngestResult:
    """Ingest ``batch`` on ADBC connection ``conn`` with the stored approval states kept
    (:func:`keep_approval`), both in one transaction, in the calling (worker) thread."""
    batch = keep_approval(conn, tenant, batch)
    return ingest_adbc(conn, STORED_TIME_LOGS, tenant, batch)


def keep_approval(conn: Any, tenant: TenantKey, batch: pa.Table) -> pa.Table:
    """``batch`` (prepared, every ``approval_state`` ``PENDING``) with the stored state kept
    for each log already stored with the same content (an identical resend changes nothing);
    a new or changed log stays ``PENDING``. Runs in the ingest's transaction on the ADBC
    connection ``conn``, holding the ingest lock and the stored rows (``FOR UPDATE``) until it
    commits, so no approval made in between is lost."""
    import adbc_driver_manager

    try:
        with conn.cursor() as cur:
            bind_adbc(cur, tenant)
            cur.execute(STORED_TIME_LOGS.lock_sql(tenant.tenant_id))
            cur.execute(_STORED_LOGS_SQL, parameters=(batch.column("id").to_pylist(),))
            stored = cur.fetch_arrow_table().cast(STORED_TIME_LOGS.schema)
    except BaseException as exc:
        with suppress(Exception):
            conn.rollback()
        if isinstance(exc, adbc_driver_manager.Error):
            raise from_adbc(exc) from exc
        raise
    if stored.num_rows == 0:
        return batch
    where = pc.index_in(batch.column("id"), value_set=stored.column("id"))
    aligned = stored.take(where)
    same = pc.is_valid(where)
    for name in STORED_TIME_LOGS.column_names[1:-1]:
        sent, kept = batch.column(name), aligned.column(name)
        equal = pc.fill_null(pc.equal(sent, kept), False)
        same = pc.and_(same, pc.or_(equal, pc.and_(pc.is_null(sent), pc.is_null(kept))))
    state = pc.if_else(same, aligned.column("approval_state"), batch.column("approval_state"))
    return batch.set_column(len(STORED_TIME_LOGS.columns) - 1, "approval_state", state)


async def stored_log_ids(conn: asyncpg.Connection, log_ids: Sequence[str]) -> set[str]:
    """The ids among ``log_ids`` the tenant has stored logs of."""
    rows = await conn.fetch("SELECT id FROM time_logs WHERE id = ANY($1::text[])", list(log_ids))
    return {r["id"] for r in rows}


async def set_approval(conn: asyncpg.Connection, log_ids: Sequence[str], state: str) -> list[str]:
    """Set the approval state of the logs ``log_ids``; returns the ids whose state changed."""
    rows = await conn.fetch(
        "UPDATE time_logs SET approval_state = $2"
        " WHERE id = ANY($1::text[]) AND approval_state <> $2 RETURNING id",
        list(log_ids),
        state,
    )
    return [r["id"] for r in rows]


def logs_table(rows: Sequence[asyncpg.Record], contract_id: str) -> pa.Table:
    """Stored time-log rows as the billing ``TIME_LOGS`` Arrow batch."""
    n = len(rows)
    instant = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "log_id": pa.array([r["id"] for r in rows], pa.string()),
            "contract_id": pa.array([contract_id] * n, pa.string()),
            "ticket_id": pa.array([r["ticket_id"] for r in rows], pa.string()),
            "task_id": pa.array([r["task_ref"] for r in rows], pa.string()),
            "agent_id": pa.array([r["agent"] for r in rows], pa.string()),
            "support_level": pa.array([r["support_level"] for r in rows], pa.string()),
            "job_type": pa.array([r["job_type"] for r in rows], pa.string()),
            "priority": pa.array([r["priority"] or DEFAULT_PRIORITY for r in rows], pa.string()),
            "start": pa.array([r["started_at"] for r in rows], instant),
            "end": pa.array([r["ended_at"] for r in rows], instant),
            "billable_type": pa.array([r["billable_type"] for r in rows], pa.string()),
            "approved": pa.array([r["approval_state"] == "APPROVED" for r in rows], pa.bool_()),
        }
    )


#: The approved logs an invoice of the period ``[$3, $4)`` (epoch seconds) prices: those that
#: start before its end and end after ``$5`` (its start, or the contract's start for contracts
#: drawing on an allowance), never before the contract's start ``$6``; and with ``$7`` the late
#: logs: approved logs that ended before that period, are on no invoice that is not void, and
#: started in an earlier period whose invoice already exists (not void), so no other invoice
#: will ever price them. They keep their dates (and so their rates and conditions).
_INVOICE_LOGS_SQL = (
    f"SELECT * FROM (SELECT {_LOG_COLUMNS}, false AS late FROM time_logs l"
    "   WHERE l.contract_id = $1 AND l.approval_state = 'APPROVED'"
    "   AND l.billable_type = ANY($2::text[])"
    "   AND l.started_at < to_timestamp($4) AND l.ended_at > to_timestamp($5)"
    "   AND l.started_at >= to_timestamp($6)"
    f" UNION ALL SELECT {_LOG_COLUMNS}, true FROM time_logs l"
    "   WHERE $7 AND l.contract_id = $1 AND l.approval_state = 'APPROVED'"
    "   AND l.billable_type = ANY($2::text[])"
    "   AND l.ended_at <= to_timestamp($3)"
    "   AND NOT EXISTS (SELECT 1 FROM invoice_line_time_logs e"
    "     JOIN invoices i ON i.id = e.invoice_id"
    "     WHERE e.time_log_id = l.id AND i.status <> 'VOID')"
    "   AND EXISTS (SELECT 1 FROM billing_periods p JOIN invoices i ON i.billing_period_id = p.id"
    "     WHERE p.contract_id = l.contract_id AND i.status <> 'VOID'"
    "     AND l.started_at >= p.starts_at AND l.started_at < p.ends_at)"
    ") AS logs ORDER BY late, started_at, id"
)


async def invoice_logs(
    conn: asyncpg.Connection,
    contract_id: int,
    bounds: tuple[int, int],
    since: int,
    not_before: int,
    *,
    late: bool,
) -> tuple[pa.Table | None, pa.Table | None]:
    """The approved billed-type logs of an invoice of the period spanning ``bounds`` (epoch
    seconds) that end after ``since`` and start at or after ``not_before``, and (with
    ``late``) the late logs of earlier invoiced periods, in one round trip: two batches (each
    ``None`` when empty), in work order."""
    rows = await conn.fetch(
        _INVOICE_LOGS_SQL,
        contract_id,
        list(BILLED_TYPES),
        bounds[0],
        bounds[1],
        since,
        not_before,
        late,
    )
    cid = str(contract_id)
    current = [r for r in rows if not r["late"]]
    earlier = [r for r in rows if r["late"]]
    return (
        logs_table(current, cid) if current else None,
        logs_table(earlier, cid) if earlier else None,
    )


async def bucket_logs(
    conn: asyncpg.Connection, contract_id: int, before: datetime, not_before: int
) -> pa.Table | None:
    """The approved billable logs of a contract starting in ``[not_before, before)`` (epoch
    seconds, an instant), in work order: what its bucket burned by ``before``."""
    rows = await conn.fetch(
        f"SELECT {_LOG_COLUMNS} FROM time_logs l"
        " WHERE l.contract_id = $1 AND l.approval_state = 'APPROVED'"
        " AND l.billable_type = 'BILLABLE' AND l.started_at < $2"
        " AND l.started_at >= to_timestamp($3) ORDER BY l.started_at, l.id",
        contract_id,
        before,
        not_before,
    )
    return logs_table(rows, str(contract_id)) if rows else None


async def bucket_contracts_of(conn: asyncpg.Connection, log_ids: Sequence[str]) -> list[int]:
    """The ``BUCKET`` contracts the given time logs belong to, by id."""
    rows = await conn.fetch(
        "SELECT DISTINCT l.contract_id FROM time_logs l JOIN contracts c ON c.id = l.contract_id"
        " WHERE l.id = ANY($1::text[]) AND c.contract_type = 'BUCKET' ORDER BY l.contract_id",
        list(log_ids),
    )
    return [r["contract_id"] for r in rows]


async def last_log_start(conn: asyncpg.Connection, contract_id: int) -> datetime | None:
    """When the contract's latest approved billable log starts (``None``: none)."""
    return await conn.fetchval(
        "SELECT max(started_at) FROM time_logs WHERE contract_id = $1"
        " AND approval_state = 'APPROVED' AND billable_type = 'BILLABLE'",
        contract_id,
    )
