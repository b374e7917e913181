"""What moves PostgreSQL's ingest floor, and our ingest with it: schema and input variants.

Run: ``python bench/bench_ingest_floor.py [--rows 1000000] [--rounds 2]``. Each round uses a
fresh database; the same time logs (those of ``bench_store.py``) go through the floor
(``ingest_floor.py``: ``INSERT … SELECT`` from an unlogged staging table, as the superuser,
no row-level security, no triggers) into one target table per variant, and through our ingest
into ``time_logs`` with the kept and the previous index. Every measurement starts after a
``CHECKPOINT``. Prints rows/s, the server backend's CPU seconds (when the server runs here),
WAL bytes per row and the indexes' size, per round; the findings are in ``docs/store.md``.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import asyncpg
import numpy as np
import pyarrow as pa
from bench_store import (
    drop_database,
    fresh_database,
    load_average,
    measured_ingest,
    time_logs_table,
)
from ingest_floor import STAGING, TARGET, Measured, floor_insert, load_staging

from effigate_engine.store.dsn import APP_ROLE, with_database, with_user
from effigate_engine.store.settings import resolve_test_dsn

SHUFFLED = "floor_staging_shuffled"
BY_START = "floor_staging_by_start"
_PLAIN = f"CREATE TABLE {TARGET} (LIKE time_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
_PK = f"ALTER TABLE {TARGET} ADD PRIMARY KEY (tenant_id, id)"
_KEPT = f"CREATE INDEX ON {TARGET} (tenant_id, contract_id)"
_PREVIOUS = f"CREATE INDEX ON {TARGET} (tenant_id, contract_id, started_at)"
_BRIN = f"CREATE INDEX ON {TARGET} USING brin (started_at, ended_at) WITH (autosummarize = on)"
_PREVIOUS_INDEX = (
    "DROP INDEX time_logs_by_contract",
    "CREATE INDEX time_logs_by_contract ON time_logs (tenant_id, contract_id, started_at)",
)


def _insert(source: str = STAGING, suffix: str = "") -> str:
    return f"INSERT INTO {TARGET} SELECT * FROM {source}{suffix}"


def _by_month() -> tuple[str, ...]:
    """The kept table partitioned by month of ``started_at`` (2026, plus a default partition);
    a partitioned table's primary key must contain the partition key."""
    months = [
        f"CREATE TABLE {TARGET}_{m:02d} PARTITION OF {TARGET} FOR VALUES FROM"
        f" ('2026-{m:02d}-01 00:00+00') TO ('{2026 + m // 12}-{m % 12 + 1:02d}-01 00:00+00')"
        for m in range(1, 13)
    ]
    return (
        _PLAIN + " PARTITION BY RANGE (started_at)",
        f"ALTER TABLE {TARGET} ADD PRIMARY KEY (tenant_id, id, started_at)",
        _KEPT,
        *months,
        f"CREATE TABLE {TARGET}_rest PARTITION OF {TARGET} DEFAULT",
    )


@dataclass(frozen=True)
class FloorVariant:
    """A target table (``ddl``) and the statement that fills it from a staging table."""

    label: str
    ddl: tuple[str, ...]
    insert: str


FLOOR_VARIANTS = (
    FloorVariant("kept: key + (tenant, contract)", (_PLAIN, _PK, _KEPT), _insert()),
    FloorVariant("previous: key + (tenant, contract, start)", (_PLAIN, _PK, _PREVIOUS), _insert()),
    FloorVariant(
        "previous, rows sorted by (contract, start)", (_PLAIN, _PK, _PREVIOUS), _insert(BY_START)
    ),
    FloorVariant("kept + BRIN (start, end)", (_PLAIN, _PK, _KEPT, _BRIN), _insert()),
    FloorVariant("kept, partitioned by month", _by_month(), _insert()),
    FloorVariant("primary key only", (_PLAIN, _PK), _insert()),
    FloorVariant("no index", (_PLAIN,), _insert()),
    FloorVariant(
        "kept, ON CONFLICT DO NOTHING",
        (_PLAIN, _PK, _KEPT),
        _insert(suffix=" ON CONFLICT DO NOTHING"),
    ),
    FloorVariant("kept, ids shuffled", (_PLAIN, _PK, _KEPT), _insert(SHUFFLED)),
)


def shuffled(logs: pa.Table, seed: int = 3) -> pa.Table:
    """``logs`` in a random (seeded) row order."""
    return logs.take(pa.array(np.random.default_rng(seed).permutation(logs.num_rows)))


async def ingest_variant(
    admin_dsn: str, rows: int, previous_index: bool, shuffle: bool
) -> Measured:
    """Our ingest of the benchmark's time logs into a fresh database's ``time_logs``."""
    name, tenant, _, contract = await fresh_database(admin_dsn, "variant")
    try:
        dsn = with_database(admin_dsn, name)
        logs = time_logs_table(rows, contract)
        admin = await asyncpg.connect(dsn)
        try:
            if previous_index:
                for statement in _PREVIOUS_INDEX:
                    await admin.execute(statement)
            measured, _, _ = await measured_ingest(
                admin, with_user(dsn, APP_ROLE), tenant, shuffled(logs) if shuffle else logs
            )
        finally:
            await admin.close()
    finally:
        await drop_database(admin_dsn, name)
    return measured


async def floor_variants(admin_dsn: str, rows: int) -> list[tuple[str, Measured]]:
    """Every floor variant, in one fresh database."""
    name, tenant, _, contract = await fresh_database(admin_dsn, "variants")
    try:
        dsn = with_database(admin_dsn, name)
        logs = time_logs_table(rows, contract)
        admin = await asyncpg.connect(dsn)
        try:
            await load_staging(admin, dsn, tenant, logs)
            await load_staging(admin, dsn, tenant, shuffled(logs), SHUFFLED)
            await admin.execute(
                f"CREATE UNLOGGED TABLE {BY_START} AS SELECT * FROM {STAGING}"
                " ORDER BY tenant_id, contract_id, started_at"
            )
            await admin.execute(f"VACUUM ANALYZE {BY_START}")
            return [
                (v.label, await floor_insert(admin, dsn, v.ddl, v.insert)) for v in FLOOR_VARIANTS
            ]
        finally:
            await admin.close()
    finally:
        await drop_database(admin_dsn, name)


def line(label: str, rows: int, m: Measured) -> str:
    """One result row."""
    cpu = "-" if m.server_cpu is None else f"{m.server_cpu:.2f}"
    return (
        f"{label:<52}{rows / m.seconds:>12,.0f}{cpu:>8}{m.wal_bytes / rows:>8.0f}"
        f"{m.index_bytes / 2**20:>8.0f}"
    )


async def run(rows: int, rounds: int) -> None:
    """All variants, ``rounds`` times; the ingest variants between floor rounds."""
    admin = resolve_test_dsn()
    print(f"server: {admin.split('@')[-1]}  rows: {rows:,}")
    for number in range(1, rounds + 1):
        print(f"round {number}, load average {' '.join(load_average())}")
        print(f"{'':<52}{'rows/s':>12}{'CPU s':>8}{'WAL B':>8}{'idx MB':>8}")
        for label, measured in await floor_variants(admin, rows):
            print(line(f"floor, {label}", rows, measured), flush=True)
        for label, previous, shuffle in (
            ("ingest, kept index", False, False),
            ("ingest, previous index", True, False),
            ("ingest, kept index, ids shuffled", False, True),
        ):
            measured = await ingest_variant(admin, rows, previous, shuffle)
            print(line(label, rows, measured), flush=True)
    print(f"load average (1, 5, 15 min): {' '.join(load_average())}")


def main() -> None:
    """Parse the arguments and run the variants."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all variants")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.rounds))


if __name__ == "__main__":
    main()
