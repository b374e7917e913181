"""Contracts: lifecycle, frozen rate cards, amendments, periods and proration."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from effigate_engine.errors import ConfigurationError, LifecycleError
from effigate_engine.ratecard.contracts import (
    Amendment,
    BucketTerms,
    Contract,
    ContractStatus,
    ContractType,
    Milestone,
    split_milestones,
)
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from effigate_engine.ratecard.periods import BillingCycle, local_midnight, prorate
from effigate_engine.zone import zone as bundled_zone
from tests.billing.support import HOUR, business_hours


def library_card() -> RateCard:
    return RateCard("USD", {("*", "*"): 12_000}, {Condition.AFTER_HOURS: Rule(absolute=18_000)})


def draft(kind: ContractType = ContractType.HOURLY, **kwargs) -> Contract:
    return Contract(
        "C1", "CL1", kind, business_hours(), date(2026, 1, 15), library_card(), **kwargs
    )


def test_activation_freezes_a_copy_with_version_and_content_hash() -> None:
    card = library_card()
    contract = Contract(
        "C1", "CL1", ContractType.HOURLY, business_hours(), date(2026, 1, 15), card
    ).activate()
    assert contract.status == ContractStatus.ACTIVE
    (version,) = contract.versions
    assert version.version == 1 and version.content_hash == card.content_hash()
    # Editing the library's card afterwards changes nothing in the contract.
    card.base_rates[("*", "*")] = 99_999  # type: ignore[index]
    assert contract.rate_card.base_rates[("*", "*")] == 12_000
    assert contract.version_at(date(2026, 2, 1)).card.base_rates[("*", "*")] == 12_000


def test_activation_locks_the_type() -> None:
    contract = draft()
    assert contract.with_type(ContractType.BUCKET.value and ContractType.SCOPE).type == (
        ContractType.SCOPE
    )
    active = contract.activate()
    with pytest.raises(LifecycleError, match="locked"):
        active.with_type(ContractType.BUCKET)
    with pytest.raises(LifecycleError):
        active.activate()


def test_types_need_their_terms() -> None:
    with pytest.raises(ConfigurationError):
        draft(ContractType.BUCKET)
    with pytest.raises(ConfigurationError):
        draft(ContractType.RECURRING)
    with pytest.raises(ConfigurationError):
        draft(ContractType.FIXED_PRICE).activate()
    with pytest.raises(ConfigurationError):
        draft(ContractType.SCOPE).activate()
    ok = draft(ContractType.FIXED_PRICE, milestones=(Milestone("M1", "x", 1),)).activate()
    assert ok.is_active


def test_amendments_are_effective_dated_records_recorded_once() -> None:
    active = draft(ContractType.BUCKET, bucket=BucketTerms(100 * HOUR)).activate()
    new_card = RateCard("USD", {("*", "*"): 15_000})
    amended = active.amend(
        Amendment("A1", date(2026, 3, 1), rate_card=new_card, add_seconds=20 * HOUR)
    )
    assert amended.status == ContractStatus.AMENDED
    assert [v.version for v in amended.versions] == [1, 2]
    assert amended.version_at(date(2026, 2, 28)).version == 1
    assert amended.version_at(date(2026, 3, 1)).version == 2
    assert amended.top_ups[0].seconds == 20 * HOUR
    assert amended.amend(Amendment("A1", date(2026, 3, 1), add_seconds=HOUR)) is amended
    with pytest.raises(ConfigurationError):
        amended.amend(Amendment("A2", date(2025, 1, 1), add_seconds=HOUR))
    with pytest.raises(ConfigurationError, match="currency"):
        amended.amend(Amendment("A3", date(2026, 4, 1), rate_card=RateCard("EUR", {("*", "*"): 1})))
    with pytest.raises(LifecycleError):
        draft().amend(Amendment("A4", date(2026, 3, 1), add_seconds=1))


def test_terminate_and_expire() -> None:
    active = draft().activate()
    ended = active.terminate(date(2026, 6, 1))
    assert ended.status == ContractStatus.TERMINATED and ended.end == date(2026, 6, 1)
    with pytest.raises(LifecycleError):
        ended.terminate(date(2026, 7, 1))
    with pytest.raises(LifecycleError):
        active.expire()


def test_ten_thousand_over_three_milestones() -> None:
    milestones = split_milestones(1_000_000, ["Discovery", "Build", "Launch"])
    assert [m.amount for m in milestones] == [333_334, 333_333, 333_333]


def test_cycles_are_anchored_on_the_start_day() -> None:
    cycle = BillingCycle(date(2026, 1, 15), 15)
    assert cycle.period(0).start == date(2026, 1, 15)
    assert cycle.period(0).end == date(2026, 2, 15)
    assert cycle.period_of(date(2026, 3, 14)).start == date(2026, 2, 15)
    assert cycle.period_of(date(2026, 3, 15)).start == date(2026, 3, 15)


def test_anchor_31_is_clamped_to_month_end_for_that_month_only() -> None:
    cycle = BillingCycle(date(2026, 1, 31), 31)
    starts = [cycle.period(k).start for k in range(4)]
    assert starts == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]
    leap = BillingCycle(date(2028, 1, 31), 31)
    assert leap.period(1).start == date(2028, 2, 29)


def test_a_start_off_anchor_makes_a_stub_first_period() -> None:
    cycle = BillingCycle(date(2026, 1, 10), 1)
    assert (cycle.period(0).start, cycle.period(0).end) == (date(2026, 1, 10), date(2026, 2, 1))
    assert cycle.period(1).start == date(2026, 2, 1)


def test_period_bounds_are_local_midnights() -> None:
    zone = bundled_zone("America/New_York")
    assert local_midnight(date(2026, 4, 1), zone) == int(
        datetime(2026, 4, 1, 4, 0, tzinfo=bundled_zone("UTC")).timestamp()
    )
    # São Paulo 2018-11-04: midnight was skipped; the day starts at the transition.
    sp = bundled_zone("America/Sao_Paulo")
    start = local_midnight(date(2018, 11, 4), sp)
    assert datetime.fromtimestamp(start, sp).date() == date(2018, 11, 4)
    assert datetime.fromtimestamp(start - 1, sp).date() == date(2018, 11, 3)


def test_proration_counts_days_start_inclusive_end_exclusive() -> None:
    assert prorate(100_000, 10, 31) == 32_258
    assert prorate(100_000, 31, 31) == 100_000
    with pytest.raises(ConfigurationError):
        prorate(1, 32, 31)
