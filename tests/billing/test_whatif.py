"""What-if billing in the domain: both sides equal ``assemble_invoice`` under each contract, only
the lines that move are listed, and the client sums add up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.whatif import replay_billing
from effigate_engine.errors import BillingError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import SlaCreditTerms
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from tests.billing.support import HORIZON, at, log_batch
from tests.billing.test_invoice import GST, breaches, seed_contract


def quarter_logs(cid: str) -> list[dict]:
    rows = []
    for month in (3, 4, 5):
        for day, (a, b) in ((2, ("09:00", "16:00")), (6, ("18:00", "21:00"))):
            rows.append(
                {
                    "contract_id": cid,
                    "start": at(f"2026-{month:02d}-{day + month:02d}T{a}-05:00"),
                    "end": at(f"2026-{month:02d}-{day + month:02d}T{b}-05:00"),
                }
            )
    return rows


def test_replay_equals_assembling_each_side_and_lists_the_lines_that_move() -> None:
    current = seed_contract()
    card = RateCard("USD", {("*", "*"): 12_000}, {Condition.AFTER_HOURS: Rule(absolute=21_000)})
    proposed = replace(current, status=current.status.DRAFT, versions=(), rate_card=card)
    proposed = replace(proposed, sla_credits=SlaCreditTerms(per_breach={"HIGH": 5_000})).activate()
    logs = log_batch(quarter_logs(current.id))
    breach = breaches([{"breach_id": "BR-1", "breached_at": datetime(2026, 4, 10, 15, tzinfo=UTC)}])
    periods = [current.cycle.period(k) for k in range(3)]
    replay = replay_billing(
        [current], [proposed], logs, {current.id: periods}, breaches=breach, tax=[GST]
    )
    rows = replay.totals.to_pylist()
    assert len(rows) == 3
    for contract, column in ((current, "current_total"), (proposed, "proposed_total")):
        cls = classify(ContractBook([contract], HORIZON), logs, evidence=True)
        want, credited = [], set()
        for p in periods:  # in order: a breach credited once is settled for the next periods
            invoice = assemble_invoice(
                contract,
                p,
                classification=cls,
                breaches=breach,
                tax=[GST],
                already_credited=credited,
            )
            credited |= set(invoice.settled_breach_ids)
            want.append(invoice.total)
        assert [r[column] for r in rows] == want
    assert [r["total_change"] for r in rows] == [
        r["proposed_total"] - r["current_total"] for r in rows
    ]
    moved = replay.lines.to_pylist()
    # after hours moves every month (3 h × 30.00 more), the April credit shrinks; regular stays
    assert sorted((r["period_start"].month, r["kind"], r["condition"]) for r in moved) == [
        (3, "TIME", "AFTER_HOURS"),
        (4, "SLA_CREDIT", None),
        (4, "TIME", "AFTER_HOURS"),
        (5, "TIME", "AFTER_HOURS"),
    ]
    for r in moved:
        if r["kind"] == "TIME":
            assert (r["current_rate"], r["proposed_rate"]) == (18_000, 21_000)
            assert r["current_seconds"] == r["proposed_seconds"] == 3 * 3600
            assert r["amount_change"] == 9_000
        else:
            assert (r["current_amount"], r["proposed_amount"]) == (-20_000, -5_000)
    (client,) = replay.by_client.to_pylist()
    assert client["client_id"] == current.client_id
    assert client["current"] == sum(r["current_total"] for r in rows)
    assert client["change"] == sum(r["total_change"] for r in rows)


def test_the_same_terms_on_both_sides_move_nothing() -> None:
    contract = seed_contract()
    logs = log_batch(quarter_logs(contract.id))
    periods = {contract.id: [contract.cycle.period(k) for k in range(3)]}
    replay = replay_billing([contract], [contract], logs, periods, tax=[GST])
    assert replay.lines.num_rows == 0
    assert set(replay.totals.column("total_change").to_pylist()) == {0}
    assert min(replay.totals.column("current_total").to_pylist()) > 0


def test_a_line_on_one_side_only_has_nulls_on_the_other() -> None:
    current = seed_contract()
    proposed = replace(current, sla_credits=None)
    logs = log_batch(quarter_logs(current.id))
    breach = breaches([{"breach_id": "BR-1", "breached_at": datetime(2026, 3, 10, 15, tzinfo=UTC)}])
    periods = {current.id: [current.cycle.period(0)]}
    replay = replay_billing([current], [proposed], logs, periods, breaches=breach, tax=[GST])
    (line,) = replay.lines.to_pylist()
    assert line["kind"] == "SLA_CREDIT" and line["key"] == "SLA_CREDIT|BR-1"
    assert line["current_amount"] == -20_000 and line["amount_change"] == 20_000
    assert [line[f"proposed_{k}"] for k in ("rate", "seconds", "amount")] == [None] * 3
    (total,) = replay.totals.to_pylist()
    assert (total["current_lines"], total["proposed_lines"]) == (3, 2)
    assert total["total_change"] == 22_000  # the credit, and its 10% tax


def test_replay_refuses_mismatched_sides() -> None:
    contract = seed_contract()
    other = replace(contract, id="OTHER")
    with pytest.raises(BillingError) as err:
        replay_billing([contract], [other], None, {})
    assert err.value.field == "proposed"
