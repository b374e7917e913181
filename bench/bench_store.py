"""Store benchmark: bulk ingest of time logs against PostgreSQL's floor, then asyncpg vs ADBC
for ingest and Arrow reads.

Run: ``python bench/bench_store.py [--rows 1000000] [--rounds 3] [--floor-only]``. Uses
``EFFIGATE_TEST_DSN``, else a server on 127.0.0.1:5432, else the embedded server; works in
throw-away databases that are dropped at the end. Figures are rows per second of wall time,
end to end: Arrow table in, committed rows out (ingest), or query in, Arrow table out (read).

First, in each round and in a fresh database, the same rows go (a) through the floor
(``ingest_floor.py``: the server's own ``INSERT … SELECT`` from an unlogged staging table into
a plain copy of ``time_logs``) and (b) through our ingest (``store.bulk.ingest_adbc`` as the
service role: idempotent, all-or-nothing, row-level security and triggers on); the rounds
alternate which goes first. The target is ingest ≥ 0.7× the floor's rows/s. Then each driver
ingests into its own fresh database so neither pays for the other's index growth.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ingest_floor import Measured, Meter, floor_insert, load_staging

from effigate_engine.service.tokens import create_token
from effigate_engine.store.arrow_reads import read_arrow_adbc, read_arrow_asyncpg
from effigate_engine.store.batches import (
    STORED_INSTANT,
    STORED_TICKETS,
    STORED_TIME_LOGS,
    prepare_batch,
    table_to_records,
)
from effigate_engine.store.bulk import connect_adbc, ingest_adbc, ingest_asyncpg
from effigate_engine.store.dsn import APP_ROLE, with_database, with_user
from effigate_engine.store.embedded import passwords_for
from effigate_engine.store.migrate import migrate
from effigate_engine.store.settings import resolve_test_dsn
from effigate_engine.store.tenant import TenantKey

#: Ingest must reach this fraction of the floor's rows/s (measured in the same run).
FLOOR_TARGET = 0.7

EPOCH_2026_US = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
HOUR_US = 3_600 * 1_000_000


def time_logs_table(rows: int, contract_id: int, seed: int = 7) -> pa.Table:
    """``rows`` synthetic time logs for one contract: 15 min to 4 h each, over 2026."""
    rng = np.random.default_rng(seed)
    start = EPOCH_2026_US + rng.integers(0, 365 * 24 * HOUR_US, rows)
    length = rng.integers(HOUR_US // 4, 4 * HOUR_US, rows)
    levels = np.array(["L1", "L2", "L3"])
    jobs = np.array(["network", "desktop", "server", "security"])
    return pa.table(
        {
            "id": pa.array([f"tl-{i:09d}" for i in range(rows)]),
            "contract_id": pa.array(np.full(rows, contract_id, dtype=np.int64)),
            "ticket_id": pa.array([f"tk-{i % 50_000:06d}" for i in range(rows)]),
            "task_ref": pa.nulls(rows, pa.string()),
            "agent": pa.array(np.array(["ana", "ben", "chen", "dora"])[np.arange(rows) % 4]),
            "support_level": pa.array(levels[rng.integers(0, 3, rows)]),
            "job_type": pa.array(jobs[rng.integers(0, 4, rows)]),
            "priority": pa.array(np.array(["P1", "P2", "P3", "P4"])[rng.integers(0, 4, rows)]),
            "started_at": pa.array(start, STORED_INSTANT),
            "ended_at": pa.array(start + length, STORED_INSTANT),
            "billable_type": pa.array(np.full(rows, "BILLABLE")),
            "approval_state": pa.array(np.full(rows, "APPROVED")),
        }
    )


def tickets_table(rows: int, client_id: int, contract_id: int, seed: int = 11) -> pa.Table:
    """``rows`` synthetic tickets; half resolved."""
    rng = np.random.default_rng(seed)
    created = EPOCH_2026_US + rng.integers(0, 365 * 24 * HOUR_US, rows)
    response = created + rng.integers(60_000_000, 8 * HOUR_US, rows)
    resolved = response + rng.integers(HOUR_US, 72 * HOUR_US, rows)
    open_mask = np.arange(rows) % 2 == 1
    return pa.table(
        {
            "id": pa.array([f"tk-{i:09d}" for i in range(rows)]),
            "client_id": pa.array(np.full(rows, client_id, dtype=np.int64)),
            "contract_id": pa.array(np.full(rows, contract_id, dtype=np.int64)),
            "priority": pa.array(np.array(["P1", "P2", "P3", "P4"])[rng.integers(0, 4, rows)]),
            "status": pa.array(np.where(open_mask, "OPEN", "RESOLVED")),
            "created_at": pa.array(created, STORED_INSTANT),
            "first_response_at": pa.array(response, STORED_INSTANT),
            "resolved_at": pa.array(resolved, STORED_INSTANT, mask=open_mask),
        }
    )


async def fresh_database(admin_dsn: str, label: str) -> tuple[str, TenantKey, int, int]:
    """Create and migrate a database with one tenant (and a token of it: the key the service
    role binds its transactions with), client and active hourly contract."""
    name = f"effigate_bench_{label}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = with_database(admin_dsn, name)
    await migrate(dsn)
    tenant = uuid.uuid4()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, default_currency) VALUES ($1, 'Bench MSP', 'USD')",
            tenant,
        )
        token = (await create_token(conn, tenant, label="bench")).secret
        client = await conn.fetchval(
            "INSERT INTO clients (tenant_id, name) VALUES ($1, 'Bench client') RETURNING id", tenant
        )
        contract = await conn.fetchval(
            """INSERT INTO contracts (tenant_id, client_id, contract_type, status, currency,
                   time_zone, starts_on, frozen_rate_card, frozen_rate_card_text,
                   frozen_rate_card_version, frozen_rate_card_sha256, activated_at)
               VALUES ($1, $2, 'HOURLY', 'ACTIVE', 'USD', 'UTC', '2026-01-01', '{}', '{}', 1,
                   encode(sha256('{}'), 'hex'), now()) RETURNING id""",
            tenant,
            client,
        )
    finally:
        await conn.close()
    return name, TenantKey(tenant, token), client, contract


def service_dsn(admin_dsn: str, database: str) -> str:
    """The service role's DSN for ``database`` on the server of ``admin_dsn`` (with the embedded
    server's password for it when that is the server)."""
    passwords = passwords_for(admin_dsn) or {}
    return with_user(with_database(admin_dsn, database), APP_ROLE, passwords.get(APP_ROLE))


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a benchmark database (closing any leftover connections)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def load_average() -> list[str]:
    """The machine's load averages, printed beside the figures (the machine may be shared)."""
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return ["n/a"]


def rate(rows: int, seconds: float) -> str:
    """Rows per second, formatted."""
    return f"{rows / seconds:>12,.0f}"


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """Run ``fn`` and return its result and wall time in seconds."""
    begin = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - begin


@dataclass(frozen=True)
class Round:
    """One round of the floor comparison: which went first, both measurements, the client's
    CPU seconds during the ingest and the wall seconds of each ingest step."""

    first: str
    floor: Measured
    ingest: Measured
    client_cpu: float
    steps: dict[str, float]

    @property
    def ratio(self) -> float:
        """Ingest rows/s ÷ floor rows/s."""
        return self.floor.seconds / self.ingest.seconds


async def measured_ingest(
    admin: asyncpg.Connection, app_dsn: str, tenant: uuid.UUID, logs: pa.Table
) -> tuple[Measured, float, dict[str, float]]:
    """Our ingest of ``logs`` (Arrow in → committed) as the service role, measured like the
    floor; returns it with the client's CPU seconds and the seconds of each step."""
    conn = connect_adbc(app_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            (pid,) = cur.fetchone()
        conn.rollback()
        meter = Meter(admin, int(pid))
        steps: dict[str, float] = {}
        await meter.start()
        client = time.process_time()
        result = ingest_adbc(conn, STORED_TIME_LOGS, tenant, logs, steps=steps)
        client_cpu = time.process_time() - client
        measured = await meter.stop(STORED_TIME_LOGS.name)
    finally:
        conn.close()
    assert result.inserted == logs.num_rows, result
    return measured, client_cpu, steps


async def floor_round(admin_dsn: str, rows: int, number: int) -> Round:
    """Round ``number``: a fresh database, the floor and our ingest of the same ``rows`` time
    logs, the floor first in even rounds and second in odd ones."""
    name, tenant, _, contract = await fresh_database(admin_dsn, "floor")
    try:
        dsn = with_database(admin_dsn, name)
        logs = time_logs_table(rows, contract)
        admin = await asyncpg.connect(dsn)
        try:
            await load_staging(admin, dsn, tenant.tenant_id, logs)
            floor_first = number % 2 == 0
            if floor_first:
                floor = await floor_insert(admin, dsn)
            ingest, client_cpu, steps = await measured_ingest(
                admin, service_dsn(admin_dsn, name), tenant, logs
            )
            if not floor_first:
                floor = await floor_insert(admin, dsn)
        finally:
            await admin.close()
    finally:
        await drop_database(admin_dsn, name)
    return Round("floor" if floor_first else "ingest", floor, ingest, client_cpu, steps)


def cpu(seconds: float | None) -> str:
    """CPU seconds, formatted (``-`` when unknown)."""
    return "-" if seconds is None else f"{seconds:.2f}"


def print_floor_rounds(rows: int, rounds: list[Round]) -> None:
    """The floor comparison: each round, the medians and the ingest steps."""
    print(f"load average (1, 5, 15 min): {' '.join(load_average())}")
    print(
        f"ingest against PostgreSQL's floor, {rows:,} time logs per round (fresh database,"
        " CHECKPOINT before each measurement; CPU = server backend, client)"
    )
    print(
        f"{'round':<6}{'first':<8}{'floor rows/s':>14}{'CPU s':>7}{'WAL B/row':>11}"
        f"{'ingest rows/s':>15}{'CPU s':>7}{'client':>8}{'WAL B/row':>11}{'ratio':>8}"
    )
    for number, r in enumerate(rounds, 1):
        print(
            f"{number:<6}{r.first:<8}{rate(rows, r.floor.seconds):>14}{cpu(r.floor.server_cpu):>7}"
            f"{r.floor.wal_bytes / rows:>11.0f}{rate(rows, r.ingest.seconds):>15}"
            f"{cpu(r.ingest.server_cpu):>7}{r.client_cpu:>8.2f}"
            f"{r.ingest.wal_bytes / rows:>11.0f}{r.ratio:>8.2f}"
        )
    floor_s = statistics.median(r.floor.seconds for r in rounds)
    ingest_s = statistics.median(r.ingest.seconds for r in rounds)
    ratio = statistics.median(r.ratio for r in rounds)
    verdict = "met" if ratio >= FLOOR_TARGET else "NOT met"
    print(
        f"median  floor {rate(rows, floor_s).strip()} rows/s, ingest"
        f" {rate(rows, ingest_s).strip()} rows/s, ratio {ratio:.2f}"
        f" (target ≥ {FLOOR_TARGET}: {verdict})"
    )
    names = list(rounds[0].steps)
    medians = "  ".join(
        f"{n} {statistics.median(r.steps.get(n, 0.0) for r in rounds):.2f}" for n in names
    )
    print(f"ingest steps, median seconds: {medians}")


async def run(rows: int, rounds: int, floor_only: bool) -> None:
    """Run every measurement for ``rows`` rows and print the comparisons."""
    admin = resolve_test_dsn()
    print(f"server: {admin.split('@')[-1]}  rows: {rows:,}")
    print_floor_rounds(rows, [await floor_round(admin, rows, n) for n in range(rounds)])
    if floor_only:
        return
    results: dict[str, dict[str, str]] = {}
    created: list[str] = []
    try:
        # ingest, asyncpg: Arrow -> tuples -> COPY to staging -> upsert, one transaction
        db_a, tenant_a, _, contract_a = await fresh_database(admin, "asyncpg")
        created.append(db_a)
        logs = time_logs_table(rows, contract_a)
        conn = await asyncpg.connect(service_dsn(admin, db_a))
        try:
            begin = time.perf_counter()
            records = table_to_records(prepare_batch(STORED_TIME_LOGS, logs))
            convert_s = time.perf_counter() - begin
            result = await ingest_asyncpg(conn, STORED_TIME_LOGS, tenant_a, records)
            total_s = time.perf_counter() - begin
            assert result.inserted == rows, result
            begin = time.perf_counter()
            again = await ingest_asyncpg(conn, STORED_TIME_LOGS, tenant_a, records)
            resend_s = time.perf_counter() - begin
            assert again.inserted == 0 and again.updated == 0, again
        finally:
            await conn.close()
        results["asyncpg"] = {
            "ingest": rate(rows, total_s),
            "ingest (excl. Arrow->tuples)": rate(rows, total_s - convert_s),
            "resend unchanged": rate(rows, resend_s),
        }
        await drop_database(admin, db_a)
        created.remove(db_a)

        # ingest, ADBC: Arrow -> binary COPY to staging -> upsert, one transaction
        db_b, tenant_b, client_b, contract_b = await fresh_database(admin, "adbc")
        created.append(db_b)
        logs = time_logs_table(rows, contract_b)
        app_b = service_dsn(admin, db_b)
        adbc = connect_adbc(app_b)
        helper = connect_adbc(app_b)  # second connection of the parallel read
        try:
            result, total_s = timed(lambda: ingest_adbc(adbc, STORED_TIME_LOGS, tenant_b, logs))
            assert result.inserted == rows, result  # type: ignore[attr-defined]
            again, resend_s = timed(lambda: ingest_adbc(adbc, STORED_TIME_LOGS, tenant_b, logs))
            assert again.inserted == 0 and again.updated == 0, again  # type: ignore[attr-defined]
            results["ADBC"] = {
                "ingest": rate(rows, total_s),
                "ingest (excl. Arrow->tuples)": rate(rows, total_s),
                "resend unchanged": rate(rows, resend_s),
            }
            tickets = tickets_table(rows, client_b, contract_b)
            ingest_adbc(adbc, STORED_TICKETS, tenant_b, tickets)
            read, read_s = timed(lambda: read_arrow_adbc(adbc, STORED_TICKETS, tenant_b))
            assert read.num_rows == rows  # type: ignore[attr-defined]
            results["ADBC"]["read tickets -> Arrow"] = rate(rows, read_s)
            both, read_s = timed(
                lambda: read_arrow_adbc(adbc, STORED_TICKETS, tenant_b, None, [helper])
            )
            assert both.equals(read)  # type: ignore[attr-defined]
            results["ADBC"]["read tickets, 2 connections"] = rate(rows, read_s)
            read, read_s = timed(lambda: read_arrow_adbc(adbc, STORED_TIME_LOGS, tenant_b))
            results["ADBC"]["read time logs -> Arrow"] = rate(rows, read_s)
            both, read_s = timed(
                lambda: read_arrow_adbc(adbc, STORED_TIME_LOGS, tenant_b, None, [helper])
            )
            assert both.equals(read)  # type: ignore[attr-defined]
            results["ADBC"]["read time logs, 2 connections"] = rate(rows, read_s)
        finally:
            helper.close()
            adbc.close()
        conn = await asyncpg.connect(app_b)
        try:
            begin = time.perf_counter()
            table = await read_arrow_asyncpg(conn, STORED_TICKETS, tenant_b)
            read_s = time.perf_counter() - begin
            assert table.num_rows == rows
            results["asyncpg"]["read tickets -> Arrow"] = rate(rows, read_s)
            begin = time.perf_counter()
            table = await read_arrow_asyncpg(conn, STORED_TIME_LOGS, tenant_b)
            results["asyncpg"]["read time logs -> Arrow"] = rate(rows, time.perf_counter() - begin)
        finally:
            await conn.close()
    finally:
        for name in created:
            await drop_database(admin, name)

    metrics = list(results["ADBC"])
    print(f"load average (1, 5, 15 min): {' '.join(load_average())}")
    print(f"{'rows/s':<32}{'asyncpg':>14}{'ADBC':>14}")
    for metric in metrics:
        slow = results["asyncpg"].get(metric, "-")
        print(f"{metric:<32}{slow:>14}{results['ADBC'][metric]:>14}")


def main() -> None:
    """Parse ``--rows`` and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of floor vs ingest")
    parser.add_argument(
        "--floor-only", action="store_true", help="only the floor comparison, not the drivers"
    )
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.rounds, args.floor_only))


if __name__ == "__main__":
    main()
