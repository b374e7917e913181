"""Least privilege: the service role owns nothing and cannot lock, truncate, alter or create
anything; the owner's credentials migrate and create tenants, the service's serve."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import asyncpg
import pytest

from effigate_engine.service.context import Principal
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_engine.store.database import Store
from effigate_engine.store.dsn import APP_ROLE, with_database, with_user
from effigate_engine.store.errors import MigrationError, StoreError
from effigate_engine.store.migrate import migrate
from effigate_engine.store.tenant import tenant_transaction
from tests.store.conftest import app_password, create_database, drop_database
from tests.store.helpers import Database, seed_tenant
from tests.store.test_leaks import APP_TABLES_SQL

#: LOCK modes that conflict with ordinary writes or with each other; all need a table-level
#: UPDATE, DELETE or TRUNCATE privilege (ROW EXCLUSIVE: INSERT too), which the role lacks.
REFUSED_LOCKS = (
    "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)


async def _refused(conn: asyncpg.Connection, sql: str) -> str:
    """Run ``sql`` in its own transaction on ``conn``; the SQLSTATE it was refused with."""
    with pytest.raises(asyncpg.PostgresError) as refused:
        async with conn.transaction():
            await conn.execute(sql)
    return str(refused.value.sqlstate)


def test_the_service_role_cannot_lock_truncate_alter_or_create_anything(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            tables = [t["relname"] for t in await admin.fetch(APP_TABLES_SQL)]
            assert "invoices" in tables and "time_logs" in tables
            async with tenant_transaction(app, seed.key):
                for table in tables:
                    for mode in REFUSED_LOCKS:
                        sql = f"LOCK TABLE {table} IN {mode} MODE NOWAIT"
                        assert await _refused(app, sql) == "42501", sql
                    for sql in (
                        f"TRUNCATE {table}",
                        f"ALTER TABLE {table} DISABLE TRIGGER ALL",
                        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
                        f"DROP TABLE {table}",
                        f"CREATE INDEX ON {table} (tenant_id)",
                        f"DELETE FROM {table}",
                    ):
                        assert await _refused(app, sql) == "42501", sql
                # reading takes ACCESS SHARE, as any SELECT does (it only delays DDL)
                async with app.transaction():
                    await app.execute("LOCK TABLE invoices IN ACCESS SHARE MODE NOWAIT")
                for sql in (
                    "CREATE TABLE public.mine (x int)",
                    "CREATE SCHEMA mine",
                    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                    "ALTER FUNCTION effigate_current_tenant() SECURITY INVOKER",
                    "CREATE POLICY open ON invoices USING (true)",
                ):
                    assert await _refused(app, sql) == "42501", sql
            owned = await admin.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
                " WHERE r.rolname = $1 AND c.relpersistence <> 't'",
                APP_ROLE,
            )
            assert owned == 0
            # no table-level write privilege anywhere: what it may write is granted by column
            granted = await admin.fetch(
                "SELECT c.relname, p.privilege_type FROM pg_class c,"
                " unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',"
                " 'TRIGGER']) p(privilege_type)"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
                " AND has_table_privilege($1, c.oid, p.privilege_type)",
                APP_ROLE,
            )
            assert [tuple(g) for g in granted] == []
            role = await admin.fetchrow(
                "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
                " WHERE rolname = $1",
                APP_ROLE,
            )
            assert not any(role.values())
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_the_service_refuses_a_dsn_that_row_level_security_would_not_bind(
    db: Database, empty_database: str
) -> None:
    async def scenario() -> None:
        with pytest.raises(StoreError, match="superuser"):
            await Store.open(db.admin, adbc_connections=0)
        # the service role on a database that is not migrated
        app = with_user(empty_database, APP_ROLE, app_password(empty_database))
        with pytest.raises(MigrationError, match="0001"):
            await Store.open(app, adbc_connections=0)

    asyncio.run(scenario())


def test_a_dedicated_owner_migrates_and_creates_tenants_and_the_service_role_serves(
    server_dsn: str,
) -> None:
    """The production arrangement on 127.0.0.1 (or whatever server the tests use): a
    non-superuser owner role and its database, the service role logging in on its own."""
    suffix = uuid.uuid4().hex[:10]
    owner, name = f"effigate_owner_{suffix}", f"effigate_test_owner_{suffix}"
    password = uuid.uuid4().hex

    async def setup() -> None:
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(
                f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD \'{password}\''
            )
        finally:
            await conn.close()
        await create_database(server_dsn, name)
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{owner}"')
        finally:
            await conn.close()

    async def teardown() -> None:
        await drop_database(server_dsn, name)
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f'DROP ROLE IF EXISTS "{owner}"')
        finally:
            await conn.close()

    async def scenario() -> None:
        owner_dsn = with_user(with_database(server_dsn, name), owner, password)
        app_dsn = with_user(with_database(server_dsn, name), APP_ROLE, app_password(server_dsn))
        assert await migrate(owner_dsn)
        conn = await asyncpg.connect(owner_dsn)
        try:
            tenant = await create_tenant(conn, "Owned MSP")
            other = await create_tenant(conn, "Other MSP")
            token = await create_token(conn, tenant)
            await create_token(conn, other)
            # FORCE binds the owner too: unbound, it sees no tenant's rows
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 0
        finally:
            await conn.close()
        store = await Store.open(app_dsn, adbc_connections=1)
        try:
            principal = Principal(tenant, token=token.secret)
            async with store.transaction(principal) as app:
                client = await app.fetchval(
                    "INSERT INTO clients (name) VALUES ('Acme') RETURNING id"
                )
                assert await app.fetchval("SELECT count(*) FROM tenants") == 1
            async with store.transaction(principal) as app:
                assert await app.fetchval("SELECT name FROM clients WHERE id = $1", client)
            async with store.pool.acquire() as app:
                resolved = await app.fetchrow(
                    "SELECT * FROM effigate_resolve_token($1)",
                    hashlib.sha256(token.secret.encode()).digest(),
                )
                assert resolved["tenant_id"] == tenant
        finally:
            await store.close()
        with pytest.raises(StoreError, match="owner"):
            await Store.open(owner_dsn, adbc_connections=0)

    asyncio.run(setup())
    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(teardown())
