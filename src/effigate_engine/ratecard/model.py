"""Rate cards: base rates by (support level, job type), condition rules and stacking.

A card is priced in one currency. Base rates are whole minor units per hour keyed by
``(support level, job type)`` where either part may be the wildcard ``"*"``; the lookup tries
``(level, job)``, ``(level, *)``, ``(*, job)``, ``(*, *)`` in that order. Condition rules
(``AFTER_HOURS``, ``WEEKEND``, ``HOLIDAY``, ``HIGH_PRIORITY``, ``ADDITIONAL_HOURS``,
``OUT_OF_SCOPE``) are either an absolute rate (replaces the base) or a multiplier in basis
points (multiplies the base). A multiplied rate is rounded half-up to whole minor units per
hour once, when it is resolved. ``HIGH_PRIORITY`` is a modifier combined with the time
condition's rate by ``stacking``: ``max`` (the higher rate wins and labels the line; a tie keeps
the time condition) or ``compound`` (the higher absolute rule replaces the base, then every
multiplier multiplies).

The card also carries the billing increment (seconds), the minimum billed per log (seconds),
the increment mode (``up`` or ``nearest``) and the weekend days (0=Mon..6=Sun, default Sat/Sun).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from effigate_engine.errors import ConfigurationError
from effigate_engine.money import BASIS_POINTS, Currency, currency, round_half_up
from effigate_engine.priority import normalise_priority

WILDCARD = "*"
#: Default billing increment: 15 minutes, in seconds.
DEFAULT_INCREMENT_SECONDS = 900
#: Default weekend days: Saturday and Sunday (0=Mon..6=Sun).
DEFAULT_WEEKEND_DAYS = (5, 6)
#: Longest billing increment or minimum: 31 days, in seconds (a part never spans more).
MAX_ROUNDING_SECONDS = 31 * 86_400


class Condition(IntEnum):
    """What a line prices. The four time conditions come first, in rising precedence
    (``HOLIDAY > WEEKEND > AFTER_HOURS > REGULAR``); the others label modifiers, portions and
    zero-priced time."""

    REGULAR = 0
    AFTER_HOURS = 1
    WEEKEND = 2
    HOLIDAY = 3
    HIGH_PRIORITY = 4
    ADDITIONAL_HOURS = 5
    OUT_OF_SCOPE = 6
    INCLUDED = 7
    NON_BILLABLE = 8
    WARRANTY = 9


#: The time conditions, by code (``Condition(0..3)``).
TIME_CONDITIONS = (
    Condition.REGULAR,
    Condition.AFTER_HOURS,
    Condition.WEEKEND,
    Condition.HOLIDAY,
)
#: Conditions a card may carry a rule for.
RULE_CONDITIONS = (
    Condition.AFTER_HOURS,
    Condition.WEEKEND,
    Condition.HOLIDAY,
    Condition.HIGH_PRIORITY,
    Condition.ADDITIONAL_HOURS,
    Condition.OUT_OF_SCOPE,
)


class Stacking(StrEnum):
    """How ``HIGH_PRIORITY`` combines with the time condition."""

    MAX = "max"
    COMPOUND = "compound"


#: Time-condition precedence: ``default`` is the fixed order ``HOLIDAY > WEEKEND >
#: AFTER_HOURS > REGULAR``; ``highest`` prices an instant at whichever applicable time
#: condition's rule gives the highest rate (ties by the default order).
PRECEDENCE_DEFAULT = "default"
PRECEDENCE_HIGHEST = "highest"
#: The time conditions an explicit precedence list orders (``REGULAR`` is always last).
ORDERABLE_CONDITIONS = (Condition.HOLIDAY, Condition.WEEKEND, Condition.AFTER_HOURS)


def normalise_precedence(value: object, path: str = "precedence") -> str | tuple[Condition, ...]:
    """``"default"``, ``"highest"`` or an explicit order: a list naming each of ``HOLIDAY``,
    ``WEEKEND`` and ``AFTER_HOURS`` once (first applicable wins). Anything else is an error
    naming ``path`` and the value."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in (PRECEDENCE_DEFAULT, PRECEDENCE_HIGHEST):
            return key
        raise ConfigurationError(
            path, value, "is not 'default', 'highest' or a list of time conditions"
        )
    if not isinstance(value, (list, tuple)):
        raise ConfigurationError(
            path, value, "is not 'default', 'highest' or a list of time conditions"
        )
    order: list[Condition] = []
    for i, item in enumerate(value):
        try:
            cond = item if isinstance(item, Condition) else Condition[str(item).strip().upper()]
        except KeyError:
            cond = None
        if cond not in ORDERABLE_CONDITIONS:
            raise ConfigurationError(
                f"{path}[{i}]", item, "is not one of HOLIDAY, WEEKEND, AFTER_HOURS"
            )
        if cond in order:
            raise ConfigurationError(f"{path}[{i}]", item, "appears twice")
        order.append(cond)
    if len(order) != len(ORDERABLE_CONDITIONS):
        raise ConfigurationError(
            path, list(value), "must name each of HOLIDAY, WEEKEND and AFTER_HOURS once"
        )
    if tuple(order) == ORDERABLE_CONDITIONS:
        return PRECEDENCE_DEFAULT
    return tuple(order)


class IncrementMode(StrEnum):
    """How actual seconds round to the billing increment."""

    UP = "up"
    NEAREST = "nearest"


@dataclass(frozen=True, slots=True)
class Rule:
    """A condition rule: ``absolute`` minor units per hour, or ``multiplier`` basis points."""

    absolute: int | None = None
    multiplier: int | None = None

    def __post_init__(self) -> None:
        if (self.absolute is None) == (self.multiplier is None):
            raise ConfigurationError("rule", self, "needs exactly one of absolute, multiplier")
        for name, value in (("absolute", self.absolute), ("multiplier", self.multiplier)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise ConfigurationError(f"rule.{name}", value, "is not an integer >= 0")

    def to_json(self) -> dict[str, int]:
        if self.absolute is not None:
            return {"absolute": self.absolute}
        return {"multiplier_bp": int(self.multiplier or 0)}


@dataclass(frozen=True)
class RateCard:
    """A rate card. Money in minor units of ``currency``; durations in seconds."""

    currency: str
    base_rates: Mapping[tuple[str, str], int]
    rules: Mapping[Condition, Rule] = field(default_factory=dict)
    high_priorities: frozenset[str] = frozenset({"CRITICAL", "HIGH"})
    weekend_days: tuple[int, ...] = DEFAULT_WEEKEND_DAYS
    stacking: Stacking = Stacking.MAX
    increment_seconds: int = DEFAULT_INCREMENT_SECONDS
    increment_mode: IncrementMode = IncrementMode.UP
    minimum_seconds: int = 0
    name: str = ""
    precedence: str | tuple[Condition, ...] = PRECEDENCE_DEFAULT

    def __post_init__(self) -> None:
        currency(self.currency)
        object.__setattr__(self, "precedence", normalise_precedence(self.precedence))
        object.__setattr__(self, "currency", self.currency.upper())
        object.__setattr__(self, "base_rates", dict(self.base_rates))
        object.__setattr__(self, "rules", {Condition(k): v for k, v in self.rules.items()})
        object.__setattr__(self, "stacking", Stacking(self.stacking))
        object.__setattr__(self, "increment_mode", IncrementMode(self.increment_mode))
        object.__setattr__(
            self, "high_priorities", frozenset(normalise_priority(p) for p in self.high_priorities)
        )
        object.__setattr__(self, "weekend_days", tuple(sorted(set(self.weekend_days))))
        if not self.base_rates:
            raise ConfigurationError("base_rates", {}, "is empty; a card needs at least one rate")
        for key, rate in self.base_rates.items():
            if not (
                isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)
            ):
                raise ConfigurationError(
                    "base_rates", key, "is not a (support level, job type) key"
                )
            if not isinstance(rate, int) or isinstance(rate, bool) or rate < 0:
                raise ConfigurationError(
                    f"base_rates[{key}]", rate, "is not a whole number of minor units per hour"
                )
        for cond, rule in self.rules.items():
            if cond not in RULE_CONDITIONS:
                raise ConfigurationError("rules", cond.name, f"is not one of {RULE_CONDITIONS}")
            if not isinstance(rule, Rule):
                raise ConfigurationError(f"rules[{cond.name}]", rule, "is not a Rule")
        for day in self.weekend_days:
            if not isinstance(day, int) or not 0 <= day <= 6:
                raise ConfigurationError("weekend_days", day, "is not a weekday 0..6")
        for name in ("increment_seconds", "minimum_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(name, value, "is not a whole number of seconds >= 0")
            if value > MAX_ROUNDING_SECONDS:
                raise ConfigurationError(name, value, "is longer than 31 days")

    # Rates ----------------------------------------------------------------------------------

    @property
    def money(self) -> Currency:
        """The card's :class:`Currency`."""
        return currency(self.currency)

    def base_rate(self, level: str, job_type: str) -> int | None:
        """Base rate (minor units per hour) for a level and job type by wildcard fallback, or
        ``None`` when no key matches."""
        for key in ((level, job_type), (level, WILDCARD), (WILDCARD, job_type)):
            if key in self.base_rates:
                return self.base_rates[key]
        return self.base_rates.get((WILDCARD, WILDCARD))

    def is_high_priority(self, priority: str) -> bool:
        """Whether a priority triggers the ``HIGH_PRIORITY`` modifier on this card."""
        return priority in self.high_priorities and Condition.HIGH_PRIORITY in self.rules

    def _apply(self, base: int, cond: Condition) -> int:
        rule = self.rules.get(cond)
        if rule is None:
            return base
        if rule.absolute is not None:
            return rule.absolute
        return round_half_up(base * int(rule.multiplier or 0), BASIS_POINTS)

    def resolve(
        self, base: int, time_condition: Condition, high_priority: bool
    ) -> tuple[int, Condition, bool]:
        """Rate of one time condition: ``(minor units per hour, line label, priority applied)``.

        ``max``: the higher of the time rate and the priority rate; the priority label wins only
        when strictly higher. ``compound``: the higher absolute rule replaces the base, then the
        multipliers multiply, rounded once.
        """
        time_rule = self.rules.get(time_condition) if time_condition != Condition.REGULAR else None
        time_rate = self._apply(base, time_condition) if time_rule else base
        if not high_priority or Condition.HIGH_PRIORITY not in self.rules:
            return time_rate, time_condition, False
        if self.stacking == Stacking.MAX:
            prio_rate = self._apply(base, Condition.HIGH_PRIORITY)
            if prio_rate > time_rate:
                return prio_rate, Condition.HIGH_PRIORITY, True
            return time_rate, time_condition, False
        rules = [r for r in (time_rule, self.rules[Condition.HIGH_PRIORITY]) if r is not None]
        absolutes = [r.absolute for r in rules if r.absolute is not None]
        rate = max(absolutes) if absolutes else base
        numerator, denominator = rate, 1
        for r in rules:
            if r.multiplier is not None:
                numerator *= r.multiplier
                denominator *= BASIS_POINTS
        return round_half_up(numerator, denominator), time_condition, True

    def condition_rate(self, base: int, cond: Condition) -> int:
        """Rate of a time condition alone (its rule applied to ``base``; the base when the card
        has no rule for it), before any priority modifier: what ``highest`` compares."""
        if cond == Condition.REGULAR:
            return base
        return self._apply(base, cond)

    def winning_condition(self, base: int, applicable: frozenset[Condition]) -> Condition:
        """The time condition that prices an instant where the time conditions ``applicable``
        apply (``REGULAR`` when none does), under the card's precedence."""
        if not applicable:
            return Condition.REGULAR
        if self.precedence == PRECEDENCE_DEFAULT:
            return max(applicable)
        if self.precedence == PRECEDENCE_HIGHEST:
            # Highest rate; ties by the default order (higher code first).
            return max(applicable, key=lambda c: (self.condition_rate(base, c), int(c)))
        return next(c for c in self.precedence if c in applicable)

    def portion_rate(self, base: int, cond: Condition) -> int:
        """Rate of an ``ADDITIONAL_HOURS`` or ``OUT_OF_SCOPE`` portion (the base when the card
        has no rule for it)."""
        return self._apply(base, cond)

    # Identity -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON object (sorted keys when dumped) that :meth:`from_json` reads back."""
        return {
            "name": self.name,
            "currency": self.currency,
            "base_rates": [
                {"support_level": k[0], "job_type": k[1], "rate": v}
                for k, v in sorted(self.base_rates.items())
            ],
            "rules": {c.name: r.to_json() for c, r in sorted(self.rules.items())},
            "high_priorities": sorted(self.high_priorities),
            "weekend_days": list(self.weekend_days),
            "stacking": self.stacking.value,
            "increment_seconds": self.increment_seconds,
            "increment_mode": self.increment_mode.value,
            "minimum_seconds": self.minimum_seconds,
            # Only a non-default precedence is written, so existing cards keep their hash.
            **(
                {}
                if self.precedence == PRECEDENCE_DEFAULT
                else {
                    "precedence": (
                        self.precedence
                        if isinstance(self.precedence, str)
                        else [c.name for c in self.precedence]
                    )
                }
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RateCard:
        """Build a card from its JSON object: rates in minor units per hour (``"rate"``) or in
        major units as strings (``"amount": "120.00"``, checked against the currency)."""
        money = currency(data["currency"])
        base: dict[tuple[str, str], int] = {}
        for i, row in enumerate(data.get("base_rates", [])):
            base[(row.get("support_level", WILDCARD), row.get("job_type", WILDCARD))] = _rate(
                row, money, f"base_rates[{i}]"
            )
        rules: dict[Condition, Rule] = {}
        for name, raw in data.get("rules", {}).items():
            try:
                cond = Condition[name]
            except KeyError:
                raise ConfigurationError("rules", name, "is not a condition name") from None
            if "multiplier_bp" in raw:
                rules[cond] = Rule(multiplier=int(raw["multiplier_bp"]))
            else:
                rules[cond] = Rule(absolute=_rate(raw, money, f"rules.{name}"))
        return cls(
            currency=money.code,
            base_rates=base,
            rules=rules,
            high_priorities=frozenset(data.get("high_priorities", ("CRITICAL", "HIGH"))),
            weekend_days=tuple(data.get("weekend_days", DEFAULT_WEEKEND_DAYS)),
            stacking=Stacking(data.get("stacking", "max")),
            increment_seconds=int(data.get("increment_seconds", DEFAULT_INCREMENT_SECONDS)),
            increment_mode=IncrementMode(data.get("increment_mode", "up")),
            minimum_seconds=int(data.get("minimum_seconds", 0)),
            name=str(data.get("name", "")),
            precedence=normalise_precedence(
                data.get("precedence", PRECEDENCE_DEFAULT), "rate_card.precedence"
            ),
        )

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON: equal cards hash equal, any pricing change differs."""
        return content_sha256(canonical_json(self.to_json()))


def canonical_json(body: Any) -> str:
    """The canonical JSON text of a rate-card body (sorted keys, no spaces): the text its
    SHA-256 is computed over, and the text a contract stores with its frozen copy."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def content_sha256(text: str) -> str:
    """Hex SHA-256 of a canonical JSON text (UTF-8), as stored next to a frozen card."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _rate(row: Mapping[str, Any], money: Currency, path: str) -> int:
    for name in ("rate", "absolute"):
        if name not in row:
            continue
        value = row[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigurationError(f"{path}.{name}", value, "is not whole minor units per hour")
        return value
    if "amount" in row:
        return money.to_minor(row["amount"], f"{path}.amount")
    raise ConfigurationError(path, dict(row), "needs 'rate' (minor units) or 'amount' (major)")
