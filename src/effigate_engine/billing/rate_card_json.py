"""The rate-card JSON codec (``docs/billing.md``, ``docs/contract-terms.md``): the shape of a
card checked before it is built, so every refusal names its field path and value; and the JSON
scalars the contract-terms codec (:mod:`effigate_engine.billing.terms_json`) shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from effigate_engine.errors import ConfigurationError
from effigate_engine.priority import PriorityError, normalise_priority
from effigate_engine.ratecard.model import (
    MAX_ROUNDING_SECONDS,
    RULE_CONDITIONS,
    IncrementMode,
    RateCard,
    Stacking,
    normalise_precedence,
)

#: Digits a decimal number in terms may have before its point (money, hours, factors): more is
#: never meant, and would overflow the int64 arithmetic of billing.
LARGEST_DIGITS = 15


# Scalars ------------------------------------------------------------------------------------


def json_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(path, value, "is not a JSON object")
    return value


def known_keys(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigurationError(f"{path}.{key}", obj[key], f"is not one of {sorted(allowed)}")


def whole_number(value: Any, path: str, *, low: int = 0, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(path, value, "is not an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigurationError(path, value, f"is not in {bound}")
    return value


def decimal_number(value: Any, path: str) -> Decimal:
    if isinstance(value, float):
        raise ConfigurationError(path, value, "is a float; give a decimal string such as '1.5'")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigurationError(path, value, "is not a number (integer or decimal string)")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        raise ConfigurationError(path, value, "is not a decimal number") from None
    if not number.is_finite() or number < 0:
        raise ConfigurationError(path, value, "is not a finite number >= 0")
    if number and number.adjusted() >= LARGEST_DIGITS:
        raise ConfigurationError(path, value, f"is too large (at most {LARGEST_DIGITS} digits)")
    return number


def priority_key(name: Any, path: str) -> str:
    try:
        return normalise_priority(name, path)
    except PriorityError as exc:
        raise ConfigurationError(path, name, exc.problem) from None


# Rate cards -----------------------------------------------------------------------------------

_RATE_CARD_KEYS = {
    "name",
    "currency",
    "base_rates",
    "rules",
    "high_priorities",
    "weekend_days",
    "stacking",
    "increment_seconds",
    "increment_mode",
    "minimum_seconds",
    "precedence",
}
#: How a rate is given: whole minor units per hour (``rate`` or ``absolute``) or a decimal
#: string in major units (``amount``); a rule may instead give ``multiplier_bp``.
_RATE_KEYS = ("rate", "absolute", "amount")


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigurationError(path, value, "is not a JSON list")
    return value


def _rate_shape(obj: Mapping[str, Any], path: str, keys: Sequence[str]) -> None:
    given = [k for k in keys if k in obj]
    if len(given) != 1:
        raise ConfigurationError(path, dict(obj), f"needs exactly one of {list(keys)}")
    key = given[0]
    if key == "amount":
        decimal_number(obj[key], f"{path}.amount")
    else:
        whole_number(obj[key], f"{path}.{key}")


def rate_card_from_json(body: Any, path: str = "rate_card") -> RateCard:
    """A :class:`RateCard` from its JSON (``docs/billing.md``, ``docs/contract-terms.md``).

    The shape is checked before the card is built, so every refusal is a
    :class:`ConfigurationError` naming the field under ``path`` and its value
    (``rate_card.precedence[1]``, ``body.rate_card.rules.WEEKEND.multiplier_bp``); unknown keys
    are refused (a misspelt ``precedence`` would otherwise price by the default order)."""
    card = json_object(body, path)
    known_keys(card, _RATE_CARD_KEYS, path)
    if "currency" not in card:
        raise ConfigurationError(f"{path}.currency", None, "is required")
    for i, row in enumerate(_list(card.get("base_rates", []), f"{path}.base_rates")):
        where = f"{path}.base_rates[{i}]"
        row = json_object(row, where)
        known_keys(row, {"support_level", "job_type", *_RATE_KEYS}, where)
        for key in ("support_level", "job_type"):
            if key in row and (not isinstance(row[key], str) or not row[key]):
                raise ConfigurationError(f"{where}.{key}", row[key], "is not a name or '*'")
        _rate_shape(row, where, _RATE_KEYS)
    names = [c.name for c in RULE_CONDITIONS]
    for name, raw in json_object(card.get("rules", {}), f"{path}.rules").items():
        where = f"{path}.rules.{name}"
        if name not in names:
            raise ConfigurationError(where, raw, f"is not one of {names}")
        rule = json_object(raw, where)
        known_keys(rule, {*_RATE_KEYS, "multiplier_bp"}, where)
        _rate_shape(rule, where, (*_RATE_KEYS, "multiplier_bp"))
    for i, prio in enumerate(_list(card.get("high_priorities", []), f"{path}.high_priorities")):
        priority_key(prio, f"{path}.high_priorities[{i}]")
    for i, day in enumerate(_list(card.get("weekend_days", []), f"{path}.weekend_days")):
        whole_number(day, f"{path}.weekend_days[{i}]", high=6)
    for key, choices in (("stacking", Stacking), ("increment_mode", IncrementMode)):
        if key in card and card[key] not in {c.value for c in choices}:
            raise ConfigurationError(
                f"{path}.{key}", card[key], f"is not one of {[c.value for c in choices]}"
            )
    for key in ("increment_seconds", "minimum_seconds"):
        if key in card:
            whole_number(card[key], f"{path}.{key}", high=MAX_ROUNDING_SECONDS)
    if not isinstance(card.get("name", ""), str):
        raise ConfigurationError(f"{path}.name", card["name"], "is not a string")
    if "precedence" in card:
        normalise_precedence(card["precedence"], f"{path}.precedence")
    try:
        return RateCard.from_json(card)
    except (ConfigurationError, PriorityError) as exc:
        field = exc.field.removeprefix("rate_card.")
        raise ConfigurationError(f"{path}.{field}", exc.value, exc.problem) from None


def amendment_rate_card(body: Mapping[str, Any]) -> RateCard | tuple[int, int | None]:
    """What a ``RATE_CARD`` amendment body gives: a card inline (the body is a rate-card JSON,
    or ``{"rate_card": {...}}``; errors under ``body`` / ``body.rate_card``) or a published
    library version ``(rate_card_id, version or None for the latest)``. Any form may carry a
    ``"note"``."""
    if "rate_card_id" in body:
        known_keys(body, {"rate_card_id", "version", "note"}, "body")
        version = body.get("version")
        return (
            whole_number(body["rate_card_id"], "body.rate_card_id", low=1),
            None if version is None else whole_number(version, "body.version", low=1),
        )
    if "rate_card" in body:
        known_keys(body, {"rate_card", "note"}, "body")
        return rate_card_from_json(body["rate_card"], "body.rate_card")
    return rate_card_from_json({k: v for k, v in body.items() if k != "note"}, "body")
