"""Bucket events: ``BUCKET_LOW_BALANCE`` and ``BUCKET_EXHAUSTED``, appended to the outbox in
the transaction of the drawdown that crosses (docs/events.md).

A prepaid bucket draws down as its time logs are approved (the balance is a replay of the
approved billable logs in work order, :mod:`effigate_engine.billing.buckets`). A low-balance
threshold *T* is crossed when a draw takes the balance from above *T* to at or below it; it
re-arms when the balance rises above *T* again (a top-up, a new period's grant). The bucket is
exhausted when a draw takes it from above 0 to 0. Each crossing is one event: the *n*-th
crossing of *T* has dedupe key ``bucket:<contract>:LOW_BALANCE:<T>:<n>``, the *n*-th
exhaustion ``bucket:<contract>:EXHAUSTED:<n>``. Counting crossings rather than naming the log
that crossed keeps it once when a back-dated log approved later moves the crossing to an
earlier log: the balance crossed *T* once, and that was announced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from effigate_engine.billing.buckets import BucketAlert, BucketStatement
from effigate_engine.events.types import BUCKET_EXHAUSTED, BUCKET_LOW_BALANCE, bucket_key
from effigate_engine.service.buckets import drawing_logs, statement
from effigate_engine.service.contracts import load_stored
from effigate_engine.store import events as outbox
from effigate_engine.store import timelogs as log_store
from effigate_engine.store.contracts import StoredContract


def crossing_events(stored: StoredContract, st: BucketStatement) -> list[outbox.NewEvent]:
    """The events of every crossing in ``st`` (the statement of ``stored``'s bucket), each
    keyed by its threshold and ordinal (see the module)."""
    record = stored.record
    events: list[outbox.NewEvent] = []
    counts: dict[int, int] = {}

    def event(event_type: str, alert: BucketAlert, crossing: str, n: int) -> outbox.NewEvent:
        return outbox.NewEvent(
            type=event_type,
            dedupe_key=bucket_key(record.id, event_type, crossing),
            subject=str(record.id),
            occurred_at=datetime.fromtimestamp(alert.at, UTC),
            data={
                "contract_id": record.id,
                "client_id": record.client_id,
                "threshold_seconds": alert.threshold_seconds,
                "balance_seconds": alert.balance_seconds,
                "crossing": n,
                "time_log_id": alert.log_id,
                "drawn_at": datetime.fromtimestamp(alert.at, UTC).isoformat(),
                "purchased_seconds": st.purchased_seconds,
                "top_up_seconds": st.top_up_seconds,
            },
            client_id=record.client_id,
        )

    for alert in st.alerts:
        n = counts[alert.threshold_seconds] = counts.get(alert.threshold_seconds, 0) + 1
        events.append(event(BUCKET_LOW_BALANCE, alert, f"{alert.threshold_seconds}:{n}", n))
    for n, alert in enumerate(st.exhaustions, start=1):
        events.append(event(BUCKET_EXHAUSTED, alert, str(n), n))
    return events


async def announce_crossings(conn: Any, contract_ids: Iterable[int], now: datetime) -> int:
    """Append the events of every threshold crossing and exhaustion of these contracts'
    buckets not announced yet (contracts that are not active ``BUCKET`` contracts are left
    out); inside the caller's tenant-bound transaction, after the change that drew down.
    Counts every approved log, future-dated ones included. Returns how many were new."""
    events: list[outbox.NewEvent] = []
    for contract_id in sorted(set(contract_ids)):
        stored = await load_stored(conn, contract_id)
        if stored.record.contract_type != "BUCKET" or stored.record.status == "DRAFT":
            continue
        # every approved log: the statement just after the last one started
        last = await log_store.last_log_start(conn, contract_id)
        at = max(now, last + timedelta(seconds=1)) if last is not None else now
        logs = await drawing_logs(conn, stored, at)
        if logs is None:
            continue
        st = await asyncio.to_thread(statement, stored, logs, at)
        events.extend(crossing_events(stored, st))
    return await outbox.append_events(conn, events)


async def announce_for_logs(conn: Any, log_ids: Iterable[str], now: datetime) -> int:
    """:func:`announce_crossings` for the bucket contracts of these time logs."""
    contracts = await log_store.bucket_contracts_of(conn, list(log_ids))
    if not contracts:
        return 0
    return await announce_crossings(conn, contracts, now)
