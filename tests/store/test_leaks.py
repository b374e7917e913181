"""Nothing of another tenant reaches the service role: not through ids or sequences, unique
keys or errors, plan estimates or the row counts of EXPLAIN ANALYZE."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import asyncpg
import pytest

from effigate_engine.store.tenant import TenantKey, tenant_transaction
from tests.store.helpers import Database, Seed, add_time_log, draft_invoice, seed_tenant

#: Ids are (per-tenant counter << TAG_BITS) | tag.
TAG_BITS = 20
TAG_MASK = (1 << TAG_BITS) - 1

#: Tables the service role reads (row-level security on, SELECT granted), from the catalog.
APP_TABLES_SQL = """
    SELECT c.oid, c.relname FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
        AND c.relrowsecurity AND has_table_privilege('effigate_app', c.oid, 'SELECT')
    ORDER BY c.relname
"""


async def _seeds(db: Database) -> tuple[Seed, Seed, int]:
    """Tenants A and B; B has 40 time logs on a draft invoice (its id)."""
    admin = await asyncpg.connect(db.admin)
    try:
        mine = await seed_tenant(admin, "A")
        theirs = await seed_tenant(admin, "B")
        for i in range(40):
            await add_time_log(admin, theirs, f"b-{i:02d}", hours=0.5)
        invoice = await draft_invoice(
            admin, theirs, log_ids=tuple(f"b-{i:02d}" for i in range(40))
        )
        return mine, theirs, invoice
    finally:
        await admin.close()


def test_ids_count_only_the_tenants_own_rows(db: Database) -> None:
    async def scenario() -> None:
        mine, theirs, _ = await _seeds(db)
        app = await asyncpg.connect(db.app)
        insert = "INSERT INTO clients (name) VALUES ('c') RETURNING id"
        try:
            async with tenant_transaction(app, mine.key):
                before = await app.fetchval(insert)
            async with tenant_transaction(app, theirs.key):
                theirs_ids = [await app.fetchval(insert) for _ in range(25)]
            async with tenant_transaction(app, mine.key):
                after = await app.fetchval(insert)
                calendar = await app.fetchval(
                    "INSERT INTO calendars (name, body) VALUES ('c', '{}') RETURNING id"
                )
        finally:
            await app.close()
        # A's counter moved by A's own insert only: B's 25 rows left no trace in A's ids
        assert (after >> TAG_BITS) == (before >> TAG_BITS) + 1
        assert (calendar >> TAG_BITS) == (after >> TAG_BITS) + 1
        assert before & TAG_MASK == after & TAG_MASK == calendar & TAG_MASK
        assert {i & TAG_MASK for i in theirs_ids} != {before & TAG_MASK}
        assert len(set(theirs_ids)) == 25

    asyncio.run(scenario())


def test_no_sequence_is_readable_or_usable_by_the_service_role(db: Database) -> None:
    async def scenario() -> None:
        mine, _, _ = await _seeds(db)
        admin = await asyncpg.connect(db.admin)
        app = await asyncpg.connect(db.app)
        try:
            sequences = await admin.fetch(
                "SELECT c.oid::regclass::text AS name, has_sequence_privilege('effigate_app',"
                " c.oid, 'SELECT') OR has_sequence_privilege('effigate_app', c.oid, 'USAGE')"
                " OR has_sequence_privilege('effigate_app', c.oid, 'UPDATE') AS usable"
                " FROM pg_class c WHERE c.relkind = 'S'"
            )
            assert sequences and not [s["name"] for s in sequences if s["usable"]]
            assert await admin.fetchval(
                "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " WHERE c.relnamespace = 'public'::regnamespace AND a.attidentity <> ''"
            ) == 0
            assert await admin.fetchval(
                "SELECT count(*) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid"
                " WHERE c.relnamespace = 'public'::regnamespace"
                " AND pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval%'"
            ) == 0
            counter = next(s["name"] for s in sequences if s["name"].endswith(
                mine.tenant_id.hex))
            async with tenant_transaction(app, mine.key):
                for sql in (
                    f"SELECT last_value FROM {counter}",
                    f"SELECT nextval('{counter}')",
                    "SELECT * FROM effigate_private.tenant_ids",
                    "INSERT INTO clients (id, name) VALUES (1, 'chosen id')",
                    "UPDATE clients SET id = 1",
                    "UPDATE clients SET tenant_id = tenant_id",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        async with app.transaction():  # a savepoint per refused statement
                            await app.execute(sql)
        finally:
            await admin.close()
            await app.close()

    asyncio.run(scenario())


def test_every_key_and_index_of_a_table_the_service_reads_leads_with_the_tenant(
    db: Database,
) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        try:
            tables = await admin.fetch(APP_TABLES_SQL)
            rows = await admin.fetch(
                "SELECT c.relname AS tbl, i.relname AS idx, a.attname AS first FROM pg_index x"
                " JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid"
                " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]"
                " WHERE x.indrelid = ANY($1::oid[])",
                [t["oid"] for t in tables if t["relname"] != "tenants"],
            )
        finally:
            await admin.close()
        assert len(tables) > 20 and len(rows) > 30
        assert [(r["tbl"], r["idx"]) for r in rows if r["first"] != "tenant_id"] == []

    asyncio.run(scenario())


def _normalised(exc: asyncpg.PostgresError, *values: object) -> tuple[str, str, str]:
    """An error's SQLSTATE, message and detail with the given values blanked out."""
    message, detail = exc.message or "", exc.detail or ""
    for value in values:
        message, detail = message.replace(str(value), "?"), detail.replace(str(value), "?")
    return exc.sqlstate, message, detail


def test_a_reference_to_another_tenants_row_fails_as_if_it_did_not_exist(db: Database) -> None:
    async def scenario() -> None:
        mine, theirs, their_invoice = await _seeds(db)
        admin = await asyncpg.connect(db.admin)
        try:
            their_line = await admin.fetchval(
                "SELECT id FROM invoice_lines WHERE invoice_id = $1 AND position = 0",
                their_invoice,
            )
            missing = await admin.fetchval(
                "SELECT max(id) + 1 FROM (SELECT id FROM invoices UNION ALL"
                " SELECT id FROM invoice_lines) x"
            )
        finally:
            await admin.close()
        attempts = {
            # B's line at position 0 exists: a key without the tenant would clash with it
            "invoice_lines": "INSERT INTO invoice_lines (invoice_id, position, kind,"
            " amount_minor) VALUES ($1, 0, 'TIME', 100)",
            "payments": "INSERT INTO payments (invoice_id, amount_minor, received_at)"
            " VALUES ($1, 100, now())",
            "invoice_line_time_logs": "INSERT INTO invoice_line_time_logs (invoice_id,"
            " invoice_line_id, time_log_id, billed_seconds) VALUES ($1, $2, 'b-00', 60)",
        }
        app = await asyncpg.connect(db.app)
        try:
            for table, sql in attempts.items():
                errors: list[tuple[str, str, str]] = []
                for invoice, line in ((their_invoice, their_line), (missing, missing)):
                    args: list[Any] = [invoice] + ([line] if "$2" in sql else [])
                    async with tenant_transaction(app, mine.key):
                        with pytest.raises(asyncpg.PostgresError) as refused:
                            await app.execute(sql, *args)
                    text = f"{refused.value.message} {refused.value.detail}"
                    assert str(theirs.tenant_id) not in text, table
                    errors.append(_normalised(refused.value, invoice, line))
                assert errors[0] == errors[1], table
                assert errors[0][0] == "23503", table  # a missing reference, nothing more
            # B's time log ids are not in A's way either
            async with tenant_transaction(app, mine.key):
                await app.execute(
                    "INSERT INTO time_logs (id, contract_id, agent, support_level, job_type,"
                    " started_at, ended_at, billable_type) VALUES ('b-00', $1, 'ana', 'L2',"
                    " 'network', now(), now() + interval '1 hour', 'BILLABLE')",
                    mine.contract_id,
                )
        finally:
            await app.close()

    asyncio.run(scenario())


def _plan_counts(plan: dict[str, Any]) -> dict[str, float]:
    """Per node type: rows removed by filters and rechecks, and rows the scans returned."""
    totals: dict[str, float] = {}
    removed = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    if removed:
        totals["removed"] = totals.get("removed", 0) + removed
    if "Scan" in plan["Node Type"]:
        totals["scanned"] = totals.get("scanned", 0) + plan.get("Actual Rows", 0)
    for child in plan.get("Plans", []):
        for key, value in _plan_counts(child).items():
            totals[key] = totals.get(key, 0) + value
    return totals


async def _empty_tenant(db: Database) -> TenantKey:
    """A tenant with a token and no rows at all: any row its transactions visit is another's."""
    tenant, token = uuid.uuid4(), f"empty-{uuid.uuid4().hex}"
    admin = await asyncpg.connect(db.admin)
    try:
        await admin.execute(
            "INSERT INTO tenants (id, name, default_currency) VALUES ($1, 'C', 'USD')", tenant
        )
        await admin.execute(
            "INSERT INTO api_tokens (tenant_id, token_sha256) VALUES ($1, $2)",
            tenant,
            hashlib.sha256(token.encode()).digest(),
        )
    finally:
        await admin.close()
    return TenantKey(tenant, token)


def test_explain_analyze_visits_no_row_of_another_tenant(db: Database) -> None:
    async def scenario() -> None:
        _, theirs, their_invoice = await _seeds(db)
        empty = await _empty_tenant(db)
        queries = [
            ("SELECT * FROM invoices WHERE id = $1", their_invoice),
            ("SELECT * FROM invoices WHERE id > $1", 0),
            ("SELECT * FROM invoice_lines WHERE invoice_id = $1", their_invoice),
            ("SELECT * FROM invoice_line_time_logs WHERE invoice_id = $1", their_invoice),
            ("SELECT * FROM invoice_line_time_logs WHERE time_log_id > $1", ""),
            ("SELECT * FROM payments WHERE invoice_id = $1", their_invoice),
            ("SELECT * FROM time_log_invoicing WHERE invoice_id = $1", their_invoice),
            ("SELECT * FROM time_logs WHERE id LIKE $1", "b-%"),
            ("SELECT * FROM time_logs WHERE tenant_id = $1", theirs.tenant_id),
            ("SELECT * FROM clients WHERE id = $1", theirs.client_id),
            ("SELECT * FROM contracts WHERE client_id = $1", theirs.client_id),
            ("SELECT * FROM tenants WHERE id = $1", theirs.tenant_id),
        ]
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, empty):
                # the planner may use any index: forbid the sequential scans
                await app.execute("SET LOCAL enable_seqscan = off")
                for sql, arg in queries:
                    raw = await app.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", arg)
                    plan = json.loads(raw)[0]["Plan"]
                    assert _plan_counts(plan) == {"scanned": 0}, (sql, plan)
        finally:
            await app.close()

    asyncio.run(scenario())


def test_plan_estimates_say_nothing_of_another_tenants_data(db: Database) -> None:
    async def scenario() -> None:
        mine, theirs, _ = await _seeds(db)
        admin = await asyncpg.connect(db.admin)
        try:
            await admin.execute("ANALYZE time_logs, invoices, invoice_lines, clients")
            assert await admin.fetchval(
                "SELECT count(*) FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relrowsecurity"
            ) == 0
        finally:
            await admin.close()
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, mine.key):
                estimates = {}
                for label, sql, arg in (
                    ("B's tenant", "SELECT * FROM time_logs WHERE tenant_id = $1",
                     theirs.tenant_id),
                    ("no tenant", "SELECT * FROM time_logs WHERE tenant_id = $1", uuid.uuid4()),
                    ("B's job type", "SELECT * FROM time_logs WHERE job_type = $1", "network"),
                    ("no job type", "SELECT * FROM time_logs WHERE job_type = $1", "none"),
                    ("B's amounts", "SELECT * FROM invoice_lines WHERE amount_minor > $1", 0),
                    ("no amounts", "SELECT * FROM invoice_lines WHERE amount_minor > $1", 10**12),
                ):
                    raw = await app.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", arg)
                    estimates[label] = json.loads(raw)[0]["Plan"]["Plan Rows"]
        finally:
            await app.close()
        assert estimates["B's tenant"] == estimates["no tenant"]
        assert estimates["B's job type"] == estimates["no job type"]
        assert estimates["B's amounts"] == estimates["no amounts"]

    asyncio.run(scenario())
