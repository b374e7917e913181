"""Reference checks stay index lookups when the owner is subject to row-level security.

The statement triggers that check a bulk insert's references (a ticket event's ticket, a
ticket's client and contract, a time log's contract) run as the database owner, which FORCE
binds to the policies like anyone else unless it is a superuser. The policy adds its own
``tenant_id = <bound tenant>`` to every scan; joined by ``t.tenant_id = n.tenant_id`` to the
transition table as well, the two equalities on tenant_id multiply their selectivities (the
tables keep no column statistics) and the planner takes the tenant's rows for one: it scanned
every ticket of the tenant once per event. These tests run the insert as a dedicated
NOSUPERUSER NOBYPASSRLS owner, capture the trigger's plan with auto_explain and require a
primary-key lookup per reference.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from effigate_engine.store.dsn import with_database, with_user
from effigate_engine.store.migrate import migrate
from tests.store.conftest import create_database, drop_database
from tests.store.helpers import T0, Seed, seed_tenant

#: Tickets of the tenant: enough that a scan of them all per event is not a lookup.
TICKETS = 3000


@dataclass(frozen=True)
class OwnedDatabase:
    """A database migrated by a dedicated owner role: superuser and owner DSNs, the owner."""

    admin: str
    owner_dsn: str
    owner: str


@pytest.fixture(scope="module")
def owned(server_dsn: str) -> Iterator[OwnedDatabase]:
    """A database whose owner (and so the triggers' SECURITY DEFINER role) is subject to RLS."""
    suffix = uuid.uuid4().hex[:10]
    owner, name = f"effigate_owner_{suffix}", f"effigate_test_owner_{suffix}"
    password = uuid.uuid4().hex

    async def superuser(sql: str) -> None:
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(
        superuser(f"CREATE ROLE \"{owner}\" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'")
    )
    try:
        asyncio.run(create_database(server_dsn, name))
        asyncio.run(superuser(f'ALTER DATABASE "{name}" OWNER TO "{owner}"'))
        admin = with_database(server_dsn, name)
        owner_dsn = with_user(admin, owner, password)
        asyncio.run(migrate(owner_dsn))
        yield OwnedDatabase(admin=admin, owner_dsn=owner_dsn, owner=owner)
    finally:
        asyncio.run(drop_database(server_dsn, name))
        asyncio.run(superuser(f'DROP ROLE IF EXISTS "{owner}"'))


async def seed_tickets(conn: asyncpg.Connection, seed: Seed, count: int) -> None:
    """``count`` tickets T-0 … of the seed's client and contract (superuser connection; bound,
    for the triggers run as the owner)."""
    async with conn.transaction():
        await conn.execute("SELECT effigate_bind_tenant($1)", seed.tenant_id)
        await conn.execute(
            """INSERT INTO tickets (tenant_id, id, client_id, contract_id, priority, status,
                   created_at)
               SELECT $1, 'T-' || g, $2, $3, 'P2', 'OPEN', $4
               FROM generate_series(0, $5 - 1) g""",
            seed.tenant_id,
            seed.client_id,
            seed.contract_id,
            T0,
            count,
        )


async def insert_as_owner(
    conn: asyncpg.Connection, owner: str, seed: Seed, statements: list[tuple[object, ...]]
) -> list[str]:
    """Run each ``(sql, *args)`` in its own transaction as ``owner`` bound to the seed's
    tenant, every statement's plan (the triggers' included) logged by auto_explain; the plans,
    as the notices carried them. The session is the superuser's (auto_explain's settings are
    the superuser's to set) with its role set to the owner, which row-level security binds."""
    plans: list[str] = []

    def listen(_conn: asyncpg.Connection, message: asyncpg.PostgresLogMessage) -> None:
        plans.append(str(message.message))

    await conn.execute("LOAD 'auto_explain'")
    await conn.execute(
        """SET auto_explain.log_min_duration = 0;
           SET auto_explain.log_nested_statements = on;
           SET auto_explain.log_analyze = on;
           SET auto_explain.log_level = 'notice'"""
    )
    conn.add_log_listener(listen)
    try:
        await conn.execute(f'SET ROLE "{owner}"')
        for sql, *args in statements:
            async with conn.transaction():
                await conn.execute("SELECT effigate_bind_tenant($1)", seed.tenant_id)
                await conn.execute(str(sql), *args)
    finally:
        await conn.execute("RESET ROLE")
        conn.remove_log_listener(listen)
    return plans


EVENTS_SQL = """INSERT INTO ticket_events (tenant_id, id, ticket_id, kind, occurred_at)
    SELECT $1, $2 || g, 'T-' || g, 'COMMENT', $3 FROM generate_series(0, $4 - 1) g"""

#: A scan of tickets in an auto_explain plan line: its index (if any) and how often it ran.
_SCAN = re.compile(
    r"(?:Index Only Scan|Index Scan|Seq Scan|Bitmap Heap Scan)(?: using (\w+))?"
    r" on tickets t\b.*\bloops=(\d+)"
)
#: A primary-key lookup of tickets run once per reference of a batch.
_LOOKUP = re.compile(rf"Index (?:Only )?Scan using tickets_pkey on tickets t\b.*loops={TICKETS}\)")


def per_reference_scans(plan: str) -> list[tuple[str | None, str]]:
    """The scans of tickets in ``plan`` that run more than once (once per reference): each
    one's index and the conditions it applies (its Index Cond and Filter lines)."""
    lines = plan.splitlines()
    scans = []
    for at, line in enumerate(lines):
        match = _SCAN.search(line)
        if match is None or int(match.group(2)) == 1:
            continue
        depth = len(line) - len(line.lstrip())
        conditions = []
        for below in lines[at + 1 :]:
            if len(below) - len(below.lstrip()) <= depth or "->" in below:
                break
            conditions.append(below.strip())
        scans.append((match.group(1), "\n".join(conditions)))
    return scans


def test_the_ticket_reference_check_looks_each_ticket_up_by_its_key(
    owned: OwnedDatabase,
) -> None:
    """Seven batches (plpgsql may switch to a generic plan after five): every batch's check is
    a primary-key lookup per event, never a scan of the tenant's tickets filtered by id."""
    batches = 7

    async def scenario() -> tuple[list[str], int]:
        conn = await asyncpg.connect(owned.admin)
        try:
            seed = await seed_tenant(conn, "Planned MSP")
            await seed_tickets(conn, seed, TICKETS)
            statements: list[tuple[object, ...]] = [
                (EVENTS_SQL, seed.tenant_id, f"E{batch}-", T0, TICKETS) for batch in range(batches)
            ]
            plans = await insert_as_owner(conn, owned.owner, seed, statements)
            stored = await conn.fetchval(
                "SELECT count(*) FROM ticket_events WHERE tenant_id = $1", seed.tenant_id
            )
            return plans, stored
        finally:
            await conn.close()

    plans, stored = asyncio.run(scenario())
    assert stored == batches * TICKETS
    checks = [p for p in plans if "FROM tickets t" in p and "INSERT INTO" not in p]
    assert len(checks) >= batches, plans
    for plan in plans:
        assert not re.search(r"Join Filter: .*\bt\.id\b", plan), plan
        for index, conditions in per_reference_scans(plan):
            assert index == "tickets_pkey" and "(id = " in conditions, plan
            assert "Filter: (id = " not in conditions, plan
    lookups = [plan for plan in checks if _LOOKUP.search(plan)]
    assert len(lookups) == batches, checks


async def refused_insert(
    conn: asyncpg.Connection, owner: str, seed: Seed, rows: list[tuple[str, str]]
) -> asyncpg.PostgresError:
    """Insert ticket events ``(id, ticket_id)`` of the seed's tenant as ``owner``, bound to
    it, in one statement; the error it was refused with."""
    await conn.execute(f'SET ROLE "{owner}"')
    try:
        with pytest.raises(asyncpg.PostgresError) as refused:
            async with conn.transaction():
                await conn.execute("SELECT effigate_bind_tenant($1)", seed.tenant_id)
                await conn.execute(
                    """INSERT INTO ticket_events (tenant_id, id, ticket_id, kind, occurred_at)
                       SELECT $1, r.id, r.ticket_id, 'COMMENT', $2
                       FROM unnest($3::text[], $4::text[]) r(id, ticket_id)""",
                    seed.tenant_id,
                    T0,
                    [event for event, _ in rows],
                    [ticket for _, ticket in rows],
                )
    finally:
        await conn.execute("RESET ROLE")
    return refused.value


def test_the_ticket_reference_check_still_refuses_a_missing_or_foreign_ticket(
    owned: OwnedDatabase,
) -> None:
    async def scenario() -> tuple[str, str, int]:
        conn = await asyncpg.connect(owned.admin)
        try:
            ours = await seed_tenant(conn, "Ours MSP")
            theirs = await seed_tenant(conn, "Theirs MSP")
            await seed_tickets(conn, ours, 50)
            async with conn.transaction():
                await conn.execute("SELECT effigate_bind_tenant($1)", theirs.tenant_id)
                await conn.execute(
                    """INSERT INTO tickets (tenant_id, id, client_id, priority, status,
                           created_at) VALUES ($1, 'THEIRS-1', $2, 'P2', 'OPEN', $3)""",
                    theirs.tenant_id,
                    theirs.client_id,
                    T0,
                )
            valid = [(f"OK-{i}", f"T-{i}") for i in range(40)]
            missing = await refused_insert(
                conn, owned.owner, ours, [*valid, ("LOST-1", "T-404"), ("LOST-2", "T-405")]
            )
            foreign = await refused_insert(
                conn, owned.owner, ours, [*valid, ("CROSS-1", "THEIRS-1")]
            )
            stored = await conn.fetchval(
                "SELECT count(*) FROM ticket_events WHERE tenant_id = $1", ours.tenant_id
            )
            return str(missing), str(foreign), stored
        finally:
            await conn.close()

    missing, foreign, stored = asyncio.run(scenario())
    assert missing == ("ticket event 'LOST-1': ticket_id 'T-404' is not a ticket of this tenant"), (
        missing
    )
    assert foreign == (
        "ticket event 'CROSS-1': ticket_id 'THEIRS-1' is not a ticket of this tenant"
    ), foreign
    assert stored == 0
