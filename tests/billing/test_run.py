"""The billing run against ``assemble_invoice`` contract by contract, and the log-id evidence
against a slow reference.

Generated scenarios draw many contracts of every type (the strategies of
``test_generated.py``: zones with DST, holidays, both stackings, amendments, scope policies)
with the terms an invoice bills besides time (unit prices and counts, approved milestones and
signed-off deliverables, SLA credits by amount or percent with caps, breach records, credits
already given, items already invoiced, tax components, exemptions, credit balances), 440 logs,
and a run date or explicit periods. Every invoice of the run must equal ``assemble_invoice``
for its contract, line for line and total for total, and the run's line table must equal the
invoices' own tables.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine.billing import evidence
from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.evidence import line_log_ids
from effigate_engine.billing.invoice import Invoice, TaxComponent
from effigate_engine.billing.run import BillingRun, InvoiceInputs, billing_run
from effigate_engine.billing.schemas import BREACH_RECORDS, RUN_INVOICES, RUN_LINES
from effigate_engine.errors import BillingError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import (
    BaseTiming,
    Contract,
    ContractType,
    Deliverable,
    Milestone,
    RecurringTerms,
    SlaCreditTerms,
)
from effigate_engine.ratecard.periods import Period
from tests.billing.support import HORIZON, business_hours, card, hourly, log_batch
from tests.billing.test_generated import contracts, generated_logs

EXAMPLES = int(os.environ.get("EFFIGATE_BILLING_EXAMPLES", "30"))
ALL_KINDS = tuple(ContractType)
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "P1", "P3")
#: Run dates inside the logs' window (2026-02-25..2026-04-10).
DAYS = [date(2026, 2, 26) + timedelta(days=k) for k in range(43)]
GST = TaxComponent("GST", 100_000)
QST = TaxComponent("QST", 99_750)
UNITS = {"endpoint": 1_500, "mailbox": 437}


@st.composite
def billed_contracts(draw: st.DrawFn, cid: str) -> Contract:
    """A generated contract with the terms a run bills besides time."""
    contract = draw(contracts(cid, ALL_KINDS))
    changes: dict = {}
    if contract.type == ContractType.RECURRING:
        changes["recurring"] = RecurringTerms(
            base_fee=draw(st.integers(0, 300_000)),
            unit_prices=UNITS,
            included_seconds=contract.recurring.included_seconds if contract.recurring else None,
            prorate=draw(st.booleans()),
            base_timing=draw(st.sampled_from(list(BaseTiming))),
            prorate_units=draw(st.booleans()),
        )
    approvals = st.lists(st.one_of(st.none(), st.sampled_from(DAYS[:25])), min_size=1, max_size=3)
    if contract.type == ContractType.FIXED_PRICE:
        changes["milestones"] = tuple(
            Milestone(f"{cid}-M{k}", f"phase {k}", draw(st.integers(1, 900_000)), day)
            for k, day in enumerate(draw(approvals))
        )
    if contract.type == ContractType.SCOPE:
        changes["deliverables"] = tuple(
            Deliverable(f"{cid}-D{k}", f"deliverable {k}", draw(st.integers(1, 900_000)), day)
            for k, day in enumerate(draw(approvals))
        )
    if draw(st.integers(0, 3)):
        fixed = draw(st.sets(st.sampled_from(("CRITICAL", "HIGH")), max_size=2))
        percent = {} if draw(st.booleans()) else {"MEDIUM": draw(st.integers(0, 5_000))}
        cap = draw(st.sampled_from(["none", "amount", "percent"]))
        changes["sla_credits"] = SlaCreditTerms(
            per_breach={p: draw(st.sampled_from([0, 1, 20_000, 60_000])) for p in fixed},
            percent_bp=draw(st.integers(0, 3_000)),
            cap_per_period=draw(st.integers(0, 80_000)) if cap == "amount" else None,
            percent_per_priority=percent,
            cap_percent_bp=draw(st.integers(0, 10_000)) if cap == "percent" else None,
        )
    return replace(contract, **changes) if changes else contract


@st.composite
def run_scenarios(draw: st.DrawFn) -> tuple:
    """Contracts, logs, breach records, per-contract inputs, the default tax, and the run's
    period argument (a date, or explicit periods for some contracts)."""
    book = [draw(billed_contracts(f"K{i:02d}")) for i in range(draw(st.integers(3, 9)))]
    logs = generated_logs(
        book,
        draw(st.integers(0, 2**32 - 1)),
        draw(st.sampled_from([1, 60, 900])),
        draw(st.sampled_from([30, 240, 1_500])),
    )
    day = draw(st.sampled_from(DAYS))
    breach_rows = []
    for k in range(draw(st.integers(0, 24))):
        owner = draw(st.sampled_from([*(c.id for c in book), "ELSEWHERE"]))
        breach_rows.append(
            {
                "breach_id": f"BR-{draw(st.integers(0, 8))}" if k % 3 else f"BR-{owner}-{k}",
                "ticket_id": f"T-{k}",
                "contract_id": owner,
                "client_id": "CL",
                "metric": draw(st.sampled_from(["RESPONSE", "RESOLUTION"])),
                "priority": draw(st.sampled_from(PRIORITIES)),
                "breached_at": datetime.combine(draw(st.sampled_from(DAYS)), datetime.min.time())
                .replace(tzinfo=UTC)
                .replace(hour=draw(st.integers(0, 23))),
                "breach_seconds": 600,
                "severity": "MAJOR",
            }
        )
    breaches = pa.Table.from_pylist(breach_rows, schema=BREACH_RECORDS)
    started = [c for c in book if c.start <= day]
    inputs: dict[str, InvoiceInputs] = {}
    for c in started:
        if not draw(st.integers(0, 3)):
            continue
        units = None
        if c.recurring is not None and c.recurring.unit_prices and draw(st.integers(0, 3)):
            units = {
                u: draw(st.integers(0, 40)) for u in draw(st.sets(st.sampled_from(list(UNITS))))
            }
        items = [m.id for m in c.milestones] + [d.id for d in c.deliverables]
        inputs[c.id] = InvoiceInputs(
            unit_counts=units,
            already_credited=draw(
                st.sets(st.sampled_from([r["breach_id"] for r in breach_rows] or ["x"]))
            ),
            invoiced_items=draw(st.sets(st.sampled_from(items or ["x"]))),
            tax=draw(st.sampled_from([None, (), (GST,), (GST, QST)])),
            exemption=draw(st.sampled_from([None, None, "registered charity"])),
            credit_balance=draw(st.sampled_from([0, 0, 1, 25_000, 10_000_000])),
        )
    if draw(st.booleans()):
        period: date | dict[str, Period] = day
    else:
        period = {}
        for c in (
            draw(st.lists(st.sampled_from(started), min_size=1, unique_by=lambda c: c.id))
            if started
            else []
        ):
            p = c.cycle.period_of(day)
            if p.ordinal and draw(st.booleans()):
                p = c.cycle.period(p.ordinal - 1)
            period[c.id] = p
        inputs = {cid: value for cid, value in inputs.items() if cid in period}
    tax = draw(st.sampled_from([(), (GST,), (GST, QST)]))
    return book, logs, breaches, inputs, tax, period


def one_by_one(
    run: BillingRun, compiled: ContractBook, cls, breaches, inputs, tax
) -> list[Invoice]:
    """``assemble_invoice`` for every invoice of the run, with the same inputs."""
    out = []
    for cid in run.contract_ids:
        given = inputs.get(cid, InvoiceInputs())
        out.append(
            assemble_invoice(
                compiled.contracts[compiled.index[cid]],
                run.periods[cid],
                classification=cls,
                unit_counts=given.unit_counts,
                breaches=breaches,
                already_credited=given.already_credited,
                invoiced_items=given.invoiced_items,
                tax=tax if given.tax is None else given.tax,
                exemption=given.exemption,
                credit_balance=given.credit_balance,
            )
        )
    return out


RUN_SETTINGS = settings(
    max_examples=max(8, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@RUN_SETTINGS
@given(run_scenarios())
def test_every_invoice_of_a_run_equals_assemble_invoice(scenario) -> None:
    """Line for line (log ids, descriptions, evidence) and total for total; the run's line
    table is the invoices' own tables, one after the other, by contract id."""
    book, logs, breaches, inputs, tax, period = scenario
    compiled = ContractBook(book, HORIZON)
    cls = classify(compiled, logs, evidence=True)
    run = billing_run(compiled, cls, period, breaches=breaches, inputs=inputs, tax=tax)
    if isinstance(period, date):
        assert run.contract_ids == sorted(c.id for c in book if c.start <= period)
    else:
        assert run.contract_ids == sorted(period)
    want = one_by_one(run, compiled, cls, breaches, inputs, tax)
    for invoice in want:
        got = run.invoice(invoice.contract_id)
        assert got.lines == invoice.lines, invoice.contract_id
        assert got == invoice
    assert list(run) == want
    assert run.lines.schema.equals(RUN_LINES) and run.invoices.schema.equals(RUN_INVOICES)
    tables = [i.to_arrow() for i in want]
    expected = pa.concat_tables(tables) if tables else run.lines.drop_columns(["invoice"])
    assert run.lines.drop_columns(["invoice"]).equals(expected)
    sizes = [t.num_rows for t in tables]
    assert (
        run.lines.column("invoice").to_pylist() == np.repeat(np.arange(len(sizes)), sizes).tolist()
    )
    heads = run.invoices.to_pylist()
    assert [h["total"] for h in heads] == [i.total for i in want]
    assert [h["lines"] for h in heads] == sizes


@settings(
    max_examples=max(4, EXAMPLES // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(run_scenarios(), st.integers(0, 2**32 - 1))
def test_input_order_of_logs_never_changes_the_run(scenario, seed) -> None:
    """Nor does the number of threads of the evidence pass (the first run overlaps it with
    the term lines, the second runs everything on one thread)."""
    book, logs, breaches, inputs, tax, period = scenario
    compiled = ContractBook(book, HORIZON)
    keywords = {"breaches": breaches, "inputs": inputs, "tax": tax}
    first = billing_run(compiled, classify(compiled, logs, evidence=True), period, **keywords)
    order = pa.array(np.random.default_rng(seed).permutation(logs.num_rows))
    shuffled = classify(compiled, logs.take(order), evidence=True)
    second = billing_run(compiled, shuffled, period, threads=1, **keywords)
    assert first.lines.equals(second.lines)
    assert first.invoices.equals(second.invoices)


def test_a_contract_without_logs_still_gets_its_recurring_and_item_lines() -> None:
    cal = business_hours()
    busy = hourly(cal, card(), "A-HOURLY")
    recurring = Contract(
        "B-MRR",
        "CL",
        ContractType.RECURRING,
        cal,
        date(2026, 1, 1),
        card(),
        recurring=RecurringTerms(base_fee=150_000, unit_prices=UNITS),
    ).activate()
    fixed = Contract(
        "C-FIXED",
        "CL",
        ContractType.FIXED_PRICE,
        cal,
        date(2026, 1, 1),
        card(),
        milestones=(Milestone("M1", "design", 400_000, date(2026, 3, 5)),),
    ).activate()
    compiled = ContractBook([busy, recurring, fixed], HORIZON)
    logs = log_batch(
        [
            {
                "contract_id": busy.id,
                "start": datetime(2026, 3, 3, 14, tzinfo=UTC),
                "end": datetime(2026, 3, 3, 16, tzinfo=UTC),
            }
        ]
    )
    cls = classify(compiled, logs, evidence=True)
    inputs = {recurring.id: InvoiceInputs(unit_counts={"endpoint": 12})}
    run = billing_run(compiled, cls, date(2026, 3, 15), inputs=inputs, tax=[GST])
    assert run.contract_ids == ["A-HOURLY", "B-MRR", "C-FIXED"]
    kinds = {cid: [line.kind.value for line in run.invoice(cid).lines] for cid in run.contract_ids}
    assert kinds["A-HOURLY"] == ["TIME"]
    assert kinds["B-MRR"] == ["RECURRING_BASE", "RECURRING_UNITS"]
    assert kinds["C-FIXED"] == ["MILESTONE"]
    assert run.invoice("C-FIXED").total == 440_000  # $4,000 + 10 % GST
    # Without any classification (no logs at all), the same term lines.
    bare = billing_run(compiled, None, date(2026, 3, 15), inputs=inputs, tax=[GST])
    assert bare.invoice("B-MRR") == run.invoice("B-MRR")
    assert bare.invoice("A-HOURLY").lines == ()
    for cid in run.contract_ids:
        contract = compiled.contracts[compiled.index[cid]]
        assert run.invoice(cid) == assemble_invoice(
            contract,
            run.periods[cid],
            classification=cls,
            unit_counts=inputs.get(cid, InvoiceInputs()).unit_counts,
            tax=[GST],
        )


def test_the_seed_invoice_from_a_run_totals_4136_00() -> None:
    from tests.billing.test_invoice import GST as SEED_GST
    from tests.billing.test_invoice import breaches, seed_invoice

    contract, result, invoice = seed_invoice()
    breach = breaches([{"breach_id": "BR-1", "breached_at": datetime(2026, 3, 10, 15, tzinfo=UTC)}])
    run = billing_run(result.book, result, date(2026, 3, 31), breaches=breach, tax=[SEED_GST])
    assert run.invoice(contract.id) == invoice
    head = run.invoices.to_pylist()[0]
    assert (head["subtotal"], head["credits_applied"], head["total"]) == (396_000, 20_000, 413_600)
    assert head["taxes"] == [{"name": "GST", "ppm": 100_000, "base": 376_000, "amount": 37_600}]
    assert head["settled_breach_ids"] == ["BR-1"]
    assert run.lines.column("log_ids").to_pylist()[0] == [f"L{i}" for i in range(5)]


def test_run_errors_name_the_input() -> None:
    contract = hourly(business_hours(), card(), "C1")
    compiled = ContractBook([contract], HORIZON)
    logs = log_batch(
        [
            {
                "start": datetime(2026, 3, 3, 14, tzinfo=UTC),
                "end": datetime(2026, 3, 3, 15, tzinfo=UTC),
            }
        ]
    )
    day = date(2026, 3, 15)
    with pytest.raises(BillingError) as err:
        billing_run(compiled, classify(compiled, logs), day)
    assert err.value.field == "classification"
    with pytest.raises(BillingError) as err:
        billing_run(
            compiled, classify(compiled, logs, evidence=True), day, inputs={"C9": InvoiceInputs()}
        )
    assert (err.value.field, err.value.value) == ("inputs", "C9")
    other = ContractBook([contract], HORIZON)
    with pytest.raises(BillingError) as err:
        billing_run(compiled, classify(other, logs, evidence=True), day)
    assert err.value.field == "classification"
    with pytest.raises(BillingError) as err:
        billing_run(compiled, None, {"C9": contract.cycle.period(0)})
    assert (err.value.field, err.value.value) == ("period", "C9")
    with pytest.raises(BillingError) as err:
        billing_run(compiled, None, day, inputs={"C1": InvoiceInputs(credit_balance=-1)})
    assert err.value.field == "credit_balance"
    with pytest.raises(BillingError):
        billing_run(compiled, None, day).invoice("C9")


# Log-id evidence against a slow reference --------------------------------------------------

#: Log ids with long shared prefixes, lengths around the 255-byte header limit, non-ASCII
#: text (UTF-8 byte order is code-point order) and empty ids.
ID_TEXT = st.one_of(
    st.text(alphabet="ab", max_size=10),
    st.text(max_size=12),
    st.builds(
        lambda n, s: "x" * n + s,
        st.sampled_from([7, 8, 9, 250, 254, 255, 300]),
        st.text("ab", max_size=3),
    ),
)


def reference_log_ids(cls, rows: np.ndarray) -> list[list[str]]:
    """Per chosen line, the sorted distinct ids of the logs whose parts name its key."""
    ids = cls.logs.column("log_id").to_pylist()
    part_log = cls.parts["part_log"]
    out = []
    for key in cls.line_keys[rows].tolist():
        parts, _ = np.nonzero(cls.slot_keys == key)
        out.append(sorted({ids[int(part_log[k])] for k in parts}))
    return out


@settings(
    max_examples=max(10, EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.lists(ID_TEXT, min_size=1, max_size=60, unique=True),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 7, 10_000]),
    st.sampled_from([1, 2]),
)
def test_line_log_ids_equal_sorted_distinct_ids(ids, seed, bucket_lines, threads) -> None:
    """Any ids, any choice of lines (in table order), any bucket size and thread count."""
    rng = np.random.default_rng(seed)
    # High priority wins over regular and after-hours rates alike (``max`` stacking), so a
    # high-priority part in both conditions feeds one line twice.
    rates = card(AFTER_HOURS=15_000, HIGH_PRIORITY=20_000)
    book = [hourly(business_hours(), rates, f"C{i}") for i in range(3)]
    starts = datetime(2026, 3, 2, 8, tzinfo=UTC) + np.array(
        [timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 40, len(ids))]
    )
    rows = [
        {
            "log_id": log_id,
            "contract_id": f"C{rng.integers(0, 3)}",
            "start": start,
            "end": start + timedelta(minutes=int(rng.integers(1, 600))),
            "job_type": ("support", "devops")[rng.integers(0, 2)],
            "priority": ("HIGH", "LOW")[rng.integers(0, 2)],
        }
        for log_id, start in zip(ids, starts, strict=True)
    ]
    compiled = ContractBook(book, HORIZON)
    cls = classify(compiled, log_batch(rows), evidence=True)
    chosen = np.flatnonzero(rng.random(cls.lines.num_rows) < 0.7)
    saved = (evidence.BUCKET_LINES, evidence.PARALLEL_MIN_PARTS)
    evidence.BUCKET_LINES, evidence.PARALLEL_MIN_PARTS = bucket_lines, 1
    try:
        counts, got = line_log_ids(cls, chosen, threads=threads)
    finally:
        evidence.BUCKET_LINES, evidence.PARALLEL_MIN_PARTS = saved
    want = reference_log_ids(cls, chosen)
    assert counts.tolist() == [len(w) for w in want]
    assert got.to_pylist() == [i for w in want for i in w]


def test_line_log_ids_refuse_rows_out_of_order() -> None:
    contract = hourly(business_hours(), card(), "C1")
    compiled = ContractBook([contract], HORIZON)
    logs = log_batch(
        [
            {
                "start": datetime(2026, 3, 3, 14, tzinfo=UTC),
                "end": datetime(2026, 3, 3, 23, tzinfo=UTC),
            },
        ]
    )
    cls = classify(compiled, logs, evidence=True)
    assert cls.lines.num_rows == 2
    with pytest.raises(BillingError):
        line_log_ids(cls, np.array([1, 0]))
    counts, ids = line_log_ids(cls, np.array([], np.int64))
    assert counts.size == 0 and len(ids) == 0
