"""Billing periods in the store: a contract's cycle periods as ``billing_periods`` rows, the
span ``[starts_at, ends_at)`` of the local midnights of its dates in the contract's zone. A
period gets a row when it is first closed or invoiced; closing makes its time logs read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from effigate_engine.ratecard.periods import Period

_PERIOD_COLUMNS = "id, status, starts_at, ends_at, closed_at"


@dataclass(frozen=True)
class PeriodRecord:
    """A billing period of a contract: local dates ``[starts_on, ends_on)`` in the contract's
    zone, the same span as instants ``[starts_at, ends_at)``; ``ordinal`` counts from the
    contract's first period (0). ``id`` is ``None`` for a period not stored yet (never closed
    nor invoiced)."""

    id: int | None
    contract_id: int
    ordinal: int
    starts_on: date
    ends_on: date
    starts_at: datetime
    ends_at: datetime
    status: str
    closed_at: datetime | None = None


def period_record(
    row: asyncpg.Record | None, contract_id: int, period: Period, bounds: tuple[int, int]
) -> PeriodRecord:
    """A :class:`PeriodRecord` of cycle period ``period`` (``bounds``: its span, epoch
    seconds), stored (``row``) or not (``None``)."""
    return PeriodRecord(
        id=None if row is None else row["id"],
        contract_id=contract_id,
        ordinal=period.ordinal,
        starts_on=period.start,
        ends_on=period.end,
        starts_at=datetime.fromtimestamp(bounds[0], UTC),
        ends_at=datetime.fromtimestamp(bounds[1], UTC),
        status="OPEN" if row is None else row["status"],
        closed_at=None if row is None else row["closed_at"],
    )


async def fetch_period(
    conn: asyncpg.Connection, contract_id: int, bounds: tuple[int, int]
) -> asyncpg.Record | None:
    """The stored row (``id``, ``status``, ``starts_at``, ``ends_at``, ``closed_at``) of the
    contract's period starting at ``bounds[0]`` (epoch seconds), ``None`` if never stored."""
    return await conn.fetchrow(
        f"SELECT {_PERIOD_COLUMNS} FROM billing_periods"
        " WHERE contract_id = $1 AND starts_at = to_timestamp($2)",
        contract_id,
        bounds[0],
    )


#: Store the period if missing and return its row either way, locked: a row this statement
#: inserts is the transaction's own until it commits; an existing one is locked FOR UPDATE.
_LOCK_SQL = (
    "WITH made AS (INSERT INTO billing_periods (contract_id, starts_at, ends_at)"
    "   VALUES ($1, $2, $3) ON CONFLICT (tenant_id, contract_id, starts_at) DO NOTHING"
    f"   RETURNING {_PERIOD_COLUMNS}),"
    f" stored AS (SELECT {_PERIOD_COLUMNS} FROM billing_periods"
    "   WHERE contract_id = $1 AND starts_at = $2 AND NOT EXISTS (SELECT 1 FROM made)"
    "   FOR UPDATE)"
    " SELECT * FROM made UNION ALL SELECT * FROM stored"
)
_LOCK_STORED_SQL = (
    f"SELECT {_PERIOD_COLUMNS} FROM billing_periods"
    " WHERE contract_id = $1 AND starts_at = $2 FOR UPDATE"
)


async def lock_period(
    conn: asyncpg.Connection, contract_id: int, bounds: tuple[int, int]
) -> asyncpg.Record:
    """The row of the contract's period spanning ``bounds`` (epoch seconds), created
    (``OPEN``) if missing, locked until the transaction ends: one round trip, two when another
    transaction stored the row after this statement's snapshot."""
    start = datetime.fromtimestamp(bounds[0], UTC)
    end = datetime.fromtimestamp(bounds[1], UTC)
    row = await conn.fetchrow(_LOCK_SQL, contract_id, start, end)
    if row is None:  # committed by another transaction while the insert waited on it
        row = await conn.fetchrow(_LOCK_STORED_SQL, contract_id, start)
    return row


async def close(conn: asyncpg.Connection, period_id: int) -> asyncpg.Record:
    """Set period ``period_id`` ``CLOSED``; returns its row."""
    return await conn.fetchrow(
        f"UPDATE billing_periods SET status = 'CLOSED' WHERE id = $1 RETURNING {_PERIOD_COLUMNS}",
        period_id,
    )
