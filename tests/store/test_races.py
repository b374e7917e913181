"""Races between two service-role transactions: whatever the isolation level and the order,
the second of two writes that together would break a money invariant is refused, and the
committed state keeps the invariant.

Each race is a setup (as superuser) giving two operations in plain SQL and a check of the
invariant over the committed state. ``tests/store/races.py`` runs them in two orders: the
second transaction's snapshot taken before the first commits, and the second waiting on the
first's locks. A control runs the second operation alone to show it is refused only because
of the first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.store.helpers import (
    T0,
    Database,
    Seed,
    add_time_log,
    draft_invoice,
    issue,
    seed_tenant,
)
from tests.store.races import ISOLATIONS, ORDERINGS, REFUSED, Op, alone, race

MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


@dataclass
class Setup:
    """A race's operations by name and the check of its invariant (admin connection)."""

    ops: dict[str, Op]
    holds: Callable[[asyncpg.Connection], Awaitable[bool]]


Prepare = Callable[[asyncpg.Connection, Seed], Awaitable[Setup]]


# operations --------------------------------------------------------------------------------


def pay(invoice: int, amount: int) -> Op:
    async def op(conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO payments (invoice_id, amount_minor, received_at)"
            " VALUES ($1, $2, now())",
            invoice,
            amount,
        )

    return op


def credit(invoice: int, line: int, amount: int) -> Op:
    async def op(conn: asyncpg.Connection) -> None:
        note = await conn.fetchval(
            "INSERT INTO credit_notes (invoice_id, subtotal_minor, tax_minor, total_minor)"
            " VALUES ($1, $2, 0, $2) RETURNING id",
            invoice,
            amount,
        )
        await conn.execute(
            "INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
            " amount_minor) VALUES ($1, $2, $3, $4)",
            note,
            invoice,
            line,
            amount,
        )

    return op


def issuing(invoice: int, milestone: int | None = None) -> Op:
    async def op(conn: asyncpg.Connection) -> None:
        await issue(conn, invoice)
        if milestone is not None:
            await conn.execute(
                "UPDATE milestones SET status = 'INVOICED' WHERE id = $1", milestone
            )

    return op


def sql(statement: str, *args: object) -> Op:
    async def op(conn: asyncpg.Connection) -> None:
        await conn.execute(statement, *args)

    return op


async def _first_line(admin: asyncpg.Connection, invoice: int) -> int:
    return await admin.fetchval(
        "SELECT id FROM invoice_lines WHERE invoice_id = $1 ORDER BY position LIMIT 1", invoice
    )


async def _issued_invoice(admin: asyncpg.Connection, seed: Seed, amount: int) -> int:
    invoice = await draft_invoice(admin, seed, amounts=(amount,))
    await issue(admin, invoice)
    return invoice


# races -------------------------------------------------------------------------------------


async def credit_notes(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """Two credit notes of 60,000 on a 100,000 invoice."""
    invoice = await _issued_invoice(admin, seed, 100_000)
    line = await _first_line(admin, invoice)

    async def holds(conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(
            "SELECT i.total_minor, i.credited_minor, (SELECT coalesce(sum(c.total_minor), 0)"
            " FROM credit_notes c WHERE c.invoice_id = i.id) AS notes FROM invoices i"
            " WHERE i.id = $1",
            invoice,
        )
        return row["notes"] == row["credited_minor"] <= row["total_minor"]

    op = credit(invoice, line, 60_000)
    return Setup({"credit": op, "credit again": op}, holds)


async def payments(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """Two payments of 60,000 on a 100,000 invoice (overpayment)."""
    invoice = await _issued_invoice(admin, seed, 100_000)

    async def holds(conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(
            "SELECT i.total_minor, i.paid_minor, (SELECT coalesce(sum(p.amount_minor), 0)"
            " FROM payments p WHERE p.invoice_id = i.id) AS paid FROM invoices i"
            " WHERE i.id = $1",
            invoice,
        )
        return row["paid"] == row["paid_minor"] <= row["total_minor"]

    op = pay(invoice, 60_000)
    return Setup({"pay": op, "pay again": op}, holds)


async def payment_and_credit(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A payment and a credit note of 60,000 each on a 100,000 invoice."""
    invoice = await _issued_invoice(admin, seed, 100_000)
    line = await _first_line(admin, invoice)

    async def holds(conn: asyncpg.Connection) -> bool:
        return await conn.fetchval(
            "SELECT (SELECT coalesce(sum(amount_minor), 0) FROM payments WHERE invoice_id = $1)"
            " + (SELECT coalesce(sum(total_minor), 0) FROM credit_notes WHERE invoice_id = $1)"
            " <= 100000",
            invoice,
        )

    return Setup({"pay": pay(invoice, 60_000), "credit": credit(invoice, line, 60_000)}, holds)


async def void_and_payment(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """Voiding an invoice and paying it."""
    invoice = await _issued_invoice(admin, seed, 100_000)

    async def holds(conn: asyncpg.Connection) -> bool:
        return not await conn.fetchval(
            "SELECT status = 'VOID' AND EXISTS (SELECT 1 FROM payments WHERE invoice_id = $1)"
            " FROM invoices WHERE id = $1",
            invoice,
        )

    return Setup(
        {
            "pay": pay(invoice, 1_000),
            "void": sql("UPDATE invoices SET status = 'VOID' WHERE id = $1", invoice),
        },
        holds,
    )


async def line_and_issue(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A 5,000 line slipping into a 1,000 draft while it is issued."""
    invoice = await draft_invoice(admin, seed, amounts=(1_000,))

    async def holds(conn: asyncpg.Connection) -> bool:
        return await conn.fetchval(
            "SELECT status IN ('DRAFT', 'REVIEW') OR subtotal_minor = (SELECT sum(amount_minor)"
            " FROM invoice_lines WHERE invoice_id = $1) FROM invoices WHERE id = $1",
            invoice,
        )

    return Setup(
        {
            "add line": sql(
                "INSERT INTO invoice_lines (invoice_id, position, kind, amount_minor)"
                " VALUES ($1, 9, 'FEE', 5000)",
                invoice,
            ),
            "issue": issuing(invoice),
        },
        holds,
    )


async def evidence_and_issue(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A time log slipping onto a draft while it is issued (it would escape the ledger)."""
    await add_time_log(admin, seed, "a")
    await add_time_log(admin, seed, "b", T0 + timedelta(hours=3))
    invoice = await draft_invoice(admin, seed, amounts=(12_000,), log_ids=("a",))
    line = await _first_line(admin, invoice)

    async def holds(conn: asyncpg.Connection) -> bool:
        return not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM invoice_line_time_logs e JOIN invoices i"
            " ON i.id = e.invoice_id WHERE i.id = $1 AND i.status = 'ISSUED'"
            " AND NOT EXISTS (SELECT 1 FROM time_log_invoicing g WHERE g.invoice_id = i.id"
            " AND g.time_log_id = e.time_log_id))",
            invoice,
        )

    return Setup(
        {
            "add evidence": sql(
                "INSERT INTO invoice_line_time_logs (invoice_id, invoice_line_id, time_log_id,"
                " billed_seconds) VALUES ($1, $2, 'b', 3600)",
                invoice,
                line,
            ),
            "issue": issuing(invoice),
        },
        holds,
    )


async def two_issues_of_one_log(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """Two drafts pricing the same time log, issued at once."""
    await add_time_log(admin, seed, "shared", hours=2)
    first = await draft_invoice(admin, seed, amounts=(24_000,), log_ids=("shared",))
    second = await draft_invoice(admin, seed, amounts=(24_000,), log_ids=("shared",))

    async def holds(conn: asyncpg.Connection) -> bool:
        return await conn.fetchval(
            "SELECT count(*) <= 1 FROM invoices WHERE id = ANY($1::bigint[])"
            " AND status = 'ISSUED'",
            [first, second],
        )

    return Setup({"issue one": issuing(first), "issue other": issuing(second)}, holds)


async def log_edit_and_issue(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A 2 h time log stretched to 7 h while the invoice pricing 2 h is issued."""
    await add_time_log(admin, seed, "stretch", hours=2)
    invoice = await draft_invoice(admin, seed, amounts=(24_000,), log_ids=("stretch",))

    async def holds(conn: asyncpg.Connection) -> bool:
        # an issued invoice bills its logs exactly as they are stored
        return not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM invoice_line_time_logs e"
            " JOIN invoices i ON i.id = e.invoice_id"
            " JOIN time_logs l ON l.tenant_id = e.tenant_id AND l.id = e.time_log_id"
            " WHERE i.id = $1 AND i.status = 'ISSUED' AND e.log_digest <>"
            " effigate_time_log_digest(l.contract_id, l.started_at, l.ended_at,"
            " l.support_level, l.job_type, l.priority, l.billable_type, l.approval_state))",
            invoice,
        )

    return Setup(
        {
            "edit log": sql(
                "UPDATE time_logs SET ended_at = ended_at + interval '5 hours'"
                " WHERE id = 'stretch'"
            ),
            "issue": issuing(invoice),
        },
        holds,
    )


async def log_edit_and_close(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A time log of March edited while March is closed (the period had no row yet)."""
    await add_time_log(admin, seed, "march", hours=2)
    await add_time_log(admin, seed, "april", T0 + timedelta(days=35))
    moved = (T0 + timedelta(days=5), T0 + timedelta(days=5, hours=1))

    async def holds(conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(
            "SELECT (SELECT ended_at - started_at FROM time_logs WHERE id = 'march'"
            " AND tenant_id = $1) AS march, (SELECT started_at FROM time_logs"
            " WHERE id = 'april' AND tenant_id = $1) AS april, EXISTS (SELECT 1"
            " FROM billing_periods WHERE tenant_id = $1 AND status = 'CLOSED') AS closed",
            seed.tenant_id,
        )
        unchanged = row["march"] == timedelta(hours=2) and row["april"] == T0 + timedelta(35)
        return not row["closed"] or unchanged

    return Setup(
        {
            "close": sql(
                "INSERT INTO billing_periods (contract_id, starts_at, ends_at, status)"
                " VALUES ($1, $2, $3, 'CLOSED')",
                seed.contract_id,
                *MARCH,
            ),
            "edit log": sql(
                "UPDATE time_logs SET ended_at = ended_at + interval '5 hours'"
                " WHERE id = 'march'"
            ),
            "move log in": sql(
                "UPDATE time_logs SET started_at = $1, ended_at = $2 WHERE id = 'april'", *moved
            ),
        },
        holds,
    )


async def backdated_amendment(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A rate-card amendment effective mid-March while March is closed or invoiced."""
    period = await admin.fetchval(
        "INSERT INTO billing_periods (tenant_id, contract_id, starts_at, ends_at)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        seed.tenant_id,
        seed.contract_id,
        *MARCH,
    )

    async def holds(conn: asyncpg.Connection) -> bool:
        return not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM contract_amendments a JOIN billing_periods p"
            " ON p.contract_id = a.contract_id WHERE p.id = $1 AND a.effective_at < p.ends_at"
            " AND (p.status = 'CLOSED' OR EXISTS (SELECT 1 FROM invoices i"
            " WHERE i.billing_period_id = p.id AND i.status <> 'VOID')))",
            period,
        )

    return Setup(
        {
            "close": sql(
                "UPDATE billing_periods SET status = 'CLOSED' WHERE id = $1", period
            ),
            "draft": sql(
                "INSERT INTO invoices (contract_id, billing_period_id, currency)"
                " VALUES ($1, $2, 'USD')",
                seed.contract_id,
                period,
            ),
            "amend": sql(
                "INSERT INTO contract_amendments (contract_id, kind, effective_at, body)"
                " VALUES ($1, 'RATE_CARD', $2, '{}')",
                seed.contract_id,
                MARCH[0] + timedelta(days=14),
            ),
        },
        holds,
    )


async def milestone_and_issue(admin: asyncpg.Connection, seed: Seed) -> Setup:
    """A milestone's amount changed while the invoice billing it is issued."""
    milestone = await admin.fetchval(
        "INSERT INTO milestones (tenant_id, contract_id, name, amount_minor, status)"
        " VALUES ($1, $2, 'Design', 5000, 'APPROVED') RETURNING id",
        seed.tenant_id,
        seed.contract_id,
    )
    invoice = await admin.fetchval(
        "INSERT INTO invoices (tenant_id, contract_id, currency, subtotal_minor, total_minor)"
        " VALUES ($1, $2, 'USD', 5000, 5000) RETURNING id",
        seed.tenant_id,
        seed.contract_id,
    )
    await admin.execute(
        "INSERT INTO invoice_lines (tenant_id, invoice_id, position, kind, amount_minor,"
        " evidence) VALUES ($1, $2, 1, 'MILESTONE', 5000, $3::jsonb)",
        seed.tenant_id,
        invoice,
        json.dumps({"item_ids": [f"milestone:{milestone}"]}),
    )

    async def holds(conn: asyncpg.Connection) -> bool:
        return await conn.fetchval(
            "SELECT status <> 'INVOICED' OR amount_minor = 5000 FROM milestones WHERE id = $1",
            milestone,
        )

    return Setup(
        {
            "edit amount": sql(
                "UPDATE milestones SET amount_minor = 9000 WHERE id = $1", milestone
            ),
            "issue": issuing(invoice, milestone),
        },
        holds,
    )


#: (race, first operation, second operation): the second must be refused - except where it
#: is marked ``KEEPS`` (a change made before the other is legitimate at READ COMMITTED: only
#: the invariant must hold).
RACES: list[tuple[Prepare, str, str]] = [
    (credit_notes, "credit", "credit again"),
    (payments, "pay", "pay again"),
    (payment_and_credit, "pay", "credit"),
    (payment_and_credit, "credit", "pay"),
    (void_and_payment, "pay", "void"),
    (void_and_payment, "void", "pay"),
    (line_and_issue, "add line", "issue"),
    (line_and_issue, "issue", "add line"),
    (evidence_and_issue, "add evidence", "issue"),
    (evidence_and_issue, "issue", "add evidence"),
    (two_issues_of_one_log, "issue one", "issue other"),
    (log_edit_and_issue, "edit log", "issue"),
    (log_edit_and_issue, "issue", "edit log"),
    (log_edit_and_close, "close", "edit log"),
    (log_edit_and_close, "close", "move log in"),
    (backdated_amendment, "close", "amend"),
    (backdated_amendment, "draft", "amend"),
    (milestone_and_issue, "edit amount", "issue"),
    (milestone_and_issue, "issue", "edit amount"),
]
_IDS = [f"{prepare.__name__}:{first}->{second}" for prepare, first, second in RACES]
#: Races whose second write may commit under READ COMMITTED (it saw the first and the
#: invariant holds): evidence added to a draft before it is issued is billed and recorded.
KEEPS = {"evidence_and_issue:add evidence->issue"}


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(("prepare", "first", "second"), RACES, ids=_IDS)
def test_the_second_of_two_conflicting_writes_is_refused(
    db: Database, prepare: Prepare, first: str, second: str, isolation: str, ordering: str
) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        try:
            seed = await seed_tenant(admin)
            setup = await prepare(admin, seed)
            refusal = await race(
                db, seed.key, isolation, ordering, setup.ops[first], setup.ops[second]
            )
            name = f"{prepare.__name__}:{first}->{second}"
            if not (name in KEEPS and isolation == "read_committed"):
                assert isinstance(refusal, REFUSED), f"{second} after {first} was not refused"
            assert await setup.holds(admin)
        finally:
            await admin.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(("prepare", "first", "second"), RACES, ids=_IDS)
def test_each_refused_write_succeeds_alone(
    db: Database, prepare: Prepare, first: str, second: str, isolation: str
) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        try:
            seed = await seed_tenant(admin)
            setup = await prepare(admin, seed)
            await alone(db, seed.key, isolation, setup.ops[second])
            assert await setup.holds(admin)
        finally:
            await admin.close()

    asyncio.run(scenario())
