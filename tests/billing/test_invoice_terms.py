"""Invoice-side contract terms against the ``decimal`` reference: base fee in advance or in
arrears, unit counts as timelines with and without proration, fixed and percent SLA credits
of the breach's cycle, amount and percent caps; generated contracts mixing all of them, and
hand-picked cases (the worked examples of ``docs/contract-terms.md`` run as written)."""

from __future__ import annotations

import contextlib
import io
import os
import re
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, WeeklyEntry
from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.invoice import Invoice, LineKind
from effigate_engine.billing.recurring import cycle_covered_fee, recurring_lines
from effigate_engine.billing.schemas import BREACH_RECORDS, INVOICE_LINES
from effigate_engine.billing.sla_credits import sla_credit_lines
from effigate_engine.errors import BillingError, ConfigurationError
from effigate_engine.ratecard.contracts import (
    BaseTiming,
    Contract,
    ContractType,
    RecurringTerms,
    SlaCreditTerms,
)
from effigate_engine.ratecard.model import RateCard
from effigate_engine.ratecard.periods import Period
from tests.billing.reference_invoice import RefLine, RefTerms, reference_terms
from tests.billing.support import log_batch, run

EXAMPLES = 10 * int(os.environ.get("EFFIGATE_BILLING_EXAMPLES", "30"))
HOUR = 3_600
CARD = RateCard("USD", {("*", "*"): 12_000})
ZONES = ("UTC", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu")
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
ALIAS = {"CRITICAL": "P1", "HIGH": "P2", "MEDIUM": "P3", "LOW": "P4"}
UNITS = ("endpoint", "licence", "mailbox")
RECURRING_KINDS = (LineKind.RECURRING_BASE, LineKind.RECURRING_UNITS)
DOC = Path(__file__).resolve().parents[2] / "docs" / "contract-terms.md"
DOC_SECTION = "## Worked examples: recurring fees and SLA credits"


@cache
def office(zone: str) -> Calendar:
    return Calendar(zone, tuple(WeeklyEntry(d, 9 * HOUR, 17 * HOUR) for d in range(5)))


def recurring(start: date = date(2026, 1, 1), zone: str = "America/New_York", **kwargs) -> Contract:
    """An active recurring contract anchored on the 1st; ``kwargs`` are RecurringTerms fields
    plus ``sla_credits`` and ``end``."""
    extra = {k: kwargs.pop(k) for k in ("sla_credits", "end", "anchor_day") if k in kwargs}
    extra.setdefault("anchor_day", 1)
    terms = RecurringTerms(**{"base_fee": 100_000, **kwargs})
    return Contract(
        "MRR", "CL", ContractType.RECURRING, office(zone), start, CARD, recurring=terms, **extra
    ).activate()


def breach_table(rows: list[dict]) -> pa.Table:
    full = [
        {
            "ticket_id": f"TKT-{row['breach_id']}",
            "contract_id": "MRR",
            "client_id": "CL",
            "metric": "RESOLUTION",
            "priority": "HIGH",
            "breach_seconds": 60,
            "severity": "MAJOR",
            **row,
        }
        for row in rows
    ]
    return pa.Table.from_pylist(full, schema=BREACH_RECORDS)


def engine_terms(invoice: Invoice) -> RefTerms:
    """The invoice's recurring and credit lines in the reference's form."""
    out = RefTerms(
        settled=list(invoice.settled_breach_ids), forfeited=list(invoice.forfeited_breach_ids)
    )
    for line in invoice.lines:
        if line.kind in RECURRING_KINDS:
            service = (line.service_start, line.service_end)
            assert f"{service[0]}..{service[1]}" in line.description
            out.lines.append(
                RefLine(
                    line.kind.value, line.amount, line.quantity, line.rate, service, line.item_ids
                )
            )
        elif line.kind == LineKind.SLA_CREDIT:
            assert line.service_start is None and line.service_end is None
            out.lines.append(
                RefLine("SLA_CREDIT", line.amount, line.quantity, line.rate, None, line.breach_ids)
            )
    return out


def assert_matches_reference(
    contract: Contract,
    ordinal: int,
    unit_counts=None,
    breaches: pa.Table | None = None,
    already_credited: tuple[str, ...] = (),
) -> Invoice:
    """Assemble the invoice for cycle ``ordinal`` and compare its recurring and credit lines,
    settled and forfeited breaches with the reference."""
    invoice = assemble_invoice(
        contract,
        contract.cycle.period(ordinal),
        unit_counts=unit_counts,
        breaches=breaches,
        already_credited=already_credited,
    )
    rows = breaches.to_pylist() if breaches is not None else []
    expected = reference_terms(contract, ordinal, unit_counts, rows, already_credited)
    assert engine_terms(invoice) == expected
    return invoice


# Generated contracts ---------------------------------------------------------------------------


@st.composite
def credit_terms(draw: st.DrawFn) -> SlaCreditTerms | None:
    if draw(st.integers(0, 5)) == 0:
        return None
    fixed = draw(st.sets(st.sampled_from(PRIORITIES)))
    shares = {p for p in PRIORITIES if p not in fixed and draw(st.booleans())}

    def key(priority: str) -> str:
        return ALIAS[priority] if draw(st.booleans()) else priority

    cap_kind = draw(st.sampled_from(("none", "amount", "percent")))
    return SlaCreditTerms(
        per_breach={key(p): draw(st.integers(0, 120_000)) for p in sorted(fixed)},
        percent_per_priority={key(p): draw(st.integers(0, 10_000)) for p in sorted(shares)},
        percent_bp=draw(st.integers(0, 10_000)),
        cap_per_period=draw(st.integers(0, 300_000)) if cap_kind == "amount" else None,
        cap_percent_bp=draw(st.integers(0, 10_000)) if cap_kind == "percent" else None,
    )


@st.composite
def unit_count(draw: st.DrawFn, contract: Contract, cycle: Period) -> int | list[tuple[date, int]]:
    """A count, or a timeline in any order with most dates around the invoiced cycle and on
    its edges (and the contract's)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.integers(0, 400))
    one = timedelta(days=1)
    edges = [cycle.start, cycle.start + one, cycle.end - one, cycle.end, contract.start]
    if contract.end is not None:
        edges += [contract.end - one, contract.end]
    near = st.integers(-40, 40).map(lambda d: cycle.start + timedelta(days=d))
    anywhere = st.integers(-70, 330).map(lambda d: contract.start + timedelta(days=d))
    day = st.one_of(near, st.sampled_from(edges), anywhere)
    days = draw(st.lists(day, min_size=1, max_size=7, unique=True))
    return [(since, draw(st.integers(0, 400))) for since in days]


@st.composite
def invoices(draw: st.DrawFn) -> tuple:
    """``(contract, ordinal, unit_counts, breaches, already_credited)``."""
    zone = draw(st.sampled_from(ZONES))
    start = date(2025, 12, 1) + timedelta(days=draw(st.integers(0, 430)))
    end = None
    if draw(st.booleans()):
        end = start + timedelta(days=draw(st.integers(1, 250)))
    units = draw(st.lists(st.sampled_from(UNITS), unique=True, max_size=3))
    credits = draw(credit_terms())
    if draw(st.integers(0, 9)) == 0:  # credit terms on a contract without recurring fees
        contract = Contract(
            "MRR", "CL", ContractType.HOURLY, office(zone), start, CARD, sla_credits=credits
        ).activate()
    else:
        terms = RecurringTerms(
            base_fee=draw(st.integers(0, 600_000)),
            unit_prices={u: draw(st.integers(0, 40_000)) for u in units},
            prorate=draw(st.booleans()),
            base_timing=draw(st.sampled_from(BaseTiming)),
            prorate_units=draw(st.booleans()),
        )
        contract = Contract(
            "MRR",
            "CL",
            ContractType.RECURRING,
            office(zone),
            start,
            CARD,
            end=end,
            anchor_day=draw(st.one_of(st.none(), st.integers(1, 31))),
            recurring=terms,
            sla_credits=credits,
        ).activate()
    ordinal = draw(st.one_of(st.just(0), st.integers(0, 7)))
    cycle = contract.cycle.period(ordinal)
    counts = {u: draw(unit_count(contract, cycle)) for u in units if draw(st.integers(0, 3))}
    first = int(datetime.combine(start, datetime.min.time(), UTC).timestamp()) - 10 * 86_400
    last = int(
        datetime.combine(contract.cycle.period(ordinal).end, datetime.min.time(), UTC).timestamp()
    )
    rows = [
        {
            "breach_id": f"BR-{draw(st.integers(0, 6))}",
            "contract_id": "MRR" if draw(st.integers(0, 7)) else "OTHER",
            "priority": draw(st.sampled_from((*PRIORITIES, *ALIAS.values()))),
            "breached_at": datetime.fromtimestamp(draw(st.integers(first, last + 2 * 86_400)), UTC),
        }
        for _ in range(draw(st.integers(0, 9)))
    ]
    credited = tuple(draw(st.sets(st.sampled_from([f"BR-{i}" for i in range(7)]), max_size=2)))
    return contract, ordinal, counts or None, breach_table(rows) if rows else None, credited


@settings(max_examples=EXAMPLES, deadline=None)
@given(invoices())
def test_recurring_and_credit_lines_equal_the_reference(case) -> None:
    contract, ordinal, counts, breaches, credited = case
    invoice = assert_matches_reference(contract, ordinal, counts, breaches, credited)
    assert invoice.subtotal == sum(line.amount for line in invoice.charges)
    credits = -sum(line.amount for line in invoice.lines if line.kind == LineKind.SLA_CREDIT)
    terms = contract.sla_credits
    if terms is not None and terms.cap_per_period is not None:
        assert credits <= terms.cap_per_period
    if terms is not None and terms.cap_percent_bp is not None:
        covered = cycle_covered_fee(contract, invoice.period, counts)
        assert credits * 10_000 <= covered * terms.cap_percent_bp + 5_000


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(st.data())
def test_timing_moves_base_fees_between_invoices_never_changes_their_sum(data) -> None:
    """Over the life of a terminated contract, advance and arrears bill the same base fees."""
    start = date(2026, 1, 1) + timedelta(days=data.draw(st.integers(0, 365)))
    end = start + timedelta(days=data.draw(st.integers(1, 200)))
    anchor = data.draw(st.integers(1, 31))
    fee = data.draw(st.integers(0, 500_000))
    prorate = data.draw(st.booleans())
    billed = {}
    for timing in BaseTiming:
        contract = recurring(
            start, base_fee=fee, prorate=prorate, base_timing=timing, end=end, anchor_day=anchor
        )
        last = contract.cycle.period_of(end - timedelta(days=1)).ordinal
        lines = [
            line
            for k in range(last + 2)
            for line in recurring_lines(contract, contract.cycle.period(k))
        ]
        billed[timing] = sorted((line.service_start, line.amount) for line in lines)
        assert all(line.service_end <= end for line in lines)
    assert billed[BaseTiming.ADVANCE] == billed[BaseTiming.ARREARS]


# Hand-picked cases ------------------------------------------------------------------------------


def test_a_timeline_in_any_order_bills_as_sorted_and_an_int_is_a_constant_count() -> None:
    contract = recurring(unit_prices={"endpoint": 1_000}, prorate_units=True)
    april = contract.cycle.period(3)
    timeline = [(date(2026, 4, 20), 5), (date(2026, 1, 1), 8), (date(2026, 4, 10), 12)]
    shuffled = assemble_invoice(contract, april, unit_counts={"endpoint": timeline})
    ordered = assemble_invoice(contract, april, unit_counts={"endpoint": sorted(timeline)})
    assert shuffled == ordered
    units = [(x.quantity, x.amount) for x in shuffled.lines if x.kind == LineKind.RECURRING_UNITS]
    # 8 for 30/30 days, +4 for 21/30 (Apr 10..May 1), -7 for 11/30 (Apr 20..May 1).
    assert units == [(8, 8_000), (4, 2_800), (-7, -2_567)]
    assert_matches_reference(contract, 3, {"endpoint": timeline})
    constant = assemble_invoice(contract, april, unit_counts={"endpoint": 8})
    single = assemble_invoice(contract, april, unit_counts={"endpoint": [(date(2025, 1, 1), 8)]})
    assert constant.lines == single.lines


def test_without_proration_units_bill_the_count_on_the_cycle_last_day() -> None:
    contract = recurring(unit_prices={"endpoint": 1_000})
    april = contract.cycle.period(3)
    # A change dated 1 May belongs to May; one dated 30 April is the count at April's end.
    assert [
        (x.quantity, x.amount, x.service_start, x.service_end)
        for x in recurring_lines(
            contract,
            april,
            {"endpoint": [(date(2026, 4, 30), 7), (date(2026, 1, 1), 3), (date(2026, 5, 1), 9)]},
        )
        if x.kind == LineKind.RECURRING_UNITS
    ] == [(7, 7_000, date(2026, 4, 1), date(2026, 5, 1))]
    # A timeline that starts after the cycle holds its first count before its first date.
    later = {"endpoint": [(date(2026, 6, 1), 4)]}
    assert_matches_reference(contract, 3, later)
    assert sum(x.amount for x in recurring_lines(contract, april, later)) == 100_000 + 4_000


def test_prorated_units_in_a_stub_cycle_and_a_cycle_cut_by_the_end() -> None:
    """The denominator is the full cycle's days: the stub 10..31 March counts 22 of 31 days,
    like its base fee; a contract ending 11 April counts 10 of April's 30."""
    contract = recurring(
        date(2026, 3, 10),
        unit_prices={"endpoint": 3_100},
        prorate_units=True,
        end=date(2026, 4, 11),
    )
    stub = assemble_invoice(contract, contract.cycle.period(0), unit_counts={"endpoint": 10})
    units = [x for x in stub.lines if x.kind == LineKind.RECURRING_UNITS]
    assert [(x.quantity, x.amount) for x in units] == [(10, 22_000)]  # 10 × 31.00 × 22/31
    assert "(22 of 31 days)" in units[0].description
    cut = assemble_invoice(contract, contract.cycle.period(1), unit_counts={"endpoint": 10})
    units = [x for x in cut.lines if x.kind == LineKind.RECURRING_UNITS]
    assert [(x.amount, x.service_end) for x in units] == [(10_333, date(2026, 4, 11))]
    for k in range(3):
        assert_matches_reference(contract, k, {"endpoint": [(date(2026, 4, 5), 2)]})
    # No units for a cycle the contract is not active in.
    after = assemble_invoice(contract, contract.cycle.period(2), unit_counts={"endpoint": 10})
    assert not after.lines


def test_a_zero_percent_cap_forfeits_every_breach_and_settles_it() -> None:
    contract = recurring(
        unit_prices={"endpoint": 1_000},
        sla_credits=SlaCreditTerms(per_breach={"HIGH": 5_000}, cap_percent_bp=0),
    )
    rows = [{"breach_id": "B1", "breached_at": datetime(2026, 4, 2, tzinfo=UTC)}]
    invoice = assert_matches_reference(contract, 3, {"endpoint": 4}, breach_table(rows))
    assert not invoice.credit_lines
    assert invoice.settled_breach_ids == invoice.forfeited_breach_ids == ("B1",)


def test_percent_credits_never_cover_time_or_overage() -> None:
    card = RateCard("USD", {("*", "*"): 12_000})
    contract = Contract(
        "MRR",
        "CL",
        ContractType.RECURRING,
        office("America/New_York"),
        date(2026, 3, 1),
        card,
        recurring=RecurringTerms(base_fee=100_000, included_seconds=0),
        sla_credits=SlaCreditTerms(percent_bp=1_000),
    ).activate()
    logs = log_batch(
        [
            {
                "contract_id": "MRR",
                "start": datetime(2026, 3, 3, 14, tzinfo=UTC),
                "end": datetime(2026, 3, 3, 18, tzinfo=UTC),
            }
        ]
    )
    rows = [{"breach_id": "B1", "breached_at": datetime(2026, 3, 4, tzinfo=UTC)}]
    invoice = assemble_invoice(
        contract,
        contract.cycle.period(0),
        classification=run([contract], logs),
        breaches=breach_table(rows),
    )
    assert any(x.kind == LineKind.TIME and x.amount > 0 for x in invoice.lines)
    assert [x.amount for x in invoice.credit_lines] == [-10_000]  # 10 % of March's base only


def test_sla_credit_lines_take_unit_counts_for_earlier_cycles() -> None:
    contract = recurring(
        unit_prices={"endpoint": 1_000}, sla_credits=SlaCreditTerms(percent_bp=1_000)
    )
    counts = {"endpoint": [(date(2026, 1, 1), 20), (date(2026, 4, 1), 50)]}
    april = contract.cycle.period(3)
    rows = [{"breach_id": "B1", "breached_at": datetime(2026, 3, 20, tzinfo=UTC)}]
    lines, settled, forfeited = sla_credit_lines(
        contract,
        april,
        breach_table(rows),
        cycle_covered_fee(contract, april, counts),
        unit_counts=counts,
    )
    assert [x.amount for x in lines] == [-12_000]  # 10 % of March: 1,000.00 + 20 × 10.00
    assert (settled, forfeited) == (["B1"], [])


def test_invoice_lines_as_arrow_carry_the_service_period() -> None:
    contract = recurring(
        unit_prices={"endpoint": 1_000}, sla_credits=SlaCreditTerms(per_breach={"HIGH": 100})
    )
    rows = [{"breach_id": "B1", "breached_at": datetime(2026, 1, 5, tzinfo=UTC)}]
    table = assemble_invoice(
        contract, contract.cycle.period(0), unit_counts={"endpoint": 2}, breaches=breach_table(rows)
    ).to_arrow()
    assert table.schema.equals(INVOICE_LINES)
    assert table.select(["kind", "service_start", "service_end"]).to_pylist() == [
        {
            "kind": "RECURRING_BASE",
            "service_start": date(2026, 1, 1),
            "service_end": date(2026, 2, 1),
        },
        {
            "kind": "RECURRING_BASE",
            "service_start": date(2026, 2, 1),
            "service_end": date(2026, 3, 1),
        },
        {
            "kind": "RECURRING_UNITS",
            "service_start": date(2026, 1, 1),
            "service_end": date(2026, 2, 1),
        },
        {"kind": "SLA_CREDIT", "service_start": None, "service_end": None},
    ]


@pytest.mark.parametrize(
    ("counts", "field"),
    [
        ({"router": 1}, "unit_counts"),
        ({"endpoint": -1}, "unit_counts[endpoint]"),
        ({"endpoint": []}, "unit_counts[endpoint]"),
        ({"endpoint": "12"}, "unit_counts[endpoint]"),
        ({"endpoint": [(date(2026, 1, 1), 2), (date(2026, 1, 1), 3)]}, "unit_counts[endpoint][1]"),
        ({"endpoint": [(datetime(2026, 1, 1, tzinfo=UTC), 2)]}, "unit_counts[endpoint][0]"),
        ({"endpoint": [(date(2026, 1, 1), -2)]}, "unit_counts[endpoint][0]"),
        ({"endpoint": [(date(2026, 1, 1),)]}, "unit_counts[endpoint][0]"),
    ],
)
def test_malformed_unit_counts_are_refused_naming_the_field(counts, field) -> None:
    contract = recurring(unit_prices={"endpoint": 1_000})
    with pytest.raises(BillingError) as error:
        assemble_invoice(contract, contract.cycle.period(0), unit_counts=counts)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        ({"percent_bp": 10_001}, "sla_credits.percent_bp"),
        ({"percent_per_priority": {"HIGH": -1}}, "sla_credits.percent_per_priority[HIGH]"),
        ({"cap_percent_bp": 20_000}, "sla_credits.cap_percent_bp"),
        ({"cap_per_period": -5}, "sla_credits.cap_per_period"),
        ({"per_breach": {"P1": -100}}, "sla_credits.per_breach[P1]"),
        ({"cap_per_period": 1, "cap_percent_bp": 1}, "sla_credits.cap_percent_bp"),
        ({"per_breach": {"P1": 1}, "percent_per_priority": {"CRITICAL": 1}}, None),
    ],
)
def test_credit_terms_out_of_range_are_refused_naming_the_field(terms, field) -> None:
    with pytest.raises(ConfigurationError) as error:
        SlaCreditTerms(**terms)
    if field is not None:
        assert error.value.field == field


# The worked examples of docs/contract-terms.md ---------------------------------------------------


def doc_examples() -> list[tuple[str, str]]:
    """``(code, documented output)`` per Python block of the worked-examples section."""
    text = DOC.read_text(encoding="utf-8")
    assert DOC_SECTION in text
    section = text[text.index(DOC_SECTION) :]
    blocks = re.findall(r"```python\n(.*?)```(?:\s*\n```text\n(.*?)```)?", section, re.S)
    assert len(blocks) >= 5
    return blocks


def test_documented_examples_print_the_documented_numbers_and_equal_the_reference() -> None:
    namespace: dict = {"__name__": "__doc_example__"}
    for code, documented in doc_examples():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOC), "exec"), namespace)
        assert out.getvalue() == documented
    # The same inputs through the reference.
    for contract in (namespace["advance"], namespace["arrears"]):
        for k in range(4):
            assert_matches_reference(contract, k)
    assert_matches_reference(namespace["prorated"], 3, {"endpoint": namespace["endpoints"]})
    managed, counts = namespace["managed"], {"endpoint": namespace["endpoint_counts"]}
    assert_matches_reference(managed, 3, counts, namespace["breaches"])
    assert_matches_reference(managed, 3, counts, namespace["with_late"])
