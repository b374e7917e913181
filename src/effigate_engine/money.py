"""Money as integer minor units: currencies, exact half-up rounding and largest remainder.

Every amount in the engine is an ``int`` of the currency's minor units (cents for USD, yen for
JPY, fils for KWD). The exponent of each ISO-4217 currency comes from CLDR through ``babel``.
Rates are whole minor units per hour, multipliers basis points (1.25× = 12,500) and tax rates
parts per million (9.975 % = 99,750). Rounding happens in exactly one function,
:func:`round_half_up`, on exact integer numerators and denominators: never on floats, never on
hours rounded first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from babel.numbers import get_currency_precision, list_currencies

from effigate_engine.errors import ConfigurationError

#: Seconds in an hour: rates are per hour, durations in seconds.
SECONDS_PER_HOUR = 3_600
#: Basis points in 1 (a multiplier of 1.25 is 12,500 bp).
BASIS_POINTS = 10_000
#: Parts per million in 1 (a tax rate of 9.975 % is 99,750 ppm).
PARTS_PER_MILLION = 1_000_000


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, halves away from zero.

    Exact on Python integers of any size. Halves go away from zero so a credit is the exact
    negative of the charge it mirrors (``-2.5 → -3``). ``denominator`` must be positive.
    """
    if denominator <= 0:
        raise ValueError(f"denominator {denominator} is not positive")
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((2 * -numerator + denominator) // (2 * denominator))


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Share the integer ``total`` among ``weights`` in proportion, in whole units.

    Each share is the floor of its exact quota; the units left over go one each to the largest
    remainders, ties to the earlier item. The shares always sum to ``total``. All weights zero:
    the total is shared equally (largest remainder over equal weights). ``total`` >= 0 and
    weights >= 0.
    """
    if total < 0:
        raise ValueError(f"total {total} is negative")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights {list(weights)} contain a negative weight")
    if not weights:
        if total:
            raise ValueError("cannot share a non-zero total among no items")
        return []
    weights = list(weights) if sum(weights) else [1] * len(weights)
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def apply_ppm(amount: int, ppm: int) -> int:
    """``amount × ppm / 1,000,000`` rounded half-up once (tax components, percent credits)."""
    return round_half_up(amount * ppm, PARTS_PER_MILLION)


def apply_basis_points(amount: int, basis_points: int) -> int:
    """``amount × basis_points / 10,000`` rounded half-up once (multiplied rates, percents)."""
    return round_half_up(amount * basis_points, BASIS_POINTS)


def time_amount(seconds: int, rate: int) -> int:
    """Amount in minor units of ``seconds`` at ``rate`` minor units per hour, rounded once."""
    return round_half_up(seconds * rate, SECONDS_PER_HOUR)


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO-4217 currency and the exponent of its minor unit (USD 2, JPY 0, KWD 3)."""

    code: str
    exponent: int

    @property
    def minor_per_major(self) -> int:
        """Minor units in one major unit (100 for USD, 1 for JPY)."""
        return 10**self.exponent

    def to_minor(self, amount: Decimal | int | str, field: str = "amount") -> int:
        """Exact minor units of a major-unit amount (``"120.00"`` USD → 12,000).

        An amount finer than the minor unit ($33.333, ¥1,500.50) is a configuration error,
        never silently rounded.
        """
        if isinstance(amount, float):
            raise ConfigurationError(field, amount, "is a float; give a string or Decimal")
        try:
            value = Decimal(amount)
        except (InvalidOperation, ValueError, TypeError):
            raise ConfigurationError(field, amount, "is not a number") from None
        minor = value.scaleb(self.exponent)
        if minor != minor.to_integral_value():
            raise ConfigurationError(
                field,
                str(amount),
                f"is not a whole number of {self.code} minor units "
                f"({self.exponent} decimal places)",
            )
        return int(minor)

    def to_major(self, minor: int) -> Decimal:
        """The exact major-unit value of ``minor`` minor units."""
        return Decimal(minor).scaleb(-self.exponent)

    def format(self, minor: int) -> str:
        """``12345`` USD → ``"123.45"``; ``-20000`` → ``"-200.00"`` (no symbol, no grouping)."""
        sign = "-" if minor < 0 else ""
        major, rest = divmod(abs(minor), self.minor_per_major)
        if self.exponent == 0:
            return f"{sign}{major}"
        return f"{sign}{major}.{rest:0{self.exponent}d}"


@cache
def _known_codes() -> frozenset[str]:
    return frozenset(list_currencies())


@cache
def currency(code: str) -> Currency:
    """The :class:`Currency` for an ISO-4217 code, its exponent from CLDR (``babel``)."""
    if not isinstance(code, str) or code.upper() not in _known_codes():
        raise ConfigurationError("currency", code, "is not an ISO-4217 currency code")
    code = code.upper()
    return Currency(code, int(get_currency_precision(code)))
