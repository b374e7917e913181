"""Round trips to the database per operation, counted on the store's one pooled connection by
asyncpg's query logger (every statement sent, BEGIN, the tenant binding and COMMIT included):
generating an invoice costs the same few round trips whatever its number of lines.

asyncpg looks up the codecs of array and record types once per connection (a few statements
the first time a connection meets ``bigint[]`` or ``record[]``); the counts are taken on a
connection that has generated an invoice before, as every pooled connection soon has."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import pyarrow as pa

from effigate_engine.billing.rate_card_json import rate_card_from_json
from effigate_engine.service import contracts, invoicing
from effigate_engine.service import timelogs as timelog_service
from effigate_engine.store.database import Store
from effigate_engine.store.tenant import bind
from tests.service.test_invoicing import (
    MARCH,
    SEED_CARD,
    add_breach,
    log_batch,
    new_contract,
    run,
    seed_contract,
    setup,
)
from tests.store.helpers import Database

#: The most round trips ``GenerateInvoice`` may take (see ``docs/store.md``).
GENERATE_BUDGET = 12
#: How the contract aggregate's read begins.
AGGREGATE_HEAD = "SELECT c.id, c.client_id, c.contract_type"


class Counter:
    """The statements sent on the store's connection while :meth:`counting`."""

    def __init__(self) -> None:
        self.on = False
        self.queries: list[str] = []

    def __call__(self, record: object) -> None:
        if self.on:
            self.queries.append(record.query)  # type: ignore[attr-defined]

    @asynccontextmanager
    async def counting(self) -> AsyncIterator[list[str]]:
        self.queries = []
        self.on = True
        try:
            yield self.queries
        finally:
            self.on = False


@asynccontextmanager
async def counted_store(db: Database) -> AsyncIterator[tuple[Store, Counter]]:
    """A store with one pooled connection whose statements a :class:`Counter` sees."""
    store = await Store.open(db.app, pool_size=1, adbc_connections=1)
    counter = Counter()
    try:
        async with store.pool.acquire() as conn:
            conn.add_query_logger(counter)
        yield store, counter
    finally:
        await store.close()


def _logs(contract_id: int, job_types: int, prefix: str) -> pa.Table:
    """One approved hour of work per job type on 2 March (9:00-10:00 New York): each job type
    is its own invoice line."""
    spans = [("2026-03-02T09:00-05:00", "2026-03-02T10:00-05:00")] * job_types
    batch = log_batch(contract_id, spans, prefix)
    jobs = pa.array([f"job-{i:03d}" for i in range(job_types)], pa.string())
    agents = pa.array([f"agent-{i:03d}" for i in range(job_types)], pa.string())
    batch = batch.set_column(batch.column_names.index("job_type"), "job_type", jobs)
    return batch.set_column(batch.column_names.index("agent"), "agent", agents)


def test_generate_invoice_round_trips_do_not_grow_with_its_lines(db: Database) -> None:
    async def scenario() -> None:
        async with counted_store(db) as (store, counter):
            s = await setup(store, db)
            p = s.principal
            counts: dict[int, int] = {}
            for lines in (1, 5, 200):  # the first warms the connection's type codecs
                c = await new_contract(store, s)
                batch = _logs(c.id, lines, f"RT{c.id}")
                await timelog_service.ingest_time_logs(store, p, batch)
                await timelog_service.set_approval(store, p, batch.column("id").to_pylist())
                at = datetime(2026, 3, 10, 15, tzinfo=UTC)
                await add_breach(db, p, s.client_id, c.id, f"BR-RT{c.id}", at)
                async with counter.counting() as queries:
                    invoice = await invoicing.generate_invoice(store, p, c.id, MARCH)
                times = [x for x in invoice.lines if x.kind == "TIME"]
                assert len(times) == lines
                assert [x.kind for x in invoice.lines[lines:]] == ["SLA_CREDIT"]
                assert all(len(x.time_log_ids) == 1 for x in times)
                counts[lines] = len(queries)
                shown = "\n".join(q[:90] for q in queries)
                assert lines == 1 or len(queries) <= GENERATE_BUDGET, shown
                # what was returned, read from the inserts, is what a read finds
                assert await invoicing.get_invoice(store, p, invoice.id) == invoice
                # generating again returns the stored invoice, in fewer round trips still
                async with counter.counting() as again:
                    assert await invoicing.generate_invoice(store, p, c.id, MARCH) == invoice
                assert len(again) <= len(queries)
            assert counts[5] == counts[200] <= counts[1], counts

    run(scenario())


def test_contract_aggregate_loads_in_one_round_trip(db: Database) -> None:
    async def scenario() -> None:
        async with counted_store(db) as (store, counter):
            s = await setup(store, db)
            c = await new_contract(store, s, "FIXED_PRICE", terms={}, activate=False)
            for i in range(3):
                await contracts.add_milestone(store, s.principal, c.id, f"phase {i}", 10_000)
            await contracts.activate_contract(store, s.principal, c.id)
            async with store.transaction(s.principal) as conn, counter.counting() as queries:
                stored = await contracts.load_stored(conn, c.id, s.principal)
            assert len(queries) == 1
            assert [m.name for m in stored.contract.milestones] == [f"phase {i}" for i in range(3)]
            assert stored.record == await contracts.get_contract(store, s.principal, c.id)

    run(scenario())


def test_generation_prices_an_amendment_committed_while_it_waited(db: Database) -> None:
    """The contract is read before the period lock; an amendment committed while generation
    waits for its locks is seen (the locked row is a newer version: the aggregate is read
    again) and prices the invoice, for one more round trip."""

    async def scenario() -> None:
        async with counted_store(db) as (store, counter):
            async with store.pool.acquire() as conn:
                generator = conn.get_server_pid()
            s, c = await seed_contract(store, db)
            p = s.principal
            card = rate_card_from_json(
                {
                    **SEED_CARD,
                    "base_rates": [{"support_level": "*", "job_type": "*", "amount": "200.00"}],
                }
            )
            body = {"rate_card": card.to_json(), "content_sha256": card.content_hash(), "note": ""}
            holder = await asyncpg.connect(db.app)
            try:
                tx = holder.transaction()
                await tx.start()
                await bind(holder, p.key)
                await holder.execute("SELECT 1 FROM contracts WHERE id = $1 FOR UPDATE", c.id)
                await holder.execute(
                    "INSERT INTO contract_amendments (contract_id, kind, effective_at, body)"
                    " VALUES ($1, 'RATE_CARD', $2, $3::jsonb)",
                    c.id,
                    datetime(2026, 3, 1, 5, tzinfo=UTC),  # New York midnight
                    json.dumps(body),
                )
                await holder.execute("UPDATE contracts SET status = 'AMENDED' WHERE id = $1", c.id)
                async with counter.counting() as queries:
                    task = asyncio.create_task(invoicing.generate_invoice(store, p, c.id, MARCH))
                    assert await waits_for(holder, generator, holder.get_server_pid(), task)
                    await tx.commit()
                    invoice = await task
            finally:
                await holder.close()
            regular = invoice.lines[0]
            assert (regular.time_condition, regular.rate_minor_per_hour) == ("REGULAR", 20_000)
            assert regular.rate_card_version == 2
            aggregate_reads = [q for q in queries if q.startswith(AGGREGATE_HEAD)]
            assert len(aggregate_reads) == 2
            # the connection is fresh: leave out asyncpg's one-off codec lookups
            ours = [q for q in queries if "typeinfo_tree" not in q and "'jit'" not in q]
            assert len(ours) <= GENERATE_BUDGET, ours

    run(scenario())


async def waits_for(
    observer: asyncpg.Connection, waiter: int, holder: int, task: asyncio.Task[object]
) -> bool:
    """Whether backend ``waiter`` is seen blocked by ``holder`` before ``task`` ends (10 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not task.done() and loop.time() < deadline:
        if await observer.fetchval("SELECT $2 = ANY (pg_blocking_pids($1))", waiter, holder):
            return True
        await asyncio.sleep(0.005)
    return False
