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
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from effigate_engine.errors import BillingError, EffigateError
from effigate_engine.ratecard.periods import Period
from effigate_engine.service import bucket_events
from effigate_engine.service.context import Principal
from effigate_engine.service.contracts import audit, load_stored
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.store import periods as period_store
from effigate_engine.store import timelogs as log_store
from effigate_engine.store.batches import (
    REJECTED_ROWS,
    STORED_TIME_LOGS,
    IngestResult,
    prepare_batch,
    split_batch,
)
from effigate_engine.store.bulk import ingest, run_adbc
from effigate_engine.store.contracts import StoredContract
from effigate_engine.store.database import Store
from effigate_engine.store.errors import InvariantViolation, StoreError
from effigate_engine.store.periods import PeriodRecord

APPROVAL_STATES = ("PENDING", "APPROVED", "REJECTED")
_READ_ONLY = ("closed billing period", "issued invoice", "is CLOSED")

#: The time-log columns a caller submits: the store's, without the approval state (a new or
#: changed log is ``PENDING``; an unchanged resend keeps its state, see
#: :func:`ingest_time_logs`).
SUBMITTED_TIME_LOGS = pa.schema([f for f in STORED_TIME_LOGS.schema if f.name != "approval_state"])


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
            result = await run_adbc(conn, log_store.ingest_keeping_approval, principal.key, batch)
        else:
            result = await ingest(conn, STORED_TIME_LOGS, principal.key, batch)
    if not keep:
        # logs stored already APPROVED drew their buckets down; the bulk COPY ran on its own
        # connection, so their crossings are announced in the next transaction (once each
        # by their keys; an approval of the contract's logs announces any left over)
        approved = [
            log_id
            for log_id, state in zip(
                batch.column("id").to_pylist(),
                batch.column("approval_state").to_pylist(),
                strict=True,
            )
            if state == "APPROVED"
        ]
        if approved:
            async with store.transaction(principal) as tx:
                await bucket_events.announce_for_logs(tx, approved, datetime.now(UTC))
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
            return split_batch(STORED_TIME_LOGS, logs)
        batch = prepare_batch(STORED_TIME_LOGS, logs)
    except StoreError as exc:
        raise EffigateError(str(exc)) from None
    return batch, REJECTED_ROWS.empty_table()


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
        found = await log_store.stored_log_ids(conn, ids)
        for i, log_id in enumerate(log_ids):
            if log_id not in found:
                raise NotFound(f"log_ids[{i}]", log_id, "is not a time log of this tenant")
        changed = await log_store.set_approval(conn, ids, state)
        if changed and state == "APPROVED":
            # approved logs draw the bucket down: its crossings are announced with them
            await bucket_events.announce_for_logs(conn, changed, datetime.now(UTC))
        if changed:
            await audit(
                conn,
                principal,
                f"time_logs.{state.lower()}",
                "time_logs",
                len(changed),
                {"ids": sorted(changed)[:100]},
            )
    return len(changed)


def cycle_period(stored: StoredContract, day: date) -> tuple[Period, tuple[int, int]]:
    """The billing period of a stored contract holding local date ``day`` and its bounds
    (epoch seconds); a ``DRAFT`` contract or a day before its start is refused."""
    contract_id = stored.record.id
    if stored.record.status == "DRAFT":
        raise FailedPrecondition(
            "contract.status", "DRAFT", f"contract {contract_id} is not activated yet"
        )
    contract = stored.contract
    if day < contract.start:
        raise FailedPrecondition(
            "period_start", day.isoformat(), f"is before contract {contract_id} starts"
        )
    period = contract.cycle.period_of(day)
    return period, period.bounds(contract.zone)


async def lock_period(conn: Any, contract_id: int, bounds: tuple[int, int]) -> Any:
    """The stored row of the contract's period spanning ``bounds``, created (``OPEN``) if
    missing, locked until the transaction ends; a stored row whose end differs from the
    cycle's is refused."""
    row = await period_store.lock_period(conn, contract_id, bounds)
    end = datetime.fromtimestamp(bounds[1], UTC)
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
        period, bounds = cycle_period(await load_stored(conn, contract_id), period_start)
        row = await lock_period(conn, contract_id, bounds)
        if row["status"] != "CLOSED":
            row = await period_store.close(conn, row["id"])
            await audit(
                conn,
                principal,
                "close_period",
                "billing_period",
                row["id"],
                {"contract_id": contract_id, "start": period.start, "end": period.end},
            )
    return period_store.period_record(row, contract_id, period, bounds)


async def get_period(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> PeriodRecord:
    """The contract's billing period holding local date ``period_start`` (``id`` ``None`` and
    ``OPEN`` when it was never stored)."""
    principal.require_staff("read billing periods")
    async with store.transaction(principal) as conn:
        period, bounds = cycle_period(await load_stored(conn, contract_id), period_start)
        row = await period_store.fetch_period(conn, contract_id, bounds)
    return period_store.period_record(row, contract_id, period, bounds)


__all__ = [
    "IngestResult",
    "PeriodRecord",
    "close_period",
    "get_period",
    "ingest_time_logs",
    "set_approval",
]
