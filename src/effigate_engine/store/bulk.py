"""Bulk I/O: idempotent, atomic ingest by COPY and reads into Arrow, for both drivers.

Ingest (time logs, ticket events, tickets) upserts by the caller's id, the idempotency key:

1. one transaction, bound to the tenant (:mod:`effigate_engine.store.tenant`);
2. COPY the batch, in primary-key order, into a temporary staging table (dropped at commit);
3. under a per-(table, tenant) advisory lock, update the rows whose content changed and insert
   the new ones (the effect of ``INSERT ... ON CONFLICT (tenant_id, id) DO UPDATE ... WHERE
   changed``, see :meth:`BulkTable.merge_sql`); when a probe of the primary key finds no
   stored id of the tenant within the staged ids' range (:meth:`BulkTable.probe_sql`), no
   staged id can exist yet and the batch is inserted as it is (:meth:`BulkTable.insert_sql`).

Re-sending a batch never duplicates a row, and an unchanged row is not even rewritten, so an
identical resend of an invoiced or closed-period log is accepted as a no-op; a *changed*
resend of such a log is refused by the database and the whole batch rolls back. A batch is
all-or-nothing: if the connection drops midway, nothing of it is stored.

Rows are checked before anything is sent (:func:`split_batch`): a required value missing, an
instant outside the accepted range (:data:`effigate_engine.clock.HORIZON`, so every stored row
can be evaluated), a time log ending before it starts. By default one bad row refuses the whole
batch (:class:`BatchRefused` names every bad row, the first :data:`MAX_NAMED_ROWS` in its
message); a caller that opts in stores the valid rows and gets the others back instead.

Two drivers are supported (measured in ``bench/bench_store.py``, see ``docs/store.md``):
asyncpg (``copy_records_to_table``, Python tuples in, Records out) and the ADBC PostgreSQL
driver (Arrow in and out, COPY in binary form done in C++). Instants are ``timestamp[us, UTC]``
in Arrow and ``timestamptz`` in the database; ids of the caller are strings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.clock import HORIZON, outside_horizon
from effigate_engine.store.errors import StoreError, from_adbc, from_asyncpg
from effigate_engine.store.tenant import TenantKey, bind, tenant_text, verify_bound

INSTANT = pa.timestamp("us", tz="UTC")
#: Bad rows named in the message of a refused batch (:class:`BatchRefused` holds them all).
MAX_NAMED_ROWS = 20
#: One row per row of a batch that cannot be stored: its position in the batch, its id, the
#: column at fault (``table.column``) and a sentence naming the value.
REJECTED_ROWS = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("field", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)


class BatchRefused(StoreError):
    """Rows of a batch cannot be stored, so none is. ``rejected`` (:data:`REJECTED_ROWS`)
    names every bad row; ``field`` and ``value`` are the first one's (``time_logs.agent[3]``),
    and the message names the first :data:`MAX_NAMED_ROWS` and gives the count of all."""

    def __init__(self, table: str, rejected: pa.Table, first_value: object) -> None:
        self.rejected = rejected
        first = rejected.slice(0, 1).to_pylist()[0]
        messages = rejected.column("message").slice(0, MAX_NAMED_ROWS).to_pylist()
        super().__init__(f"{first['field']}[{first['row']}]", first_value, "")
        n = rejected.num_rows
        if n == 1:
            text = messages[0]
        else:
            more = f"; and {n - MAX_NAMED_ROWS} more" if n > MAX_NAMED_ROWS else ""
            text = f"{table}: {n} rows cannot be stored, so none was: {'; '.join(messages)}{more}"
        self.problem = text
        self.args = (text,)
T = TypeVar("T")


@dataclass(frozen=True)
class Column:
    """One ingested column: Arrow type, SQL type and whether nulls are allowed."""

    name: str
    arrow_type: pa.DataType
    sql_type: str
    nullable: bool = False


@dataclass(frozen=True)
class BulkTable:
    """A table ingested by id: its columns (the first is ``id``) and the staging table name."""

    name: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema a batch for this table must match (column order included)."""
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        )

    @property
    def column_names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def staging(self) -> str:
        """Name of the temporary staging table."""
        return f"effigate_stage_{self.name}"

    def staging_ddl(self, tenant_id: UUID | str) -> str:
        """``CREATE TEMP TABLE`` for the staging table, dropped when the transaction ends.

        Its first column is ``tenant_id``, filled in by its default (the batch's tenant), then
        the batch's columns, so a staged row has the stored table's columns in its order and
        :meth:`insert_sql` passes rows through as they are: selecting a constant tenant
        instead made the server build every row anew (about a tenth of the insert's CPU).
        """
        tenant = tenant_text(tenant_id)
        cols = ", ".join(f"{c.name} {c.sql_type}" for c in self.columns)
        return (
            f"CREATE TEMP TABLE {self.staging} (tenant_id uuid NOT NULL DEFAULT"
            f" '{tenant}'::uuid, {cols}) ON COMMIT DROP"
        )

    def lock_sql(self, tenant_id: UUID | str) -> str:
        """Transaction-scoped advisory lock serialising ingests of this table for one tenant."""
        tenant = tenant_text(tenant_id)
        return (
            f"SELECT pg_advisory_xact_lock(hashtext('effigate.ingest.{self.name}'),"
            f" hashtext('{tenant}'))"
        )

    def merge_sql(self, tenant_id: UUID | str) -> str:
        """The upsert from staging; returns one row (inserted, updated).

        Changed rows are updated (unchanged ones are not touched, so no trigger fires for
        them) and new rows inserted with an anti-join. This is the effect of ``INSERT ... ON
        CONFLICT DO UPDATE ... WHERE changed`` at about half its cost on large batches (no
        speculative insertion per row); :meth:`lock_sql` taken first keeps two ingests of the
        same tenant from racing on a new id.
        """
        tenant = tenant_text(tenant_id)
        names = self.column_names
        payload = names[1:]
        assignments = ", ".join(f"{n} = s.{n}" for n in payload)
        old = ", ".join(f"t.{n}" for n in payload)
        new = ", ".join(f"s.{n}" for n in payload)
        select = ", ".join(f"s.{n}" for n in names)
        return (
            f"WITH updated AS ("
            f" UPDATE {self.name} AS t SET {assignments} FROM {self.staging} s"
            f" WHERE t.tenant_id = '{tenant}'::uuid AND t.id = s.id"
            f" AND ({old}) IS DISTINCT FROM ({new}) RETURNING 1),"
            f" inserted AS ("
            f" INSERT INTO {self.name} (tenant_id, {', '.join(names)})"
            f" SELECT s.tenant_id, {select} FROM {self.staging} s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {self.name} x"
            f" WHERE x.tenant_id = '{tenant}'::uuid AND x.id = s.id) RETURNING 1)"
            f" SELECT (SELECT count(*) FROM inserted) AS inserted,"
            f" (SELECT count(*) FROM updated) AS updated"
        )

    def probe_sql(self, tenant_id: UUID | str) -> str:
        """Whether the tenant already has a row whose id lies between the staged ids' least and
        greatest (bytewise, like the primary key). ``false`` proves no staged id is stored yet,
        so the batch can be inserted as it is (:meth:`insert_sql`); one range probe of the
        primary key after one pass over staging, instead of the merge's update and anti-join.
        """
        tenant = tenant_text(tenant_id)
        return (
            f"SELECT EXISTS (SELECT 1 FROM {self.name} t,"
            f" (SELECT min(id COLLATE \"C\") AS lo, max(id COLLATE \"C\") AS hi"
            f" FROM {self.staging}) b"
            f" WHERE t.tenant_id = '{tenant}'::uuid AND t.id >= b.lo AND t.id <= b.hi)"
        )

    def insert_sql(self) -> str:
        """Insert every staged row (the batch is new: :meth:`probe_sql` found none stored)."""
        names = ", ".join(["tenant_id", *self.column_names])
        return f"INSERT INTO {self.name} ({names}) SELECT {names} FROM {self.staging}"

    def select_sql(
        self, contract_id: int | None = None, blocks: tuple[int, int | None] | None = None
    ) -> str:
        """``SELECT`` of the columns in order, optionally of one contract's rows only, and
        optionally of the rows stored in table blocks ``[first, end)`` only (``end`` ``None``:
        to the end of the table), which the server reads with a TID range scan.
        """
        conditions = []
        if contract_id is not None:
            if "contract_id" not in self.column_names:
                raise StoreError(f"{self.name}.contract_id", contract_id, "is not a column")
            conditions.append(f"contract_id = {int(contract_id)}")
        if blocks is not None:
            first, end = blocks
            conditions.append(f"ctid >= '({int(first)},0)'::tid")
            if end is not None:
                conditions.append(f"ctid < '({int(end)},0)'::tid")
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {', '.join(self.column_names)} FROM {self.name}{clause}"


def _text(name: str, nullable: bool = False) -> Column:
    return Column(name, pa.string(), "text", nullable)


def _instant(name: str, nullable: bool = False) -> Column:
    return Column(name, INSTANT, "timestamptz", nullable)


def _int(name: str, nullable: bool = False) -> Column:
    return Column(name, pa.int64(), "bigint", nullable)


TIME_LOGS = BulkTable(
    "time_logs",
    (
        _text("id"),
        _int("contract_id"),
        _text("ticket_id", True),
        _text("task_ref", True),
        _text("agent"),
        _text("support_level"),
        _text("job_type"),
        _text("priority", True),
        _instant("started_at"),
        _instant("ended_at"),
        _text("billable_type"),
        _text("approval_state"),
    ),
)

TICKET_EVENTS = BulkTable(
    "ticket_events",
    (
        _text("id"),
        _text("ticket_id"),
        _text("kind"),
        _instant("occurred_at"),
        _text("actor", True),
        _text("detail", True),
    ),
)

TICKETS = BulkTable(
    "tickets",
    (
        _text("id"),
        _int("client_id"),
        _int("contract_id", True),
        _text("priority"),
        _text("status"),
        _instant("created_at"),
        _instant("first_response_at", True),
        _instant("resolved_at", True),
    ),
)


@dataclass(frozen=True)
class IngestResult:
    """Counts of one ingested batch: rows received, newly inserted, changed, left unchanged."""

    received: int
    inserted: int
    updated: int
    #: Rows set aside (not stored) when the caller asked to skip invalid rows.
    rejected: pa.Table = field(default_factory=REJECTED_ROWS.empty_table)

    @property
    def unchanged(self) -> int:
        """Rows already stored with identical content."""
        return self.received - self.inserted - self.updated - self.rejected.num_rows


def prepare_batch(spec: BulkTable, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """Check a batch against ``spec`` and return it in the schema's column order and types.

    Raises :class:`StoreError` naming ``table.column[position]`` and the value for: a missing
    column, a naive (zone-less) timestamp, a duplicate id; and :class:`BatchRefused` naming
    every bad row (:func:`split_batch`) when any row cannot be stored.
    """
    prepared, rejected, first_value = _checked_rows(spec, batch)
    if rejected.num_rows:
        raise BatchRefused(spec.name, rejected, first_value)
    return prepared


def split_batch(spec: BulkTable, batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    """The rows of ``batch`` that can be stored (prepared, as :func:`prepare_batch` returns
    them) and the others (:data:`REJECTED_ROWS`, by position in ``batch``): a null in a
    required column, an instant outside :data:`effigate_engine.clock.HORIZON`, and for time
    logs an end not after the start. Faults of the whole batch (a missing column, a naive
    timestamp, a duplicate id) still raise :class:`StoreError`."""
    prepared, rejected, _ = _checked_rows(spec, batch)
    if rejected.num_rows == 0:
        return prepared, rejected
    keep = np.ones(prepared.num_rows, bool)
    keep[rejected.column("row").to_numpy()] = False
    return prepared.filter(pa.array(keep)).cast(spec.schema), rejected


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return repr(value.isoformat())
    return repr(value)


def _checked_rows(
    spec: BulkTable, batch: pa.Table | pa.RecordBatch
) -> tuple[pa.Table, pa.Table, object]:
    """The batch in ``spec``'s schema, its bad rows (:data:`REJECTED_ROWS`, each named once,
    by its first fault in column order) and the first bad row's offending value."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    arrays = []
    for col in spec.columns:
        name = f"{spec.name}.{col.name}"
        if col.name not in table.column_names:
            raise StoreError(name, None, "is missing from the batch")
        data = table.column(col.name)
        if pa.types.is_timestamp(data.type) and data.type.tz is None:
            raise StoreError(name, str(data.type), "has no time zone; send UTC instants")
        if data.type != col.arrow_type:
            try:
                data = data.cast(col.arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise StoreError(name, str(data.type), f"cannot be read as {col.arrow_type}")\
                    from exc
        arrays.append(data)
    loose = pa.schema([pa.field(c.name, c.arrow_type) for c in spec.columns])
    prepared = pa.Table.from_arrays(arrays, schema=loose)
    ids = prepared.column("id")
    if not ids_ascending(ids) and len(pc.unique(ids)) != len(ids):
        counts = pc.value_counts(ids)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        positions = pc.indices_nonzero(pc.equal(ids, repeated)).to_pylist()
        raise StoreError(
            f"{spec.name}.id[{positions[1]}]",
            repeated,
            f"appears more than once in the batch (positions {positions[:5]})",
        )
    faults: dict[int, tuple[str, object, str]] = {}

    def fault(mask: np.ndarray, column: str, problem: Any) -> None:
        values = prepared.column(column)
        for k in np.flatnonzero(mask):
            if int(k) not in faults:
                value = values[int(k)].as_py()
                faults[int(k)] = (column, value, problem(int(k)) if callable(problem) else problem)

    for col in spec.columns:
        data = prepared.column(col.name)
        if not col.nullable and data.null_count:
            fault(pc.is_null(data).to_numpy(zero_copy_only=False), col.name, "is required but null")
        if col.arrow_type == INSTANT and len(data):
            fault(outside_horizon(data), col.name, f"is outside the accepted range {HORIZON}")
    if spec is TIME_LOGS and len(prepared):
        started = prepared.column("started_at")
        bad = pc.fill_null(pc.less_equal(prepared.column("ended_at"), started), False)
        fault(
            bad.to_numpy(zero_copy_only=False),
            "ended_at",
            lambda k: f"is not after started_at {started[k].as_py()}",
        )
    if not faults:
        return prepared.cast(spec.schema), REJECTED_ROWS.empty_table(), None
    order = sorted(faults)
    row_ids = ids.take(pa.array(order, pa.int64())).to_pylist()
    messages = []
    for k, row_id in zip(order, row_ids, strict=True):
        column, value, problem = faults[k]
        shown = "None" if value is None else _shown(value)
        messages.append(f"{spec.name}.{column}[{k}] (id {row_id!r}): {shown} {problem}")
    rejected = pa.Table.from_arrays(
        [
            pa.array(order, pa.int64()),
            pa.array(row_ids, pa.string()),
            pa.array([f"{spec.name}.{faults[k][0]}" for k in order], pa.string()),
            pa.array(messages, pa.string()),
        ],
        schema=REJECTED_ROWS,
    )
    return prepared, rejected, faults[order[0]][1]


def ids_ascending(ids: pa.ChunkedArray | pa.Array) -> bool:
    """Whether ``ids`` are strictly ascending (bytewise, the primary key's order), which also
    proves them distinct; one vectorised comparison of neighbours."""
    if len(ids) < 2:
        return True
    return bool(pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py())


def in_key_order(table: pa.Table) -> pa.Table:
    """``table`` (prepared) with its rows in primary-key order (by ``id``, bytewise).

    Inserting in key order appends to the primary key's B-tree instead of landing on a random
    leaf per row: for 1M shuffled ids the server's insert took about a quarter less time, for
    about half a second of sorting here (measured in ``docs/store.md``). A batch already in
    order is returned as it is.
    """
    if ids_ascending(table.column("id")):
        return table
    return table.take(pc.sort_indices(table.column("id")))


COPY_CHUNK_ROWS = 65_536
"""Rows per record batch streamed into COPY: the server parses one chunk while the driver
encodes the next, as far as the socket buffers allow (a single 1M-row batch is encoded whole
before the first byte is sent; chunks took about a quarter off the COPY's wall time, see
``docs/store.md``)."""


def copy_stream(table: pa.Table, chunk_rows: int = COPY_CHUNK_ROWS) -> pa.RecordBatchReader:
    """``table`` as a reader of record batches of at most ``chunk_rows`` rows (zero-copy)."""
    return pa.RecordBatchReader.from_batches(
        table.schema, table.to_batches(max_chunksize=chunk_rows)
    )


def table_to_records(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of an Arrow table as tuples (for asyncpg's COPY)."""
    columns = [col.to_pylist() for col in table.columns]
    return list(zip(*columns, strict=True))


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


async def read_arrow_asyncpg(
    conn: asyncpg.Connection,
    spec: BulkTable,
    tenant: TenantKey,
    contract_id: int | None = None,
) -> pa.Table:
    """Read ``spec``'s rows of ``tenant`` (of one contract if given) into Arrow (asyncpg)."""
    async with conn.transaction(readonly=True):
        await bind(conn, tenant)
        records = await conn.fetch(spec.select_sql(contract_id))
    columns = list(zip(*records, strict=True)) if records else [[] for _ in spec.columns]
    arrays = [
        pa.array(values, type=col.arrow_type)
        for values, col in zip(columns, spec.columns, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=spec.schema)


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
) -> IngestResult:
    """Upsert ``rows`` into ``spec``'s table for ``tenant`` in one transaction (ADBC).

    ``rows`` is an Arrow table (checked with :func:`prepare_batch`, put in key order with
    :func:`in_key_order` and streamed in chunks of ``chunk_rows`` rows) or a record-batch
    reader in ``spec.schema`` (streamed as it is; checked by the database only). When
    ``steps`` is given, the wall seconds of each step are added to it under the keys
    ``prepare``, ``copy``, ``lock``, ``probe``, ``analyze``, ``merge`` or ``insert`` and
    ``commit``.
    """
    import adbc_driver_manager

    clock = _StepClock(steps)
    if isinstance(rows, pa.Table):
        data: pa.RecordBatchReader = copy_stream(
            in_key_order(prepare_batch(spec, rows)), chunk_rows
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
        _rollback_quietly(conn)
        raise from_adbc(exc) from exc
    except BaseException:
        _rollback_quietly(conn)
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


PARALLEL_READ_MIN_BLOCKS = 1024
"""Tables smaller than this many blocks (8 MB) are read on one connection even when helper
connections are given: below it, starting the other parts costs more than it saves."""


def read_arrow_adbc(
    conn: Any,
    spec: BulkTable,
    tenant: TenantKey,
    contract_id: int | None = None,
    helpers: Sequence[Any] = (),
    min_blocks: int = PARALLEL_READ_MIN_BLOCKS,
) -> pa.Table:
    """Read ``spec``'s rows of ``tenant`` (of one contract if given) into Arrow (ADBC).

    The driver streams the result as binary COPY and decodes it to Arrow columns in C++.

    ``helpers`` are further idle ADBC connections to the same database. When given (and the
    table has at least ``min_blocks`` blocks), the table's blocks are split
    into ``1 + len(helpers)`` ranges read at the same time, one per connection, so the server
    encodes and the driver decodes the parts on several cores. Every part reads the same
    snapshot: ``conn`` runs ``REPEATABLE READ``, exports its snapshot
    (``pg_export_snapshot()``) and each helper imports it (``SET TRANSACTION SNAPSHOT``)
    before reading, so the result is exactly what the single query would have returned, in
    the same (physical) order, even while ingests commit.
    """
    import adbc_driver_manager

    try:
        with conn.cursor() as cur:
            if helpers:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            bind_adbc(cur, tenant)
            ranges: list[tuple[int, int | None]] = []
            snapshot = ""
            if helpers:
                cur.execute(
                    "SELECT pg_export_snapshot(),"
                    f" pg_relation_size('{spec.name}') / current_setting('block_size')::int"
                )
                snapshot, blocks = cur.fetchone()
                if blocks >= max(min_blocks, 1):
                    parts = 1 + len(helpers)
                    edges = [blocks * i // parts for i in range(parts)]
                    ranges = [(edges[i], edges[i + 1]) for i in range(parts - 1)]
                    ranges.append((edges[-1], None))  # rows of later blocks are not visible
            if not ranges:
                cur.execute(spec.select_sql(contract_id))
                tables = [cur.fetch_arrow_table()]
            else:
                with ThreadPoolExecutor(max_workers=len(ranges) - 1) as pool:
                    futures = [
                        pool.submit(
                            _read_part, helper, spec, tenant, snapshot, contract_id, part
                        )
                        for helper, part in zip(helpers, ranges[1:], strict=False)
                    ]
                    cur.execute(spec.select_sql(contract_id, ranges[0]))
                    first = cur.fetch_arrow_table()
                    tables = [first] + [f.result() for f in futures]
        conn.rollback()
    except adbc_driver_manager.Error as exc:
        _rollback_quietly(conn)
        raise from_adbc(exc) from exc
    except BaseException:
        _rollback_quietly(conn)
        raise
    if len(tables) == 1:
        return tables[0].cast(spec.schema)
    return pa.concat_tables([t.cast(spec.schema) for t in tables])


def _read_part(
    conn: Any,
    spec: BulkTable,
    tenant: TenantKey,
    snapshot: str,
    contract_id: int | None,
    blocks: tuple[int, int | None],
) -> pa.Table:
    """One block range of a parallel read, in the snapshot exported by the first connection."""
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            bind_adbc(cur, tenant)
            cur.execute(spec.select_sql(contract_id, blocks))
            table = cur.fetch_arrow_table()
        conn.rollback()
    except BaseException:
        _rollback_quietly(conn)
        raise
    return table


# the paths kept for the service ------------------------------------------------------------


async def ingest(
    conn: Any,
    spec: BulkTable,
    tenant: TenantKey,
    rows: pa.Table | pa.RecordBatchReader,
    skip_invalid_rows: bool = False,
) -> IngestResult:
    """The service's bulk ingest: ADBC (measured faster), run off the event loop.

    ``conn`` is an ADBC connection (:func:`connect_adbc`) used by one call at a time; the
    driver releases the GIL while it talks to the server. With ``skip_invalid_rows`` (``rows``
    a table), the rows :func:`split_batch` sets aside are not stored but returned in
    ``IngestResult.rejected``, and the valid rows are stored as one batch.
    """
    if not skip_invalid_rows or not isinstance(rows, pa.Table):
        return await run_adbc(conn, ingest_adbc, spec, tenant, rows)
    return await run_adbc(conn, ingest_valid_rows, spec, tenant, rows)


def ingest_valid_rows(
    conn: Any, spec: BulkTable, tenant: TenantKey, rows: pa.Table
) -> IngestResult:
    """:func:`ingest_adbc` of the rows of ``rows`` that can be stored; the others are in the
    result's ``rejected`` (and counted as received)."""
    valid, rejected = split_batch(spec, rows)
    result = ingest_adbc(conn, spec, tenant, copy_stream(in_key_order(valid)))
    return IngestResult(
        result.received + rejected.num_rows, result.inserted, result.updated, rejected
    )


async def read_arrow(
    conn: Any,
    spec: BulkTable,
    tenant: TenantKey,
    contract_id: int | None = None,
    helpers: Sequence[Any] = (),
) -> pa.Table:
    """The service's Arrow read: ADBC (measured several times faster), off the event loop;
    with ``helpers`` (idle ADBC connections) a large table is read in parallel parts of one
    snapshot (:func:`read_arrow_adbc`)."""
    return await run_adbc(conn, read_arrow_adbc, spec, tenant, contract_id, helpers)


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


def _rollback_quietly(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection may already be gone
        return
