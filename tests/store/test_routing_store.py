"""Routing tables (migration 0013): the assignment history is append-only for everyone, routing
rules are numbered immutable versions written by the database, an agent works only its
tenant's queues, and the service role writes nothing it is not granted."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from effigate_engine.store import routing as stored
from effigate_engine.store.routing import AgentRow, HistoryRow, QueueRow
from effigate_engine.store.tenant import tenant_transaction
from tests.store.helpers import T0, Database, Seed, seed_tenant

REFUSED = asyncpg.CheckViolationError


async def _ticket(admin: asyncpg.Connection, seed: Seed, ticket_id: str) -> None:
    await admin.execute(
        """INSERT INTO tickets (tenant_id, id, client_id, priority, status, created_at)
           VALUES ($1, $2, $3, 'HIGH', 'OPEN', $4)""",
        seed.tenant_id,
        ticket_id,
        seed.client_id,
        T0,
    )


def test_the_assignment_history_is_append_only_even_for_the_owner(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            await _ticket(admin, seed, "T-1")
            async with tenant_transaction(app, seed.key):
                await stored.upsert_queues(app, [QueueRow("network")])
                await stored.upsert_agents(
                    app, [AgentRow("ana", "Ana", ("L1", "L2"), None, ("network",), 3)]
                )
                ids = await stored.insert_history(
                    app,
                    [HistoryRow("T-1", "network", "ana", "ASSIGNED", weight=4)],
                    T0,
                    "test",
                )
            assert len(ids) == 1
            async with tenant_transaction(app, seed.key):
                for sql in (
                    "UPDATE assignments SET agent_id = NULL",
                    "DELETE FROM assignments",
                    "TRUNCATE assignments",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        async with app.transaction():
                            await app.execute(sql)
            for sql in (
                "UPDATE assignments SET agent_id = NULL",
                "DELETE FROM assignments",
                "TRUNCATE assignments",
            ):
                with pytest.raises(REFUSED, match="append-only"):
                    await admin.execute(sql)
            row = await admin.fetchrow("SELECT agent_id, weight FROM assignments")
            assert (row["agent_id"], row["weight"]) == ("ana", 4)
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_routing_rules_versions_are_numbered_by_the_database_and_immutable(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            first = {"fallback_queue": "triage", "rules": []}
            second = {"fallback_queue": "desk", "rules": []}
            async with tenant_transaction(app, seed.key):
                assert await stored.put_rules(app, first) == 1
                assert await stored.put_rules(app, first) == 1  # the same body: nothing new
                assert await stored.put_rules(app, second) == 2
                assert (await stored.load_rules(app)).body == second
                assert (await stored.load_rules(app, 1)).body == first
                assert await stored.load_rules(app, 3) is None
                versions = await app.fetch(
                    "SELECT version FROM routing_rule_versions ORDER BY version"
                )
                assert [v["version"] for v in versions] == [1, 2]
                for sql in (
                    "UPDATE routing_rule_versions SET body = '{}'",
                    "INSERT INTO routing_rule_versions (version, body) VALUES (9, '{}')",
                    "UPDATE routing_rules SET version = 7",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        async with app.transaction():
                            await app.execute(sql)
            with pytest.raises(REFUSED, match="never changes"):
                await admin.execute("UPDATE routing_rule_versions SET body = '{}'")
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_an_agent_works_only_queues_of_its_own_tenant(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            mine = await seed_tenant(admin, "Mine")
            theirs = await seed_tenant(admin, "Theirs")
            async with tenant_transaction(app, theirs.key):
                await stored.upsert_queues(app, [QueueRow("vip")])
            async with tenant_transaction(app, mine.key):
                await stored.upsert_queues(app, [QueueRow("desk")])
                with pytest.raises(REFUSED, match="queue 'vip' is not a queue of this tenant"):
                    async with app.transaction():
                        await stored.upsert_agents(
                            app, [AgentRow("bo", "Bo", ("L1",), None, ("desk", "vip"), 2)]
                        )
                assert [q.name for q in await stored.load_queues(app)] == ["desk"]
            # an escalation queue of another tenant does not exist here either (checked at
            # commit: a queue and its escalation queue may be stored in either order)
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                async with tenant_transaction(app, mine.key):
                    await stored.upsert_queues(app, [QueueRow("desk", None, "vip")])
            async with tenant_transaction(app, mine.key):
                await stored.upsert_queues(
                    app, [QueueRow("desk", None, "tier2"), QueueRow("tier2")]
                )
                assert [(q.name, q.escalation_queue) for q in await stored.load_queues(app)] == [
                    ("desk", "tier2"),
                    ("tier2", None),
                ]
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_locking_queues_and_agents_is_allowed_to_the_service_role(db: Database) -> None:
    """Assignments serialise on their queues' and agents' rows (``FOR UPDATE``), which the
    service role may take with its column-level UPDATE grants."""

    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        other = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            async with tenant_transaction(app, seed.key):
                await stored.upsert_queues(app, [QueueRow("desk")])
                await stored.upsert_agents(
                    app, [AgentRow("ana", "Ana", ("L1",), None, ("desk",), 1)]
                )
            async with tenant_transaction(app, seed.key):
                assert await stored.lock_queues(app, ["desk", "missing"]) == ["desk"]
                assert [a.id for a in await stored.lock_agents(app, ["desk"])] == ["ana"]
                async with tenant_transaction(other, seed.key):
                    await other.execute("SET LOCAL lock_timeout = '200ms'")
                    with pytest.raises(asyncpg.LockNotAvailableError):
                        await stored.lock_queues(other, ["desk"])
        finally:
            await admin.close()
            await app.close()
            await other.close()

    asyncio.run(scenario())
