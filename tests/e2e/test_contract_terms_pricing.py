"""Priced outcomes of the second build's contract terms through the real server, with the
numbers worked from ``docs/contract-terms.md`` and ``docs/billing.md``: rate-card precedence,
base fee in arrears, prorated units, percent SLA credits and percent caps, the high-priority
burn factor, the rollover cap, and REJECT for logs of any approval state or billable type.

The contract calendar is New York business hours (Mon–Fri 09:00–17:00, no holidays); the
tenant charges GST 10 %. Saturday 7 March 2026 10:00–11:00 New York is one hour on a weekend
day while the calendar is closed, so both ``WEEKEND`` and ``AFTER_HOURS`` apply to it."""

from __future__ import annotations

import json

from effigate_client import Client, billing_pb2, sla_pb2, to_timestamp
from tests.e2e.support import at
from tests.e2e.test_billing_api import HOUR, MARCH, billing_setup, ingest_and_approve
from tests.e2e.test_billing_api import time_log as typed_log
from tests.e2e.test_contract_terms import (
    RECURRING,
    active,
    classify,
    high_priority_breach,
    log_rows,
    publish_card,
)

SATURDAY_HOUR = ("2026-03-07T10:00-05:00", "2026-03-07T11:00-05:00")
BASE = [{"support_level": "*", "job_type": "*", "amount": "120.00"}]
EXPLICIT = ["AFTER_HOURS", "WEEKEND", "HOLIDAY"]


def saturday_line(client: Client, card: dict) -> tuple[str, int, int]:
    """(condition, rate, amount) of the one time line pricing the Saturday hour on an hourly
    contract under ``card``."""
    book = billing_setup(client)
    contract = active(client, book, "HOURLY", {}, publish_card(client, card))
    ingest_and_approve(client, [typed_log("SAT-1", contract.id, SATURDAY_HOUR)])
    invoice = client.invoice(contract.id, MARCH)
    (line,) = [x for x in invoice.lines if x.kind == "TIME"]
    assert line.billed_seconds == HOUR
    return line.time_condition, line.rate_minor_per_hour, line.amount_minor


def test_explicit_precedence_prices_a_saturday_hour_as_after_hours(client: Client) -> None:
    """Default order: ``WEEKEND`` ($200) outranks ``AFTER_HOURS`` ($180); the explicit list
    ``[AFTER_HOURS, WEEKEND, HOLIDAY]`` puts after-hours first: $180.00."""
    rules = {"AFTER_HOURS": {"amount": "180.00"}, "WEEKEND": {"amount": "200.00"}}
    card = {"currency": "USD", "base_rates": BASE, "rules": rules, "precedence": EXPLICIT}
    assert saturday_line(client, card) == ("AFTER_HOURS", 18_000, 18_000)


def test_highest_precedence_prices_by_the_dearer_applicable_rule(client: Client) -> None:
    """``highest``: of ``WEEKEND`` ($200) and ``AFTER_HOURS`` ($250) the dearer prices and
    labels the hour: $250.00 (the default order would give $200.00)."""
    rules = {"AFTER_HOURS": {"amount": "250.00"}, "WEEKEND": {"amount": "200.00"}}
    card = {"currency": "USD", "base_rates": BASE, "rules": rules, "precedence": "highest"}
    assert saturday_line(client, card) == ("AFTER_HOURS", 25_000, 25_000)


def test_a_classified_condition_without_a_rule_prices_at_the_base_rate(client: Client) -> None:
    """The explicit list classifies the hour ``AFTER_HOURS``; the card has no rule for it, so
    it prices at the base $120.00, not at the weekend's $200."""
    rules = {"WEEKEND": {"amount": "200.00"}}
    card = {"currency": "USD", "base_rates": BASE, "rules": rules, "precedence": EXPLICIT}
    assert saturday_line(client, card) == ("AFTER_HOURS", 12_000, 12_000)


def test_base_fee_in_arrears_bills_each_cycle_on_its_own_invoice(client: Client) -> None:
    """``base_timing: arrears``: March's invoice carries March's $1,000 (not April's too), and
    April's invoice April's; each line names its service period."""
    book = billing_setup(client)
    terms = {"recurring": {"base_fee": "1000.00", "base_timing": "arrears"}}
    contract = active(client, book, "RECURRING", terms)
    march = client.invoice(contract.id, MARCH)
    assert [(x.kind, x.amount_minor) for x in march.lines] == [("RECURRING_BASE", 100_000)]
    assert "2026-03-01" in march.lines[0].description
    assert "2026-04-01" in march.lines[0].description
    assert march.total_minor == 110_000  # + GST 10 %
    april = client.invoice(contract.id, "2026-04-01")
    assert [(x.kind, x.amount_minor) for x in april.lines] == [("RECURRING_BASE", 100_000)]
    assert "2026-04-01" in april.lines[0].description


def test_prorated_units_bill_each_count_for_its_days(client: Client) -> None:
    """10 endpoints at $10 from 1 March, 16 from 11 March, March has 31 days: 10 for 10 days
    ($32.26) and 16 for 21 days ($108.39), $140.65 in two unit lines (the same sum as 10 for
    the whole cycle, $100.00, plus the 6 added for 21 days, $40.65)."""
    book = billing_setup(client)
    terms = {"recurring": {**RECURRING, "base_timing": "arrears", "prorate_units": True}}
    contract = active(client, book, "RECURRING", terms)
    for count, day in ((10, "2026-03-01"), (16, "2026-03-11")):
        client.contracts.RecordUnitCount(
            billing_pb2.RecordUnitCountRequest(
                contract_id=contract.id, unit_type="endpoint", count=count, effective_on=day
            )
        )
    invoice = client.invoice(contract.id, MARCH)
    units = [x for x in invoice.lines if x.kind == "RECURRING_UNITS"]
    assert len(units) == 2
    assert sum(x.amount_minor for x in units) == 14_065
    evidence = json.loads(units[0].evidence_json)
    assert evidence["unit_timeline"] == [["2026-03-01", 10], ["2026-03-11", 16]]
    assert invoice.subtotal_minor == 100_000 + 14_065


def recompute(client: Client, policy: int) -> None:
    """Evaluate the tenant's tickets on 20 March: the breaches are recorded."""
    client.sla.Recompute(
        sla_pb2.RecomputeRequest(policy_id=policy, now=to_timestamp(at("2026-03-20T12:00-04:00")))
    )


def test_percent_per_priority_credit_is_a_share_of_the_cycles_covered_fee(client: Client) -> None:
    """10 % per high-priority breach of March's covered fee ($1,000 base in arrears): one
    breach, a $100.00 credit; $1,000 − $100 + GST 10 % = $990.00."""
    book = billing_setup(client)
    terms = {
        "recurring": {"base_fee": "1000.00", "base_timing": "arrears"},
        "sla_credits": {"percent_per_priority": {"HIGH": 1_000}},
    }
    contract = active(client, book, "RECURRING", terms)
    breach = high_priority_breach(client, contract.id, "TKT-P1", "2026-03-02")
    recompute(client, book.policy)
    invoice = client.invoice(contract.id, MARCH)
    credits = [x for x in invoice.lines if x.kind == "SLA_CREDIT"]
    assert [x.amount_minor for x in credits] == [-10_000]
    assert json.loads(credits[0].evidence_json)["breach_ids"] == [breach]
    assert invoice.total_minor == 99_000


def test_a_percent_cap_gives_the_crossing_breach_the_remainder(client: Client) -> None:
    """$200 per high-priority breach, capped at 25 % of the covered fee ($250 of $1,000): two
    breaches in time order credit $200.00 and $50.00; $1,000 − $250 + GST 10 % = $825.00."""
    book = billing_setup(client)
    terms = {
        "recurring": {"base_fee": "1000.00", "base_timing": "arrears"},
        "sla_credits": {"per_breach": {"HIGH": "200.00"}, "cap_percent_bp": 2_500},
    }
    contract = active(client, book, "RECURRING", terms)
    first = high_priority_breach(client, contract.id, "TKT-C1", "2026-03-02")
    second = high_priority_breach(client, contract.id, "TKT-C2", "2026-03-04")
    recompute(client, book.policy)
    invoice = client.invoice(contract.id, MARCH)
    credits = [x for x in invoice.lines if x.kind == "SLA_CREDIT" and x.amount_minor]
    assert [x.amount_minor for x in credits] == [-20_000, -5_000]
    assert [json.loads(x.evidence_json)["breach_ids"] for x in credits] == [[first], [second]]
    assert invoice.total_minor == 82_500


def test_a_high_priority_log_burns_at_the_priority_factor(client: Client) -> None:
    """Burn factor ``HIGH_PRIORITY: 2``: a one-hour HIGH log in business hours burns 2 h, a
    one-hour MEDIUM log 1 h; 10 h − 3 h = 7 h left."""
    book = billing_setup(client)
    terms = {"bucket": {"size_hours": 10, "burn_factors": {"HIGH_PRIORITY": "2"}}}
    contract = active(client, book, "BUCKET", terms)
    logs = [
        typed_log(
            "HP-1",
            contract.id,
            ("2026-03-02T10:00-05:00", "2026-03-02T11:00-05:00"),
            priority="HIGH",
        ),
        typed_log("MP-1", contract.id, ("2026-03-03T10:00-05:00", "2026-03-03T11:00-05:00")),
    ]
    ingest_and_approve(client, logs)
    balance = client.billing.GetBucketBalance(
        billing_pb2.BucketBalanceRequest(
            contract_id=contract.id, at=to_timestamp(at("2026-03-20T00:00+00:00"))
        )
    )
    assert (balance.burned_seconds, balance.remaining_seconds) == (3 * HOUR, 7 * HOUR)


def test_the_rollover_cap_expires_what_is_carried_beyond_it(client: Client) -> None:
    """10 h granted each period, unused hours valid two more periods, at most 5 h carried: 2 h
    used in March leaves 8 h, of which 5 h carry into April (3 h expire) beside April's 10 h:
    15 h left in mid-April (18 h without the cap)."""
    book = billing_setup(client)
    terms = {
        "bucket": {
            "size_hours": 10,
            "per_period": True,
            "rollover_periods": 2,
            "rollover_cap_hours": 5,
        }
    }
    contract = active(client, book, "BUCKET", terms)
    ingest_and_approve(
        client,
        [typed_log("RC-1", contract.id, ("2026-03-02T10:00-05:00", "2026-03-02T12:00-05:00"))],
    )
    balance = client.billing.GetBucketBalance(
        billing_pb2.BucketBalanceRequest(
            contract_id=contract.id, at=to_timestamp(at("2026-04-15T12:00-04:00"))
        )
    )
    assert balance.remaining_seconds == 15 * HOUR


def test_reject_lists_out_of_scope_logs_of_any_state_as_rejected(client: Client) -> None:
    """Under ``out_of_scope: REJECT`` the log itself is rejected whatever its approval state or
    billable type; an in-scope log is unaffected."""
    book = billing_setup(client)
    terms = {"scope": {"support_levels": ["L1"], "out_of_scope": "REJECT"}}
    contract = active(client, book, "HOURLY", terms)
    span = [SATURDAY_HOUR]
    rows = (
        log_rows(span, level="L2", billable="NON_BILLABLE", prefix="NB")
        + log_rows(span, level="L2", billable="WARRANTY", prefix="WA")
        + log_rows(span, level="L2", approved=False, prefix="UA")
        + log_rows(span, level="L1", approved=False, prefix="IN")
    )
    statuses = {r["log_id"]: r["status"] for r in classify(client, contract.id, rows)}
    assert statuses == {
        "NB-0": "REJECTED",
        "WA-0": "REJECTED",
        "UA-0": "REJECTED",
        "IN-0": "UNAPPROVED",
    }
