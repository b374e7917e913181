"""Prepaid buckets and what-if classification: a bucket contract's balance at an instant, and
caller-given time logs classified under a stored contract.

Seconds are burn-weighted where a bucket's burn factors apply; instants are timezone-aware.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from effigate_engine.billing.buckets import BucketStatement, bucket_statement
from effigate_engine.calendar_set import Horizon
from effigate_engine.errors import BillingError, EffigateError
from effigate_engine.instants import ARROW_INPUT_ERRORS
from effigate_engine.ratecard.classify import ContractBook, classify
from effigate_engine.ratecard.periods import local_midnight
from effigate_engine.ratecard.schemas import TIME_LOGS, TIME_LOGS_REQUIRED
from effigate_engine.service.context import Principal
from effigate_engine.service.contracts import load_stored
from effigate_engine.service.errors import FailedPrecondition
from effigate_engine.service.invoice_evidence import horizon
from effigate_engine.store import invoices as invoice_store
from effigate_engine.store import timelogs as log_store
from effigate_engine.store.contracts import StoredContract
from effigate_engine.store.database import Store


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class BucketAlertRecord:
    """A low-balance threshold crossed by the work of ``time_log_id`` starting at ``at``;
    ``balance_seconds`` is the (burn-weighted) balance just after."""

    threshold_seconds: int
    balance_seconds: int
    at: datetime
    time_log_id: str


@dataclass(frozen=True)
class BucketBalance:
    """A prepaid bucket's position at instant ``at``, from its approved time logs. Seconds are
    burn-weighted; ``burned + remaining + expired = purchased + top_up``. ``overage_seconds`` is
    work beyond the balance (billed as additional hours); ``invoiced_drawdown_seconds`` is what
    issued invoices drew down (the bucket ledger); ``alerts`` are the low-balance thresholds
    crossed so far, once per crossing."""

    contract_id: int
    at: datetime
    purchased_seconds: int
    top_up_seconds: int
    burned_seconds: int
    remaining_seconds: int
    expired_seconds: int
    overage_seconds: int
    invoiced_drawdown_seconds: int
    low_balance_thresholds_seconds: tuple[int, ...]
    alerts: tuple[BucketAlertRecord, ...] = ()

    @property
    def low_balance(self) -> bool:
        """True when the remaining balance is at or below any low-balance threshold."""
        return any(self.remaining_seconds <= t for t in self.low_balance_thresholds_seconds)


async def bucket_balance(
    store: Store, principal: Principal, contract_id: int, at: datetime | None = None
) -> BucketBalance:
    """The prepaid bucket of a ``BUCKET`` contract at instant ``at`` (default now): purchased,
    top-ups, burned, remaining and expired burn-weighted seconds from its approved billable
    logs in work order, the low-balance alerts crossed, and what issued invoices drew down. A
    portal principal may ask about its own client's contracts only."""
    at = datetime.now(UTC) if at is None else at
    if at.tzinfo is None:
        raise BillingError("at", at.isoformat(), "is naive; give an aware instant")
    async with store.transaction(principal) as conn:
        stored = await load_stored(conn, contract_id, principal)
        row = stored.record
        if row.contract_type != "BUCKET":
            raise FailedPrecondition(
                "contract.contract_type", row.contract_type, "has no prepaid bucket"
            )
        if row.status == "DRAFT":
            raise FailedPrecondition("contract.status", "DRAFT", "is not activated yet")
        contract = stored.contract
        logs = await drawing_logs(conn, stored, at)
        drawn = await invoice_store.bucket_drawn(conn, contract_id)

    def compute() -> BucketBalance:
        assert contract.bucket is not None
        thresholds = tuple(sorted(contract.bucket.low_balance_seconds))
        st = statement(stored, logs, at)
        return BucketBalance(
            contract_id,
            at,
            st.purchased_seconds,
            st.top_up_seconds,
            st.burned_seconds,
            st.remaining_seconds,
            st.expired_seconds,
            st.overage_seconds,
            int(drawn),
            thresholds,
            tuple(
                BucketAlertRecord(a.threshold_seconds, a.balance_seconds, _utc(a.at), a.log_id)
                for a in st.alerts
            ),
        )

    return await asyncio.to_thread(compute)


async def drawing_logs(conn: Any, stored: StoredContract, before: datetime) -> pa.Table | None:
    """The approved billable logs of a bucket contract that started before ``before``, in
    work order (what its bucket burned by then); ``None`` when there are none."""
    contract = stored.contract
    start_bound = local_midnight(contract.start, contract.zone)
    return await log_store.bucket_logs(conn, stored.record.id, before, start_bound)


def statement(stored: StoredContract, logs: pa.Table | None, at: datetime) -> BucketStatement:
    """The bucket statement of a stored ``BUCKET`` contract at ``at`` from its drawing
    ``logs`` (:func:`drawing_logs`): CPU work, run it in a worker thread."""
    contract = stored.contract
    classification = None
    if logs is not None:
        book = ContractBook([contract], horizon(contract, at.date(), logs))
        classification = classify(book, logs)
    return bucket_statement(contract, classification, int(at.timestamp()))


def caller_logs(logs: pa.Table) -> pa.Table:
    """A caller's time-log batch in the billing ``TIME_LOGS`` types, every required column
    present and non-null, instants within the calendars' horizon; anything else is an input
    error naming the column (and the row)."""
    for name in TIME_LOGS_REQUIRED:
        if name not in logs.column_names:
            raise EffigateError(f"logs.{name}: is a required time-log column")
    if logs.num_rows == 0:
        raise EffigateError("logs: is an empty batch")
    horizon = Horizon()
    columns, names = [], []
    for spec in TIME_LOGS:
        if spec.name not in logs.column_names:
            continue
        column = logs.column(spec.name)
        try:
            column = column.cast(spec.type)
        except ARROW_INPUT_ERRORS as exc:
            raise EffigateError(
                f"logs.{spec.name}: {column.type} is not {spec.type} ({exc})"
            ) from exc
        if not spec.nullable and column.null_count:
            row = column.to_pylist().index(None)
            raise EffigateError(f"logs.{spec.name}[{row}]: is required but null")
        if spec.name in ("start", "end"):
            seconds = column.cast(pa.int64()).to_numpy()
            outside = np.flatnonzero((seconds < horizon.start) | (seconds >= horizon.end))
            if outside.size:
                row = int(outside[0])
                raise EffigateError(
                    f"logs.{spec.name}[{row}]: {column[row].as_py().isoformat()} is outside"
                    f" {horizon}"
                )
        columns.append(column)
        names.append(spec.name)
    return pa.table(columns, names=names)


async def classify_logs(
    store: Store, principal: Principal, contract_id: int, logs: pa.Table
) -> pa.Table:
    """Classify caller-given time logs (the billing ``LOGS`` columns) under a stored contract's
    frozen rate card and calendar; returns the per-log results (``LOG_RESULTS``). Nothing is
    read from or written to the stored time logs: a what-if, or a check before ingest."""
    principal.require_staff("classify time logs")
    async with store.transaction(principal) as conn:
        contract = (await load_stored(conn, contract_id)).contract
    ids = pa.array([contract.id] * logs.num_rows, pa.string())
    if "contract_id" in logs.column_names:
        logs = logs.set_column(logs.column_names.index("contract_id"), "contract_id", ids)
    else:
        logs = logs.append_column("contract_id", ids)
    logs = caller_logs(logs)
    until = contract.end or date.today()

    def run() -> pa.Table:
        book = ContractBook([contract], horizon(contract, until, logs))
        return classify(book, logs).results

    return await asyncio.to_thread(run)


__all__ = ["BucketAlertRecord", "BucketBalance", "bucket_balance", "caller_logs", "classify_logs"]
