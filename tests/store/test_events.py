"""The event outbox: append-only, exactly once per dedupe key, tenant-bound, and read in
(xid, seq) order so that no event is skipped or delivered twice under concurrent writers."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from effigate_engine.events.cursor import START, Cursor
from effigate_engine.store.events import (
    CHANNEL,
    NewEvent,
    StoredEvent,
    append_events,
    horizon,
    read_events,
)
from effigate_engine.store.tenant import tenant_transaction
from tests.store.helpers import Database, Seed, seed_tenant

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(key: str, *, type_: str = "INVOICE_ISSUED", client_id: int | None = None) -> NewEvent:
    return NewEvent(
        type=type_,
        dedupe_key=key,
        subject=key.split(":")[1] if ":" in key else key,
        occurred_at=T0,
        data={"key": key},
        client_id=client_id,
    )


async def read_all(
    conn: asyncpg.Connection, seed: Seed, after: Cursor = START, expect: int = 0
) -> list[StoredEvent]:
    """The tenant's deliverable events after ``after``; with ``expect``, waits (up to 30 s)
    until at least that many are deliverable. Events become deliverable once every
    transaction older than theirs on the whole server has finished, so a test sharing the
    server with others waits rather than assuming at once."""
    deadline = time.monotonic() + 30
    while True:
        async with tenant_transaction(conn, seed.key):
            events = await read_events(conn, after, limit=10_000)
        if len(events) >= expect or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.02)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_append_is_exactly_once_per_dedupe_key(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            async with tenant_transaction(app, seed.key):
                batch = [
                    event("invoice:1:ISSUED"),
                    event("invoice:1:ISSUED"),
                    event("invoice:2:ISSUED"),
                ]
                assert await append_events(app, batch) == 2
            async with tenant_transaction(app, seed.key):
                assert await append_events(app, batch) == 0
                assert await append_events(app, [event("invoice:1:PAID")]) == 1
            stored = await read_all(app, seed, expect=3)
            assert [e.dedupe_key for e in stored] == [
                "invoice:1:ISSUED",
                "invoice:2:ISSUED",
                "invoice:1:PAID",
            ]
            assert stored[0].data == {"key": "invoice:1:ISSUED"}
            assert stored[0].tenant_id == seed.tenant_id
            assert len({e.id for e in stored}) == 3
        finally:
            await app.close()
            await admin.close()

    run(scenario())


def test_a_rolled_back_transaction_leaves_no_event(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            with pytest.raises(RuntimeError):
                async with tenant_transaction(app, seed.key):
                    assert await append_events(app, [event("invoice:9:ISSUED")]) == 1
                    raise RuntimeError("the cause failed")
            async with tenant_transaction(app, seed.key):
                await append_events(app, [event("invoice:10:ISSUED")])
            stored = await read_all(app, seed, expect=1)
            assert [e.dedupe_key for e in stored] == ["invoice:10:ISSUED"]
        finally:
            await app.close()
            await admin.close()

    run(scenario())


def test_the_service_role_cannot_change_delete_or_place_events(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            async with tenant_transaction(app, seed.key):
                await append_events(app, [event("invoice:3:ISSUED")])
            for sql in (
                "UPDATE events SET subject = 'x'",
                "DELETE FROM events",
                "INSERT INTO events (xid, dedupe_key, type, subject, occurred_at) "
                "VALUES ('1', 'k', 'INVOICE_PAID', 's', now())",
                "INSERT INTO events (seq, dedupe_key, type, subject, occurred_at) "
                "VALUES (1, 'k', 'INVOICE_PAID', 's', now())",
            ):
                refused = (asyncpg.InsufficientPrivilegeError, asyncpg.GeneratedAlwaysError)
                with pytest.raises(refused):
                    async with tenant_transaction(app, seed.key):
                        await app.execute(sql)
            # not even the owner changes an event
            with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
                await admin.execute(
                    "UPDATE events SET subject = 'x' WHERE tenant_id = $1", seed.tenant_id
                )
            # an unknown type is refused by the database
            with pytest.raises(asyncpg.CheckViolationError):
                async with tenant_transaction(app, seed.key):
                    await append_events(app, [event("x:1", type_="SLA_EXPLODED")])
            assert len(await read_all(app, seed, expect=1)) == 1
        finally:
            await app.close()
            await admin.close()

    run(scenario())


def test_tenants_never_read_each_others_events(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            north = await seed_tenant(admin, "Northwind")
            south = await seed_tenant(admin, "Southwind")
            async with tenant_transaction(app, north.key):
                await append_events(app, [event("invoice:1:ISSUED")])
            async with tenant_transaction(app, south.key):
                # the same key in another tenant is another event
                assert await append_events(app, [event("invoice:1:ISSUED")]) == 1
            assert {e.tenant_id for e in await read_all(app, north, expect=1)} == {north.tenant_id}
            assert {e.tenant_id for e in await read_all(app, south, expect=1)} == {south.tenant_id}
            # no tenant bound: nothing
            assert await app.fetchval("SELECT count(*) FROM events") == 0
            # writing another tenant's row is refused by the policy
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with tenant_transaction(app, north.key):
                    await app.execute(
                        "INSERT INTO events (tenant_id, dedupe_key, type, subject, occurred_at)"
                        " VALUES ($1, 'k', 'INVOICE_PAID', 's', now())",
                        south.tenant_id,
                    )
        finally:
            await app.close()
            await admin.close()

    run(scenario())


def test_filters_by_type_and_client(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            other = await admin.fetchval(
                "INSERT INTO clients (tenant_id, name) VALUES ($1, 'Fabrikam') RETURNING id",
                seed.tenant_id,
            )
            async with tenant_transaction(app, seed.key):
                await append_events(
                    app,
                    [
                        event("invoice:1:ISSUED", client_id=seed.client_id),
                        event("invoice:1:PAID", type_="INVOICE_PAID", client_id=seed.client_id),
                        event("invoice:2:ISSUED", client_id=other),
                    ],
                )
            async with tenant_transaction(app, seed.key):
                paid = await read_events(app, START, types=["INVOICE_PAID"])
                mine = await read_events(app, START, client_id=seed.client_id)
                both = await read_events(app, START, types=["INVOICE_ISSUED"], client_id=other)
            assert [e.dedupe_key for e in paid] == ["invoice:1:PAID"]
            assert [e.dedupe_key for e in mine] == ["invoice:1:ISSUED", "invoice:1:PAID"]
            assert [e.dedupe_key for e in both] == ["invoice:2:ISSUED"]
        finally:
            await app.close()
            await admin.close()

    run(scenario())


def test_resume_from_a_cursor_and_limit(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            for n in range(5):
                async with tenant_transaction(app, seed.key):
                    await append_events(
                        app,
                        [
                            event(f"invoice:{n}:ISSUED"),
                            event(f"invoice:{n}:PAID", type_="INVOICE_PAID"),
                        ],
                    )
            assert len(await read_all(app, seed, expect=10)) == 10
            seen: list[str] = []
            cursor = START
            while True:
                async with tenant_transaction(app, seed.key):
                    page = await read_events(app, cursor, limit=3)
                if not page:
                    break
                seen += [e.dedupe_key for e in page]
                cursor = page[-1].cursor
                # the cursor survives its text form
                assert Cursor.parse(str(cursor)) == cursor
            assert len(seen) == 10 and len(set(seen)) == 10
            assert seen[:2] == ["invoice:0:ISSUED", "invoice:0:PAID"]
        finally:
            await app.close()
            await admin.close()

    run(scenario())


async def _naive_read(
    conn: asyncpg.Connection, seed: Seed, after_seq: int
) -> list[tuple[int, str]]:
    """What a reader ordering by seq alone would deliver: every visible row after a seq."""
    async with tenant_transaction(conn, seed.key):
        rows = await conn.fetch(
            "SELECT seq, dedupe_key FROM events WHERE seq > $1 ORDER BY seq", after_seq
        )
    return [(r["seq"], r["dedupe_key"]) for r in rows]


def test_concurrent_writers_committing_out_of_order_skip_nothing(db: Database) -> None:
    """Transaction A inserts first (smaller seq) but commits after B. A reader that resumed
    after B's seq would never see A's event; the (xid, seq) reader holds B back until A has
    finished, then delivers both, once each."""

    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        first = await asyncpg.connect(db.app)
        second = await asyncpg.connect(db.app)
        reader = await asyncpg.connect(db.app)
        naive = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            tx_a = first.transaction()
            await tx_a.start()
            await first.fetchval("SELECT effigate_bind($1)", seed.token)
            await append_events(first, [event("invoice:1:ISSUED")])  # smaller seq
            async with tenant_transaction(second, seed.key):
                await append_events(second, [event("invoice:2:ISSUED")])  # larger seq
            # B is committed, A is not: the naive reader sees B's seq and moves past A's
            naive_first = await _naive_read(naive, seed, 0)
            assert [k for _, k in naive_first] == ["invoice:2:ISSUED"]
            # the (xid, seq) reader delivers nothing yet: A may still commit before B's position
            delivered = await read_all(reader, seed)
            assert delivered == []
            await tx_a.commit()
            naive_then = await _naive_read(naive, seed, naive_first[-1][0])
            assert naive_then == []  # the naive cursor skipped A's event for good
            delivered = await read_all(reader, seed, expect=2)
            assert [e.dedupe_key for e in delivered] == ["invoice:1:ISSUED", "invoice:2:ISSUED"]
            assert await read_all(reader, seed, delivered[-1].cursor) == []
        finally:
            for conn in (first, second, reader, naive, admin):
                await conn.close()

    run(scenario())


def test_many_concurrent_writers_deliver_every_event_once(db: Database) -> None:
    """Writers commit in random interleavings while a reader follows the cursor: every
    committed event is delivered exactly once and none of a rolled-back writer."""

    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        seed = await seed_tenant(admin)
        pool = await asyncpg.create_pool(db.app, min_size=9, max_size=9)
        rnd = random.Random(15)
        committed: set[str] = set()
        done = asyncio.Event()

        async def writer(w: int) -> None:
            for n in range(25):
                async with pool.acquire() as conn:
                    tx = conn.transaction()
                    await tx.start()
                    await conn.fetchval("SELECT effigate_bind($1)", seed.token)
                    keys = [f"w:{w}:{n}:{k}" for k in range(rnd.randint(1, 3))]
                    await append_events(conn, [event(k) for k in keys])
                    await asyncio.sleep(rnd.random() * 0.01)
                    if rnd.random() < 0.2:
                        await tx.rollback()
                    else:
                        await tx.commit()
                        committed.update(keys)

        async def reader() -> list[str]:
            got: list[str] = []
            cursor = START
            async with pool.acquire() as conn:
                deadline = None
                while True:
                    async with tenant_transaction(conn, seed.key):
                        page = await read_events(conn, cursor, limit=7)
                    got += [e.dedupe_key for e in page]
                    if page:
                        cursor = page[-1].cursor
                        continue
                    if done.is_set():
                        deadline = deadline or time.monotonic() + 30
                        if set(got) >= committed or time.monotonic() > deadline:
                            return got
                    await asyncio.sleep(0.002)

        try:
            reading = asyncio.create_task(reader())
            await asyncio.gather(*(writer(w) for w in range(8)))
            done.set()
            got = await reading
            assert len(got) == len(set(got))
            assert set(got) == committed
        finally:
            await pool.close()
            await admin.close()

    run(scenario())


def test_horizon_starts_after_what_is_already_delivered(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            async with tenant_transaction(app, seed.key):
                await append_events(app, [event("invoice:1:ISSUED")])
            # once deliverable, an event is before every later horizon
            assert len(await read_all(app, seed, expect=1)) == 1
            async with tenant_transaction(app, seed.key):
                now = await horizon(app)
            async with tenant_transaction(app, seed.key):
                await append_events(app, [event("invoice:2:ISSUED")])
            later = await read_all(app, seed, now, expect=1)
            assert [e.dedupe_key for e in later] == ["invoice:2:ISSUED"]
        finally:
            await app.close()
            await admin.close()

    run(scenario())


def test_a_commit_notifies_the_tenant_once_and_a_rollback_not_at_all(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        listener = await asyncpg.connect(db.app)
        heard: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
        try:
            seed = await seed_tenant(admin)
            with pytest.raises(RuntimeError):
                async with tenant_transaction(app, seed.key):
                    await append_events(app, [event("invoice:1:ISSUED")])
                    raise RuntimeError("rolled back")
            async with tenant_transaction(app, seed.key):
                await append_events(app, [event("invoice:1:ISSUED"), event("invoice:2:ISSUED")])
                await append_events(app, [event("invoice:3:ISSUED")])
            payload = await asyncio.wait_for(heard.get(), 5)
            assert payload == str(seed.tenant_id)
            await asyncio.sleep(0.2)
            assert heard.empty()
        finally:
            await listener.close()
            await app.close()
            await admin.close()

    run(scenario())


def test_cursor_text() -> None:
    assert Cursor.parse("") == START
    assert Cursor.parse("812.4") == Cursor(812, 4)
    assert str(Cursor(812, 4)) == "812.4"
    for bad in ("x", "1", "1.", ".1", "-1.2", "1.2.3", " 1.2", "1.99999999999999999999"):
        with pytest.raises(ValueError, match="cursor"):
            Cursor.parse(bad)
    assert Cursor(3, 9) < Cursor(4, 1) < Cursor(4, 2)
