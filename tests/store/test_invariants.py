"""Money invariants enforced by the database: each forbidden change, tried in plain SQL as a
superuser (which bypasses row-level security but not these triggers), is refused."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from tests.store.helpers import (
    T0,
    Database,
    activate,
    add_time_log,
    draft_invoice,
    issue,
    seed_tenant,
)

REFUSED = asyncpg.CheckViolationError


async def _admin(db: Database) -> asyncpg.Connection:
    return await asyncpg.connect(db.admin)


# issued invoices and their lines ---------------------------------------------------------


def test_an_issued_invoice_cannot_change_any_amount_or_date(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            invoice = await draft_invoice(conn, seed)
            # a draft is still editable
            await conn.execute(
                "UPDATE invoices SET due_at = $2 WHERE id = $1", invoice, T0 + timedelta(30)
            )
            await issue(conn, invoice)
            for sql in (
                "UPDATE invoices SET total_minor = total_minor + 1, "
                "subtotal_minor = subtotal_minor + 1 WHERE id = $1",
                "UPDATE invoices SET issued_at = issued_at - interval '1 day' WHERE id = $1",
                "UPDATE invoices SET due_at = NULL WHERE id = $1",
                "UPDATE invoices SET number = number + 100 WHERE id = $1",
                "UPDATE invoices SET status = 'DRAFT' WHERE id = $1",
                "DELETE FROM invoices WHERE id = $1",
            ):
                with pytest.raises(REFUSED):
                    await conn.execute(sql, invoice)
            with pytest.raises(REFUSED, match="total_minor"):
                await conn.execute(
                    "UPDATE invoices SET total_minor = 1, subtotal_minor = 1 WHERE id = $1", invoice
                )
            with pytest.raises(REFUSED, match="TRUNCATE refused"):
                await conn.execute("TRUNCATE invoices, invoice_lines CASCADE")
            row = await conn.fetchrow("SELECT status, total_minor FROM invoices WHERE id = $1",
                                      invoice)
            assert (row["status"], row["total_minor"]) == ("ISSUED", 396_000)
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_lines_and_evidence_of_an_issued_invoice_cannot_change(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            await add_time_log(conn, seed, "log-a")
            await add_time_log(conn, seed, "log-b", T0 + timedelta(hours=3))
            invoice = await draft_invoice(conn, seed, log_ids=("log-a",))
            line = await conn.fetchval(
                "SELECT id FROM invoice_lines WHERE invoice_id = $1 ORDER BY position", invoice
            )
            # while a draft, lines change freely
            await conn.execute("UPDATE invoice_lines SET description = 'x' WHERE id = $1", line)
            await issue(conn, invoice)
            with pytest.raises(REFUSED, match="immutable"):
                await conn.execute(
                    "UPDATE invoice_lines SET amount_minor = amount_minor + 1 WHERE id = $1", line
                )
            with pytest.raises(REFUSED):
                await conn.execute("DELETE FROM invoice_lines WHERE id = $1", line)
            with pytest.raises(REFUSED):
                await conn.execute(
                    """INSERT INTO invoice_lines (tenant_id, invoice_id, position, kind,
                           amount_minor) VALUES ($1, $2, 9, 'FEE', 100)""",
                    seed.tenant_id,
                    invoice,
                )
            with pytest.raises(REFUSED):
                await conn.execute(
                    """INSERT INTO invoice_line_time_logs (tenant_id, invoice_id,
                           invoice_line_id, time_log_id, billed_seconds)
                       VALUES ($1, $2, $3, 'log-b', 60)""",
                    seed.tenant_id,
                    invoice,
                    line,
                )
            with pytest.raises(REFUSED):
                await conn.execute(
                    "DELETE FROM invoice_line_time_logs WHERE invoice_id = $1", invoice
                )
            assert await conn.fetchval(
                "SELECT sum(amount_minor) FROM invoice_lines WHERE invoice_id = $1", invoice
            ) == 396_000
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_an_invoice_is_born_a_draft_and_numbered_only_by_the_database(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            with pytest.raises(REFUSED, match="status"):
                await conn.execute(
                    """INSERT INTO invoices (tenant_id, contract_id, currency, status, number)
                       VALUES ($1, $2, 'USD', 'ISSUED', 1)""",
                    seed.tenant_id,
                    seed.contract_id,
                )
            invoice = await draft_invoice(conn, seed)
            with pytest.raises(REFUSED, match="number"):
                await conn.execute(
                    "UPDATE invoices SET status = 'ISSUED', number = 42 WHERE id = $1", invoice
                )
            await conn.execute(
                "UPDATE invoices SET subtotal_minor = 1, total_minor = 1 WHERE id = $1", invoice
            )
            with pytest.raises(REFUSED, match="subtotal_minor"):
                await issue(conn, invoice)
            await conn.execute(
                "UPDATE invoices SET subtotal_minor = 396000, total_minor = 396000 "
                "WHERE id = $1",
                invoice,
            )
            assert await issue(conn, invoice) == 1
        finally:
            await conn.close()

    asyncio.run(scenario())


# gap-free numbering under concurrency ------------------------------------------------------


def test_invoice_numbers_are_gap_free_per_tenant_under_concurrent_issuers(db: Database) -> None:
    issuers = 12

    async def issue_one(invoice: int, keep: bool, start: asyncio.Event) -> int | None:
        conn = await asyncpg.connect(db.admin)
        try:
            await start.wait()
            tx = conn.transaction()
            await tx.start()
            number = await issue(conn, invoice)
            await asyncio.sleep(0.01)
            if keep:
                await tx.commit()
                return number
            await tx.rollback()  # an issue that fails after numbering must leave no gap
            return None
        finally:
            await conn.close()

    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            other = await seed_tenant(conn, "Other MSP")
            invoices = [await draft_invoice(conn, seed) for _ in range(issuers)]
            other_invoice = await draft_invoice(conn, other)
            start = asyncio.Event()
            tasks = [
                asyncio.create_task(issue_one(inv, keep=i % 3 != 0, start=start))
                for i, inv in enumerate(invoices)
            ]
            await asyncio.sleep(0.05)
            start.set()
            results = await asyncio.gather(*tasks)
            kept = sorted(n for n in results if n is not None)
            assert kept == list(range(1, len(kept) + 1))
            stored = await conn.fetch(
                "SELECT number FROM invoices WHERE tenant_id = $1 AND number IS NOT NULL "
                "ORDER BY number",
                seed.tenant_id,
            )
            assert [r["number"] for r in stored] == kept
            # the rolled-back ones are drafts again and take the next numbers
            later = [await issue(conn, inv) for inv, n in zip(invoices, results, strict=True)
                     if n is None]
            assert later == list(range(len(kept) + 1, issuers + 1))
            # numbering is per tenant
            assert await issue(conn, other_invoice) == 1
        finally:
            await conn.close()

    asyncio.run(scenario())


# credit notes ------------------------------------------------------------------------------


async def _credit(
    conn: asyncpg.Connection, tenant: object, invoice: int, amounts: dict[int, int]
) -> int:
    """A credit note (no tax) of ``amounts`` per invoice line id, with its lines."""
    async with conn.transaction():
        note = await conn.fetchval(
            """INSERT INTO credit_notes (tenant_id, invoice_id, subtotal_minor, tax_minor,
                   total_minor) VALUES ($1, $2, $3, 0, $3) RETURNING id""",
            tenant,
            invoice,
            sum(amounts.values()),
        )
        for line, amount in amounts.items():
            await conn.execute(
                """INSERT INTO credit_note_lines (tenant_id, credit_note_id, invoice_id,
                       invoice_line_id, amount_minor) VALUES ($1, $2, $3, $4, $5)""",
                tenant,
                note,
                invoice,
                line,
                amount,
            )
        return note


async def _line_ids(conn: asyncpg.Connection, invoice: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT id FROM invoice_lines WHERE invoice_id = $1 ORDER BY position", invoice
    )
    return [r["id"] for r in rows]


def test_credit_notes_never_exceed_what_is_creditable(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            invoice = await draft_invoice(conn, seed, amounts=(30_000, 3_499), tax_minor=0)
            first, second = await _line_ids(conn, invoice)
            with pytest.raises(REFUSED, match="only an issued invoice"):
                await _credit(conn, seed.tenant_id, invoice, {first: 100})
            await issue(conn, invoice)
            with pytest.raises(REFUSED, match="total_minor"):
                await _credit(conn, seed.tenant_id, invoice, {first: 30_000, second: 3_500})
            note = await _credit(conn, seed.tenant_id, invoice, {first: 20_000})
            with pytest.raises(REFUSED, match="invoice line"):
                await _credit(conn, seed.tenant_id, invoice, {first: 10_001})
            # exactly what remains
            await _credit(conn, seed.tenant_id, invoice, {first: 10_000, second: 3_499})
            with pytest.raises(REFUSED, match="0 remaining"):
                await _credit(conn, seed.tenant_id, invoice, {second: 1})
            # credit notes are themselves immutable
            with pytest.raises(REFUSED, match="append-only"):
                await conn.execute(
                    "UPDATE credit_notes SET total_minor = 1, subtotal_minor = 1 WHERE id = $1",
                    note,
                )
            assert await conn.fetchval(
                "SELECT credited_minor FROM invoices WHERE id = $1", invoice
            ) == 33_499
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_concurrent_credit_notes_cannot_together_exceed_the_invoice(db: Database) -> None:
    async def credit_in(invoice: int, line: int, tenant: object, gate: asyncio.Event) -> bool:
        conn = await asyncpg.connect(db.admin)
        try:
            async with conn.transaction():
                await gate.wait()
                await _credit(conn, tenant, invoice, {line: 60_000})
                await asyncio.sleep(0.05)
            return True
        except REFUSED:
            return False
        finally:
            await conn.close()

    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            invoice = await draft_invoice(conn, seed, amounts=(100_000,))
            (line,) = await _line_ids(conn, invoice)
            await issue(conn, invoice)
            gate = asyncio.Event()
            tasks = [asyncio.create_task(credit_in(invoice, line, seed.tenant_id, gate))
                     for _ in range(2)]
            await asyncio.sleep(0.05)
            gate.set()
            outcomes = await asyncio.gather(*tasks)
            assert sorted(outcomes) == [False, True]
            assert await conn.fetchval(
                "SELECT sum(total_minor) FROM credit_notes WHERE invoice_id = $1", invoice
            ) == 60_000
        finally:
            await conn.close()

    asyncio.run(scenario())


# payments and voiding ----------------------------------------------------------------------


def test_an_invoice_with_a_payment_cannot_be_voided(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            unpaid = await draft_invoice(conn, seed)
            partly_paid = await draft_invoice(conn, seed)
            paid = await draft_invoice(conn, seed)
            for inv in (unpaid, partly_paid, paid):
                await issue(conn, inv)
            pay = """INSERT INTO payments (tenant_id, invoice_id, amount_minor, received_at)
                     VALUES ($1, $2, $3, now())"""
            await conn.execute(pay, seed.tenant_id, partly_paid, 1_000)
            await conn.execute(pay, seed.tenant_id, paid, 396_000)
            await conn.execute("UPDATE invoices SET status = 'PAID' WHERE id = $1", paid)
            with pytest.raises(REFUSED, match="has payments"):
                await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1",
                                   partly_paid)
            with pytest.raises(REFUSED):
                await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", paid)
            with pytest.raises(REFUSED, match="append-only"):
                await conn.execute("DELETE FROM payments WHERE invoice_id = $1", paid)
            await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", unpaid)
            with pytest.raises(REFUSED, match="only against an issued invoice"):
                await conn.execute(pay, seed.tenant_id, unpaid, 1_000)
        finally:
            await conn.close()

    asyncio.run(scenario())


# closed periods ----------------------------------------------------------------------------


def test_time_logs_of_a_closed_period_are_read_only(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            await add_time_log(conn, seed, "in-period")
            await add_time_log(conn, seed, "next-period", T0 + timedelta(days=40))
            period = await conn.fetchval(
                """INSERT INTO billing_periods (tenant_id, contract_id, starts_at, ends_at)
                   VALUES ($1, $2, $3, $4) RETURNING id""",
                seed.tenant_id,
                seed.contract_id,
                T0 - timedelta(days=1),
                T0 + timedelta(days=29),
            )
            # open period: editable
            await conn.execute("UPDATE time_logs SET agent = 'ben' WHERE id = 'in-period'")
            await conn.execute("UPDATE billing_periods SET status = 'CLOSED' WHERE id = $1",
                               period)
            with pytest.raises(REFUSED, match="closed billing period"):
                await conn.execute("UPDATE time_logs SET agent = 'eve' WHERE id = 'in-period'")
            with pytest.raises(REFUSED, match="ended_at"):
                await conn.execute(
                    "UPDATE time_logs SET ended_at = ended_at + interval '1 hour' "
                    "WHERE id = 'in-period'"
                )
            with pytest.raises(REFUSED):
                await conn.execute("DELETE FROM time_logs WHERE id = 'in-period'")
            # nor may a log be moved into the closed period
            with pytest.raises(REFUSED):
                await conn.execute(
                    "UPDATE time_logs SET started_at = $1, ended_at = $2 "
                    "WHERE id = 'next-period'",
                    T0 + timedelta(days=2),
                    T0 + timedelta(days=2, hours=1),
                )
            # a period never reopens
            with pytest.raises(REFUSED, match="CLOSED"):
                await conn.execute("UPDATE billing_periods SET status = 'OPEN' WHERE id = $1",
                                   period)
            # a late log may still arrive with its original date
            await add_time_log(conn, seed, "late", T0 + timedelta(days=3))
            # logs outside the period stay editable
            await conn.execute("UPDATE time_logs SET agent = 'eve' WHERE id = 'next-period'")
            assert await conn.fetchval(
                "SELECT agent FROM time_logs WHERE id = 'in-period' AND tenant_id = $1",
                seed.tenant_id,
            ) == "ben"
        finally:
            await conn.close()

    asyncio.run(scenario())


# contracts ---------------------------------------------------------------------------------


def test_contract_type_and_frozen_rate_card_are_locked_at_activation(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            draft = await conn.fetchval(
                """INSERT INTO contracts (tenant_id, client_id, contract_type, currency,
                       time_zone, starts_on) VALUES ($1, $2, 'HOURLY', 'USD', 'UTC',
                       '2026-01-01') RETURNING id""",
                seed.tenant_id,
                seed.client_id,
            )
            await conn.execute("UPDATE contracts SET contract_type = 'BUCKET' WHERE id = $1",
                               draft)
            with pytest.raises(REFUSED, match="frozen"):
                await conn.execute("UPDATE contracts SET status = 'ACTIVE' WHERE id = $1", draft)
            await activate(conn, draft)
            for sql, field in (
                ("UPDATE contracts SET contract_type = 'HOURLY' WHERE id = $1", "contract_type"),
                ("UPDATE contracts SET frozen_rate_card = '{}' WHERE id = $1",
                 "frozen_rate_card"),
                ("UPDATE contracts SET frozen_rate_card_version = 2 WHERE id = $1",
                 "frozen_rate_card_version"),
                ("UPDATE contracts SET status = 'DRAFT' WHERE id = $1", "status"),
                ("DELETE FROM contracts WHERE id = $1", "only a DRAFT contract"),
            ):
                with pytest.raises(REFUSED, match=field):
                    await conn.execute(sql, draft)
            # lifecycle and non-commercial fields still move
            await conn.execute(
                "UPDATE contracts SET status = 'AMENDED', ends_on = '2027-01-01' WHERE id = $1",
                draft,
            )
            assert await conn.fetchval(
                "SELECT contract_type FROM contracts WHERE id = $1", draft
            ) == "BUCKET"
        finally:
            await conn.close()

    asyncio.run(scenario())


# a time log on at most one issued invoice --------------------------------------------------


def test_a_time_log_is_on_at_most_one_issued_invoice(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            await add_time_log(conn, seed, "log-1")
            first = await draft_invoice(conn, seed, log_ids=("log-1",))
            second = await draft_invoice(conn, seed, log_ids=("log-1",))
            await issue(conn, first)
            with pytest.raises(REFUSED, match="already on issued invoice"):
                await issue(conn, second)
            # the ledger itself is not writable by the service role and holds one row
            assert await conn.fetchval(
                "SELECT count(*) FROM time_log_invoicing WHERE time_log_id = 'log-1' "
                "AND tenant_id = $1",
                seed.tenant_id,
            ) == 1
            # voiding the unpaid first invoice releases the log for a new one
            await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", first)
            assert await issue(conn, second) == 2
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_concurrent_issues_cannot_both_take_the_same_time_log(db: Database) -> None:
    async def try_issue(invoice: int, gate: asyncio.Event) -> bool:
        conn = await asyncpg.connect(db.admin)
        try:
            async with conn.transaction():
                await gate.wait()
                await issue(conn, invoice)
                await asyncio.sleep(0.05)
            return True
        except (REFUSED, asyncpg.UniqueViolationError):
            return False
        finally:
            await conn.close()

    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            await add_time_log(conn, seed, "shared")
            invoices = [await draft_invoice(conn, seed, log_ids=("shared",)) for _ in range(2)]
            gate = asyncio.Event()
            tasks = [asyncio.create_task(try_issue(inv, gate)) for inv in invoices]
            await asyncio.sleep(0.05)
            gate.set()
            assert sorted(await asyncio.gather(*tasks)) == [False, True]
            assert await conn.fetchval(
                "SELECT count(*) FROM invoices WHERE tenant_id = $1 AND status = 'ISSUED'",
                seed.tenant_id,
            ) == 1
        finally:
            await conn.close()

    asyncio.run(scenario())


# audit log ---------------------------------------------------------------------------------


def test_the_audit_log_is_append_only(db: Database) -> None:
    async def scenario() -> None:
        conn = await _admin(db)
        try:
            seed = await seed_tenant(conn)
            entry = await conn.fetchval(
                """INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id)
                   VALUES ($1, 'ana', 'invoice.issue', 'invoice', '1') RETURNING id""",
                seed.tenant_id,
            )
            with pytest.raises(REFUSED, match="append-only"):
                await conn.execute("UPDATE audit_log SET actor = 'eve' WHERE id = $1", entry)
            with pytest.raises(REFUSED, match="append-only"):
                await conn.execute("DELETE FROM audit_log WHERE id = $1", entry)
            with pytest.raises(REFUSED, match="append-only"):
                await conn.execute("TRUNCATE audit_log")
            assert await conn.fetchval("SELECT actor FROM audit_log WHERE id = $1", entry) == "ana"
        finally:
            await conn.close()

    asyncio.run(scenario())
