"""Invoice assembly, SLA credits, tax, credit balance, buckets and credit notes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.buckets import bucket_statement
from effigate_engine.billing.credit_notes import credit_note, creditable
from effigate_engine.billing.invoice import LineKind, TaxComponent
from effigate_engine.billing.schemas import BREACH_RECORDS, INVOICE_LINES
from effigate_engine.errors import LifecycleError
from effigate_engine.ratecard.contracts import (
    Amendment,
    BucketTerms,
    Contract,
    ContractType,
    Deliverable,
    Milestone,
    RecurringTerms,
    SlaCreditTerms,
    split_milestones,
)
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from tests.billing.support import HOUR, at, business_hours, run

GST = TaxComponent("GST", 100_000)
QST = TaxComponent("QST", 99_750)


def seed_contract() -> Contract:
    card = RateCard("USD", {("*", "*"): 12_000}, {Condition.AFTER_HOURS: Rule(absolute=18_000)})
    return Contract(
        "CON-2024-018",
        "Nexus",
        ContractType.HOURLY,
        business_hours(),
        date(2026, 3, 1),
        card,
        sla_credits=SlaCreditTerms(per_breach={"HIGH": 20_000}),
    ).activate()


def day_logs(contract_id: str, days: list[int], start: str, end: str) -> list[dict]:
    return [
        {
            "contract_id": contract_id,
            "start": at(f"2026-03-{d:02d}T{start}-05:00"),
            "end": at(f"2026-03-{d:02d}T{end}-05:00"),
        }
        for d in days
    ]


def breaches(rows: list[dict]) -> pa.Table:
    full = [
        {
            "ticket_id": "TKT-041",
            "contract_id": "CON-2024-018",
            "client_id": "Nexus",
            "metric": "RESOLUTION",
            "priority": "HIGH",
            "breach_seconds": 1_800,
            "severity": "MAJOR",
            **row,
        }
        for row in rows
    ]
    return pa.Table.from_pylist(full, schema=BREACH_RECORDS)


def seed_invoice():
    contract = seed_contract()
    rows = day_logs(contract.id, [2, 3, 4, 5], "09:00", "16:00")
    rows += day_logs(contract.id, [6], "09:00", "09:30")
    rows += day_logs(contract.id, [6], "18:00", "21:00")
    result = run([contract], rows)
    breach = breaches([{"breach_id": "BR-1", "breached_at": datetime(2026, 3, 10, 15, tzinfo=UTC)}])
    period = contract.cycle.period(0)
    return (
        contract,
        result,
        assemble_invoice(contract, period, classification=result, breaches=breach, tax=[GST]),
    )


def test_seed_invoice_totals_4136_00() -> None:
    _, _, invoice = seed_invoice()
    amounts = [(line.kind, line.condition, line.amount) for line in invoice.lines]
    assert amounts == [
        (LineKind.TIME, "REGULAR", 342_000),
        (LineKind.TIME, "AFTER_HOURS", 54_000),
        (LineKind.SLA_CREDIT, None, -20_000),
    ]
    assert invoice.subtotal == 396_000
    assert invoice.credits_applied == 20_000
    assert [t.amount for t in invoice.taxes] == [37_600]
    assert invoice.total == 413_600
    assert "4136.00" in invoice.format()
    # Every line keeps its evidence.
    regular = invoice.lines[0]
    assert regular.quantity == 28 * HOUR + 1_800 and len(regular.log_ids) == 5
    assert regular.rate_card_version == 1 and regular.rate_card_hash
    assert invoice.lines[2].breach_ids == ("BR-1",)
    table = invoice.to_arrow()
    assert table.schema.equals(INVOICE_LINES) and table.num_rows == 3


def test_assembling_twice_gives_the_same_invoice() -> None:
    contract, result, invoice = seed_invoice()
    again = assemble_invoice(
        contract,
        contract.cycle.period(0),
        classification=result,
        breaches=breaches(
            [{"breach_id": "BR-1", "breached_at": datetime(2026, 3, 10, 15, tzinfo=UTC)}]
        ),
        tax=[GST],
    )
    assert again == invoice


def test_a_breach_is_credited_once_per_breach_id() -> None:
    contract, result, _ = seed_invoice()
    when = datetime(2026, 3, 10, 15, tzinfo=UTC)
    dup = breaches(
        [{"breach_id": "BR-1", "breached_at": when}, {"breach_id": "BR-1", "breached_at": when}]
    )
    invoice = assemble_invoice(
        contract, contract.cycle.period(0), classification=result, breaches=dup, tax=[GST]
    )
    assert sum(1 for line in invoice.lines if line.kind == LineKind.SLA_CREDIT) == 1
    later = assemble_invoice(
        contract,
        contract.cycle.period(1),
        breaches=dup,
        already_credited=invoice.settled_breach_ids,
        tax=[GST],
    )
    assert not later.credit_lines


def test_a_breach_from_a_closed_period_lands_on_the_first_open_invoice() -> None:
    contract = seed_contract()
    late = breaches([{"breach_id": "BR-9", "breached_at": datetime(2026, 3, 20, tzinfo=UTC)}])
    invoice = assemble_invoice(contract, contract.cycle.period(1), breaches=late)
    assert invoice.settled_breach_ids == ("BR-9",)
    future = breaches([{"breach_id": "BR-10", "breached_at": datetime(2026, 6, 1, tzinfo=UTC)}])
    assert not assemble_invoice(contract, contract.cycle.period(1), breaches=future).lines


def recurring(**terms) -> Contract:
    card = RateCard(
        "USD", {("*", "*"): 12_000}, {Condition.ADDITIONAL_HOURS: Rule(absolute=15_000)}
    )
    return Contract(
        "MRR-1",
        "CL",
        ContractType.RECURRING,
        business_hours(),
        date(2026, 3, 1),
        card,
        recurring=RecurringTerms(
            base_fee=100_000, unit_prices={"endpoint": 1_500}, included_seconds=2 * HOUR
        ),
        **terms,
    ).activate()


def test_a_10_percent_sla_credit_reduces_the_taxable_base() -> None:
    contract = recurring(sla_credits=SlaCreditTerms(percent_bp=1_000))
    breach = breaches(
        [
            {
                "breach_id": "B1",
                "contract_id": "MRR-1",
                "breached_at": datetime(2026, 4, 10, tzinfo=UTC),
            }
        ]
    )
    invoice = assemble_invoice(contract, contract.cycle.period(1), breaches=breach, tax=[GST])
    assert [line.amount for line in invoice.lines] == [100_000, -10_000]
    assert invoice.taxes[0].amount == 9_000
    assert invoice.total == 99_000


def test_credit_cap_trims_breaches_in_breach_time_order() -> None:
    contract = recurring(
        sla_credits=SlaCreditTerms(per_breach={"HIGH": 30_000}, cap_per_period=50_000)
    )
    rows = [
        {
            "breach_id": f"B{i}",
            "contract_id": "MRR-1",
            "breached_at": datetime(2026, 4, 10 - i, tzinfo=UTC),
        }
        for i in range(3)
    ]
    invoice = assemble_invoice(contract, contract.cycle.period(1), breaches=breaches(rows))
    credits = [(line.breach_ids, line.amount) for line in invoice.credit_lines]
    assert credits == [(("B2",), -30_000), (("B1",), -20_000)]
    assert invoice.forfeited_breach_ids == ("B0",)


def test_excess_credit_is_carried_as_a_balance_never_a_negative_total() -> None:
    contract = recurring(sla_credits=SlaCreditTerms(per_breach={"HIGH": 150_000}))
    breach = breaches(
        [
            {
                "breach_id": "B1",
                "contract_id": "MRR-1",
                "breached_at": datetime(2026, 4, 10, tzinfo=UTC),
            }
        ]
    )
    invoice = assemble_invoice(contract, contract.cycle.period(1), breaches=breach, tax=[GST])
    assert invoice.total == 0 and invoice.credit_balance_out == 50_000
    nxt = assemble_invoice(
        contract, contract.cycle.period(2), tax=[GST], credit_balance=invoice.credit_balance_out
    )
    assert nxt.credits_applied == 50_000 and nxt.total == 55_000


def test_recurring_bills_base_in_advance_units_in_arrears_and_overage() -> None:
    contract = recurring()
    rows = day_logs("MRR-1", [3], "09:00", "12:00")
    result = run([contract], rows)
    first = assemble_invoice(
        contract, contract.cycle.period(0), classification=result, unit_counts={"endpoint": 10}
    )
    kinds = [(line.kind, line.amount) for line in first.lines]
    assert (LineKind.RECURRING_BASE, 100_000) in kinds  # cycle 0 and cycle 1 in advance
    assert sum(1 for k, _ in kinds if k == LineKind.RECURRING_BASE) == 2
    assert (LineKind.RECURRING_UNITS, 15_000) in kinds
    time = {line.condition: line for line in first.lines if line.kind == LineKind.TIME}
    assert time["INCLUDED"].quantity == 2 * HOUR and time["INCLUDED"].amount == 0
    assert time["ADDITIONAL_HOURS"].quantity == HOUR and time["ADDITIONAL_HOURS"].amount == 15_000


def test_recurring_prorates_a_cycle_cut_by_the_contract_end() -> None:
    contract = recurring().terminate(date(2026, 4, 11))
    invoice = assemble_invoice(contract, contract.cycle.period(0))
    base = [line.amount for line in invoice.lines if line.kind == LineKind.RECURRING_BASE]
    assert base == [100_000, 33_333]  # April: 10 of 30 days


def test_milestones_and_deliverables_are_invoiced_once_when_approved() -> None:
    card = RateCard("USD", {("*", "*"): 12_000})
    ms = split_milestones(1_000_000, ["a", "b", "c"])
    ms = (Milestone(ms[0].id, "a", ms[0].amount, date(2026, 3, 5)), *ms[1:])
    fixed = Contract(
        "F1",
        "CL",
        ContractType.FIXED_PRICE,
        business_hours(),
        date(2026, 3, 1),
        card,
        milestones=ms,
    ).activate()
    invoice = assemble_invoice(fixed, fixed.cycle.period(0))
    assert [(line.kind, line.amount, line.item_ids) for line in invoice.lines] == [
        (LineKind.MILESTONE, 333_334, ("M1",))
    ]
    assert not assemble_invoice(fixed, fixed.cycle.period(1), invoiced_items=["M1"]).lines
    scope = Contract(
        "S1",
        "CL",
        ContractType.SCOPE,
        business_hours(),
        date(2026, 3, 1),
        card,
        deliverables=(
            Deliverable("D1", "x", 5_000, date(2026, 3, 9)),
            Deliverable("D2", "y", 7_000),
        ),
    ).activate()
    assert [line.amount for line in assemble_invoice(scope, scope.cycle.period(0)).lines] == [5_000]


def test_qst_on_8180_is_815_96_and_exemptions_are_recorded() -> None:
    card = RateCard("CAD", {("*", "*"): 818_000}, increment_seconds=0)
    contract = Contract(
        "Q1", "CL", ContractType.HOURLY, business_hours(), date(2026, 3, 1), card
    ).activate()
    result = run([contract], day_logs("Q1", [3], "10:00", "11:00"))
    invoice = assemble_invoice(
        contract,
        contract.cycle.period(0),
        classification=result,
        tax=[TaxComponent("GST", 50_000), QST],
    )
    assert [t.amount for t in invoice.taxes] == [40_900, 81_596]
    exempt = assemble_invoice(
        contract,
        contract.cycle.period(0),
        classification=result,
        tax=[QST],
        exemption="first nations band council",
    )
    assert exempt.taxes == () and exempt.total == 818_000


def test_credit_notes_never_exceed_the_invoice() -> None:
    _, _, invoice = seed_invoice()
    assert creditable(invoice) == {1: 342_000, 2: 54_000}
    first = credit_note(invoice, [], {1: 100_001})
    second = credit_note(invoice, [first], {1: 100_001, 2: 54_000})
    left = creditable(invoice, [first, second])
    with pytest.raises(LifecycleError):
        credit_note(invoice, [first, second], {1: left[1] + 1})
    # The notes may not credit more than the invoice's net (subtotal less applied credits).
    with pytest.raises(LifecycleError, match="net"):
        credit_note(invoice, [first, second], {1: left[1]})
    third = credit_note(invoice, [first, second], {1: left[1] - 20_000})
    notes = [first, second, third]
    assert sum(n.net for n in notes) == invoice.subtotal - invoice.credits_applied
    assert sum(n.total for n in notes) == invoice.total
    with pytest.raises(LifecycleError):
        credit_note(invoice, notes, {2: 1})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 10**7), min_size=1, max_size=6),
    st.lists(st.integers(0, 10**6), max_size=3),
    st.integers(0, 10**6),
    st.lists(st.integers(0, 200_000), min_size=0, max_size=3),
    st.data(),
)
def test_invoice_and_credit_note_arithmetic_is_conserved(
    milestones, credits, balance, ppms, data
) -> None:
    """Lines sum to the subtotal; subtotal − credits + tax = total; total ≥ 0; applied credit +
    carried balance = available credit; any sequence of credit notes stays within the invoice
    (net, tax and total)."""
    card = RateCard("USD", {("*", "*"): 1})
    ms = tuple(Milestone(f"M{i}", "m", a, date(2026, 3, 2)) for i, a in enumerate(milestones))
    per_breach = credits[0] if credits and credits[0] else 1
    contract = Contract(
        "F",
        "CL",
        ContractType.FIXED_PRICE,
        business_hours(),
        date(2026, 3, 1),
        card,
        milestones=ms,
        sla_credits=SlaCreditTerms(per_breach={"HIGH": per_breach}),
    ).activate()
    rows = [
        {
            "breach_id": f"B{i}",
            "contract_id": "F",
            "breached_at": datetime(2026, 3, 3, tzinfo=UTC) + timedelta(hours=i),
        }
        for i in range(len(credits))
    ]
    tax = [TaxComponent(f"T{i}", p) for i, p in enumerate(ppms)]
    invoice = assemble_invoice(
        contract,
        contract.cycle.period(0),
        breaches=breaches(rows) if rows else None,
        tax=tax,
        credit_balance=balance,
    )
    assert sum(line.amount for line in invoice.charges) == invoice.subtotal
    assert invoice.subtotal - invoice.credits_applied + invoice.tax_total == invoice.total
    assert invoice.total >= 0
    assert invoice.credits_applied + invoice.credit_balance_out == invoice.credits_available
    notes = []
    for _ in range(data.draw(st.integers(0, 4))):
        left = creditable(invoice, notes)
        room = invoice.subtotal - invoice.credits_applied - sum(n.net for n in notes)
        choices = [k for k, v in left.items() if v > 0]
        if not choices or room <= 0:
            break
        line = data.draw(st.sampled_from(choices))
        amount = data.draw(st.integers(1, min(left[line], room)))
        notes.append(credit_note(invoice, notes, {line: amount}))
    assert sum(n.total for n in notes) <= invoice.total
    for i, tax_line in enumerate(invoice.taxes):
        assert sum(n.taxes[i].amount for n in notes) <= tax_line.amount


def bucket(size_hours: int) -> Contract:
    card = RateCard("USD", {("*", "*"): 12_000}, increment_seconds=0)
    return Contract(
        "CON-2024-018",
        "Nexus",
        ContractType.BUCKET,
        business_hours(),
        date(2026, 3, 1),
        card,
        bucket=BucketTerms(size_hours * HOUR, low_balance_seconds=(10 * HOUR,)),
    ).activate()


MARCH_WEEKDAYS = [2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20]


def test_seed_bucket_63_of_100_hours_used_37_remaining_no_alert() -> None:
    contract = bucket(100)
    result = run([contract], day_logs(contract.id, MARCH_WEEKDAYS[:9], "09:00", "16:00"))
    statement = bucket_statement(contract, result, datetime(2026, 3, 31, tzinfo=UTC))
    assert statement.burned_seconds == 63 * HOUR
    assert statement.remaining_seconds == 37 * HOUR
    assert statement.alerts == ()
    assert (
        statement.burned_seconds + statement.remaining_seconds + (statement.expired_seconds)
        == statement.purchased_seconds + statement.top_up_seconds
    )


def test_low_balance_alert_fires_once_when_crossing_10_hours() -> None:
    contract = bucket(100).amend(Amendment("TOP", date(2026, 3, 19), add_seconds=20 * HOUR))
    rows = day_logs(contract.id, MARCH_WEEKDAYS[:13], "09:00", "16:00")
    result = run([contract], rows)
    statement = bucket_statement(contract, result, datetime(2026, 3, 18, 23, tzinfo=UTC))
    assert statement.burned_seconds == 91 * HOUR and statement.remaining_seconds == 9 * HOUR
    assert [(a.threshold_seconds, a.balance_seconds) for a in statement.alerts] == [
        (10 * HOUR, 9 * HOUR)
    ]
    after = bucket_statement(contract, result, datetime(2026, 3, 31, tzinfo=UTC))
    assert after.top_up_seconds == 20 * HOUR
    assert after.burned_seconds + after.remaining_seconds == 120 * HOUR
    assert len(after.alerts) == 1


def test_a_mid_month_start_prorates_the_stub_first_cycle() -> None:
    card = RateCard("USD", {("*", "*"): 12_000})
    contract = Contract(
        "MRR-2",
        "CL",
        ContractType.RECURRING,
        business_hours(),
        date(2026, 3, 10),
        card,
        anchor_day=1,
        recurring=RecurringTerms(base_fee=100_000),
    ).activate()
    invoice = assemble_invoice(contract, contract.cycle.period(0))
    base = [line.amount for line in invoice.lines if line.kind == LineKind.RECURRING_BASE]
    assert base == [70_968, 100_000]  # 22 of March's 31 days, then April in advance
    assert "prorated 22 days" in invoice.lines[0].description


def test_shown_hours_times_rate_is_the_line_total() -> None:
    _, _, invoice = seed_invoice()
    for line in invoice.charges:
        assert line.amount == (2 * line.quantity * line.rate + 3_600) // 7_200
