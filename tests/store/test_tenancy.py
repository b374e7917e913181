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
    "audit_log", "queues", "agents", "routing_rules", "routing_rule_versions", "assignments",
    "events", "webhook_endpoints", "webhook_deliveries", "sla_schedule", "sla_standings",
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


def _shape(exc: asyncpg.PostgresError, ids: tuple[object, ...]) -> tuple[object, ...]:
    """What an error tells the caller, with the ids it was given blanked out."""
    detail = exc.detail or ""
    for value in ids:
        detail = detail.replace(str(value), "<id>")
    return type(exc), exc.sqlstate, exc.message, detail, exc.table_name, exc.column_name


def test_another_tenants_row_looks_exactly_like_a_missing_one(db: Database) -> None:
    """Guards running as the owner look rows up within the statement's tenant: writes that
    a guard would refuse for the other tenant's issued invoice, line or contract (too much
    credited or paid, a line on an issued invoice, a backdated amendment) fail with the same
    error as against an id that does not exist (no status, number or existence leaks), also
    when the transaction only claims the other tenant by a forged setting."""

    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            mine = await seed_tenant(admin, "Mine")
            theirs = await seed_tenant(admin, "Theirs")
            await add_time_log(admin, theirs, "their-log")
            invoice = await draft_invoice(admin, theirs, log_ids=("their-log",))
            await admin.execute("UPDATE invoices SET status = 'ISSUED' WHERE id = $1", invoice)
            await admin.execute(
                "INSERT INTO billing_periods (tenant_id, contract_id, starts_at, ends_at, status)"
                " VALUES ($1, $2, '2026-01-01', '2026-02-01', 'CLOSED')",
                theirs.tenant_id,
                theirs.contract_id,
            )
            line = await admin.fetchval(
                "SELECT id FROM invoice_lines WHERE invoice_id = $1 LIMIT 1", invoice
            )
            missing_invoice = await admin.fetchval("SELECT max(id) + 1000 FROM invoices")
            missing_line = await admin.fetchval("SELECT max(id) + 1000 FROM invoice_lines")
            missing_contract = await admin.fetchval("SELECT max(id) + 1000 FROM contracts")
            attempts = (
                ("INSERT INTO invoice_lines (invoice_id, position, kind, amount_minor)"
                 " VALUES ($1, 7, 'FEE', 1)", (invoice,), (missing_invoice,)),
                ("INSERT INTO invoice_line_time_logs (invoice_id, invoice_line_id, time_log_id,"
                 " billed_seconds) VALUES ($1, $2, 'x', 1)", (invoice, line),
                 (missing_invoice, missing_line)),
                ("INSERT INTO payments (invoice_id, amount_minor, received_at)"
                 " VALUES ($1, 10000000000, now())", (invoice,), (missing_invoice,)),
                ("INSERT INTO credit_notes (invoice_id, subtotal_minor, tax_minor, total_minor)"
                 " VALUES ($1, 10000000000, 0, 10000000000)", (invoice,), (missing_invoice,)),
                ("INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
                 " amount_minor) VALUES (1, $1, $2, 10000000000)", (invoice, line),
                 (missing_invoice, missing_line)),
                ("INSERT INTO bucket_ledger (contract_id, entry_at, kind, seconds, time_log_id,"
                 f" invoice_id) VALUES ({mine.contract_id}, now(), 'ADJUSTMENT', 1, 'x', $1)",
                 (invoice,), (missing_invoice,)),
                ("INSERT INTO contract_amendments (contract_id, kind, effective_at)"
                 " VALUES ($1, 'RATE_CARD', '2000-01-01')", (theirs.contract_id,),
                 (missing_contract,)),
                ("INSERT INTO billing_periods (contract_id, starts_at, ends_at, status)"
                 " VALUES ($1, now(), now() + interval '1 day', 'CLOSED')",
                 (theirs.contract_id,), (missing_contract,)),
                ("INSERT INTO invoices (contract_id, currency) VALUES ($1, 'USD')",
                 (theirs.contract_id,), (missing_contract,)),
            )
            for sql, their_ids, missing_ids in attempts:
                # bound to my tenant; also claiming theirs for the row; or unbound, with
                # their tenant set by hand (a forged setting the guards must not trust)
                for claim in ("bound", "row claims theirs", "forged setting"):
                    statement = sql
                    if claim == "row claims theirs":
                        statement = sql.replace(" (", " (tenant_id, ", 1).replace(
                            "VALUES (", f"VALUES ('{theirs.tenant_id}', ", 1
                        ).replace("SELECT ", f"SELECT '{theirs.tenant_id}', ", 1)
                    shapes = []
                    for ids in (their_ids, missing_ids):
                        with pytest.raises(asyncpg.PostgresError) as err:
                            async with app.transaction():
                                if claim == "forged setting":
                                    await app.execute(
                                        "SELECT set_config('effigate.tenant_id', $1, true)",
                                        str(theirs.tenant_id),
                                    )
                                else:
                                    await bind(app, mine.key)
                                await app.execute(statement, *ids)
                        shapes.append(_shape(err.value, ids))
                    assert shapes[0] == shapes[1], (claim, statement)
                    assert "ISSUED" not in str(shapes[0]), (claim, statement)
            assert await admin.fetchval(
                "SELECT count(*) FROM invoice_lines WHERE invoice_id = $1", invoice
            ) == 2
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_a_session_level_tenant_setting_binds_nothing_in_the_next_transaction(
    db: Database,
) -> None:
    """A tenant set for the whole session (``set_config(..., false)``), as a careless
    integration on a pooled connection would, binds nothing in the next transaction: neither
    the tenant alone nor with the proof of an earlier, genuine binding carried along (the
    proof names that transaction's start). Only a binding made in the transaction counts."""

    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            seed = await seed_tenant(admin)
            await add_time_log(admin, seed, "session-level")
            # the tenant alone, at session level
            await app.execute(
                "SELECT set_config('effigate.tenant_id', $1, false)", str(seed.tenant_id)
            )
            await _assert_unbound(app, seed.tenant_id)
            # the tenant and a genuine proof, copied to session level from a bound transaction
            async with tenant_transaction(app, seed.key):
                assert await app.fetchval("SELECT count(*) FROM time_logs") == 1
                await app.execute(
                    "SELECT set_config('effigate.tenant_id',"
                    " current_setting('effigate.tenant_id'), false),"
                    " set_config('effigate.tenant_proof',"
                    " current_setting('effigate.tenant_proof'), false)"
                )
            assert await app.fetchval("SHOW effigate.tenant_proof") != ""
            await _assert_unbound(app, seed.tenant_id)
            assert await admin.fetchval(
                "SELECT agent FROM time_logs WHERE tenant_id = $1 AND id = 'session-level'",
                seed.tenant_id,
            ) == "ana"
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


async def _assert_unbound(app: asyncpg.Connection, tenant: uuid.UUID) -> None:
    """In a new transaction on ``app``: no tenant, no row read, updated or inserted."""
    async with app.transaction():
        assert await app.fetchval("SHOW effigate.tenant_id") == str(tenant)
        assert await app.fetchval("SELECT effigate_current_tenant()") is None
        assert await app.fetchval("SELECT count(*) FROM time_logs") == 0
        assert await app.execute(
            "UPDATE time_logs SET agent = 'eve' WHERE id = 'session-level'"
        ) == "UPDATE 0"
    async with app.transaction():
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute("INSERT INTO clients (name) VALUES ('planted')")
