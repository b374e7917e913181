"""Tenant binding the database verifies, as the service role: a token binds its tenant for one
transaction; a hand-set tenant setting binds nothing, and nothing outlives the transaction."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from effigate_engine.service.context import Principal
from effigate_engine.store.database import Store
from effigate_engine.store.errors import TokenRefused
from effigate_engine.store.tenant import TenantKey, TenantPool, bind, tenant_transaction
from tests.store.helpers import Database, Seed, add_time_log, draft_invoice, seed_tenant

#: Tables a bound tenant reads; each is checked to show nothing under a forged setting.
READ_TABLES = ("tenants", "clients", "contracts", "time_logs", "invoices", "invoice_lines")


async def _two_tenants(db: Database) -> tuple[Seed, Seed, int]:
    """Tenants A and B (admin connection); B has a time log and a draft invoice (its id)."""
    admin = await asyncpg.connect(db.admin)
    try:
        mine = await seed_tenant(admin, "A")
        theirs = await seed_tenant(admin, "B")
        await add_time_log(admin, theirs, "b-log")
        invoice = await draft_invoice(admin, theirs)
        return mine, theirs, invoice
    finally:
        await admin.close()


async def _visible(conn: asyncpg.Connection) -> dict[str, int]:
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in READ_TABLES}


async def _admin_snapshot(db: Database, tenant: uuid.UUID) -> list[object]:
    admin = await asyncpg.connect(db.admin)
    try:
        return [
            await admin.fetchval(f"SELECT count(*) FROM {t} WHERE tenant_id = $1", tenant)
            for t in READ_TABLES[1:]
        ] + [await admin.fetchval("SELECT name FROM clients WHERE tenant_id = $1", tenant)]
    finally:
        await admin.close()


def test_a_forged_tenant_setting_reads_and_changes_nothing(db: Database) -> None:
    async def scenario() -> None:
        mine, theirs, their_invoice = await _two_tenants(db)
        before = await _admin_snapshot(db, theirs.tenant_id)
        app = await asyncpg.connect(db.app)
        try:
            # a setting made by hand, with no binding at all
            async with app.transaction():
                await app.execute(
                    "SELECT set_config('effigate.tenant_id', $1, true)", str(theirs.tenant_id)
                )
                assert await app.fetchval("SELECT effigate_current_tenant()") is None
                assert await _visible(app) == dict.fromkeys(READ_TABLES, 0)
                assert await app.execute(
                    "UPDATE clients SET name = 'stolen' WHERE id = $1", theirs.client_id
                ) == "UPDATE 0"
                assert not await app.fetchval(
                    "SELECT effigate_discard_draft_invoice($1)", their_invoice
                )
            for insert in (
                ("INSERT INTO clients (name) VALUES ('planted')",),
                ("INSERT INTO clients (tenant_id, name) VALUES ($1, 'planted')", theirs.tenant_id),
            ):
                async with app.transaction():
                    await app.execute(
                        "SELECT set_config('effigate.tenant_id', $1, true)", str(theirs.tenant_id)
                    )
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await app.execute(*insert)
            # switching after a genuine binding, with the genuine proof copied along
            async with app.transaction():
                await bind(app, mine.key)
                assert (await _visible(app))["time_logs"] == 0  # A has no logs
                assert (await _visible(app))["clients"] == 1
                await app.execute(
                    "SELECT set_config('effigate.tenant_id', $1, true)", str(theirs.tenant_id)
                )
                assert await _visible(app) == dict.fromkeys(READ_TABLES, 0)
                assert await app.execute(
                    "UPDATE time_logs SET agent = 'mallory' WHERE id = 'b-log'"
                ) == "UPDATE 0"
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.execute(
                        "INSERT INTO clients (tenant_id, name) VALUES ($1, 'planted')",
                        theirs.tenant_id,
                    )
            # a made-up proof
            async with app.transaction():
                await app.execute(
                    "SELECT set_config('effigate.tenant_id', $1, true),"
                    " set_config('effigate.tenant_proof', $2, true)",
                    str(theirs.tenant_id),
                    "A" * 44,
                )
                assert await _visible(app) == dict.fromkeys(READ_TABLES, 0)
        finally:
            await app.close()
        assert await _admin_snapshot(db, theirs.tenant_id) == before

    asyncio.run(scenario())


def test_a_binding_lasts_one_transaction_and_a_pooled_connection_carries_nothing(
    db: Database,
) -> None:
    async def scenario() -> None:
        mine, _, _ = await _two_tenants(db)
        pool = await TenantPool.connect(db.app, min_size=1, max_size=1)
        try:
            async with pool.tenant(mine.key) as conn:
                first_pid = conn.get_server_pid()
                assert (await _visible(conn))["clients"] == 1
                # try to make the binding outlive the transaction: session-level copies
                await conn.execute(
                    "SELECT set_config('effigate.tenant_id',"
                    " current_setting('effigate.tenant_id'), false),"
                    " set_config('effigate.tenant_proof',"
                    " current_setting('effigate.tenant_proof'), false)"
                )
            async with pool._pool.acquire() as conn:
                assert conn.get_server_pid() == first_pid  # the same server session
                async with conn.transaction():
                    assert await conn.fetchval("SELECT effigate_current_tenant()") is None
                    assert await _visible(conn) == dict.fromkeys(READ_TABLES, 0)
        finally:
            await pool.close()
        # the same on a plain connection, where nothing resets the session in between
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, mine.key):
                await app.execute(
                    "SELECT set_config('effigate.tenant_id',"
                    " current_setting('effigate.tenant_id'), false),"
                    " set_config('effigate.tenant_proof',"
                    " current_setting('effigate.tenant_proof'), false)"
                )
            assert await app.fetchval("SHOW effigate.tenant_id") == str(mine.tenant_id)
            async with app.transaction():
                assert await app.fetchval("SELECT effigate_current_tenant()") is None
                assert await _visible(app) == dict.fromkeys(READ_TABLES, 0)
            assert await app.fetchval("SELECT count(*) FROM clients") == 0
        finally:
            await app.close()

    asyncio.run(scenario())


def test_only_an_active_token_of_the_tenant_binds(db: Database) -> None:
    async def scenario() -> None:
        mine, theirs, _ = await _two_tenants(db)
        app = await asyncpg.connect(db.app)
        admin = await asyncpg.connect(db.admin)
        try:
            for token in (f"seed-{uuid.uuid4().hex}", "", theirs.token[:-1]):
                async with app.transaction():
                    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
                        await bind(app, TenantKey(theirs.tenant_id, token))
            # the service role may not bind by tenant id, nor reach the binding's key
            for sql, arg in (
                ("SELECT effigate_bind_tenant($1)", theirs.tenant_id),
                ("SELECT * FROM effigate_private.binding_key WHERE $1::text IS NOT NULL", "x"),
            ):
                async with app.transaction():
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await app.fetchval(sql, arg)
            # a token of A names A, whatever tenant the caller claims
            async with app.transaction():
                assert await app.fetchval("SELECT effigate_bind($1)", mine.token) == mine.tenant_id
                with pytest.raises(RuntimeError):
                    await bind(app, TenantKey(theirs.tenant_id, mine.token))
            # revocation takes effect at the next transaction
            await admin.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE tenant_id = $1", mine.tenant_id
            )
            async with app.transaction():
                with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
                    await bind(app, mine.key)
            store = await Store.open(db.app, adbc_connections=0)
            try:
                with pytest.raises(TokenRefused):
                    async with store.transaction(Principal(mine.tenant_id, token=mine.token)):
                        pass
                async with store.transaction(Principal(theirs.tenant_id, token=theirs.token)) as c:
                    assert await c.fetchval("SELECT count(*) FROM time_logs") == 1
            finally:
                await store.close()
        finally:
            await app.close()
            await admin.close()

    asyncio.run(scenario())


def test_parallel_workers_see_the_binding_of_their_leader(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        try:
            seed = await seed_tenant(admin, "Parallel")
            await admin.execute(
                """INSERT INTO time_logs (tenant_id, id, contract_id, agent, support_level,
                       job_type, started_at, ended_at, billable_type)
                   SELECT $1, 'p-' || g, $2, 'ana', 'L2', 'network',
                       timestamptz '2026-03-02' + g * interval '1 hour',
                       timestamptz '2026-03-02' + g * interval '1 hour' + interval '5 minutes',
                       'BILLABLE'
                   FROM generate_series(1, 3000) g""",
                seed.tenant_id,
                seed.contract_id,
            )
        finally:
            await admin.close()
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, seed.key):
                for setting in (
                    "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                    "min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 2",
                    "enable_indexscan = off", "enable_bitmapscan = off",
                    "enable_indexonlyscan = off",
                ):
                    await app.execute(f"SET LOCAL {setting}")
                plan = await app.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM time_logs"
                    " WHERE agent = 'ana'"
                )
                assert '"Gather' in plan
                assert await app.fetchval(
                    "SELECT count(*) FROM time_logs WHERE agent = 'ana'"
                ) == 3000
        finally:
            await app.close()

    asyncio.run(scenario())
