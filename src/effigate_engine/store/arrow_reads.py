"""Reads of stored tables into Arrow, for both drivers: asyncpg (Records converted in Python)
and ADBC (binary COPY decoded to Arrow in C++; a large table in parallel parts of one snapshot).
Measured in ``bench/bench_store.py``, see ``docs/store.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pyarrow as pa

from effigate_engine.store.batches import BulkTable
from effigate_engine.store.bulk import bind_adbc, rollback_quietly, run_adbc
from effigate_engine.store.errors import from_adbc
from effigate_engine.store.tenant import TenantKey, bind


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
                        pool.submit(_read_part, helper, spec, tenant, snapshot, contract_id, part)
                        for helper, part in zip(helpers, ranges[1:], strict=False)
                    ]
                    cur.execute(spec.select_sql(contract_id, ranges[0]))
                    first = cur.fetch_arrow_table()
                    tables = [first] + [f.result() for f in futures]
        conn.rollback()
    except adbc_driver_manager.Error as exc:
        rollback_quietly(conn)
        raise from_adbc(exc) from exc
    except BaseException:
        rollback_quietly(conn)
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
        rollback_quietly(conn)
        raise
    return table


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
