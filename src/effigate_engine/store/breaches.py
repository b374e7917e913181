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
    was); how many were new. One COPY into a temporary table and one insert, however many
    rows (a recompute or a load-back stores hundreds of thousands)."""
    if not rows:
        return 0
    await conn.execute(
        'CREATE TEMPORARY TABLE IF NOT EXISTS breach_records_load (id text COLLATE "C",'
        ' ticket_id text COLLATE "C", contract_id bigint, metric text,'
        " target_at timestamptz, breached_at timestamptz, evidence text) ON COMMIT DROP"
    )
    await conn.execute("TRUNCATE breach_records_load")
    await conn.copy_records_to_table(
        "breach_records_load",
        records=rows,
        columns=[
            "id",
            "ticket_id",
            "contract_id",
            "metric",
            "target_at",
            "breached_at",
            "evidence",
        ],
    )
    return int(
        await conn.fetchval(
            """WITH added AS (
                   INSERT INTO breach_records (id, ticket_id, contract_id, metric, target_at,
                       breached_at, evidence)
                   SELECT id, ticket_id, contract_id, metric, target_at, breached_at,
                          evidence::jsonb
                   FROM breach_records_load ORDER BY id
                   ON CONFLICT (tenant_id, id) DO NOTHING RETURNING 1)
               SELECT count(*) FROM added"""
        )
    )
