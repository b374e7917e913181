"""Tenant isolation by row-level security, as the service role (not superuser, not owner)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import asyncpg
import pytest

from effigate_engine.store.dsn import APP_ROLE
from effigate_engine.store.tenant import TenantPool, bind, tenant_transaction
from tests.store.helpers import Database, add_time_log, draft_invoice, seed_tenant

TENANT_TABLES = (
    "tenants", "clients", "api_tokens", "calendars", "sla_policies", "rate_cards",
    "rate_card_versions", "contracts", "contract_amendments", "milestones", "deliverables",
    "unit_counts", "tickets", "ticket_events", "time_logs", "billing_periods", "invoices",
    "invoice_number_counters", "invoice_lines", "invoice_line_time_logs", "time_log_invoicing",
    "credit_notes", "credit_note_lines", "payments", "breach_records", "bucket_ledger",
    "audit_log",
)


def test_the_service_role_is_subject_to_row_level_security(db: Database) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(db.app)
        try:
            role = await conn.fetchrow(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
            )
            assert await conn.fetchval("SELECT current_user") == APP_ROLE
            assert (role["rolsuper"], role["rolbypassrls"]) == (False, False)
            owners = await conn.fetch(
                "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity, "
                "c.relforcerowsecurity FROM pg_class c WHERE c.relname = ANY($1::text[]) "
                "AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace",
                list(TENANT_TABLES),
            )
            assert len(owners) == len(TENANT_TABLES)
            for row in owners:
                assert row["owner"] != APP_ROLE, row["relname"]
                assert row["relrowsecurity"] and row["relforcerowsecurity"], row["relname"]
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_a_connection_with_no_tenant_sees_nothing(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            await add_time_log(admin, seed, "visible-only-with-tenant")
            await draft_invoice(admin, seed)
            assert await admin.fetchval("SELECT count(*) FROM time_logs") > 0
            for table in TENANT_TABLES:
                if table == "api_tokens":  # only the owner reads tokens
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await app.fetchval("SELECT count(*) FROM api_tokens")
                    continue
                assert await app.fetchval(f"SELECT count(*) FROM {table}") == 0, table
            # a tenant bound in one transaction does not outlive it
            async with tenant_transaction(app, seed.key):
                assert await app.fetchval("SELECT count(*) FROM time_logs") == 1
            assert await app.fetchval("SELECT count(*) FROM time_logs") == 0
            assert await app.fetchval("SELECT count(*) FROM invoices") == 0
            # nor can rows be written without a tenant
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("INSERT INTO clients (tenant_id, name) VALUES ($1, 'x')",
                                  seed.tenant_id)
            with pytest.raises(RuntimeError):
                await bind(app, seed.key)
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_a_tenant_cannot_read_update_or_delete_another_tenants_rows(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        pool = await TenantPool.connect(db.app, min_size=1, max_size=2)
        try:
            mine = await seed_tenant(admin, "Mine")
            theirs = await seed_tenant(admin, "Theirs")
            await add_time_log(admin, theirs, "their-log")
            their_invoice = await draft_invoice(admin, theirs)
            async with pool.tenant(mine.key) as conn:
                # reading by the other tenant's ids returns nothing
                assert await conn.fetch("SELECT * FROM tenants WHERE id = $1",
                                        theirs.tenant_id) == []
                assert await conn.fetch("SELECT * FROM clients WHERE id = $1",
                                        theirs.client_id) == []
                assert await conn.fetch("SELECT * FROM invoices WHERE id = $1",
                                        their_invoice) == []
                assert await conn.fetch("SELECT * FROM time_logs WHERE id = 'their-log'") == []
                assert await conn.fetchval("SELECT count(*) FROM tenants") == 1
                # updates by id touch nothing; discarding their draft discards nothing
                assert await conn.execute(
                    "UPDATE clients SET name = 'stolen' WHERE id = $1", theirs.client_id
                ) == "UPDATE 0"
                assert await conn.execute(
                    "UPDATE time_logs SET agent = 'x' WHERE id = 'their-log'"
                ) == "UPDATE 0"
                assert not await conn.fetchval(
                    "SELECT effigate_discard_draft_invoice($1)", their_invoice
                )
            # writing a row into the other tenant is refused
            async with pool.tenant(mine.key) as conn:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(
                        "INSERT INTO clients (tenant_id, name) VALUES ($1, 'planted')",
                        theirs.tenant_id,
                    )
            async with pool.tenant(mine.key) as conn:
                with pytest.raises(
                    (asyncpg.InsufficientPrivilegeError, asyncpg.CheckViolationError)
                ):
                    await conn.execute(
                        "UPDATE clients SET tenant_id = $1 WHERE id = $2",
                        theirs.tenant_id,
                        mine.client_id,
                    )
            # referencing the other tenant's contract from my row is refused
            async with pool.tenant(mine.key) as conn:
                with pytest.raises(asyncpg.PostgresError):
                    await conn.execute(
                        "INSERT INTO invoices (contract_id, currency) VALUES ($1, 'USD')",
                        theirs.contract_id,
                    )
            assert await admin.fetchval(
                "SELECT name FROM clients WHERE id = $1", theirs.client_id
            ) == "Contoso"
            assert await admin.fetchval(
                "SELECT count(*) FROM invoice_lines WHERE invoice_id = $1", their_invoice
            ) == 2
            assert await admin.fetchval(
                "SELECT count(*) FROM time_logs WHERE id = 'their-log'"
            ) == 1
        finally:
            await pool.close()
            await admin.close()

    asyncio.run(scenario())


def test_a_malformed_tenant_setting_is_an_error_not_data(db: Database) -> None:
    async def scenario() -> None:
        app = await asyncpg.connect(db.app)
        try:
            async with app.transaction():
                await app.execute("SELECT set_config('effigate.tenant_id', 'not-a-uuid', true)")
                with pytest.raises(asyncpg.InvalidTextRepresentationError):
                    await app.fetch("SELECT * FROM clients")
        finally:
            await app.close()

    asyncio.run(scenario())


def test_tokens_are_stored_hashed_and_resolved_before_the_tenant_is_known(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            secret = uuid.uuid4().hex
            digest = hashlib.sha256(secret.encode()).digest()
            await admin.execute(
                "INSERT INTO api_tokens (tenant_id, token_sha256, label) VALUES ($1, $2, 'ci')",
                seed.tenant_id,
                digest,
            )
            with pytest.raises(asyncpg.CheckViolationError):
                await admin.execute(
                    "INSERT INTO api_tokens (tenant_id, token_sha256) VALUES ($1, $2)",
                    seed.tenant_id,
                    secret.encode()[:16],
                )
            row = await app.fetchrow("SELECT * FROM effigate_resolve_token($1)", digest)
            assert row["tenant_id"] == seed.tenant_id
            assert await app.fetchrow(
                "SELECT * FROM effigate_resolve_token($1)", hashlib.sha256(b"x").digest()
            ) is None
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.fetchval("SELECT count(*) FROM api_tokens")
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())
