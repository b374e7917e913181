"""Watching events in process: the outbox's notification wakes a waiting watch (the safety
poll set to a minute, the event still arrives at once), a watch ends when the server stops,
and a portal principal is held to its client."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from effigate_engine.errors import EffigateError
from effigate_engine.events.cursor import START
from effigate_engine.service import events as service
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import PermissionDenied
from effigate_engine.store.events import NewEvent, append_events
from tests.events.horizon import HorizonSampler
from tests.service.support import new_tenant, open_store
from tests.store.helpers import Database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def invoice_event(n: int, client_id: int | None = None) -> NewEvent:
    return NewEvent(
        type="INVOICE_ISSUED",
        dedupe_key=f"invoice:{n}:ISSUED",
        subject=str(n),
        occurred_at=T0,
        data={"invoice_id": n},
        client_id=client_id,
    )


async def new_client(db: Database, principal: Principal, name: str) -> int:
    conn = await asyncpg.connect(db.admin)
    try:
        return int(
            await conn.fetchval(
                "INSERT INTO clients (tenant_id, name) VALUES ($1, $2) RETURNING id",
                principal.tenant_id,
                name,
            )
        )
    finally:
        await conn.close()


def test_the_notification_wakes_a_waiting_watch(db: Database, monkeypatch) -> None:
    monkeypatch.setattr(service, "POLL_SECONDS", 60.0)

    async def scenario() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            stopping = asyncio.Event()
            arrivals: asyncio.Queue[tuple[float, service.DeliveredEvent]] = asyncio.Queue()

            async def consume() -> None:
                watch = service.watch_filter(principal, from_now=True)
                async for event in service.watch_events(store, principal, watch, stopping):
                    arrivals.put_nowait((time.monotonic(), event))

            watching = asyncio.create_task(consume())
            await asyncio.sleep(0.5)
            for n in range(3):
                horizon = await asyncio.to_thread(HorizonSampler, db.admin)
                try:
                    async with store.transaction(principal) as conn:
                        await append_events(conn, [invoice_event(n)])
                    committed = time.monotonic()
                    arrived, event = await asyncio.wait_for(arrivals.get(), 30)
                finally:
                    await asyncio.to_thread(horizon.stop)
                deliverable = horizon.deliverable_at(int(event.cursor.split(".")[0]))
                assert event.subject == str(n)
                # a minute's poll would miss this: the notification woke the watch
                assert arrived - max(committed, deliverable) < 1.0
            stopping.set()
            await asyncio.wait_for(watching, 5)  # the watch ends when the server stops

    asyncio.run(scenario())


def test_a_portal_principal_watches_only_its_client(db: Database) -> None:
    async def scenario() -> None:
        staff = await new_tenant(db)
        mine = await new_client(db, staff, "Nexus")
        theirs = await new_client(db, staff, "Globex")
        portal = Principal(staff.tenant_id, client_id=mine, token=staff.token)
        async with open_store(db) as store:
            async with store.transaction(staff) as conn:
                await append_events(
                    conn, [invoice_event(1, mine), invoice_event(2, theirs), invoice_event(3)]
                )
            assert service.watch_filter(portal).client_id == mine
            assert service.watch_filter(portal, client_id=mine).client_id == mine
            with pytest.raises(PermissionDenied, match=f"client_id: {theirs}"):
                service.watch_filter(portal, client_id=theirs)
            deadline = time.monotonic() + 30
            while True:
                page, _ = await service.read_page(
                    store, portal, service.watch_filter(portal), START
                )
                if page or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert [e.subject for e in page] == ["1"]

    asyncio.run(scenario())


def test_watch_filters_refuse_what_they_cannot_read() -> None:
    principal = Principal(uuid.uuid4())
    with pytest.raises(EffigateError, match="types: 'SLA_EXPLODED'"):
        service.watch_filter(principal, types=["SLA_EXPLODED"])
    with pytest.raises(EffigateError, match="after_cursor: '12'"):
        service.watch_filter(principal, after_cursor="12")
    with pytest.raises(EffigateError, match="from_now"):
        service.watch_filter(principal, after_cursor="1.2", from_now=True)
    assert service.watch_filter(principal, from_now=True).after is None
    assert service.watch_filter(principal, types=["SLA_MET", "SLA_MET"]).types == ("SLA_MET",)
