"""Invoicing through the store: the seed invoice end to end, idempotent generation (also under
a race), gap-free numbers, credit-note caps, payments, portal visibility, bucket balances."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from effigate_engine.service import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Principal,
    buckets,
    catalog,
    contracts,
    invoicing,
    payments,
    timelogs,
)
from effigate_engine.store.batches import STORED_INSTANT
from effigate_engine.store.contracts import ContractRecord
from effigate_engine.store.database import Store
from tests.service.support import new_tenant, open_store
from tests.store.helpers import Database

NYC_HOURS = {
    "timezone": "America/New_York",
    "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
}
SEED_CARD = {
    "currency": "USD",
    "base_rates": [{"support_level": "*", "job_type": "*", "amount": "120.00"}],
    "rules": {"AFTER_HOURS": {"amount": "180.00"}, "ADDITIONAL_HOURS": {"amount": "150.00"}},
    "increment_seconds": 900,
}
SEED_TERMS = {
    "sla_credits": {"per_breach": {"HIGH": "200.00"}},
    "tax": [{"name": "GST", "rate_ppm": 100_000}],
}
#: The seed's six logs (New York local times): 4 × 7 h + 0.5 h regular, 3 h after hours.
SEED_SPANS = [(f"2026-03-0{d}T09:00-05:00", f"2026-03-0{d}T16:00-05:00") for d in (2, 3, 4, 5)] + [
    ("2026-03-06T09:00-05:00", "2026-03-06T09:30-05:00"),
    ("2026-03-06T18:00-05:00", "2026-03-06T21:00-05:00"),
]
MARCH = date(2026, 3, 1)


def run(coro: Any) -> Any:
    """Run a coroutine to completion (the tests are plain sync functions)."""
    return asyncio.run(coro)


def log_batch(
    contract_id: int,
    spans: Sequence[tuple[str, str]],
    prefix: str = "LOG",
    *,
    billable: str = "BILLABLE",
    priority: str = "MEDIUM",
) -> pa.Table:
    """Time logs (store columns) over ``spans`` of ISO instants, ids ``{prefix}-{i}``."""
    n = len(spans)
    return pa.table(
        {
            "id": [f"{prefix}-{i}" for i in range(n)],
            "contract_id": pa.array([contract_id] * n, pa.int64()),
            "ticket_id": pa.array([None] * n, pa.string()),
            "task_ref": pa.array([None] * n, pa.string()),
            "agent": ["ana"] * n,
            "support_level": ["L2"] * n,
            "job_type": ["support"] * n,
            "priority": [priority] * n,
            "started_at": pa.array([datetime.fromisoformat(a) for a, _ in spans], STORED_INSTANT),
            "ended_at": pa.array([datetime.fromisoformat(b) for _, b in spans], STORED_INSTANT),
            "billable_type": [billable] * n,
        }
    )


@dataclass
class Setup:
    """A tenant with one client, an NYC calendar and a published rate card."""

    principal: Principal
    client_id: int
    calendar_id: int
    rate_card_id: int


async def setup(store: Store, db: Database, card: dict[str, Any] | None = None) -> Setup:
    p = await new_tenant(db)
    client = await catalog.create_client(store, p, "Nexus Corp")
    cal = await catalog.create_calendar(store, p, "nyc-business-hours", NYC_HOURS)
    card_id = await contracts.create_rate_card(store, p, "standard")
    await contracts.publish_rate_card(store, p, card_id, card or SEED_CARD)
    return Setup(p, client, cal.id, card_id)


async def new_contract(
    store: Store,
    s: Setup,
    contract_type: str = "HOURLY",
    terms: dict[str, Any] | None = None,
    client_id: int | None = None,
    activate: bool = True,
) -> ContractRecord:
    record = await contracts.create_contract(
        store,
        s.principal,
        client_id=client_id or s.client_id,
        contract_type=contract_type,
        currency="USD",
        starts_on=MARCH,
        calendar_id=s.calendar_id,
        rate_card_id=s.rate_card_id,
        terms=SEED_TERMS if terms is None else terms,
    )
    if activate:
        record = await contracts.activate_contract(store, s.principal, record.id)
    return record


async def add_logs(
    store: Store, p: Principal, contract_id: int, spans: Sequence[tuple[str, str]], prefix: str
) -> list[str]:
    batch = log_batch(contract_id, spans, prefix)
    await timelogs.ingest_time_logs(store, p, batch)
    ids = batch.column("id").to_pylist()
    assert await timelogs.set_approval(store, p, ids) == len(ids)
    return ids


async def add_breach(
    db: Database, p: Principal, client_id: int, contract_id: int, breach_id: str, at: datetime
) -> None:
    """A HIGH-priority RESOLUTION breach of a ticket of the contract (as the SLA side stores it)."""
    conn = await asyncpg.connect(db.admin)
    try:
        await conn.execute(
            "INSERT INTO tickets (tenant_id, id, client_id, contract_id, priority, status,"
            " created_at) VALUES ($1, $2, $3, $4, 'HIGH', 'RESOLVED', $5)",
            p.tenant_id,
            f"TKT-{breach_id}",
            client_id,
            contract_id,
            at,
        )
        await conn.execute(
            "INSERT INTO breach_records (tenant_id, id, ticket_id, contract_id, metric, target_at,"
            " breached_at, evidence) VALUES ($1, $2, $3, $4, 'RESOLUTION', $5, $5, $6::jsonb)",
            p.tenant_id,
            breach_id,
            f"TKT-{breach_id}",
            contract_id,
            at,
            json.dumps(
                {
                    "priority": "HIGH",
                    "breach_seconds": 1800,
                    "severity": "MAJOR",
                    "client_id": client_id,
                }
            ),
        )
    finally:
        await conn.close()


async def seed_contract(store: Store, db: Database) -> tuple[Setup, ContractRecord]:
    """The seed (002) contract with its six approved logs and one high-priority breach."""
    s = await setup(store, db)
    c = await new_contract(store, s)
    await add_logs(store, s.principal, c.id, SEED_SPANS, f"C{c.id}")
    await add_breach(
        db, s.principal, s.client_id, c.id, f"BR-{c.id}", datetime(2026, 3, 10, 15, tzinfo=UTC)
    )
    return s, c


async def fetch_all(db: Database, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db.admin)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# The seed invoice -----------------------------------------------------------------------------


def test_seed_invoice_end_to_end_through_the_store(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            preview = await invoicing.preview_invoice(store, p, c.id, MARCH)
            assert [line.amount for line in preview.lines] == [342_000, 54_000, -20_000]
            assert preview.total == 413_600

            inv = await invoicing.generate_invoice(store, p, c.id, date(2026, 3, 15))
            assert inv.status == "DRAFT" and inv.number is None
            assert (inv.period_start, inv.period_end) == (MARCH, date(2026, 4, 1))
            assert [x.amount_minor for x in inv.lines] == [342_000, 54_000, -20_000]
            assert (inv.charges_minor, inv.credits_minor) == (396_000, 20_000)
            assert (inv.subtotal_minor, inv.tax_minor, inv.total_minor) == (
                376_000,
                37_600,
                413_600,
            )
            assert [(t.name, t.ppm, t.amount) for t in inv.taxes] == [("GST", 100_000, 37_600)]
            regular, after, credit = inv.lines
            assert (
                regular.time_condition,
                regular.billed_seconds,
                regular.rate_minor_per_hour,
            ) == ("REGULAR", 28 * 3600 + 1800, 12_000)
            assert regular.time_log_ids == tuple(f"C{c.id}-{i}" for i in range(5))
            assert after.time_log_ids == (f"C{c.id}-5",)
            assert after.actual_seconds == after.billed_seconds == 3 * 3600
            assert regular.rate_card_version == 1
            assert regular.evidence["rate_card_source"] == {"library_version": 1}
            assert len(regular.evidence["rate_card_sha256"]) == 64
            assert credit.kind == "SLA_CREDIT" and credit.evidence["breach_ids"] == [f"BR-{c.id}"]
            assert "4136.00" in inv.text
            # one model, one layout: the stored invoice renders as its preview did, under its
            # own heading (number or draft id, status)
            heading, *rows = inv.text.splitlines()
            assert heading == f"Invoice draft {inv.id} contract {c.id} 2026-03-01..2026-04-01" + (
                " (USD, DRAFT)"
            )
            assert rows == preview.format().splitlines()[1:]
            assert [r.split()[-1] for r in rows[-4:]] == ["3960.00", "-200.00", "376.00", "4136.00"]

            evidence = await fetch_all(
                db,
                "SELECT time_log_id, part, billed_seconds FROM invoice_line_time_logs"
                " WHERE invoice_id = $1 ORDER BY time_log_id",
                inv.id,
            )
            assert len(evidence) == 6 and sum(r["billed_seconds"] for r in evidence) == 31.5 * 3600

            issued = await invoicing.issue_invoice(store, p, inv.id, due_days=14)
            assert issued.status == "ISSUED" and issued.number == 1
            assert (issued.due_at - issued.issued_at).days == 14
            assert issued.total_minor == 413_600
            assert await invoicing.get_invoice(store, p, inv.id) == issued
            audit = await fetch_all(
                db,
                "SELECT action FROM audit_log WHERE tenant_id = $1 ORDER BY id",
                p.tenant_id,
            )
            assert {"activate", "generate", "issue"} <= {r["action"] for r in audit}
            with pytest.raises(FailedPrecondition) as err:
                await invoicing.issue_invoice(store, p, inv.id)
            assert err.value.field == "invoice.status"

    run(scenario())


def test_generate_is_idempotent_sequentially_and_under_a_race(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            first = await invoicing.generate_invoice(store, p, c.id, MARCH)
            again = await invoicing.generate_invoice(store, p, c.id, date(2026, 3, 31))
            assert again == first

            # A second contract raced by two concurrent generations.
            c2 = await new_contract(store, s)
            await add_logs(store, p, c2.id, SEED_SPANS, f"C{c2.id}")
            a, b = await asyncio.gather(
                invoicing.generate_invoice(store, p, c2.id, MARCH),
                invoicing.generate_invoice(store, p, c2.id, MARCH),
            )
            assert a == b
            assert a.total_minor == 396_000 + 39_600  # no breach on this contract
            rows = await fetch_all(
                db, "SELECT id FROM invoices WHERE contract_id = ANY($1::bigint[])", [c.id, c2.id]
            )
            assert len(rows) == 2
            listed = await invoicing.list_invoices(store, p, c2.id)
            assert [x.id for x in listed] == [a.id]

    run(scenario())


def test_issue_numbers_one_then_two_and_void_keeps_the_number(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            march = await invoicing.generate_invoice(store, p, c.id, MARCH)
            await add_logs(
                store, p, c.id, [("2026-04-06T09:00-04:00", "2026-04-06T11:00-04:00")], "APR"
            )
            april = await invoicing.generate_invoice(store, p, c.id, date(2026, 4, 1))
            # The breach was credited on March's invoice, never again.
            assert [x.kind for x in april.lines] == ["TIME"]
            assert april.total_minor == 24_000 + 2_400
            reviewed = await invoicing.review_invoice(store, p, march.id)
            assert reviewed.status == "REVIEW"
            assert (await invoicing.issue_invoice(store, p, march.id)).number == 1
            assert (await invoicing.issue_invoice(store, p, april.id)).number == 2

            voided = await invoicing.void_invoice(store, p, april.id)
            assert voided.status == "VOID" and voided.number == 2
            again = await invoicing.generate_invoice(store, p, c.id, date(2026, 4, 1))
            assert again.id != april.id and again.total_minor == april.total_minor
            assert (await invoicing.issue_invoice(store, p, again.id)).number == 3

            draft_c = await new_contract(store, s)
            await add_logs(store, p, draft_c.id, SEED_SPANS[:1], f"D{draft_c.id}")
            draft = await invoicing.generate_invoice(store, p, draft_c.id, MARCH)
            discarded = await invoicing.void_invoice(store, p, draft.id)
            assert discarded.status == "VOID" and discarded.number is None
            with pytest.raises(NotFound):
                await invoicing.get_invoice(store, p, draft.id)

    run(scenario())


def test_credit_notes_are_capped_per_line_and_per_invoice(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            regular, after, credit = inv.lines
            with pytest.raises(FailedPrecondition) as err:
                await payments.create_credit_note(store, p, inv.id, {regular.id: 1_000})
            assert err.value.field == "invoice.status"  # a draft is not credited
            await invoicing.issue_invoice(store, p, inv.id)

            note = await payments.create_credit_note(
                store, p, inv.id, {regular.id: 100_000}, reason="goodwill"
            )
            assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (
                100_000,
                10_000,
                110_000,
            )
            with pytest.raises(FailedPrecondition) as err:
                await payments.create_credit_note(store, p, inv.id, {regular.id: 242_001})
            assert err.value.field == f"amounts[{regular.id}]"
            with pytest.raises(FailedPrecondition):
                await payments.create_credit_note(store, p, inv.id, {credit.id: 100})
            with pytest.raises(NotFound):
                await payments.create_credit_note(store, p, inv.id, {10**9: 100})
            # The invoice's net is 3,760.00: 1,000 + 2,420 + 540 would exceed it.
            await payments.create_credit_note(store, p, inv.id, {regular.id: 242_000})
            with pytest.raises(FailedPrecondition) as err:
                await payments.create_credit_note(store, p, inv.id, {after.id: 54_000})
            assert err.value.field == "amounts"
            last = await payments.create_credit_note(store, p, inv.id, {after.id: 34_000})
            record = await invoicing.get_invoice(store, p, inv.id)
            assert record.credited_minor == 110_000 + 266_200 + last.total_minor
            assert record.credited_minor == record.total_minor  # every cent credited, no more
            assert record.balance_due_minor == 0

    run(scenario())


def test_payments_mark_the_invoice_paid_and_forbid_void(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            received = datetime(2026, 4, 20, tzinfo=UTC)
            with pytest.raises(FailedPrecondition):
                await payments.record_payment(store, p, inv.id, 100, received)
            await invoicing.issue_invoice(store, p, inv.id)
            await payments.record_payment(store, p, inv.id, 400_000, received, "wire 1")
            partial = await invoicing.get_invoice(store, p, inv.id)
            assert partial.status == "ISSUED" and partial.balance_due_minor == 13_600
            with pytest.raises(FailedPrecondition) as err:
                await invoicing.void_invoice(store, p, inv.id)
            assert err.value.field == "invoice.payments"
            with pytest.raises(FailedPrecondition) as err:
                await payments.record_payment(store, p, inv.id, 13_601, received)
            assert err.value.field == "amount_minor"
            await payments.record_payment(store, p, inv.id, 13_600, received, "wire 2")
            paid = await invoicing.get_invoice(store, p, inv.id)
            assert paid.status == "PAID" and paid.paid_minor == 413_600
            with pytest.raises(FailedPrecondition):
                await payments.record_payment(store, p, inv.id, 1, received)

    run(scenario())


def test_portal_principal_sees_only_its_own_clients_invoices(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            other = await catalog.create_client(store, p, "Other Co")
            mine = replace(p, client_id=s.client_id)
            theirs = replace(p, client_id=other)
            assert (await invoicing.get_invoice(store, mine, inv.id)).id == inv.id
            assert [x.id for x in await invoicing.list_invoices(store, mine)] == [inv.id]
            with pytest.raises(NotFound) as err:
                await invoicing.get_invoice(store, theirs, inv.id)
            assert err.value.field == "invoice_id"
            assert await invoicing.list_invoices(store, theirs) == []
            assert await invoicing.list_invoices(store, theirs, c.id) == []
            with pytest.raises(PermissionDenied):
                await invoicing.generate_invoice(store, mine, c.id, MARCH)
            with pytest.raises(PermissionDenied):
                await invoicing.issue_invoice(store, mine, inv.id)
            # Another tenant does not see it at all.
            stranger = await new_tenant(db)
            with pytest.raises(NotFound):
                await invoicing.get_invoice(store, stranger, inv.id)

    run(scenario())


def test_bucket_balance_after_issue(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            terms = {"bucket": {"size_hours": 10, "low_balance_hours": ["2"]}}
            c = await new_contract(store, s, "BUCKET", terms)
            # 5 × 2 h + 1 h inside business hours: 10 h drawn, 1 h over at $150.
            spans = [
                (f"2026-03-0{d}T09:00-05:00", f"2026-03-0{d}T11:00-05:00") for d in range(2, 7)
            ]
            spans.append(("2026-03-09T09:00-04:00", "2026-03-09T10:00-04:00"))
            ids = await add_logs(store, p, c.id, spans, "B")
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            by_condition = {x.time_condition: x for x in inv.lines}
            assert by_condition["INCLUDED"].billed_seconds == 36_000
            assert by_condition["INCLUDED"].amount_minor == 0
            assert by_condition["ADDITIONAL_HOURS"].billed_seconds == 3_600
            assert by_condition["ADDITIONAL_HOURS"].amount_minor == 15_000
            assert by_condition["ADDITIONAL_HOURS"].time_log_ids == (ids[-1],)
            assert inv.total_minor == 15_000

            end_of_march = datetime(2026, 4, 1, 4, tzinfo=UTC)
            before = await buckets.bucket_balance(store, p, c.id, end_of_march)
            assert before.invoiced_drawdown_seconds == 0
            await invoicing.issue_invoice(store, p, inv.id)
            balance = await buckets.bucket_balance(store, p, c.id, end_of_march)
            assert balance.purchased_seconds == 36_000 and balance.top_up_seconds == 0
            assert (balance.burned_seconds, balance.remaining_seconds) == (36_000, 0)
            assert balance.overage_seconds == 3_600
            assert balance.invoiced_drawdown_seconds == 36_000
            assert [a.threshold_seconds for a in balance.alerts] == [7_200]
            assert balance.alerts[0].time_log_id == ids[3] and balance.low_balance  # at 2 h left
            ledger = await fetch_all(
                db,
                "SELECT kind, seconds FROM bucket_ledger WHERE contract_id = $1 ORDER BY id",
                c.id,
            )
            assert ledger[0]["kind"] == "TOP_UP" and ledger[0]["seconds"] == 36_000
            assert sum(r["seconds"] for r in ledger if r["kind"] == "DRAWDOWN") == -36_000

            # A top-up counts from its date; the portal sees its own bucket only.
            await contracts.amend_contract(
                store, p, c.id, kind="TOP_UP", effective_on=date(2026, 4, 1), body={"hours": "5"}
            )
            mine = replace(p, client_id=s.client_id)
            later = await buckets.bucket_balance(
                store, mine, c.id, datetime(2026, 4, 2, tzinfo=UTC)
            )
            assert (later.top_up_seconds, later.remaining_seconds) == (18_000, 18_000)
            other = await catalog.create_client(store, p, "Other Co")
            with pytest.raises(NotFound):
                await buckets.bucket_balance(store, replace(p, client_id=other), c.id)
            empty = await buckets.bucket_balance(
                store, p, c.id, datetime(2026, 3, 1, 12, tzinfo=UTC)
            )
            assert (empty.burned_seconds, empty.remaining_seconds) == (0, 36_000)

    run(scenario())


def test_sla_credit_cap_and_credit_balance_carried(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            terms = {"sla_credits": {"per_breach": {"HIGH": "200.00"}, "cap": "300.00"}}
            c = await new_contract(store, s, terms=terms)
            # One hour of work ($120) and three $200 breaches capped at $300.
            await add_logs(
                store, p, c.id, [("2026-03-06T09:00-05:00", "2026-03-06T10:00-05:00")], "CAP"
            )
            for i in range(3):
                await add_breach(
                    db,
                    p,
                    s.client_id,
                    c.id,
                    f"CAP-{c.id}-{i}",
                    datetime(2026, 3, 10 + i, 15, tzinfo=UTC),
                )
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            credits = [x for x in inv.lines if x.kind == "SLA_CREDIT"]
            assert [x.evidence["credit_minor"] for x in credits] == [20_000, 10_000, 0]
            assert credits[-1].evidence.get("forfeited") is True
            assert inv.total_minor == 0 and inv.subtotal_minor == 0
            assert inv.credit_balance_minor == 30_000 - 12_000
            await invoicing.issue_invoice(store, p, inv.id)
            await add_logs(
                store, p, c.id, [("2026-04-06T09:00-04:00", "2026-04-06T12:00-04:00")], "CAP-APR"
            )
            april = await invoicing.generate_invoice(store, p, c.id, date(2026, 4, 1))
            brought = [x for x in april.lines if x.kind == "CREDIT_BALANCE"]
            assert brought[0].amount_minor == -18_000
            assert april.total_minor == 36_000 - 18_000

    run(scenario())


def test_a_late_log_of_an_invoiced_closed_period_lands_on_the_next_invoice(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s, c = await seed_contract(store, db)
            p = s.principal
            march = await invoicing.generate_invoice(store, p, c.id, MARCH)
            await invoicing.issue_invoice(store, p, march.id)
            await timelogs.close_period(store, p, c.id, MARCH)
            # logged after March was invoiced and closed: 1 h on 20 March 18:00 (after hours),
            # arriving approved (a closed period's logs are read-only, approval included)
            batch = log_batch(c.id, [("2026-03-20T18:00-04:00", "2026-03-20T19:00-04:00")], "LATE")
            batch = batch.append_column("approval_state", pa.array(["APPROVED"] * batch.num_rows))
            await timelogs.ingest_time_logs(store, p, batch)
            late = batch.column("id").to_pylist()
            await add_logs(
                store, p, c.id, [("2026-04-06T09:00-04:00", "2026-04-06T11:00-04:00")], "APR"
            )
            april = await invoicing.generate_invoice(store, p, c.id, date(2026, 4, 1))
            lines = [
                (x.kind, x.time_condition, x.amount_minor, x.time_log_ids) for x in april.lines
            ]
            assert lines == [
                ("TIME", "REGULAR", 24_000, ("APR-0",)),
                ("TIME", "AFTER_HOURS", 18_000, tuple(late)),  # March's rate, March's condition
            ]
            assert "Late work of 2026-03-01..2026-04-01" in april.lines[1].description
            assert april.total_minor == 42_000 + 4_200
            # the March invoice is untouched, the late log is priced once
            again = await invoicing.get_invoice(store, p, march.id)
            assert again.total_minor == march.total_minor
            assert all(late[0] not in x.time_log_ids for x in again.lines)
            issued = await invoicing.issue_invoice(store, p, april.id)
            assert issued.number == 2
            may = await invoicing.generate_invoice(store, p, c.id, date(2026, 5, 1))
            assert may.lines == ()

    run(scenario())
