"""Rate cards: wildcard fallbacks, rules, stacking, rounding once, identity."""

from __future__ import annotations

import pytest

from effigate_engine.errors import ConfigurationError
from effigate_engine.ratecard.model import Condition, RateCard, Rule, Stacking

W = Condition.WEEKEND
AH = Condition.AFTER_HOURS
HP = Condition.HIGH_PRIORITY


def test_base_rate_falls_back_level_then_job_then_wildcard() -> None:
    card = RateCard(
        "USD",
        {("L3", "network"): 1, ("L3", "*"): 2, ("*", "network"): 3, ("*", "*"): 4},
    )
    assert card.base_rate("L3", "network") == 1
    assert card.base_rate("L3", "devops") == 2
    assert card.base_rate("L1", "network") == 3
    assert card.base_rate("L1", "devops") == 4
    assert RateCard("USD", {("L1", "*"): 5}).base_rate("L2", "x") is None


def test_max_stacking_labels_the_winner() -> None:
    card = RateCard(
        "USD",
        {("*", "*"): 12_000},
        {AH: Rule(absolute=18_000), W: Rule(absolute=20_000), HP: Rule(absolute=15_000)},
    )
    assert card.resolve(12_000, Condition.REGULAR, True) == (15_000, HP, True)
    assert card.resolve(12_000, AH, True) == (18_000, AH, False)
    assert card.resolve(12_000, W, True) == (20_000, W, False)
    assert card.resolve(12_000, W, False) == (20_000, W, False)


def test_max_stacking_tie_keeps_the_time_condition() -> None:
    card = RateCard(
        "USD", {("*", "*"): 10_000}, {AH: Rule(absolute=15_000), HP: Rule(absolute=15_000)}
    )
    assert card.resolve(10_000, AH, True) == (15_000, AH, False)


def test_compound_weekend_180_with_priority_1_25_is_225() -> None:
    card = RateCard(
        "USD",
        {("*", "*"): 12_000},
        {W: Rule(absolute=18_000), HP: Rule(multiplier=12_500)},
        stacking=Stacking.COMPOUND,
    )
    assert card.resolve(12_000, W, True) == (22_500, W, True)
    assert card.resolve(12_000, W, False) == (18_000, W, False)


def test_compound_takes_the_higher_absolute_then_multiplies_and_rounds_once() -> None:
    card = RateCard(
        "USD",
        {("*", "*"): 10_001},
        {AH: Rule(multiplier=15_000), HP: Rule(multiplier=12_500)},
        stacking="compound",
    )
    # 10,001 × 1.5 × 1.25 = 18,751.875 → 18,752; rounding after each step would give 18,753.
    assert card.resolve(10_001, AH, True)[0] == 18_752
    both = RateCard(
        "USD",
        {("*", "*"): 10_000},
        {W: Rule(absolute=18_000), HP: Rule(absolute=25_000)},
        stacking="compound",
    )
    assert both.resolve(10_000, W, True)[0] == 25_000


def test_multiplied_rate_is_rounded_half_up_once_when_resolved() -> None:
    card = RateCard("USD", {("*", "*"): 10_005}, {AH: Rule(multiplier=15_000)})
    assert card.resolve(10_005, AH, False)[0] == 15_008  # 15,007.5 → 15,008


def test_portion_rates_fall_back_to_the_base() -> None:
    card = RateCard("USD", {("*", "*"): 10_000}, {Condition.OUT_OF_SCOPE: Rule(absolute=25_000)})
    assert card.portion_rate(10_000, Condition.OUT_OF_SCOPE) == 25_000
    assert card.portion_rate(10_000, Condition.ADDITIONAL_HOURS) == 10_000


def test_content_hash_is_stable_and_json_round_trips() -> None:
    card = RateCard(
        "USD",
        {("*", "*"): 12_000, ("L3", "*"): 18_000},
        {AH: Rule(absolute=18_000), HP: Rule(multiplier=12_500)},
        weekend_days=(6, 5),
        increment_seconds=360,
    )
    again = RateCard.from_json(card.to_json())
    assert again == card and again.content_hash() == card.content_hash()
    changed = RateCard.from_json({**card.to_json(), "increment_seconds": 900})
    assert changed.content_hash() != card.content_hash()
    from_major = RateCard.from_json(
        {
            "currency": "USD",
            "base_rates": [{"support_level": "*", "job_type": "*", "amount": "120.00"}],
        }
    )
    assert from_major.base_rates == {("*", "*"): 12_000}


def test_invalid_cards_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        RateCard("USD", {})
    with pytest.raises(ConfigurationError):
        Rule(absolute=1, multiplier=2)
    with pytest.raises(ConfigurationError):
        RateCard("USD", {("*", "*"): 1}, {Condition.REGULAR: Rule(absolute=1)})
    with pytest.raises(ConfigurationError):
        RateCard("USD", {("*", "*"): 1}, weekend_days=(7,))
