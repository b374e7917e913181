"""Attacks a malicious tenant, a buggy integration or a careless admin would try, in plain SQL
as the service role (``effigate_app``, bound to its tenant): each is refused by the database.
The races between two transactions are in ``test_races.py``."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from effigate_engine.store.tenant import TenantKey, tenant_transaction
from tests.store.helpers import (
    FROZEN_CARD,
    T0,
    Database,
    Seed,
    add_time_log,
    draft_invoice,
    issue,
    seed_tenant,
)

REFUSED = asyncpg.CheckViolationError
MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
APRIL = (MARCH[1], datetime(2026, 5, 1, tzinfo=UTC))


@asynccontextmanager
async def as_tenant(db: Database, seed: Seed) -> AsyncIterator[asyncpg.Connection]:
    """A service-role connection inside a transaction bound to the seed's tenant."""
    conn = await asyncpg.connect(db.app)
    try:
        async with tenant_transaction(conn, seed.key):
            yield conn
    finally:
        await conn.close()


async def _period(admin: asyncpg.Connection, seed: Seed, bounds: tuple[datetime, datetime]) -> int:
    return await admin.fetchval(
        "INSERT INTO billing_periods (tenant_id, contract_id, starts_at, ends_at)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        seed.tenant_id,
        seed.contract_id,
        *bounds,
    )


async def _invoice_of_period(
    admin: asyncpg.Connection, seed: Seed, period: int, log_id: str, part: int
) -> int:
    """A draft of ``period`` with one 12,000 line pricing ``log_id`` as part ``part``."""
    invoice = await admin.fetchval(
        "INSERT INTO invoices (tenant_id, contract_id, billing_period_id, currency,"
        " subtotal_minor, total_minor) VALUES ($1, $2, $3, 'USD', 12000, 12000) RETURNING id",
        seed.tenant_id,
        seed.contract_id,
        period,
    )
    line = await admin.fetchval(
        "INSERT INTO invoice_lines (tenant_id, invoice_id, position, kind, amount_minor)"
        " VALUES ($1, $2, 1, 'TIME', 12000) RETURNING id",
        seed.tenant_id,
        invoice,
    )
    await admin.execute(
        "INSERT INTO invoice_line_time_logs (tenant_id, invoice_id, invoice_line_id,"
        " time_log_id, part, billed_seconds) VALUES ($1, $2, $3, $4, $5, 3600)",
        seed.tenant_id,
        invoice,
        line,
        log_id,
        part,
    )
    return invoice


def run(db: Database, scenario) -> None:  # type: ignore[no-untyped-def]
    """Run ``scenario(admin, seed)`` with a fresh tenant."""

    async def main() -> None:
        admin = await asyncpg.connect(db.admin)
        try:
            await scenario(admin, await seed_tenant(admin))
        finally:
            await admin.close()

    asyncio.run(main())


# 1. one log on two issued invoices -------------------------------------------------------


def test_a_time_log_is_billed_once_whatever_part_number_a_draft_claims(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        await add_time_log(admin, seed, "two-hours", hours=2)
        first = await draft_invoice(admin, seed, amounts=(24_000,), log_ids=("two-hours",))
        await issue(admin, first)
        async with as_tenant(db, seed) as conn:
            forged = await conn.fetchval(
                "INSERT INTO invoices (contract_id, currency, subtotal_minor, total_minor)"
                " VALUES ($1, 'USD', 24000, 24000) RETURNING id",
                seed.contract_id,
            )
            line = await conn.fetchval(
                "INSERT INTO invoice_lines (invoice_id, position, kind, amount_minor)"
                " VALUES ($1, 1, 'TIME', 24000) RETURNING id",
                forged,
            )
            # part 1 of a log that was never split, with a made-up interval
            await conn.execute(
                "INSERT INTO invoice_line_time_logs (invoice_id, invoice_line_id, time_log_id,"
                " part, billed_seconds, priced) VALUES ($1, $2, 'two-hours', 1, 7200,"
                " '[2001-01-01, 2001-01-02)')",
                forged,
                line,
            )
            with pytest.raises(REFUSED, match="already on issued invoice"):
                await issue(conn, forged)
        ledger = await admin.fetch(
            "SELECT priced, invoice_id FROM time_log_invoicing WHERE tenant_id = $1",
            seed.tenant_id,
        )
        assert [(r["priced"].lower, r["priced"].upper, r["invoice_id"]) for r in ledger] == [
            (T0, T0 + timedelta(hours=2), first)
        ]

    run(db, scenario)


def test_a_log_split_at_a_period_boundary_is_billed_once_per_period(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        start = MARCH[1] - timedelta(hours=1)
        await add_time_log(admin, seed, "midnight", start, hours=3)
        march = await _invoice_of_period(
            admin, seed, await _period(admin, seed, MARCH), "midnight", 0
        )
        april_period = await _period(admin, seed, APRIL)
        april = await _invoice_of_period(admin, seed, april_period, "midnight", 1)
        async with as_tenant(db, seed) as conn:
            assert await issue(conn, march) == 1
            assert await issue(conn, april) == 2
        ledger = await admin.fetch(
            "SELECT lower(priced) AS lo, upper(priced) AS hi FROM time_log_invoicing"
            " WHERE tenant_id = $1 ORDER BY lo",
            seed.tenant_id,
        )
        assert [(r["lo"], r["hi"]) for r in ledger] == [
            (start, MARCH[1]),
            (MARCH[1], start + timedelta(hours=3)),
        ]
        # the log on a draft without a period (it prices the whole log) is refused
        stray = await draft_invoice(admin, seed, amounts=(12_000,), log_ids=("midnight",))
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="already on issued invoice"):
                await issue(conn, stray)
        # voiding April's invoice releases April's part for a new one
        await admin.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", april)
        again = await _invoice_of_period(admin, seed, april_period, "midnight", 7)
        async with as_tenant(db, seed) as conn:
            assert await issue(conn, again) == 3

    run(db, scenario)


def test_evidence_binds_a_log_of_the_invoices_own_contract(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        other = await admin.fetchval(
            "INSERT INTO contracts (tenant_id, client_id, contract_type, currency, time_zone,"
            " starts_on) VALUES ($1, $2, 'HOURLY', 'USD', 'UTC', '2026-01-01') RETURNING id",
            seed.tenant_id,
            seed.client_id,
        )
        await admin.execute(
            "INSERT INTO time_logs (tenant_id, id, contract_id, agent, support_level, job_type,"
            " started_at, ended_at, billable_type, approval_state) VALUES ($1, 'elsewhere', $2,"
            " 'ana', 'L2', 'network', $3, $4, 'BILLABLE', 'APPROVED')",
            seed.tenant_id,
            other,
            T0,
            T0 + timedelta(hours=1),
        )
        invoice = await draft_invoice(admin, seed, amounts=(12_000,))
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="belongs to contract"):
                await conn.execute(
                    "INSERT INTO invoice_line_time_logs (invoice_id, invoice_line_id,"
                    " time_log_id, billed_seconds) SELECT $1, id, 'elsewhere', 3600"
                    " FROM invoice_lines WHERE invoice_id = $1",
                    invoice,
                )

    run(db, scenario)


# 5. a log edited after it was priced -----------------------------------------------------


def test_a_log_changed_after_pricing_makes_its_draft_unissuable(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        await add_time_log(admin, seed, "priced", hours=2)
        invoice = await draft_invoice(admin, seed, amounts=(24_000,), log_ids=("priced",))
        async with as_tenant(db, seed) as conn:
            await conn.execute(
                "UPDATE time_logs SET ended_at = ended_at + interval '5 hours'"
                " WHERE id = 'priced'"
            )
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="changed after invoice"):
                await issue(conn, invoice)
        async with as_tenant(db, seed) as conn:
            await conn.execute(
                "UPDATE time_logs SET ended_at = ended_at - interval '5 hours',"
                " approval_state = 'PENDING' WHERE id = 'priced'"
            )
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="not APPROVED"):
                await issue(conn, invoice)
        async with as_tenant(db, seed) as conn:
            await conn.execute(
                "UPDATE time_logs SET approval_state = 'APPROVED' WHERE id = 'priced'"
            )
            # back as it was priced: the draft issues
            assert await issue(conn, invoice) == 1

    run(db, scenario)


# 6. left to the application before ------------------------------------------------------


def test_payments_never_exceed_the_total_less_credit_notes(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        invoice = await draft_invoice(admin, seed, amounts=(100_000,))
        await issue(admin, invoice)
        line = await admin.fetchval("SELECT id FROM invoice_lines WHERE invoice_id = $1", invoice)
        pay = (
            "INSERT INTO payments (invoice_id, amount_minor, received_at)"
            " VALUES ($1, $2, now())"
        )
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="exceeds what is due"):
                await conn.execute(pay, invoice, 1_000_000)
        async with as_tenant(db, seed) as conn:
            note = await conn.fetchval(
                "INSERT INTO credit_notes (invoice_id, subtotal_minor, tax_minor, total_minor)"
                " VALUES ($1, 10000, 0, 10000) RETURNING id",
                invoice,
            )
            await conn.execute(
                "INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
                " amount_minor) VALUES ($1, $2, $3, 10000)",
                note,
                invoice,
                line,
            )
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="90000 due"):
                await conn.execute(pay, invoice, 90_001)
        async with as_tenant(db, seed) as conn:
            await conn.execute(pay, invoice, 90_000)
        for sql in (
            "INSERT INTO payments (invoice_id, amount_minor, received_at)"
            " SELECT $1, 1, now() FROM generate_series(1, 2)",
            "UPDATE invoices SET paid_minor = 0 WHERE id = $1",
            "UPDATE invoices SET status = 'VOID' WHERE id = $1",
        ):
            async with as_tenant(db, seed) as conn:
                with pytest.raises(REFUSED):
                    await conn.execute(sql, invoice)
        assert await admin.fetchval(
            "SELECT (paid_minor, credited_minor, status)::text FROM invoices WHERE id = $1",
            invoice,
        ) == "(90000,10000,ISSUED)"

    run(db, scenario)


def test_contract_terms_and_zone_are_locked_at_activation(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        for sql, field in (
            ("UPDATE contracts SET terms = '{\"tax\": []}' WHERE id = $1", "terms"),
            (
                "UPDATE contracts SET terms = jsonb_set(terms, '{bucket}', '{\"size_seconds\":"
                " 999999}') WHERE id = $1",
                "terms",
            ),
            ("UPDATE contracts SET time_zone = 'Asia/Tokyo' WHERE id = $1", "time_zone"),
            ("UPDATE contracts SET frozen_rate_card_text = '{}' WHERE id = $1",
             "frozen_rate_card_text"),
        ):
            async with as_tenant(db, seed) as conn:
                with pytest.raises(REFUSED, match=f"{field} is locked at activation"):
                    await conn.execute(sql, seed.contract_id)
        async with as_tenant(db, seed) as conn:
            await conn.execute(
                "UPDATE contracts SET ends_on = '2027-01-01', status = 'AMENDED' WHERE id = $1",
                seed.contract_id,
            )

    run(db, scenario)


def test_activation_checks_the_frozen_cards_hash_against_its_text(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        text = json.dumps(FROZEN_CARD, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        cheaper = text.replace("12000", "1200")
        activate = (
            "UPDATE contracts SET status = 'ACTIVE', frozen_rate_card = $2::jsonb,"
            " frozen_rate_card_text = $3, frozen_rate_card_version = 1,"
            " frozen_rate_card_sha256 = $4 WHERE id = $1"
        )
        async with as_tenant(db, seed) as conn:
            draft = await conn.fetchval(
                "INSERT INTO contracts (client_id, contract_type, currency, time_zone,"
                " starts_on) VALUES ($1, 'HOURLY', 'USD', 'UTC', '2026-01-01') RETURNING id",
                seed.client_id,
            )
        for card, stored_text, sha, field in (
            (cheaper, cheaper, digest, "frozen_rate_card_sha256"),  # the hash of another card
            (cheaper, text, digest, "frozen_rate_card"),  # a JSON copy that is not the text
            (text, None, digest, "frozen_rate_card_text"),
        ):
            async with as_tenant(db, seed) as conn:
                with pytest.raises(REFUSED, match=field):
                    await conn.execute(activate, draft, card, stored_text, sha)
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="frozen_rate_card_sha256"):
                await conn.execute(
                    "INSERT INTO contracts (client_id, contract_type, currency, time_zone,"
                    " starts_on, status, frozen_rate_card, frozen_rate_card_text,"
                    " frozen_rate_card_version, frozen_rate_card_sha256) VALUES ($1, 'HOURLY',"
                    " 'USD', 'UTC', '2026-01-01', 'ACTIVE', $2::jsonb, $2, 1, $3)",
                    seed.client_id,
                    cheaper,
                    digest,
                )
        async with as_tenant(db, seed) as conn:
            await conn.execute(activate, draft, text, text, digest)

    run(db, scenario)


def test_amendments_never_reach_back_into_closed_or_invoiced_periods(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        await admin.execute(
            "INSERT INTO billing_periods (tenant_id, contract_id, starts_at, ends_at, status)"
            " VALUES ($1, $2, $3, $4, 'CLOSED')",
            seed.tenant_id,
            seed.contract_id,
            *MARCH,
        )
        april = await _period(admin, seed, APRIL)
        amend = (
            "INSERT INTO contract_amendments (contract_id, kind, effective_at, body)"
            " VALUES ($1, $2, $3, '{}')"
        )
        for kind, at in (
            ("RATE_CARD", MARCH[0] + timedelta(days=14)),
            ("TOP_UP", MARCH[1] - timedelta(seconds=1)),
        ):
            async with as_tenant(db, seed) as conn:
                with pytest.raises(REFUSED, match="backdated"):
                    await conn.execute(amend, seed.contract_id, kind, at)
        async with as_tenant(db, seed) as conn:
            await conn.execute(amend, seed.contract_id, "NOTE", MARCH[0])
            await conn.execute(amend, seed.contract_id, "RATE_CARD", MARCH[1])
        # a draft of April counts as billing April
        async with as_tenant(db, seed) as conn:
            await conn.execute(
                "INSERT INTO invoices (contract_id, billing_period_id, currency)"
                " VALUES ($1, $2, 'USD')",
                seed.contract_id,
                april,
            )
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="backdated"):
                await conn.execute(
                    amend, seed.contract_id, "RATE_CARD", APRIL[0] + timedelta(days=9)
                )

    run(db, scenario)


def test_bucket_ledger_seconds_carry_their_kinds_sign(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        await add_time_log(admin, seed, "drawn")
        invoice = await draft_invoice(admin, seed, amounts=(0,), log_ids=("drawn",))
        await issue(admin, invoice)
        entry = (
            "INSERT INTO bucket_ledger (contract_id, entry_at, kind, seconds, time_log_id,"
            " invoice_id) VALUES ($1, now(), $2, $3, 'drawn', $4)"
        )
        async with as_tenant(db, seed) as conn:
            await conn.execute(entry, seed.contract_id, "DRAWDOWN", -3600, invoice)
        for kind, seconds in (("DRAWDOWN", 3600), ("TOP_UP", -3600), ("EXPIRY", 60)):
            async with as_tenant(db, seed) as conn:
                with pytest.raises(REFUSED, match="bucket_ledger_sign_by_kind"):
                    await conn.execute(entry, seed.contract_id, kind, seconds, invoice)
        # an adjustment only gives back a voided invoice's drawdown, never more
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="adjustment"):
                await conn.execute(entry, seed.contract_id, "ADJUSTMENT", 3600, invoice)
        await admin.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", invoice)
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="adjustment"):
                await conn.execute(entry, seed.contract_id, "ADJUSTMENT", 360_000, invoice)
        async with as_tenant(db, seed) as conn:
            await conn.execute(entry, seed.contract_id, "ADJUSTMENT", 3600, invoice)
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="adjustment"):
                await conn.execute(entry, seed.contract_id, "ADJUSTMENT", 1, invoice)

    run(db, scenario)


def test_an_invoiced_milestone_keeps_its_amount(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        milestone = await admin.fetchval(
            "INSERT INTO milestones (tenant_id, contract_id, name, amount_minor, status)"
            " VALUES ($1, $2, 'Design', 5000, 'APPROVED') RETURNING id",
            seed.tenant_id,
            seed.contract_id,
        )
        invoice = await draft_invoice(admin, seed, amounts=(5_000,))
        await admin.execute(
            "UPDATE invoice_lines SET kind = 'MILESTONE', evidence = $2::jsonb"
            " WHERE invoice_id = $1",
            invoice,
            json.dumps({"item_ids": [f"milestone:{milestone}"]}),
        )
        invoiced = "UPDATE milestones SET status = 'INVOICED' WHERE id = $1"
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="only with an issued invoice"):
                await conn.execute(invoiced, milestone)
        async with as_tenant(db, seed) as conn:
            await issue(conn, invoice)
            await conn.execute(invoiced, milestone)
        for sql, field in (
            ("UPDATE milestones SET amount_minor = 1 WHERE id = $1", "amount_minor"),
            ("UPDATE milestones SET name = 'Other' WHERE id = $1", "name"),
            ("UPDATE milestones SET status = 'APPROVED' WHERE id = $1", "billed by an issued"),
        ):
            async with as_tenant(db, seed) as conn:
                with pytest.raises(REFUSED, match=field):
                    await conn.execute(sql, milestone)
        # the service role deletes nothing; the owner, bound to the tenant, is refused by the
        # database's own guard
        async with as_tenant(db, seed) as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM milestones WHERE id = $1", milestone)
        async with tenant_transaction(admin, TenantKey.for_owner(seed.tenant_id)):
            with pytest.raises(REFUSED, match="cannot be deleted"):
                await admin.execute("DELETE FROM milestones WHERE id = $1", milestone)
        async with as_tenant(db, seed) as conn:
            await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", invoice)
            await conn.execute("UPDATE milestones SET status = 'APPROVED' WHERE id = $1",
                               milestone)

    run(db, scenario)


def test_a_credit_notes_lines_sum_to_its_subtotal(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        invoice = await draft_invoice(admin, seed, amounts=(100_000,))
        await issue(admin, invoice)
        line = await admin.fetchval("SELECT id FROM invoice_lines WHERE invoice_id = $1", invoice)
        note_sql = (
            "INSERT INTO credit_notes (invoice_id, subtotal_minor, tax_minor, total_minor)"
            " VALUES ($1, $2, 0, $2) RETURNING id"
        )
        line_sql = (
            "INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
            " amount_minor) VALUES ($1, $2, $3, $4)"
        )
        for lines in ((), (4_000,)):
            with pytest.raises(REFUSED, match="lines sum to"):
                async with as_tenant(db, seed) as conn:
                    note = await conn.fetchval(note_sql, invoice, 5_000)
                    for amount in lines:
                        await conn.execute(line_sql, note, invoice, line, amount)
        async with as_tenant(db, seed) as conn:
            note = await conn.fetchval(note_sql, invoice, 5_000)
            await conn.execute(line_sql, note, invoice, line, 5_000)
        with pytest.raises(REFUSED, match="lines sum to"):
            async with as_tenant(db, seed) as conn:
                await conn.execute(line_sql, note, invoice, line, 1_000)
        assert await admin.fetchval(
            "SELECT count(*) FROM credit_notes WHERE invoice_id = $1", invoice
        ) == 1

    run(db, scenario)


def test_issue_times_are_the_databases(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        invoice = await draft_invoice(admin, seed, amounts=(1_000,))
        line = await admin.fetchval("SELECT id FROM invoice_lines WHERE invoice_id = $1", invoice)
        backdated = datetime(2020, 1, 1, tzinfo=UTC)
        async with as_tenant(db, seed) as conn:
            await conn.execute("UPDATE invoices SET issued_at = $2 WHERE id = $1", invoice,
                               backdated)
            assert await conn.fetchval(
                "SELECT issued_at FROM invoices WHERE id = $1", invoice
            ) is None
        async with as_tenant(db, seed) as conn:
            now = await conn.fetchval("SELECT now()")
            await conn.execute(
                "UPDATE invoices SET status = 'ISSUED', issued_at = $2 WHERE id = $1",
                invoice,
                backdated,
            )
            note = await conn.fetchval(
                "INSERT INTO credit_notes (invoice_id, subtotal_minor, tax_minor, total_minor,"
                " issued_at) VALUES ($1, 100, 0, 100, $2) RETURNING id",
                invoice,
                backdated,
            )
            await conn.execute(
                "INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
                " amount_minor) VALUES ($1, $2, $3, 100)",
                note,
                invoice,
                line,
            )
        assert await admin.fetchval("SELECT issued_at FROM invoices WHERE id = $1", invoice) == now
        assert await admin.fetchval("SELECT issued_at FROM credit_notes WHERE id = $1", note) == now
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="issued_at"):
                await conn.execute(
                    "UPDATE invoices SET issued_at = $2 WHERE id = $1", invoice, backdated
                )

    run(db, scenario)


def test_a_new_invoice_starts_with_nothing_paid_or_credited(db: Database) -> None:
    async def scenario(admin: asyncpg.Connection, seed: Seed) -> None:
        async with as_tenant(db, seed) as conn:
            with pytest.raises(REFUSED, match="paid_minor"):
                await conn.execute(
                    "INSERT INTO invoices (contract_id, currency, credited_minor)"
                    " VALUES ($1, 'USD', 5)",
                    seed.contract_id,
                )

    run(db, scenario)
