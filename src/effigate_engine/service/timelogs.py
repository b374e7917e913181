"""Time logs and billing periods: bulk ingest, approval, closing a period.

Logs are keyed by the caller's id (the idempotency key). Logs overlapping a closed period of
their contract, or on an issued invoice, are read-only: the database refuses the change and it
comes out as :class:`~effigate_engine.service.errors.FailedPrecondition` naming the field.
Periods are the contract's billing cycle (``ratecard/periods.py``): local dates ``[start, end)``
in the contract's zone, stored as the instants of their local midnights.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.errors import BillingError, EffigateError
from effigate_engine.ratecard.periods import Period
from effigate_engine.service.context import Principal, Store
from effigate_engine.service.contracts import audit, fetch_contract_row, load_contract
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.service.records import PeriodRecord
from effigate_engine.store.bulk import (
    REJECTED_ROWS,
    TIME_LOGS,
    IngestResult,
    bind_adbc,
    ingest,
    ingest_adbc,
    prepare_batch,
    run_adbc,
    split_batch,
)
from effigate_engine.store.errors import InvariantViolation, StoreError, from_adbc
from effigate_engine.store.tenant import TenantKey

APPROVAL_STATES = ("PENDING", "APPROVED", "REJECTED")
_READ_ONLY = ("closed billing period", "issued invoice", "is CLOSED")


@asynccontextmanager
async def state_errors() -> AsyncIterator[None]:
    """Turn the database's refusals of changes to closed periods and issued invoices into
    :class:`FailedPrecondition` (same field and message)."""
    try:
        yield
    except InvariantViolation as exc:
        if exc.sqlstate == "23514" and any(text in exc.problem for text in _READ_ONLY):
            raise FailedPrecondition(exc.field, exc.value, exc.problem) from exc
        raise


async def ingest_time_logs(
    store: Store, principal: Principal, logs: pa.Table, skip_invalid_rows: bool = False
) -> IngestResult:
    """Store a batch of time logs (the columns of :data:`effigate_engine.store.bulk.TIME_LOGS`)
    in one transaction, all or nothing, idempotent by log id: an identical resend changes
    nothing, a changed resend of a read-only log (closed period, issued invoice) refuses the
    whole batch. Without an ``approval_state`` column, a new or changed log is ``PENDING`` and
    an unchanged one keeps its stored state (a resend never undoes an approval).

    A row that cannot be stored (a missing value, an instant outside the accepted range, an
    end not after its start) refuses the batch, naming every such row; with
    ``skip_invalid_rows`` the other rows are stored and those are returned in the result's
    ``rejected`` instead."""
    principal.require_staff("ingest time logs")
    keep = "approval_state" not in logs.column_names
    if keep:
        logs = logs.append_column(
            "approval_state", pa.array(["PENDING"] * logs.num_rows, pa.string())
        )
    batch, rejected = await asyncio.to_thread(_checked, logs, skip_invalid_rows)
    async with state_errors(), store.adbc() as conn:
        if keep:
            result = await run_adbc(conn, _ingest_keeping_approval, principal, batch)
        else:
            result = await ingest(conn, TIME_LOGS, principal.key, batch)
    if not skip_invalid_rows:
        return result
    return IngestResult(
        result.received + rejected.num_rows, result.inserted, result.updated, rejected
    )


def _checked(logs: pa.Table, skip_invalid_rows: bool = False) -> tuple[pa.Table, pa.Table]:
    """The batch in the store's schema and the rows set aside (only with
    ``skip_invalid_rows``); refusals (a missing column, a duplicate id, and without
    ``skip_invalid_rows`` any bad row) are the caller's input errors, named by position."""
    try:
        if skip_invalid_rows:
            return split_batch(TIME_LOGS, logs)
        batch = prepare_batch(TIME_LOGS, logs)
    except StoreError as exc:
        raise EffigateError(str(exc)) from None
    return batch, REJECTED_ROWS.empty_table()


def _ingest_keeping_approval(conn: Any, principal: Principal, batch: pa.Table) -> IngestResult:
    """The ingest of ``batch`` on ADBC connection ``conn`` with the stored approval states kept
    (:func:`_keep_approval`), both in one transaction, in one worker thread."""
    batch = _keep_approval(conn, principal.key, batch)
    return ingest_adbc(conn, TIME_LOGS, principal.key, batch)


_STORED_LOGS_SQL = (
    f"SELECT {', '.join(f't.{n}' for n in TIME_LOGS.column_names)} FROM time_logs t"
    " JOIN unnest($1::text[]) AS u(id) ON t.id = u.id FOR UPDATE OF t"
)


def _keep_approval(conn: Any, tenant: TenantKey, batch: pa.Table) -> pa.Table:
    """``batch`` (prepared, every ``approval_state`` ``PENDING``) with the stored state kept
    for each log already stored with the same content (an identical resend changes nothing);
    a new or changed log stays ``PENDING``. Runs in the ingest's transaction on the ADBC
    connection ``conn``, holding the ingest lock and the stored rows (``FOR UPDATE``) until it
    commits, so no approval made in between is lost."""
    import adbc_driver_manager

    try:
        with conn.cursor() as cur:
            bind_adbc(cur, tenant)
            cur.execute(TIME_LOGS.lock_sql(tenant.tenant_id))
            cur.execute(_STORED_LOGS_SQL, parameters=(batch.column("id").to_pylist(),))
            stored = cur.fetch_arrow_table().cast(TIME_LOGS.schema)
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
    for name in TIME_LOGS.column_names[1:-1]:
        sent, kept = batch.column(name), aligned.column(name)
        equal = pc.fill_null(pc.equal(sent, kept), False)
        same = pc.and_(same, pc.or_(equal, pc.and_(pc.is_null(sent), pc.is_null(kept))))
    state = pc.if_else(same, aligned.column("approval_state"), batch.column("approval_state"))
    return batch.set_column(len(TIME_LOGS.columns) - 1, "approval_state", state)


async def set_approval(
    store: Store, principal: Principal, log_ids: Sequence[str], state: str = "APPROVED"
) -> int:
    """Set the approval state (``APPROVED``, ``REJECTED`` or ``PENDING``) of the given logs;
    returns how many changed. An unknown id is :class:`NotFound` naming it (nothing changes)."""
    principal.require_staff("approve time logs")
    if state not in APPROVAL_STATES:
        raise BillingError("state", state, f"is not one of {list(APPROVAL_STATES)}")
    ids = list(dict.fromkeys(log_ids))
    if not ids:
        return 0
    async with state_errors(), store.transaction(principal) as conn:
        found = {
            r["id"]
            for r in await conn.fetch("SELECT id FROM time_logs WHERE id = ANY($1::text[])", ids)
        }
        for i, log_id in enumerate(log_ids):
            if log_id not in found:
                raise NotFound(f"log_ids[{i}]", log_id, "is not a time log of this tenant")
        changed = await conn.fetch(
            "UPDATE time_logs SET approval_state = $2"
            " WHERE id = ANY($1::text[]) AND approval_state <> $2 RETURNING id",
            ids,
            state,
        )
        if changed:
            await audit(
                conn,
                principal,
                f"time_logs.{state.lower()}",
                "time_logs",
                len(changed),
                {"ids": sorted(r["id"] for r in changed)[:100]},
            )
    return len(changed)


def period_record(
    row: asyncpg.Record | None, contract_id: int, period: Period, zone_bounds: tuple[int, int]
) -> PeriodRecord:
    """A :class:`PeriodRecord` of a cycle period, stored (``row``) or not (``None``)."""
    start, end = zone_bounds
    return PeriodRecord(
        id=None if row is None else row["id"],
        contract_id=contract_id,
        ordinal=period.ordinal,
        starts_on=period.start,
        ends_on=period.end,
        starts_at=datetime.fromtimestamp(start, UTC),
        ends_at=datetime.fromtimestamp(end, UTC),
        status="OPEN" if row is None else row["status"],
        closed_at=None if row is None else row["closed_at"],
    )


async def cycle_period(
    conn: asyncpg.Connection, contract_id: int, day: date
) -> tuple[Period, tuple[int, int]]:
    """The contract's billing period holding local date ``day`` and its bounds (epoch s)."""
    row = await fetch_contract_row(conn, contract_id)
    if row["status"] == "DRAFT":
        raise FailedPrecondition(
            "contract.status", "DRAFT", f"contract {contract_id} is not activated yet"
        )
    contract = await load_contract(conn, contract_id)
    if day < contract.start:
        raise FailedPrecondition(
            "period_start", day.isoformat(), f"is before contract {contract_id} starts"
        )
    period = contract.cycle.period_of(day)
    return period, period.bounds(contract.zone)


async def lock_period(
    conn: asyncpg.Connection, contract_id: int, period: Period, bounds: tuple[int, int]
) -> asyncpg.Record:
    """The stored ``billing_periods`` row of a cycle period, created (``OPEN``) if missing,
    locked ``FOR UPDATE`` until the transaction ends."""
    start = datetime.fromtimestamp(bounds[0], UTC)
    end = datetime.fromtimestamp(bounds[1], UTC)
    await conn.execute(
        "INSERT INTO billing_periods (contract_id, starts_at, ends_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, contract_id, starts_at) DO NOTHING",
        contract_id,
        start,
        end,
    )
    row = await conn.fetchrow(
        "SELECT id, status, starts_at, ends_at, closed_at FROM billing_periods"
        " WHERE contract_id = $1 AND starts_at = $2 FOR UPDATE",
        contract_id,
        start,
    )
    if row["ends_at"] != end:
        raise FailedPrecondition(
            "billing_period.ends_at", row["ends_at"], f"differs from the cycle's end {end}"
        )
    return row


async def close_period(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> PeriodRecord:
    """Close the contract's billing period that starts on / contains local date
    ``period_start`` (creating its row if missing): its time logs become read-only. Closing a
    closed period returns it unchanged."""
    principal.require_staff("close billing periods")
    async with store.transaction(principal) as conn:
        period, bounds = await cycle_period(conn, contract_id, period_start)
        row = await lock_period(conn, contract_id, period, bounds)
        if row["status"] != "CLOSED":
            row = await conn.fetchrow(
                "UPDATE billing_periods SET status = 'CLOSED' WHERE id = $1"
                " RETURNING id, status, starts_at, ends_at, closed_at",
                row["id"],
            )
            await audit(
                conn,
                principal,
                "close_period",
                "billing_period",
                row["id"],
                {"contract_id": contract_id, "start": period.start, "end": period.end},
            )
    return period_record(row, contract_id, period, bounds)


async def get_period(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> PeriodRecord:
    """The contract's billing period holding local date ``period_start`` (``id`` ``None`` and
    ``OPEN`` when it was never stored)."""
    principal.require_staff("read billing periods")
    async with store.transaction(principal) as conn:
        period, bounds = await cycle_period(conn, contract_id, period_start)
        row = await conn.fetchrow(
            "SELECT id, status, starts_at, ends_at, closed_at FROM billing_periods"
            " WHERE contract_id = $1 AND starts_at = to_timestamp($2)",
            contract_id,
            bounds[0],
        )
    return period_record(row, contract_id, period, bounds)


__all__ = [
    "IngestResult",
    "close_period",
    "get_period",
    "ingest_time_logs",
    "set_approval",
]
