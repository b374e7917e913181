"""The contract-terms JSON codec (``docs/contract-terms.md``) and the stored-row → domain
:class:`~effigate_engine.billing.contracts.Contract` builder.

Money in terms is a decimal string in major units (``"200.00"``), as in the rate-card JSON, or
an integer of minor units under the same name with ``_minor`` appended; durations are hours
(an integer or a decimal string) or whole seconds under ``*_seconds``. :func:`validate_terms`
returns the normalised form: money as canonical decimal strings, durations as whole seconds.
Every error names its path (``terms.bucket.size_hours``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from effigate_engine.billing.contracts import (
    Amendment,
    BucketTerms,
    Contract,
    ContractStatus,
    ContractType,
    Deliverable,
    Milestone,
    OutOfScope,
    RateCardVersion,
    RecurringTerms,
    Scope,
    SlaCreditTerms,
)
from effigate_engine.billing.errors import ConfigurationError
from effigate_engine.billing.invoice import TaxComponent
from effigate_engine.billing.money import BASIS_POINTS, PARTS_PER_MILLION, Currency
from effigate_engine.billing.money import currency as currency_of
from effigate_engine.calendar import Calendar
from effigate_engine.errors import EffigateError
from effigate_engine.ratecard.model import TIME_CONDITIONS, Condition, RateCard, normalise_priority

SECONDS_PER_HOUR = 3_600
_TOP_KEYS = {"anchor_day", "scope", "bucket", "recurring", "sla_credits", "tax", "tax_exemption"}

#: Amendment kinds :func:`build_contract` understands.
AMENDMENT_KINDS = ("RATE_CARD", "TOP_UP", "NOTE")


# Scalars ------------------------------------------------------------------------------------


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(path, value, "is not a JSON object")
    return value


def _known(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigurationError(f"{path}.{key}", obj[key], f"is not one of {sorted(allowed)}")


def _int(value: Any, path: str, *, low: int = 0, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(path, value, "is not an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigurationError(path, value, f"is not in {bound}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(path, value, "is not true/false")
    return value


def _decimal(value: Any, path: str) -> Decimal:
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
    return number


def _money(obj: Mapping[str, Any], name: str, money: Currency, path: str) -> int | None:
    """Minor units of ``obj[name]`` (decimal string, major units) or ``obj[name_minor]``."""
    minor_key = f"{name}_minor"
    if name in obj and minor_key in obj:
        raise ConfigurationError(f"{path}.{name}", obj[name], f"and {minor_key} are both given")
    if minor_key in obj:
        return _int(obj[minor_key], f"{path}.{minor_key}")
    if name in obj:
        value = obj[name]
        if isinstance(value, float):
            raise ConfigurationError(f"{path}.{name}", value, "is a float; give a string")
        amount = money.to_minor(value, f"{path}.{name}")
        if amount < 0:
            raise ConfigurationError(f"{path}.{name}", value, "is negative")
        return amount
    return None


def _money_value(value: Any, money: Currency, path: str) -> int:
    """Minor units of a decimal-string amount in major units (an int is major units too)."""
    if isinstance(value, float):
        raise ConfigurationError(path, value, "is a float; give a decimal string")
    amount = money.to_minor(value, path)
    if amount < 0:
        raise ConfigurationError(path, value, "is negative")
    return amount


def hours_to_seconds(value: Any, path: str) -> int:
    """Whole seconds of a number of hours (integer or decimal string; ``"1.5"`` → 5,400)."""
    seconds = _decimal(value, path) * SECONDS_PER_HOUR
    if seconds != seconds.to_integral_value():
        raise ConfigurationError(path, value, "is not a whole number of seconds")
    return int(seconds)


def _duration(obj: Mapping[str, Any], stem: str, path: str) -> int | None:
    """Seconds of ``obj[stem_hours]`` (hours) or ``obj[stem_seconds]``."""
    hours, seconds = f"{stem}_hours", f"{stem}_seconds"
    if hours in obj and seconds in obj:
        raise ConfigurationError(f"{path}.{hours}", obj[hours], f"and {seconds} are both given")
    if seconds in obj:
        return _int(obj[seconds], f"{path}.{seconds}")
    if hours in obj:
        return hours_to_seconds(obj[hours], f"{path}.{hours}")
    return None


def _durations(obj: Mapping[str, Any], stem: str, path: str) -> list[int] | None:
    hours, seconds = f"{stem}_hours", f"{stem}_seconds"
    if hours in obj and seconds in obj:
        raise ConfigurationError(f"{path}.{hours}", obj[hours], f"and {seconds} are both given")
    for key, convert in (
        (seconds, lambda v, p: _int(v, p)),
        (hours, hours_to_seconds),
    ):
        if key in obj:
            raw = obj[key]
            items = raw if isinstance(raw, list) else [raw]
            return sorted(
                {convert(v, f"{path}.{key}[{i}]") for i, v in enumerate(items)}, reverse=True
            )
    return None


def _strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(path, value, "is not a list of non-empty strings")
    return sorted(set(value))


def _burn_factor(value: Any, path: str) -> int:
    """Basis points of a burn factor given as a decimal string (``"1.5"`` → 15,000)."""
    bp = _decimal(value, path) * BASIS_POINTS
    if bp != bp.to_integral_value() or bp <= 0:
        raise ConfigurationError(path, value, "is not a positive factor in whole basis points")
    return int(bp)


def _format_factor(bp: int) -> str:
    return format((Decimal(bp) / BASIS_POINTS).normalize(), "f")


# Terms --------------------------------------------------------------------------------------


def validate_terms(contract_type: str, currency: str, terms: dict[str, Any]) -> dict[str, Any]:
    """Validate a contract's terms JSON for its type and currency and return it normalised.

    Money comes back as canonical decimal strings in major units, durations as whole seconds
    (``*_seconds``), lists sorted. Raises :class:`ConfigurationError` (an
    :class:`~effigate_engine.errors.EffigateError`) naming the path, e.g.
    ``terms.bucket.size_hours``.
    """
    try:
        kind = ContractType(contract_type)
    except ValueError:
        raise ConfigurationError(
            "contract_type", contract_type, f"is not one of {[t.value for t in ContractType]}"
        ) from None
    money = currency_of(currency)
    terms = _object(terms if terms is not None else {}, "terms")
    _known(terms, _TOP_KEYS, "terms")
    out: dict[str, Any] = {}

    if "anchor_day" in terms:
        out["anchor_day"] = _int(terms["anchor_day"], "terms.anchor_day", low=1, high=31)

    if "scope" in terms:
        raw = _object(terms["scope"], "terms.scope")
        _known(raw, {"support_levels", "job_types", "out_of_scope"}, "terms.scope")
        scope: dict[str, Any] = {}
        for key in ("support_levels", "job_types"):
            if raw.get(key) is not None:
                scope[key] = _strings(raw[key], f"terms.scope.{key}")
        policy = raw.get("out_of_scope", OutOfScope.PRICE.value)
        if policy not in {p.value for p in OutOfScope}:
            raise ConfigurationError("terms.scope.out_of_scope", policy, "is not PRICE or REJECT")
        scope["out_of_scope"] = policy
        out["scope"] = scope

    if "bucket" in terms:
        if kind != ContractType.BUCKET:
            raise ConfigurationError("terms.bucket", terms["bucket"], f"is for BUCKET, not {kind}")
        raw = _object(terms["bucket"], "terms.bucket")
        path = "terms.bucket"
        _known(
            raw,
            {
                "size_hours",
                "size_seconds",
                "low_balance_hours",
                "low_balance_seconds",
                "burn_factors",
                "per_period",
                "rollover_periods",
            },
            path,
        )
        size = _duration(raw, "size", path)
        if size is None:
            raise ConfigurationError(f"{path}.size_hours", None, "is required")
        low = _durations(raw, "low_balance", path)
        burn: dict[str, str] = {}
        for name, value in _object(raw.get("burn_factors", {}), f"{path}.burn_factors").items():
            try:
                cond = Condition[name]
            except KeyError:
                cond = None
            if cond not in TIME_CONDITIONS:
                raise ConfigurationError(
                    f"{path}.burn_factors.{name}", value, "is not a time condition"
                )
            burn[name] = _format_factor(_burn_factor(value, f"{path}.burn_factors.{name}"))
        out["bucket"] = {
            "size_seconds": size,
            "low_balance_seconds": low if low is not None else [36_000],
            "burn_factors": dict(sorted(burn.items())),
            "per_period": _bool(raw.get("per_period", False), f"{path}.per_period"),
            "rollover_periods": _int(raw.get("rollover_periods", 0), f"{path}.rollover_periods"),
        }
    elif kind == ContractType.BUCKET:
        raise ConfigurationError("terms.bucket", None, "is required for a BUCKET contract")

    if "recurring" in terms:
        if kind != ContractType.RECURRING:
            raise ConfigurationError(
                "terms.recurring", terms["recurring"], f"is for RECURRING, not {kind}"
            )
        raw = _object(terms["recurring"], "terms.recurring")
        path = "terms.recurring"
        _known(
            raw,
            {
                "base_fee",
                "base_fee_minor",
                "unit_prices",
                "included_hours",
                "included_seconds",
                "prorate",
            },
            path,
        )
        fee = _money(raw, "base_fee", money, path)
        if fee is None:
            raise ConfigurationError(f"{path}.base_fee", None, "is required")
        prices = {
            unit: money.format(_money_value(v, money, f"{path}.unit_prices.{unit}"))
            for unit, v in _object(raw.get("unit_prices", {}), f"{path}.unit_prices").items()
        }
        out["recurring"] = {
            "base_fee": money.format(fee),
            "unit_prices": dict(sorted(prices.items())),
            "included_seconds": _duration(raw, "included", path) or 0,
            "prorate": _bool(raw.get("prorate", True), f"{path}.prorate"),
        }
    elif kind == ContractType.RECURRING:
        raise ConfigurationError("terms.recurring", None, "is required for a RECURRING contract")

    if "sla_credits" in terms:
        raw = _object(terms["sla_credits"], "terms.sla_credits")
        path = "terms.sla_credits"
        _known(raw, {"per_breach", "percent_bp", "cap", "cap_minor"}, path)
        per_breach: dict[str, str] = {}
        for prio, value in _object(raw.get("per_breach", {}), f"{path}.per_breach").items():
            try:
                name = normalise_priority(prio)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{path}.per_breach.{prio}", prio, exc.problem) from None
            per_breach[name] = money.format(_money_value(value, money, f"{path}.per_breach.{prio}"))
        cap = _money(raw, "cap", money, path)
        out["sla_credits"] = {
            "per_breach": dict(sorted(per_breach.items())),
            "percent_bp": _int(raw.get("percent_bp", 0), f"{path}.percent_bp", high=BASIS_POINTS),
            "cap": None if cap is None else money.format(cap),
        }

    if "tax" in terms:
        out["tax"] = validate_tax(terms["tax"], "terms.tax")
    if "tax_exemption" in terms:
        reason = terms["tax_exemption"]
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigurationError("terms.tax_exemption", reason, "is not a non-empty reason")
        out["tax_exemption"] = reason.strip()
    return out


def validate_tax(value: Any, path: str = "tax") -> list[dict[str, Any]]:
    """A list of tax components ``{"name": str, "rate_ppm": int}`` (parts per million)."""
    if not isinstance(value, list):
        raise ConfigurationError(path, value, "is not a list of {name, rate_ppm}")
    out = []
    for i, raw in enumerate(value):
        item = _object(raw, f"{path}[{i}]")
        _known(item, {"name", "rate_ppm"}, f"{path}[{i}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{path}[{i}].name", name, "is not a non-empty string")
        rate = _int(item.get("rate_ppm"), f"{path}[{i}].rate_ppm", high=PARTS_PER_MILLION)
        out.append({"name": name, "rate_ppm": rate})
    return out


def tax_components(components: Sequence[Mapping[str, Any]]) -> tuple[TaxComponent, ...]:
    """Validated tax components (``{"name", "rate_ppm"}`` each) for invoice assembly."""
    checked = validate_tax([dict(c) for c in components])
    return tuple(TaxComponent(c["name"], int(c["rate_ppm"])) for c in checked)


# Row → domain -------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    """The local date of an aware instant in ``zone``."""
    return instant.astimezone(zone).date()


def _terms_objects(kind: ContractType, money: Currency, terms: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`Contract` from normalised terms."""
    out: dict[str, Any] = {}
    if "anchor_day" in terms:
        out["anchor_day"] = int(terms["anchor_day"])
    if "scope" in terms:
        s = terms["scope"]
        out["scope"] = Scope(
            frozenset(s["support_levels"]) if s.get("support_levels") is not None else None,
            frozenset(s["job_types"]) if s.get("job_types") is not None else None,
            OutOfScope(s.get("out_of_scope", "PRICE")),
        )
    if "bucket" in terms and kind == ContractType.BUCKET:
        b = terms["bucket"]
        out["bucket"] = BucketTerms(
            size_seconds=int(b["size_seconds"]),
            low_balance_seconds=tuple(int(x) for x in b.get("low_balance_seconds", [36_000])),
            burn_bp={
                Condition[name]: _burn_factor(v, f"terms.bucket.burn_factors.{name}")
                for name, v in b.get("burn_factors", {}).items()
            },
            per_period=bool(b.get("per_period", False)),
            rollover_periods=int(b.get("rollover_periods", 0)),
        )
    if "recurring" in terms and kind == ContractType.RECURRING:
        r = terms["recurring"]
        out["recurring"] = RecurringTerms(
            base_fee=money.to_minor(r["base_fee"], "terms.recurring.base_fee"),
            unit_prices={
                unit: money.to_minor(v, f"terms.recurring.unit_prices.{unit}")
                for unit, v in r.get("unit_prices", {}).items()
            },
            included_seconds=int(r.get("included_seconds", 0)),
            prorate=bool(r.get("prorate", True)),
        )
    if "sla_credits" in terms:
        c = terms["sla_credits"]
        cap = c.get("cap")
        out["sla_credits"] = SlaCreditTerms(
            per_breach={
                p: money.to_minor(v, f"terms.sla_credits.per_breach.{p}")
                for p, v in c.get("per_breach", {}).items()
            },
            percent_bp=int(c.get("percent_bp", 0)),
            cap_per_period=None if cap is None else money.to_minor(cap, "terms.sla_credits.cap"),
        )
    return out


def milestone_id(row_id: int) -> str:
    """The domain id of stored milestone ``row_id`` (as invoice evidence cites it)."""
    return f"milestone:{row_id}"


def deliverable_id(row_id: int) -> str:
    """The domain id of stored deliverable ``row_id`` (as invoice evidence cites it)."""
    return f"deliverable:{row_id}"


def amendment_from_row(row: Mapping[str, Any], zone: ZoneInfo) -> Amendment:
    """The domain :class:`Amendment` of a stored ``contract_amendments`` row (``kind``,
    ``effective_at``, ``body``)."""
    body = _json(row["body"]) or {}
    effective = row.get("effective_on") or local_date(row["effective_at"], zone)
    kind = row["kind"]
    card = RateCard.from_json(body["rate_card"]) if kind == "RATE_CARD" else None
    seconds = int(body.get("seconds", 0)) if kind == "TOP_UP" else 0
    return Amendment(str(row["id"]), effective, card, seconds, str(body.get("note", "")))


def build_contract(
    row: Mapping[str, Any],
    calendar: Calendar,
    amendments: Sequence[Mapping[str, Any]],
    milestones: Sequence[Mapping[str, Any]],
    deliverables: Sequence[Mapping[str, Any]],
) -> Contract:
    """The domain contract of a stored ``contracts`` row.

    ``row`` carries the contract's columns (``terms`` and ``frozen_rate_card`` as dicts or JSON
    text). The frozen card of the row is version 1 (its SHA-256 is checked against
    ``frozen_rate_card_sha256``); each ``RATE_CARD`` amendment (in id order) adds the next
    version from its effective date and each ``TOP_UP`` adds bucket hours from its date.
    Milestone / deliverable rows (``id``, ``name``, ``amount_minor``, ``approved_at`` /
    ``signed_off_at``) become items dated by their local approval date. A ``DRAFT`` row (no
    frozen card) gives a ``DRAFT`` contract priced by ``row["frozen_rate_card"]`` when given.
    """
    kind = ContractType(row["contract_type"])
    money = currency_of(str(row["currency"]).strip())
    terms = _json(row.get("terms")) or {}
    zone = calendar.zone
    card_body = _json(row.get("frozen_rate_card"))
    if card_body is None:
        raise ConfigurationError(
            "contract.frozen_rate_card", None, f"contract {row['id']} has no rate card to price by"
        )
    card = RateCard.from_json(card_body)
    if card.currency != money.code:
        raise ConfigurationError(
            "contract.frozen_rate_card.currency", card.currency, f"differs from {money.code}"
        )
    start = row["starts_on"]
    contract = Contract(
        id=str(row["id"]),
        client_id=str(row["client_id"]),
        type=kind,
        calendar=calendar,
        start=start,
        rate_card=card,
        end=row.get("ends_on"),
        milestones=tuple(
            Milestone(
                milestone_id(m["id"]),
                m["name"],
                int(m["amount_minor"]),
                None if m.get("approved_at") is None else local_date(m["approved_at"], zone),
            )
            for m in sorted(milestones, key=lambda m: m["id"])
        ),
        deliverables=tuple(
            Deliverable(
                deliverable_id(d["id"]),
                d["name"],
                int(d["amount_minor"]),
                None if d.get("signed_off_at") is None else local_date(d["signed_off_at"], zone),
            )
            for d in sorted(deliverables, key=lambda d: d["id"])
        ),
        **_terms_objects(kind, money, terms),
    )
    status = ContractStatus(row.get("status", "DRAFT"))
    if status == ContractStatus.DRAFT:
        return contract
    digest = card.content_hash()
    stored = row.get("frozen_rate_card_sha256")
    if stored is not None and stored != digest:
        raise EffigateError(
            f"contract {row['id']}: frozen_rate_card_sha256 {stored} does not match its "
            f"frozen card ({digest})"
        )
    contract = replace(
        contract,
        status=ContractStatus.ACTIVE,
        versions=(RateCardVersion(1, start, card, digest),),
    )
    for a in sorted(amendments, key=lambda a: a["id"]):
        contract = contract.amend(amendment_from_row(a, zone))
    return replace(contract, status=status)


def contract_zone(row: Mapping[str, Any]) -> ZoneInfo:
    """The time zone of a ``contracts`` row."""
    return ZoneInfo(row["time_zone"])


def utc(instant: datetime) -> datetime:
    """An aware instant in UTC (naive values are refused)."""
    if instant.tzinfo is None:
        raise ConfigurationError("instant", instant.isoformat(), "is naive; give an aware datetime")
    return instant.astimezone(UTC)
