"""Bulk ingest: idempotent, atomic upserts by COPY, for both drivers.

Ingest (time logs, ticket events, tickets) upserts by the caller's id, the idempotency key:

1. one transaction, bound to the tenant (:mod:`effigate_engine.store.tenant`);
2. COPY the batch, in primary-key order, into a temporary staging table (dropped at commit);
3. under a per-(table, tenant) advisory lock, update the rows whose content changed and insert
   the new ones (the effect of ``INSERT ... ON CONFLICT (tenant_id, id) DO UPDATE ... WHERE
   changed``, see :meth:`~effigate_engine.store.batches.BulkTable.merge_sql`); when a probe of
   the primary key finds no stored id of the tenant within the staged ids' range
   (:meth:`~effigate_engine.store.batches.BulkTable.probe_sql`), no staged id can exist yet and
   the batch is inserted as it is.

Re-sending a batch never duplicates a row, and an unchanged row is not even rewritten, so an
identical resend of an invoiced or closed-period log is accepted as a no-op; a *changed*
resend of such a log is refused by the database and the whole batch rolls back. A batch is
all-or-nothing: if the connection drops midway, nothing of it is stored. Rows are checked
before anything is sent (:mod:`effigate_engine.store.batches`).

Two drivers are supported (measured in ``bench/bench_store.py``, see ``docs/store.md``):
asyncpg (``copy_records_to_table``, Python tuples in) and the ADBC PostgreSQL driver (Arrow
in, COPY in binary form done in C++).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg
import pyarrow as pa

from effigate_engine.store.batches import (
    COPY_CHUNK_ROWS,
    BulkTable,
    IngestResult,
    RowCheck,
    copy_stream,
    in_key_order,
    prepare_batch,
    split_batch,
    table_to_records,
)
from effigate_engine.store.errors import StoreError, from_adbc, from_asyncpg
from effigate_engine.store.tenant import TenantKey, bind, tenant_text, verify_bound

T = TypeVar("T")

# asyncpg ------------------------------------------------------------------------------------


async def ingest_asyncpg(
    conn: asyncpg.Connection,
    spec: BulkTable,
    tenant: TenantKey,
    rows: pa.Table | Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
) -> IngestResult:
    """Upsert ``rows`` into ``spec``'s table for ``tenant`` in one transaction (asyncpg).

    ``rows`` is an Arrow table (checked with :func:`prepare_batch` and put in key order with
    :func:`in_key_order`) or an (async) iterable of tuples in ``spec.column_names`` order
    (checked by the database only).
    """
    if isinstance(rows, pa.Table):
        spec = spec.for_columns(rows.column_names)
        records: Any = table_to_records(in_key_order(prepare_batch(spec, rows)))
    else:
        records = rows
    try:
        async with conn.transaction():
            await bind(conn, tenant)
            tenant_id = tenant.tenant_id
            await conn.execute(spec.staging_ddl(tenant_id))
            status = await conn.copy_records_to_table(
                spec.staging, records=records, columns=spec.column_names
            )
            received = int(status.split()[-1])
            await conn.execute(spec.lock_sql(tenant_id))
            if not await conn.fetchval(spec.probe_sql(tenant_id)):
                await conn.execute(spec.insert_sql())
                return IngestResult(received, received, 0)
            await conn.execute(f"ANALYZE {spec.staging}")
            counts = await conn.fetchrow(spec.merge_sql(tenant_id))
    except asyncpg.PostgresError as exc:
        raise from_asyncpg(exc) from exc
    return IngestResult(received, counts["inserted"], counts["updated"])


# ADBC ---------------------------------------------------------------------------------------


def connect_adbc(dsn: str) -> Any:
    """An ADBC DB-API connection to ``dsn`` (autocommit off: every call runs in a transaction)."""
    import adbc_driver_postgresql.dbapi

    return adbc_driver_postgresql.dbapi.connect(dsn)


def bind_adbc(cur: Any, tenant: TenantKey) -> None:
    """Bind the transaction of ADBC cursor ``cur`` to ``tenant`` (the statement of
    :func:`effigate_engine.store.tenant.bind`, the token travelling as a parameter)."""
    sql, parameter = tenant.bind_statement()
    cur.execute(sql, parameters=(parameter,))
    (bound,) = cur.fetchone()
    verify_bound(bound, tenant)


def ingest_adbc(
    conn: Any,
    spec: BulkTable,
    tenant: TenantKey,
    rows: pa.Table | pa.RecordBatchReader,
    steps: dict[str, float] | None = None,
    chunk_rows: int = COPY_CHUNK_ROWS,
    check: RowCheck | None = None,
) -> IngestResult:
    """Upsert ``rows`` into ``spec``'s table for ``tenant`` in one transaction (ADBC).

    ``rows`` is an Arrow table (checked with :func:`prepare_batch`, put in key order with
    :func:`in_key_order` and streamed in chunks of ``chunk_rows`` rows) or a record-batch
    reader in ``spec.schema`` (streamed as it is; checked by the database only). When
    ``steps`` is given, the wall seconds of each step are added to it under the keys
    ``prepare``, ``copy``, ``lock``, ``probe``, ``analyze``, ``merge`` or ``insert`` and
    ``commit``. ``check`` refuses rows beyond the columns' own checks (:func:`prepare_batch`).
    A table's optional columns that it leaves out are neither staged nor written
    (:meth:`~effigate_engine.store.batches.BulkTable.for_columns`); a reader carries its own
    schema's columns.
    """
    import adbc_driver_manager

    clock = _StepClock(steps)
    spec = spec.for_columns(rows.schema.names)
    if isinstance(rows, pa.Table):
        data: pa.RecordBatchReader = copy_stream(
            in_key_order(prepare_batch(spec, rows, check)), chunk_rows
        )
    else:
        data = rows
    clock.lap("prepare")
    tenant_id = tenant_text(tenant.tenant_id)
    try:
        with conn.cursor() as cur:
            bind_adbc(cur, tenant)
            cur.execute(spec.staging_ddl(tenant_id))
            received = int(cur.adbc_ingest(spec.staging, data, mode="append", temporary=True))
            clock.lap("copy")
            cur.execute(spec.lock_sql(tenant_id))
            clock.lap("lock")
            cur.execute(spec.probe_sql(tenant_id))
            (stored,) = cur.fetchone()
            clock.lap("probe")
            if stored:
                cur.execute(f"ANALYZE {spec.staging}")
                clock.lap("analyze")
                cur.execute(spec.merge_sql(tenant_id))
                inserted, updated = cur.fetchone()
                clock.lap("merge")
            else:
                cur.execute(spec.insert_sql())
                inserted, updated = received, 0
                clock.lap("insert")
        if id(conn) in _ABANDONED:
            raise StoreError(spec.name, None, "not stored: the caller went away")
        conn.commit()
        clock.lap("commit")
    except adbc_driver_manager.Error as exc:
        rollback_quietly(conn)
        raise from_adbc(exc) from exc
    except BaseException:
        rollback_quietly(conn)
        raise
    return IngestResult(int(received), int(inserted), int(updated))


class _StepClock:
    """Adds the wall seconds since the previous lap to ``steps[name]`` (nothing when ``None``)."""

    def __init__(self, steps: dict[str, float] | None) -> None:
        self._steps = steps
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self._steps is None:
            return
        now = time.perf_counter()
        self._steps[name] = self._steps.get(name, 0.0) + now - self._last
        self._last = now


# the paths kept for the service ------------------------------------------------------------


async def ingest(
    conn: Any,
    spec: BulkTable,
    tenant: TenantKey,
    rows: pa.Table | pa.RecordBatchReader,
    skip_invalid_rows: bool = False,
    check: RowCheck | None = None,
) -> IngestResult:
    """The service's bulk ingest: ADBC (measured faster), run off the event loop.

    ``conn`` is an ADBC connection (:func:`connect_adbc`) used by one call at a time; the
    driver releases the GIL while it talks to the server. With ``skip_invalid_rows`` (``rows``
    a table), the rows :func:`split_batch` sets aside are not stored but returned in
    ``IngestResult.rejected``, and the valid rows are stored as one batch. ``check`` refuses
    rows beyond the columns' own checks (a table's rows only).
    """
    if not skip_invalid_rows or not isinstance(rows, pa.Table):
        return await run_adbc(conn, ingest_adbc, spec, tenant, rows, None, COPY_CHUNK_ROWS, check)
    return await run_adbc(conn, ingest_valid_rows, spec, tenant, rows, check)


def ingest_valid_rows(
    conn: Any, spec: BulkTable, tenant: TenantKey, rows: pa.Table, check: RowCheck | None = None
) -> IngestResult:
    """:func:`ingest_adbc` of the rows of ``rows`` that can be stored; the others are in the
    result's ``rejected`` (and counted as received)."""
    spec = spec.for_columns(rows.column_names)
    valid, rejected = split_batch(spec, rows, check)
    result = ingest_adbc(conn, spec, tenant, copy_stream(in_key_order(valid)))
    return IngestResult(
        result.received + rejected.num_rows, result.inserted, result.updated, rejected
    )


async def run_adbc(conn: Any, work: Callable[..., T], *args: Any) -> T:
    """``work(conn, *args)`` in a worker thread (the ADBC driver releases the GIL while it
    talks to the server).

    If the awaiting task is cancelled (the client went away, its deadline passed, the server
    shuts down), the statement running on ``conn`` is cancelled on the server, an ingest
    (:func:`ingest_adbc`) that reaches its commit rolls back instead, and the thread is
    awaited (its transaction rolled back) before the cancellation propagates, so the
    connection is idle again when the store takes it back
    (:meth:`effigate_engine.store.database.Store.adbc`).
    """
    try:
        return await through(asyncio.to_thread(work, conn, *args), lambda: _abandon(conn))
    finally:
        _ABANDONED.discard(id(conn))


async def through(work: Awaitable[T], interrupt: Callable[[], None]) -> T:
    """The result of ``work`` (a worker thread's); if the awaiting task is cancelled, call
    ``interrupt`` and wait for the thread to end before the cancellation propagates."""
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        interrupt()
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                continue  # cancelled again while waiting: the thread still holds the connection
            except Exception:
                break  # the work ended with an error (the cancellation): it rolled back
        if not future.cancelled():
            future.exception()  # retrieved: the caller sees the cancellation
        raise


#: Ids of the ADBC connections whose caller was cancelled while a worker thread used them: an
#: ingest on one rolls back instead of committing, even when no statement was running to be
#: cancelled (the batch was being prepared, or between two statements).
_ABANDONED: set[int] = set()


def _abandon(conn: Any) -> None:
    """Mark ``conn``'s work abandoned and cancel the statement running on it, if any."""
    _ABANDONED.add(id(conn))
    _cancel_quietly(conn)


def _cancel_quietly(conn: Any) -> None:
    """Ask the server to cancel the statement running on ADBC connection ``conn``."""
    try:
        conn.adbc_cancel()
    except Exception:  # nothing running, or the connection is gone
        return


def rollback_quietly(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection may already be gone
        return
