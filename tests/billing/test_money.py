"""Money: integer minor units, CLDR exponents, one half-up rounding, largest remainder."""

from __future__ import annotations

from decimal import Decimal

import pytest

from effigate_engine.errors import ConfigurationError
from effigate_engine.money import (
    apply_basis_points,
    apply_ppm,
    currency,
    largest_remainder,
    round_half_up,
    time_amount,
)
from effigate_engine.ratecard.model import RateCard


def test_exponents_come_from_cldr() -> None:
    assert currency("USD").exponent == 2
    assert currency("jpy").exponent == 0
    assert currency("KWD").exponent == 3
    with pytest.raises(ConfigurationError, match="ISO-4217"):
        currency("XYZ1")


def test_2_675_rounds_half_up_to_2_68() -> None:
    # The binary float 2.675 is 2.67499…, so float rounding gives 2.67: integers never do.
    assert round(2.675, 2) == 2.67
    assert round_half_up(2_675, 10) == 268
    assert currency("USD").to_minor(Decimal("2.68")) == 268


def test_halves_round_away_from_zero_so_credits_mirror_charges() -> None:
    assert round_half_up(5, 2) == 3
    assert round_half_up(-5, 2) == -3
    assert round_half_up(4, 3) == 1 and round_half_up(-4, 3) == -1
    with pytest.raises(ValueError):
        round_half_up(1, 0)


def test_five_minutes_at_60_per_hour_is_5_00() -> None:
    # Rounding hours to two decimals first (0.08 h) would bill $4.80.
    assert time_amount(300, 6_000) == 500


def test_qst_9_975_percent_on_8180_is_815_96() -> None:
    assert apply_ppm(818_000, 99_750) == 81_596


def test_ten_thousand_in_three_is_3333_34_plus_two_3333_33() -> None:
    assert largest_remainder(1_000_000, [1, 1, 1]) == [333_334, 333_333, 333_333]
    assert sum(largest_remainder(1_000_000, [1, 1, 1])) == 1_000_000


def test_largest_remainder_gives_leftovers_to_largest_remainders_then_earlier() -> None:
    assert largest_remainder(10, [1, 2, 3]) == [2, 3, 5]
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert largest_remainder(3, [0, 0]) == [2, 1]
    assert largest_remainder(0, [3, 4]) == [0, 0]
    with pytest.raises(ValueError):
        largest_remainder(-1, [1])


def test_rates_not_representable_in_the_currency_are_configuration_errors() -> None:
    usd, jpy = currency("USD"), currency("JPY")
    assert usd.to_minor("120.00") == 12_000
    assert jpy.to_minor("1500") == 1_500
    with pytest.raises(ConfigurationError, match="minor units"):
        usd.to_minor("33.333")
    with pytest.raises(ConfigurationError, match="minor units"):
        jpy.to_minor("1500.50")
    with pytest.raises(ConfigurationError, match="float"):
        usd.to_minor(1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="minor units"):
        RateCard.from_json(
            {"currency": "USD", "base_rates": [{"support_level": "*", "amount": "33.333"}]}
        )


def test_basis_points_and_formatting() -> None:
    assert apply_basis_points(18_000, 12_500) == 22_500
    assert currency("USD").format(-20_000) == "-200.00"
    assert currency("JPY").format(1_500) == "1500"
    assert currency("KWD").format(1_234) == "1.234"
