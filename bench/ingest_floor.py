"""PostgreSQL's floor for bulk ingest, the yardstick the store benchmark holds ingest against.

The floor is the server's own ``INSERT … SELECT`` of the same rows from an unlogged staging
table (already loaded, its cost not counted) into a plain copy of ``time_logs``: the same
columns, defaults, checks and indexes (``LIKE time_logs INCLUDING ALL``), but no row-level
security and no triggers, run as the superuser. Every measured statement starts right after a
``CHECKPOINT``, so each pays the same full-page writes. When the server runs on this machine
the backend's CPU seconds are read from ``/proc`` beside the wall time: CPU time barely moves
when other jobs share the cores, wall time does.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from effigate_engine.store.batches import STORED_TIME_LOGS, copy_stream, prepare_batch
from effigate_engine.store.bulk import connect_adbc

STAGING = "floor_staging"
TARGET = "floor_time_logs"
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    """One measured statement (or ingest): wall seconds, the server backend's CPU seconds
    (``None`` when the server is not on this machine), WAL bytes written meanwhile and the
    size of the target table's indexes afterwards."""

    seconds: float
    server_cpu: float | None
    wal_bytes: int
    index_bytes: int = 0


def backend_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of server process ``pid``, or ``None`` if not readable here."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


class Meter:
    """Measures what happens between :meth:`start` and :meth:`stop` on the server: wall time,
    the CPU of backend ``pid`` and the WAL written (read over ``admin``, a superuser
    connection, which also issues the ``CHECKPOINT``)."""

    def __init__(self, admin: asyncpg.Connection, pid: int) -> None:
        self._admin = admin
        self._pid = pid
        self._lsn = ""
        self._cpu: float | None = None
        self._begin = 0.0

    async def start(self) -> None:
        await self._admin.execute("CHECKPOINT")
        self._lsn = await self._admin.fetchval("SELECT pg_current_wal_lsn()::text")
        self._cpu = backend_cpu_seconds(self._pid)
        self._begin = time.perf_counter()

    async def stop(self, table: str) -> Measured:
        """The measurement, with the size of ``table``'s indexes (all partitions')."""
        seconds = time.perf_counter() - self._begin
        cpu = backend_cpu_seconds(self._pid)
        wal = await self._admin.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint", self._lsn
        )
        indexes = await self._admin.fetchval(
            "SELECT coalesce((SELECT sum(pg_indexes_size(relid))"
            " FROM pg_partition_tree($1::regclass)), pg_indexes_size($1::regclass))::bigint",
            table,
        )
        used = None if cpu is None or self._cpu is None else cpu - self._cpu
        return Measured(seconds, used, int(wal), int(indexes or 0))


async def load_staging(
    admin: asyncpg.Connection, dsn: str, tenant: uuid.UUID, logs: pa.Table, name: str = STAGING
) -> None:
    """Create the unlogged staging table ``name`` (time_logs' columns, ``tenant_id``
    defaulting to ``tenant``) and COPY ``logs`` into it in their order, as the superuser."""
    await admin.execute(f"CREATE UNLOGGED TABLE {name} (LIKE time_logs INCLUDING DEFAULTS)")
    await admin.execute(f"ALTER TABLE {name} ALTER tenant_id SET DEFAULT '{tenant}'")
    conn = connect_adbc(dsn)
    try:
        with conn.cursor() as cur:
            cur.adbc_ingest(name, copy_stream(prepare_batch(STORED_TIME_LOGS, logs)), mode="append")
        conn.commit()
    finally:
        conn.close()
    await admin.execute(f"VACUUM ANALYZE {name}")


async def floor_insert(
    admin: asyncpg.Connection,
    dsn: str,
    ddl: tuple[str, ...] = (f"CREATE TABLE {TARGET} (LIKE time_logs INCLUDING ALL)",),
    insert: str = f"INSERT INTO {TARGET} SELECT * FROM {STAGING}",
) -> Measured:
    """Create the floor's target table with ``ddl``, measure ``insert`` into it on a
    connection of its own to ``dsn`` (so the backend's CPU is the statement's alone), drop
    the table. Defaults: a plain copy of ``time_logs`` filled from :data:`STAGING`."""
    for statement in ddl:
        await admin.execute(statement)
    conn = await asyncpg.connect(dsn)
    try:
        meter = Meter(admin, conn.get_server_pid())
        await meter.start()
        await conn.execute(insert)
        return await meter.stop(TARGET)
    finally:
        await conn.close()
        await admin.execute(f"DROP TABLE IF EXISTS {TARGET}")
