"""Bulk ingest: idempotent by id, all-or-nothing, refused when it would change invoiced work;
and Arrow reads that see only the tenant's rows. Both drivers are exercised."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from effigate_engine.store.arrow_reads import read_arrow, read_arrow_adbc, read_arrow_asyncpg
from effigate_engine.store.batches import (
    STORED_INSTANT,
    STORED_TICKET_EVENTS,
    STORED_TICKETS,
    STORED_TIME_LOGS,
    IngestResult,
    prepare_batch,
    table_to_records,
)
from effigate_engine.store.bulk import connect_adbc, ingest, ingest_adbc, ingest_asyncpg
from effigate_engine.store.errors import StoreError
from tests.store.helpers import (
    T0,
    Database,
    Seed,
    draft_invoice,
    issue,
    seed_tenant,
    time_log_batch,
)

Ingest = Callable[[Database, Seed, pa.Table], IngestResult]


def ingest_with_asyncpg(db: Database, seed: Seed, batch: pa.Table) -> IngestResult:
    """One ingest over a fresh asyncpg connection as the service role."""

    async def go() -> IngestResult:
        conn = await asyncpg.connect(db.app)
        try:
            return await ingest_asyncpg(conn, STORED_TIME_LOGS, seed.key, batch)
        finally:
            await conn.close()

    return asyncio.run(go())


def ingest_with_adbc(db: Database, seed: Seed, batch: pa.Table) -> IngestResult:
    """One ingest over a fresh ADBC connection as the service role."""
    conn = connect_adbc(db.app)
    try:
        return ingest_adbc(conn, STORED_TIME_LOGS, seed.key, batch)
    finally:
        conn.close()


DRIVERS = pytest.mark.parametrize(
    "ingest", [ingest_with_asyncpg, ingest_with_adbc], ids=["asyncpg", "adbc"]
)


def new_seed(db: Database) -> Seed:
    """A fresh tenant with an active contract."""

    async def go() -> Seed:
        conn = await asyncpg.connect(db.admin)
        try:
            return await seed_tenant(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def admin_value(db: Database, sql: str, *args: Any) -> Any:
    """Run one query as the superuser and return its first value."""

    async def go() -> Any:
        conn = await asyncpg.connect(db.admin)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def stored_logs(db: Database, seed: Seed) -> tuple[int, int]:
    """(rows, distinct ids) of the tenant's time logs."""
    count = admin_value(db, "SELECT count(*) FROM time_logs WHERE tenant_id = $1", seed.tenant_id)
    distinct = admin_value(
        db, "SELECT count(DISTINCT id) FROM time_logs WHERE tenant_id = $1", seed.tenant_id
    )
    return count, distinct


def issue_invoice_for(db: Database, seed: Seed, log_ids: tuple[str, ...]) -> int:
    """Draft and issue an invoice carrying ``log_ids``; returns its id."""

    async def go() -> int:
        conn = await asyncpg.connect(db.admin)
        try:
            invoice = await draft_invoice(conn, seed, log_ids=log_ids)
            await issue(conn, invoice)
            return invoice
        finally:
            await conn.close()

    return asyncio.run(go())


def with_value(batch: pa.Table, column: str, row: int, value: object) -> pa.Table:
    """A copy of ``batch`` with one cell replaced."""
    values = batch.column(column).to_pylist()
    values[row] = value
    index = batch.schema.get_field_index(column)
    return batch.set_column(index, column, pa.array(values, batch.schema.field(column).type))


@DRIVERS
def test_resending_a_batch_never_duplicates_a_time_log(db: Database, ingest: Ingest) -> None:
    seed = new_seed(db)
    ids = [f"log-{i:03d}" for i in range(50)]
    batch = time_log_batch(seed.contract_id, ids)
    first = ingest(db, seed, batch)
    assert (first.received, first.inserted, first.updated) == (50, 50, 0)
    again = ingest(db, seed, batch)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 50)
    assert stored_logs(db, seed) == (50, 50)
    changed = ingest(db, seed, with_value(batch, "agent", 7, "ben"))
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 49)
    assert admin_value(
        db, "SELECT agent FROM time_logs WHERE tenant_id = $1 AND id = 'log-007'", seed.tenant_id
    ) == "ben"


@DRIVERS
def test_a_changed_resend_of_an_invoiced_log_is_refused_and_the_batch_stores_nothing(
    db: Database, ingest: Ingest
) -> None:
    seed = new_seed(db)
    ingest(db, seed, time_log_batch(seed.contract_id, ["billed", "unbilled"]))
    issue_invoice_for(db, seed, ("billed",))
    resend = time_log_batch(seed.contract_id, ["billed", "unbilled", "brand-new"])
    with pytest.raises(StoreError) as refused:
        ingest(db, seed, with_value(resend, "agent", 0, "someone-else"))
    assert "billed" in str(refused.value) and "issued invoice" in str(refused.value)
    assert refused.value.field == "time_logs.agent"
    assert admin_value(
        db, "SELECT count(*) FROM time_logs WHERE tenant_id = $1 AND id = 'brand-new'",
        seed.tenant_id,
    ) == 0
    # an identical resend of the invoiced log is a no-op and the rest goes in
    result = ingest(db, seed, resend)
    assert (result.inserted, result.updated, result.unchanged) == (1, 0, 2)


@DRIVERS
def test_a_batch_with_one_bad_row_stores_nothing(db: Database, ingest: Ingest) -> None:
    seed = new_seed(db)
    batch = time_log_batch(seed.contract_id, [f"row-{i}" for i in range(20)])
    bad = with_value(batch, "contract_id", 13, 999_999_999)
    with pytest.raises(StoreError, match="999999999"):
        ingest(db, seed, bad)
    assert stored_logs(db, seed) == (0, 0)
    bad = with_value(batch, "billable_type", 5, "MAYBE")
    with pytest.raises(StoreError, match="billable_type"):
        ingest(db, seed, bad)
    assert stored_logs(db, seed) == (0, 0)


def test_batch_errors_name_the_field_position_and_value(db: Database) -> None:
    seed = new_seed(db)
    batch = time_log_batch(seed.contract_id, ["a", "b", "c"])
    with pytest.raises(StoreError) as dup:
        ingest_with_asyncpg(db, seed, with_value(batch, "id", 2, "a"))
    assert dup.value.field == "time_logs.id[2]" and dup.value.value == "a"
    with pytest.raises(StoreError) as backwards:
        ingest_with_adbc(
            db, seed, with_value(batch, "ended_at", 1, T0 - timedelta(hours=1))
        )
    assert backwards.value.field == "time_logs.ended_at[1]"
    with pytest.raises(StoreError) as missing:
        ingest_with_asyncpg(db, seed, with_value(batch, "agent", 0, None))
    assert missing.value.field == "time_logs.agent[0]"
    naive = batch.set_column(
        8, "started_at", pc.cast(batch.column("started_at"), pa.timestamp("us"))
    )
    with pytest.raises(StoreError, match="time zone") as zoneless:
        ingest_with_adbc(db, seed, naive)
    assert zoneless.value.field == "time_logs.started_at"
    assert stored_logs(db, seed) == (0, 0)


def test_concurrent_ingests_of_the_same_batch_store_each_row_once(db: Database) -> None:
    seed = new_seed(db)
    batch = time_log_batch(seed.contract_id, [f"dup-{i:04d}" for i in range(2_000)])

    async def go() -> list[IngestResult]:
        conns = [await asyncpg.connect(db.app) for _ in range(3)]
        try:
            return list(await asyncio.gather(
                *(ingest_asyncpg(c, STORED_TIME_LOGS, seed.key, batch) for c in conns)
            ))
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(go())
    assert sorted(r.inserted for r in results) == [0, 0, 2_000]
    assert stored_logs(db, seed) == (2_000, 2_000)


# a dropped connection midway ---------------------------------------------------------------

KILL_BATCH = 20_000


async def _terminate(admin_dsn: str, pid: int) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await conn.close()


def test_asyncpg_ingest_killed_midway_stores_nothing_and_a_rerun_stores_each_row_once(
    db: Database,
) -> None:
    seed = new_seed(db)
    batch = time_log_batch(seed.contract_id, [f"k-{i:06d}" for i in range(KILL_BATCH)])
    records = table_to_records(batch)
    half = KILL_BATCH // 2

    async def go() -> None:
        conn = await asyncpg.connect(db.app)
        pid = conn.get_server_pid()
        sent = 0

        async def rows() -> AsyncIterator[tuple[Any, ...]]:
            nonlocal sent
            for record in records[:half]:
                sent += 1
                yield record
            await _terminate(db.admin, pid)  # the connection drops mid-COPY
            for record in records[half:]:
                sent += 1
                yield record

        try:
            with pytest.raises(Exception):  # noqa: B017 - any driver error: the link is gone
                await ingest_asyncpg(conn, STORED_TIME_LOGS, seed.key, rows())
        finally:
            conn.terminate()
        assert sent >= half

    asyncio.run(go())
    assert stored_logs(db, seed) == (0, 0)
    rerun = ingest_with_asyncpg(db, seed, batch)
    assert rerun.inserted == KILL_BATCH
    assert stored_logs(db, seed) == (KILL_BATCH, KILL_BATCH)
    assert ingest_with_asyncpg(db, seed, batch).inserted == 0
    assert stored_logs(db, seed) == (KILL_BATCH, KILL_BATCH)


def test_adbc_ingest_killed_midway_stores_nothing_and_a_rerun_stores_each_row_once(
    db: Database,
) -> None:
    seed = new_seed(db)
    batch = time_log_batch(seed.contract_id, [f"a-{i:06d}" for i in range(KILL_BATCH)])
    conn = connect_adbc(db.app)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = int(cur.fetchone()[0])
    conn.rollback()
    delivered: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        chunks = batch.to_batches(max_chunksize=KILL_BATCH // 4)
        for number, chunk in enumerate(chunks):
            if number == 2:
                asyncio.run(_terminate(db.admin, pid))  # the connection drops mid-COPY
            delivered.append(chunk.num_rows)
            yield chunk

    reader = pa.RecordBatchReader.from_batches(STORED_TIME_LOGS.schema, batches())
    try:
        with pytest.raises(Exception):  # noqa: B017 - any driver error: the link is gone
            ingest_adbc(conn, STORED_TIME_LOGS, seed.key, reader)
    finally:
        with contextlib.suppress(Exception):  # the server already closed it
            conn.close()
    assert sum(delivered) >= KILL_BATCH // 2
    assert stored_logs(db, seed) == (0, 0)
    assert ingest_with_adbc(db, seed, batch).inserted == KILL_BATCH
    assert stored_logs(db, seed) == (KILL_BATCH, KILL_BATCH)
    assert ingest_with_adbc(db, seed, batch).inserted == 0
    assert stored_logs(db, seed) == (KILL_BATCH, KILL_BATCH)


# ticket events and reads -------------------------------------------------------------------


def _tickets(seed: Seed, ids: list[str]) -> pa.Table:
    created = [T0 + timedelta(minutes=i) for i in range(len(ids))]
    return pa.table(
        {
            "id": ids,
            "client_id": pa.array([seed.client_id] * len(ids), pa.int64()),
            "contract_id": pa.array([seed.contract_id] * len(ids), pa.int64()),
            "priority": ["P1"] * len(ids),
            "status": ["OPEN"] * len(ids),
            "created_at": pa.array(created, STORED_INSTANT),
            "first_response_at": pa.array([None] * len(ids), STORED_INSTANT),
            "resolved_at": pa.array([None] * len(ids), STORED_INSTANT),
        }
    )


def _events(ticket_ids: list[str]) -> pa.Table:
    ids = [f"{t}:created" for t in ticket_ids]
    return pa.table(
        {
            "id": ids,
            "ticket_id": ticket_ids,
            "kind": ["CREATED"] * len(ids),
            "occurred_at": pa.array([datetime(2026, 3, 2, tzinfo=UTC)] * len(ids), STORED_INSTANT),
            "actor": ["portal"] * len(ids),
            "detail": pa.array([None] * len(ids), pa.string()),
        }
    )


def test_ticket_events_upsert_by_id_and_must_name_a_ticket_of_the_tenant(db: Database) -> None:
    seed = new_seed(db)
    other = new_seed(db)

    async def go() -> None:
        conn = await asyncpg.connect(db.app)
        try:
            await ingest_asyncpg(conn, STORED_TICKETS, seed.key, _tickets(seed, ["T-1", "T-2"]))
            await ingest_asyncpg(conn, STORED_TICKETS, other.key, _tickets(other, ["T-9"]))
            events = _events(["T-1", "T-2"])
            first = await ingest_asyncpg(conn, STORED_TICKET_EVENTS, seed.key, events)
            again = await ingest_asyncpg(conn, STORED_TICKET_EVENTS, seed.key, events)
            assert (first.inserted, again.inserted, again.unchanged) == (2, 0, 2)
            with pytest.raises(StoreError, match="T-9") as refused:
                await ingest_asyncpg(conn, STORED_TICKET_EVENTS, seed.key, _events(["T-9"]))
            assert refused.value.field == "ticket_events.ticket_id"
        finally:
            await conn.close()

    asyncio.run(go())
    assert admin_value(
        db, "SELECT count(*) FROM ticket_events WHERE tenant_id = $1", seed.tenant_id
    ) == 2


def test_arrow_reads_return_the_tenants_rows_only_with_both_drivers(db: Database) -> None:
    seed = new_seed(db)
    other = new_seed(db)
    ids = [f"r-{i:03d}" for i in range(30)]
    batch = time_log_batch(seed.contract_id, ids)
    ingest_with_adbc(db, other, time_log_batch(other.contract_id, ["theirs"]))

    async def via_asyncpg() -> pa.Table:
        conn = await asyncpg.connect(db.app)
        try:
            return await read_arrow_asyncpg(conn, STORED_TIME_LOGS, seed.key)
        finally:
            await conn.close()

    conn = connect_adbc(db.app)
    try:
        # the service's kept paths: ADBC off the event loop
        stored = asyncio.run(ingest(conn, STORED_TIME_LOGS, seed.key, batch))
        assert stored.inserted == len(ids)
        via_adbc = read_arrow_adbc(conn, STORED_TIME_LOGS, seed.key)
        by_contract = asyncio.run(
            read_arrow(conn, STORED_TIME_LOGS, seed.key, contract_id=seed.contract_id)
        )
        assert asyncio.run(
            read_arrow(conn, STORED_TIME_LOGS, seed.key, contract_id=other.contract_id)
        ).num_rows == 0
    finally:
        conn.close()
    expected = prepare_batch(STORED_TIME_LOGS, batch).sort_by("id")
    for table in (asyncio.run(via_asyncpg()), via_adbc, by_contract):
        assert table.schema == STORED_TIME_LOGS.schema
        assert table.sort_by("id").equals(expected)


@DRIVERS
def test_new_batches_and_overlapping_batches_report_exact_counts(
    db: Database, ingest: Ingest
) -> None:
    # a batch with no stored id in its id range is inserted as it is; any other is merged
    seed = new_seed(db)
    first = time_log_batch(seed.contract_id, [f"a-{i:03d}" for i in range(10, 20)])
    assert ingest(db, seed, first) == IngestResult(10, 10, 0)
    above = time_log_batch(seed.contract_id, [f"a-{i:03d}" for i in range(20, 30)])
    assert ingest(db, seed, above) == IngestResult(10, 10, 0)
    # new ids between stored ones (a-0105 sorts between a-010 and a-011 bytewise)
    between = time_log_batch(seed.contract_id, ["a-0105", "a-0195"])
    assert ingest(db, seed, between) == IngestResult(2, 2, 0)
    changed = with_value(
        time_log_batch(seed.contract_id, ["a-015", "a-030"]), "agent", 0, "someone else"
    )
    assert ingest(db, seed, changed) == IngestResult(2, 1, 1)
    assert ingest(db, seed, changed) == IngestResult(2, 0, 0)
    assert stored_logs(db, seed) == (23, 23)


def test_tickets_must_name_a_client_and_contract_of_the_tenant(db: Database) -> None:
    seed = new_seed(db)
    other = new_seed(db)
    conn = connect_adbc(db.app)
    try:
        tickets = _tickets(seed, ["K-1", "K-2", "K-3"])
        foreign_client = with_value(tickets, "client_id", 2, other.client_id)
        with pytest.raises(StoreError, match="K-3") as refused:
            ingest_adbc(conn, STORED_TICKETS, seed.key, foreign_client)
        assert refused.value.field == "tickets.client_id"
        foreign_contract = with_value(tickets, "contract_id", 1, other.contract_id)
        with pytest.raises(StoreError, match="K-2") as refused:
            ingest_adbc(conn, STORED_TICKETS, seed.key, foreign_contract)
        assert refused.value.field == "tickets.contract_id"
        no_contract = with_value(tickets, "contract_id", 0, None)
        assert ingest_adbc(conn, STORED_TICKETS, seed.key, no_contract).inserted == 3
    finally:
        conn.close()


def test_parallel_arrow_reads_equal_the_single_read_of_the_tenant(db: Database) -> None:
    seed = new_seed(db)
    other = new_seed(db)
    ingest_with_adbc(db, other, time_log_batch(other.contract_id, ["theirs-1", "theirs-2"]))
    batch = time_log_batch(seed.contract_id, [f"p-{i:04d}" for i in range(500)])
    ingest_with_adbc(db, seed, batch)
    ingest_with_adbc(db, other, time_log_batch(other.contract_id, ["theirs-3"]))
    conns = [connect_adbc(db.app) for _ in range(3)]
    try:
        main, helpers = conns[0], conns[1:]
        single = read_arrow_adbc(main, STORED_TIME_LOGS, seed.key)
        assert single.num_rows == 500
        # min_blocks=0: split even this small table, over two and over three connections
        for used in (helpers[:1], helpers):
            parts = read_arrow_adbc(main, STORED_TIME_LOGS, seed.key, None, used, min_blocks=0)
            assert parts.schema == STORED_TIME_LOGS.schema
            assert parts.equals(single)
        by_contract = asyncio.run(
            read_arrow(main, STORED_TIME_LOGS, seed.key, seed.contract_id, helpers)
        )
        assert by_contract.sort_by("id").equals(single.sort_by("id"))
        foreign = read_arrow_adbc(
            main, STORED_TIME_LOGS, seed.key, other.contract_id, helpers, min_blocks=0
        )
        assert foreign.num_rows == 0 and foreign.schema == STORED_TIME_LOGS.schema
        # the connections are reusable afterwards (every part's transaction has ended)
        assert read_arrow_adbc(helpers[0], STORED_TIME_LOGS, other.key).num_rows == 3
    finally:
        for conn in conns:
            conn.close()


def _distinct_rows(seed: Seed, ids: list[str]) -> pa.Table:
    """Time logs whose agent is their id, so a stored row can be checked field by field."""
    batch = time_log_batch(seed.contract_id, ids)
    return batch.set_column(4, "agent", batch.column("id"))


def _stored(db: Database, seed: Seed) -> pa.Table:
    conn = connect_adbc(db.app)
    try:
        return read_arrow_adbc(conn, STORED_TIME_LOGS, seed.key).sort_by("id")
    finally:
        conn.close()


@DRIVERS
def test_a_batch_in_any_id_order_is_stored_row_for_row_and_resent_as_a_no_op(
    db: Database, ingest: Ingest
) -> None:
    seed = new_seed(db)
    ids = [f"o-{(i * 37) % 101:03d}" for i in range(101)]  # every id once, out of order
    batch = _distinct_rows(seed, ids)
    assert ingest(db, seed, batch) == IngestResult(101, 101, 0)
    assert _stored(db, seed).equals(prepare_batch(STORED_TIME_LOGS, batch).sort_by("id"))
    reversed_batch = batch.take(pa.array(range(100, -1, -1)))
    assert ingest(db, seed, reversed_batch) == IngestResult(101, 0, 0)
    assert stored_logs(db, seed) == (101, 101)


def test_a_batch_streamed_in_many_chunks_is_stored_whole_or_not_at_all(db: Database) -> None:
    seed = new_seed(db)
    ids = [f"c-{(i * 13) % 50:02d}" for i in range(50)]
    conn = connect_adbc(db.app)
    try:
        batch = _distinct_rows(seed, ids)
        bad = with_value(batch, "contract_id", 49, 999_999_999)  # in the last of 8 chunks
        with pytest.raises(StoreError, match="999999999"):
            ingest_adbc(conn, STORED_TIME_LOGS, seed.key, bad, chunk_rows=7)
        assert stored_logs(db, seed) == (0, 0)
        result = ingest_adbc(conn, STORED_TIME_LOGS, seed.key, batch, chunk_rows=7)
        assert result == IngestResult(50, 50, 0)
    finally:
        conn.close()
    assert _stored(db, seed).equals(prepare_batch(STORED_TIME_LOGS, batch).sort_by("id"))


def test_ingest_reports_the_seconds_of_each_step(db: Database) -> None:
    seed = new_seed(db)
    batch = time_log_batch(seed.contract_id, [f"s-{i}" for i in range(5)])
    conn = connect_adbc(db.app)
    try:
        new: dict[str, float] = {}
        ingest_adbc(conn, STORED_TIME_LOGS, seed.key, batch, steps=new)
        resent: dict[str, float] = {}
        ingest_adbc(conn, STORED_TIME_LOGS, seed.key, batch, steps=resent)
    finally:
        conn.close()
    assert list(new) == ["prepare", "copy", "lock", "probe", "insert", "commit"]
    assert list(resent) == ["prepare", "copy", "lock", "probe", "analyze", "merge", "commit"]
    assert all(seconds >= 0 for seconds in [*new.values(), *resent.values()])
