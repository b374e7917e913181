"""Migrations: applied in order, recorded, idempotent, safe when started concurrently."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

import asyncpg
import pytest

from effigate_engine.store.cli import add_commands, run_migrate
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
from tests.store.helpers import draft_invoice, seed_tenant


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
    edited = [dataclasses.replace(m, sha256="0" * 64) if m.version == 1 else m
              for m in load_migrations()]

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
            assert await conn.fetchval("SELECT count(*) FROM pg_statistic s JOIN pg_class c"
                                       " ON c.oid = s.starelid WHERE c.relname = 'clients'")
            highest = await conn.fetchval(
                "SELECT max(id) FROM (SELECT id FROM clients UNION ALL SELECT id FROM"
                " invoice_lines UNION ALL SELECT id FROM api_tokens) x"
            )
            assert await migrate_connection(conn) == [6]
            assert await conn.fetchval("SELECT count(*) FROM pg_statistic s JOIN pg_class c"
                                       " ON c.oid = s.starelid WHERE c.relname = 'clients'") == 0
        finally:
            await conn.close()
        app = await asyncpg.connect(
            with_user(empty_database, APP_ROLE, app_password(empty_database))
        )
        try:
            async with tenant_transaction(app, seeds[1].key):
                assert await app.fetchval(
                    "SELECT count(*) FROM invoice_lines WHERE invoice_id = $1", invoice
                ) == 2
                new = await app.fetchval("INSERT INTO clients (name) VALUES ('new') RETURNING id")
                assert new > highest
                assert await app.fetchval("SELECT count(*) FROM clients") == 2
        finally:
            await app.close()

    asyncio.run(scenario())
