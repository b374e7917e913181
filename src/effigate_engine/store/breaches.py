"""Breach records: one row per (ticket, metric) breach, written once by its id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

#: One breach record: ``(breach_id, ticket_id, contract_id, metric, target_at, breached_at,
#: evidence_json)``.
BreachRow = tuple[str, str, int | None, str, datetime, datetime, str]


async def insert_breaches(conn: asyncpg.Connection, rows: Sequence[BreachRow]) -> int:
    """Store the breach records not stored yet (by breach id; a stored one is left as it
    was); how many were new."""
    before = await conn.fetchval("SELECT count(*) FROM breach_records")
    await conn.executemany(
        """INSERT INTO breach_records (id, ticket_id, contract_id, metric, target_at,
               breached_at, evidence) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
           ON CONFLICT (tenant_id, id) DO NOTHING""",
        rows,
    )
    after = await conn.fetchval("SELECT count(*) FROM breach_records")
    return int(after - before)
