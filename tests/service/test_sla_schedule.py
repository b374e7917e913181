"""The SLA transition schedule and its firing loop, on a real database with an injected clock.

A 24x7 policy with a 1 h first-response target, warning at 0.75 and a ladder of two steps
(half the target; 10 minutes past the deadline): created at 10:00, the ticket warns at 10:45,
escalates step 1 at 10:30 and step 2 at 11:10, and breaches at 11:00. The tests move the clock
and wake the loop; every event is read back from the outbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from effigate_engine.service import catalog, contracts, evaluations, tickets, wall_clock
from effigate_engine.service.context import Principal
from effigate_engine.service.sla_firing import SlaFiring
from effigate_engine.store.database import Store
from tests.service.support import new_tenant, open_store
from tests.store.helpers import Database

ALWAYS = {
    "timezone": "UTC",
    "weekly": [
        {"weekday": d, "start": "00:00", "end": "24:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ],
}
POLICY = {
    "rules": [
        {
            "match": {},
            "metrics": {
                "FIRST_RESPONSE": {
                    "target": "1h",
                    "calendar": "always",
                    "warning": "0.75",
                    "pausing_statuses": ["WAITING_ON_CLIENT"],
                    "escalation": [
                        {"at_fraction": "0.5", "notify": "queue:desk"},
                        {"after_deadline": "10m", "notify": "role:manager"},
                    ],
                }
            },
        }
    ]
}
CREATED = datetime(2026, 3, 2, 10, tzinfo=UTC)


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 3, 2, hh, mm, ss, tzinfo=UTC)


@dataclass
class Desk:
    store: Store
    principal: Principal
    client_id: int
    contract_id: int
    policy_id: int


async def stocked(store: Store, db: Database, name: str = "Northwind MSP") -> Desk:
    principal = await new_tenant(db, name=name)
    calendar = await catalog.create_calendar(store, principal, "always", ALWAYS)
    policy = await catalog.create_policy(store, principal, "standard", calendar.id, POLICY)
    client_id = await catalog.create_client(store, principal, "Contoso")
    contract = await contracts.create_contract(
        store,
        principal,
        client_id=client_id,
        contract_type="HOURLY",
        currency="USD",
        starts_on=date(2026, 1, 1),
        calendar_id=calendar.id,
        sla_policy_id=policy.id,
    )
    return Desk(store, principal, client_id, contract.id, policy.id)


async def outbox(desk: Desk) -> list[tuple[str, str, datetime, dict]]:
    """The tenant's events in the order they were written (committed ones: read directly, not
    through the stream, whose delivery waits for every older transaction of the server)."""
    async with desk.store.transaction(desk.principal) as conn:
        rows = await conn.fetch(
            "SELECT type, dedupe_key, occurred_at, data::text AS data FROM events ORDER BY seq"
        )
    return [(r["type"], r["dedupe_key"], r["occurred_at"], json.loads(r["data"])) for r in rows]


async def schedule(desk: Desk) -> list[tuple]:
    async with desk.store.transaction(desk.principal) as conn:
        rows = await conn.fetch(
            "SELECT ticket_id, metric, next_at, next_kind, step FROM sla_schedule"
            " ORDER BY ticket_id, metric"
        )
    return [tuple(r) for r in rows]


@asynccontextmanager
async def running_loop(store: Store, clock: wall_clock.ManualClock) -> AsyncIterator[SlaFiring]:
    firing = SlaFiring(store, clock)
    await firing.start()
    try:
        yield firing
    finally:
        await firing.stop()


async def settle(firing: SlaFiring, clock: wall_clock.ManualClock, to: datetime) -> None:
    """Move the clock to ``to`` and wait until the loop has fired whatever became due (two
    idle passes after the move: the second read the schedule the first one left)."""
    clock.set(to)
    firing.wake()
    start = firing.idle_passes
    for _ in range(400):
        await asyncio.sleep(0.02)
        if firing.idle_passes >= start + 2:
            return
    raise AssertionError("the firing loop did not settle")


def kinds(events: list[tuple]) -> list[str]:
    return [key.split(":", 3)[3] for _, key, _, _ in events]


@asynccontextmanager
async def injected(start: datetime) -> AsyncIterator[wall_clock.ManualClock]:
    clock = wall_clock.ManualClock(start)
    previous = wall_clock.use(clock)
    try:
        yield clock
    finally:
        wall_clock.use(previous)


def test_warning_escalations_and_breach_fire_in_order_once_each(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store, injected(at(10, 0)) as clock:
            desk = await stocked(store, db)
            await tickets.create_ticket(
                store,
                desk.principal,
                "INC-1",
                desk.client_id,
                "HIGH",
                CREATED,
                contract_id=desk.contract_id,
            )
            assert await schedule(desk) == [
                ("INC-1", "FIRST_RESPONSE", at(10, 30), "ESCALATION", 1)
            ]
            async with running_loop(store, clock) as firing:
                for minute in (29, 30, 44, 45, 59, 60, 69, 70, 90):
                    await settle(firing, clock, at(10, 0) + timedelta(minutes=minute))
                    assert await outbox(desk) == await outbox(desk)
            events = await outbox(desk)
            assert kinds(events) == ["ESCALATION:1", "WARNING", "BREACHED", "ESCALATION:2"]
            assert [e[2] for e in events] == [at(10, 30), at(10, 45), at(11, 0), at(11, 10)]
            step2 = events[3][3]
            assert step2["escalation_step"] == 2 and step2["notify"] == ["role:manager"]
            breach = events[2][3]
            assert breach["deadline"] == at(11, 0).isoformat()
            assert breach["target_seconds"] == 3600 and breach["policy_id"] == desk.policy_id
            assert breach["calendar"] == "always" and breach["calendar_version"] == 1
            assert await schedule(desk) == [("INC-1", "FIRST_RESPONSE", None, None, None)]

    asyncio.run(scenario())


def test_a_pause_removes_the_pending_transition_and_a_resume_moves_it(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store, injected(at(10, 0)) as clock:
            desk = await stocked(store, db)
            await tickets.create_ticket(
                store,
                desk.principal,
                "INC-2",
                desk.client_id,
                "HIGH",
                CREATED,
                contract_id=desk.contract_id,
            )
            async with running_loop(store, clock) as firing:
                await settle(firing, clock, at(10, 20))
                await tickets.record_event(
                    store,
                    desk.principal,
                    "p1",
                    "INC-2",
                    "PAUSED",
                    at(10, 20),
                    status="WAITING_ON_CLIENT",
                )
                assert await schedule(desk) == [("INC-2", "FIRST_RESPONSE", None, None, None)]
                await settle(firing, clock, at(10, 50))  # nothing fires while paused
                assert await outbox(desk) == []
                await tickets.record_event(
                    store, desk.principal, "r1", "INC-2", "RESUMED", at(10, 50)
                )
                # 20 active minutes before the pause: step 1 (30 min) is 10 minutes after it
                assert await schedule(desk) == [
                    ("INC-2", "FIRST_RESPONSE", at(11, 0), "ESCALATION", 1)
                ]
                for minute in (0, 15, 30, 40, 59):
                    await settle(firing, clock, at(11, minute))
            events = await outbox(desk)
            assert kinds(events) == ["ESCALATION:1", "WARNING", "BREACHED", "ESCALATION:2"]
            assert [e[2] for e in events] == [at(11, 0), at(11, 15), at(11, 30), at(11, 40)]

    asyncio.run(scenario())


def test_a_stopped_loop_restarted_later_misses_nothing_and_repeats_nothing(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store, injected(at(10, 0)) as clock:
            desk = await stocked(store, db)
            await tickets.create_ticket(
                store,
                desk.principal,
                "INC-3",
                desk.client_id,
                "HIGH",
                CREATED,
                contract_id=desk.contract_id,
            )
            async with running_loop(store, clock) as firing:
                await settle(firing, clock, at(10, 31))
            assert kinds(await outbox(desk)) == ["ESCALATION:1"]
            # down from 10:31 to 11:30: warning, breach and step 2 all came due meanwhile
            clock.set(at(11, 30))
            async with running_loop(store, clock) as firing:
                await settle(firing, clock, at(11, 30))
            async with running_loop(store, clock) as firing:  # and once more: nothing new
                await settle(firing, clock, at(11, 31))
            assert sorted(kinds(await outbox(desk))) == sorted(
                ["ESCALATION:1", "WARNING", "BREACHED", "ESCALATION:2"]
            )

    asyncio.run(scenario())


def test_a_response_in_time_is_met_once_and_stops_the_schedule(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store, injected(at(10, 0)) as clock:
            desk = await stocked(store, db)
            await tickets.create_ticket(
                store,
                desk.principal,
                "INC-4",
                desk.client_id,
                "HIGH",
                CREATED,
                contract_id=desk.contract_id,
            )
            clock.set(at(10, 40))
            for _ in range(2):
                await tickets.record_event(
                    store, desk.principal, "r1", "INC-4", "RESPONDED", at(10, 40)
                )
            events = await outbox(desk)
            assert [(t, k) for t, k, _, _ in events] == [
                ("SLA_MET", "sla:INC-4:FIRST_RESPONSE:MET")
            ]
            assert events[0][2] == at(10, 40)
            # the escalation due at 10:30 was not announced yet: it stays due, and fires
            assert await schedule(desk) == [
                ("INC-4", "FIRST_RESPONSE", at(10, 30), "ESCALATION", 1)
            ]
            async with running_loop(store, clock) as firing:
                await settle(firing, clock, at(12, 0))
            assert kinds(await outbox(desk)) == ["MET", "ESCALATION:1"]
            assert await schedule(desk) == [("INC-4", "FIRST_RESPONSE", None, None, None)]

    asyncio.run(scenario())


def test_a_policy_change_and_a_recompute_reschedule_without_duplicates(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store, injected(at(10, 0)) as clock:
            desk = await stocked(store, db)
            for n in range(3):
                await tickets.create_ticket(
                    store,
                    desk.principal,
                    f"INC-{n}",
                    desk.client_id,
                    "HIGH",
                    CREATED,
                    contract_id=desk.contract_id,
                )
            async with running_loop(store, clock) as firing:
                await settle(firing, clock, at(10, 50))
                assert sorted(kinds(await outbox(desk))) == sorted(["ESCALATION:1", "WARNING"] * 3)
                # a 2 h target: step 1 moves to 11:00 and the breach to 12:00; both announced
                # transitions (warning, step 1) stay announced once
                body = {**POLICY}
                body["rules"] = [
                    {
                        **POLICY["rules"][0],
                        "metrics": {
                            "FIRST_RESPONSE": {
                                **POLICY["rules"][0]["metrics"]["FIRST_RESPONSE"],
                                "target": "2h",
                            }
                        },
                    }
                ]
                await catalog.update_policy(store, desk.principal, "standard", None, body)
                rows = await schedule(desk)
                assert {r[2] for r in rows} == {at(11, 0)}, rows
                await evaluations.recompute(
                    store, evaluations.RulesetCache(), desk.principal, desk.policy_id
                )
                await settle(firing, clock, at(12, 0))
                await evaluations.recompute(
                    store, evaluations.RulesetCache(), desk.principal, desk.policy_id
                )
                await settle(firing, clock, at(12, 1))
            events = await outbox(desk)
            keys = [k for _, k, _, _ in events]
            assert len(keys) == len(set(keys))
            breaches = [e for e in events if e[0] == "SLA_BREACHED"]
            assert len(breaches) == 3 and {e[2] for e in breaches} == {at(12, 0)}

    asyncio.run(scenario())


def test_tenants_never_see_each_others_transitions(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store, injected(at(10, 0)) as clock:
            north = await stocked(store, db, "Northwind")
            south = await stocked(store, db, "Southwind")
            for desk, ticket in ((north, "N-1"), (south, "S-1")):
                await tickets.create_ticket(
                    store,
                    desk.principal,
                    ticket,
                    desk.client_id,
                    "HIGH",
                    CREATED,
                    contract_id=desk.contract_id,
                )
            async with running_loop(store, clock) as firing:
                await settle(firing, clock, at(11, 0))
            assert {e[3]["ticket_id"] for e in await outbox(north)} == {"N-1"}
            assert {e[3]["ticket_id"] for e in await outbox(south)} == {"S-1"}
            assert [r[0] for r in await schedule(north)] == ["N-1"]
            # the service role binds a tenant for the loop only while it has something pending
            conn = await asyncpg.connect(db.app)
            try:
                async with conn.transaction():
                    rows = await conn.fetch("SELECT * FROM effigate_sla_due($1, 10)", at(23, 0))
                    assert {tuple(r.keys()) for r in rows} == {("tenant_id", "next_at")}
            finally:
                await conn.close()

    asyncio.run(scenario())
