"""Migrations: applied in order, recorded, idempotent, safe when started concurrently."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import uuid
from datetime import date, datetime

import asyncpg
import pytest

from effigate_cli.migrate import add_commands, run_migrate
from effigate_engine.store.dsn import APP_ROLE, with_user
from effigate_engine.store.errors import MigrationError
from effigate_engine.store.migrate import (
    MIGRATIONS_TABLE,
    Migration,
    load_migrations,
    migrate,
    migrate_connection,
)
from effigate_engine.store.tenant import tenant_transaction
from tests.store.conftest import app_password
from tests.store.helpers import add_time_log, draft_invoice, issue, seed_tenant


def test_migrations_ship_with_the_package_in_version_order() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and versions[:2] == [1, 2]
    assert all(len(m.sha256) == 64 and m.sql.strip() for m in migrations)


def test_migrate_applies_everything_once_and_then_nothing(empty_database: str) -> None:
    everything = [m.version for m in load_migrations()]
    assert asyncio.run(migrate(empty_database)) == everything
    assert asyncio.run(migrate(empty_database)) == []

    async def recorded() -> list[int]:
        conn = await asyncpg.connect(empty_database)
        try:
            rows = await conn.fetch(f"SELECT version FROM {MIGRATIONS_TABLE} ORDER BY version")
            return [r["version"] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(recorded()) == everything


def test_concurrent_migrators_apply_each_migration_exactly_once(empty_database: str) -> None:
    async def go() -> list[list[int]]:
        return list(await asyncio.gather(*(migrate(empty_database) for _ in range(4))))

    results = asyncio.run(go())
    everything = [m.version for m in load_migrations()]
    assert sorted(results, key=len) == [[], [], [], everything]


def test_an_edited_applied_migration_is_refused(empty_database: str) -> None:
    asyncio.run(migrate(empty_database))
    edited = [
        dataclasses.replace(m, sha256="0" * 64) if m.version == 1 else m for m in load_migrations()
    ]

    async def go() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            await migrate_connection(conn, edited)
        finally:
            await conn.close()

    with pytest.raises(MigrationError, match="0001_schema"):
        asyncio.run(go())


def test_a_failing_migration_is_rolled_back_and_not_recorded(empty_database: str) -> None:
    broken = [
        Migration(1, "half_done", "CREATE TABLE half_done (x int); SELECT 1/0;", "a" * 64),
    ]

    async def go() -> tuple[bool, int]:
        conn = await asyncpg.connect(empty_database)
        try:
            with pytest.raises(MigrationError, match="half_done"):
                await migrate_connection(conn, broken)
            table = await conn.fetchval("SELECT to_regclass('half_done') IS NOT NULL")
            count = await conn.fetchval(f"SELECT count(*) FROM {MIGRATIONS_TABLE}")
            return table, count
        finally:
            await conn.close()

    assert asyncio.run(go()) == (False, 0)


def test_the_migrate_command_applies_pending_migrations(
    empty_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="effigate")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["migrate", "--dsn", empty_database])
    assert args.func(args) == 0
    assert "applied migrations: 0001, 0002" in capsys.readouterr().out
    assert run_migrate(args) == 0
    assert "up to date" in capsys.readouterr().out
    status = parser.parse_args(["migrate", "--dsn", empty_database, "--status"])
    assert run_migrate(status) == 0
    assert "0002_invariants  applied" in capsys.readouterr().out


def test_unit_count_snapshots_become_a_timeline_when_migrated(empty_database: str) -> None:
    """0004 turns each stored cycle-end snapshot into the count in force from the cycle's last
    local day, keeps the later of two snapshots on one day, and does so even when the migrating
    owner is bound by FORCE ROW LEVEL SECURITY (no tenant is set while migrating)."""
    role = f"effigate_owner_{uuid.uuid4().hex[:8]}"

    async def go() -> tuple[list[int], list[tuple], list[tuple], list[tuple], set[str]]:
        conn = await asyncpg.connect(empty_database)
        everything = load_migrations()
        try:
            await migrate_connection(conn, [m for m in everything if m.version < 4])
            tenant = uuid.uuid4()
            await conn.execute(
                "INSERT INTO tenants (id, name, default_currency) VALUES ($1, 'MSP', 'USD')", tenant
            )
            client = await conn.fetchval(
                "INSERT INTO clients (tenant_id, name) VALUES ($1, 'Contoso') RETURNING id", tenant
            )
            contracts = []
            for zone in ("America/New_York", "Asia/Tokyo"):
                contracts.append(
                    await conn.fetchval(
                        "INSERT INTO contracts (tenant_id, client_id, contract_type, currency,"
                        " time_zone, starts_on) VALUES ($1, $2, 'RECURRING', 'USD', $3,"
                        " '2026-03-01') RETURNING id",
                        tenant,
                        client,
                        zone,
                    )
                )
            new_york, tokyo = contracts
            for contract, unit, cycle_end, count in (
                (new_york, "endpoint", "2026-04-01T04:00:00+00:00", 40),  # local midnight
                (new_york, "endpoint", "2026-04-01T03:00:00+00:00", 39),  # same local day
                (new_york, "mailbox", "2026-05-01T04:00:00+00:00", 3),
                (tokyo, "endpoint", "2026-03-31T15:00:00+00:00", 7),  # 2026-04-01 00:00 JST
            ):
                await conn.execute(
                    "INSERT INTO unit_counts (tenant_id, contract_id, unit_type, cycle_end,"
                    " unit_count) VALUES ($1, $2, $3, $4, $5)",
                    tenant,
                    contract,
                    unit,
                    datetime.fromisoformat(cycle_end),
                    count,
                )
            await conn.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS")
            await conn.execute(f"ALTER TABLE unit_counts OWNER TO {role}")
            await conn.execute(f"ALTER TABLE contracts OWNER TO {role}")
            await conn.execute(f"GRANT ALL ON {MIGRATIONS_TABLE} TO {role}")
            await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
            await conn.execute(f"SET ROLE {role}")
            # 0004 only: later migrations change tables this role does not own.
            applied = await migrate_connection(conn, [m for m in everything if m.version <= 4])
            await conn.execute("RESET ROLE")
            rows = await conn.fetch(
                "SELECT contract_id, unit_type, effective_on, unit_count FROM unit_counts"
                " ORDER BY contract_id, unit_type"
            )
            forced = await conn.fetch(
                "SELECT relname, relforcerowsecurity, relrowsecurity FROM pg_class"
                " WHERE relname IN ('unit_counts', 'contracts') ORDER BY relname"
            )
            columns = await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'unit_counts'"
            )
            expected = [
                (new_york, "endpoint", date(2026, 3, 31), 40),
                (new_york, "mailbox", date(2026, 4, 30), 3),
                (tokyo, "endpoint", date(2026, 3, 31), 7),
            ]
            return (
                applied,
                [tuple(r) for r in rows],
                expected,
                [tuple(r) for r in forced],
                {r["column_name"] for r in columns},
            )
        finally:
            await conn.execute("RESET ROLE")
            await conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE IF EXISTS {role}")
            await conn.close()

    applied, rows, expected, forced, columns = asyncio.run(go())
    assert applied == [4]
    assert rows == expected
    assert forced == [("contracts", True, True), ("unit_counts", True, True)]
    assert "cycle_end" not in columns and "effective_on" in columns


def test_binding_migration_upgrades_a_database_with_data(empty_database: str) -> None:
    """0006 on a database already in use: existing rows keep their ids and stay reachable by
    binding, new ids lie above every old one, old statistics are gone."""

    async def scenario() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            await migrate_connection(conn, [m for m in load_migrations() if m.version < 6])
            seeds = [await seed_tenant(conn, f"Old {i}") for i in range(3)]
            invoice = await draft_invoice(conn, seeds[1])
            await conn.execute("ANALYZE")
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_statistic s JOIN pg_class c"
                " ON c.oid = s.starelid WHERE c.relname = 'clients'"
            )
            highest = await conn.fetchval(
                "SELECT max(id) FROM (SELECT id FROM clients UNION ALL SELECT id FROM"
                " invoice_lines UNION ALL SELECT id FROM api_tokens) x"
            )
            assert await migrate_connection(
                conn, [m for m in load_migrations() if m.version <= 6]
            ) == [6]
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_statistic s JOIN pg_class c"
                    " ON c.oid = s.starelid WHERE c.relname = 'clients'"
                )
                == 0
            )
        finally:
            await conn.close()
        app = await asyncpg.connect(
            with_user(empty_database, APP_ROLE, app_password(empty_database))
        )
        try:
            async with tenant_transaction(app, seeds[1].key):
                assert (
                    await app.fetchval(
                        "SELECT count(*) FROM invoice_lines WHERE invoice_id = $1", invoice
                    )
                    == 2
                )
                new = await app.fetchval("INSERT INTO clients (name) VALUES ('new') RETURNING id")
                assert new > highest
                assert await app.fetchval("SELECT count(*) FROM clients") == 2
        finally:
            await app.close()

    asyncio.run(scenario())


def test_binding_migration_keeps_the_money_invariants_of_data_in_use(
    empty_database: str,
) -> None:
    """0006 over what 0005 built: an issued invoice's ledger interval, its payment and a
    draft pricing the same log keep their ids and invariants; bound by token, the service role
    is refused a second billing of the log and an overpayment, and pays what is due."""

    async def scenario() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            await migrate_connection(conn, [m for m in load_migrations() if m.version < 6])
            seed = await seed_tenant(conn, "Billed before 0006")
            await add_time_log(conn, seed, "old-log", hours=2)
            issued = await draft_invoice(conn, seed, amounts=(24_000,), log_ids=("old-log",))
            await issue(conn, issued)
            again = await draft_invoice(conn, seed, amounts=(24_000,), log_ids=("old-log",))
            await conn.execute(
                "INSERT INTO payments (tenant_id, invoice_id, amount_minor, received_at)"
                " VALUES ($1, $2, 4000, now())",
                seed.tenant_id,
                issued,
            )
            assert await migrate_connection(
                conn, [m for m in load_migrations() if m.version <= 6]
            ) == [6]
            assert (
                await conn.fetchval(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                    " WHERE conname = 'time_log_invoicing_no_overlap'"
                )
                == "EXCLUDE USING gist (tenant_id WITH =, time_log_id WITH =, priced WITH &&)"
            )
        finally:
            await conn.close()
        app = await asyncpg.connect(
            with_user(empty_database, APP_ROLE, app_password(empty_database))
        )
        pay = "INSERT INTO payments (invoice_id, amount_minor, received_at) VALUES ($1, $2, now())"
        try:
            async with tenant_transaction(app, seed.key):
                assert (
                    await app.fetchval(
                        "SELECT (paid_minor, status)::text FROM invoices WHERE id = $1", issued
                    )
                    == "(4000,ISSUED)"
                )
            with pytest.raises(asyncpg.CheckViolationError, match="already on issued invoice"):
                async with tenant_transaction(app, seed.key):
                    await issue(app, again)
            with pytest.raises(asyncpg.CheckViolationError, match="20000 due"):
                async with tenant_transaction(app, seed.key):
                    await app.execute(pay, issued, 20_001)
            async with tenant_transaction(app, seed.key):
                await app.execute(pay, issued, 20_000)
                assert (
                    await app.fetchval("SELECT paid_minor FROM invoices WHERE id = $1", issued)
                    == 24_000
                )
        finally:
            await app.close()

    asyncio.run(scenario())


def test_names_used_twice_become_versions_of_the_first_when_migrated(
    empty_database: str,
) -> None:
    """0008 on a tenant whose calendar and policy names were stored more than once: the rows
    of a name become versions 1, 2, … of its first row in id order (its id and the last
    content current), the later rows are kept, retired, and what referred to them (policies of
    every version, contracts) refers to the first; another tenant's rows of the same name are
    their own."""

    async def scenario() -> None:
        conn = await asyncpg.connect(empty_database)
        bodies = [
            {"timezone": zone, "24x7": True} for zone in ("UTC", "Europe/Paris", "Asia/Tokyo")
        ]
        try:
            await migrate_connection(conn, [m for m in load_migrations() if m.version < 8])
            seed, other = await seed_tenant(conn, "Twice"), await seed_tenant(conn, "Other")
            insert_calendar = (
                "INSERT INTO calendars (tenant_id, name, body) VALUES ($1, $2, $3::jsonb)"
                " RETURNING id"
            )
            hours = [
                await conn.fetchval(insert_calendar, seed.tenant_id, "hours", json.dumps(b))
                for b in bodies
            ]
            theirs = await conn.fetchval(
                insert_calendar, other.tenant_id, "hours", json.dumps(bodies[0])
            )
            insert_policy = (
                "INSERT INTO sla_policies (tenant_id, name, calendar_id, body)"
                " VALUES ($1, 'std', $2, $3::jsonb) RETURNING id"
            )
            policies = [
                await conn.fetchval(insert_policy, seed.tenant_id, cal, json.dumps({"v": i}))
                for i, cal in enumerate(hours[1:])
            ]
            await conn.execute(
                "UPDATE contracts SET calendar_id = $2, sla_policy_id = $3 WHERE id = $1",
                seed.contract_id,
                hours[2],
                policies[1],
            )
            later = [m.version for m in load_migrations() if m.version >= 8]
            assert await migrate_connection(conn, load_migrations()) == later

            rows = await conn.fetch(
                "SELECT id, version, retired_at IS NOT NULL AS retired, body FROM calendars"
                " WHERE tenant_id = $1 ORDER BY id",
                seed.tenant_id,
            )
            assert [(r["id"], r["version"], r["retired"]) for r in rows] == [
                (hours[0], 3, False),
                (hours[1], 1, True),
                (hours[2], 1, True),
            ]
            assert json.loads(rows[0]["body"]) == bodies[2]
            history = await conn.fetch(
                "SELECT calendar_id, version, body FROM calendar_versions WHERE tenant_id = $1"
                " ORDER BY calendar_id, version",
                seed.tenant_id,
            )
            assert [(r["calendar_id"], r["version"], json.loads(r["body"])) for r in history] == [
                (hours[0], 1, bodies[0]),
                (hours[0], 2, bodies[1]),
                (hours[0], 3, bodies[2]),
                (hours[1], 1, bodies[1]),
                (hours[2], 1, bodies[2]),
            ]
            policy_rows = await conn.fetch(
                "SELECT id, version, calendar_id, retired_at IS NOT NULL AS retired, body"
                " FROM sla_policies WHERE tenant_id = $1 ORDER BY id",
                seed.tenant_id,
            )
            assert [
                (r["id"], r["version"], r["calendar_id"], r["retired"], json.loads(r["body"]))
                for r in policy_rows
            ] == [
                (policies[0], 2, hours[0], False, {"v": 1}),
                (policies[1], 1, hours[0], True, {"v": 1}),
            ]
            policy_history = await conn.fetch(
                "SELECT version, calendar_id, body FROM sla_policy_versions"
                " WHERE policy_id = $1 ORDER BY version",
                policies[0],
            )
            assert [
                (r["version"], r["calendar_id"], json.loads(r["body"])) for r in policy_history
            ] == [
                (1, hours[0], {"v": 0}),
                (2, hours[0], {"v": 1}),
            ]
            contract = await conn.fetchrow(
                "SELECT calendar_id, sla_policy_id FROM contracts WHERE id = $1", seed.contract_id
            )
            assert tuple(contract) == (hours[0], policies[0])
            assert (
                await conn.fetchval(
                    "SELECT (version, retired_at IS NULL)::text FROM calendars WHERE id = $1",
                    theirs,
                )
                == "(1,t)"
            )
        finally:
            await conn.close()
        app = await asyncpg.connect(
            with_user(empty_database, APP_ROLE, app_password(empty_database))
        )
        try:
            with pytest.raises(asyncpg.UniqueViolationError):
                async with tenant_transaction(app, seed.key):
                    await app.execute("INSERT INTO calendars (name, body) VALUES ('hours', '{}')")
            async with tenant_transaction(app, seed.key):
                assert (
                    await app.fetchval(
                        "UPDATE calendars SET body = '{}' WHERE id = $1 RETURNING version", hours[0]
                    )
                    == 4
                )
        finally:
            await app.close()

    asyncio.run(scenario())
