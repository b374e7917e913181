"""The contract-terms JSON codec (``docs/contract-terms.md``) and the stored-row → domain
:class:`~effigate_engine.ratecard.contracts.Contract` builder.

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
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from effigate_engine.billing.invoice import TaxComponent
from effigate_engine.billing.rate_card_json import (
    decimal_number,
    json_object,
    known_keys,
    priority_key,
    whole_number,
)
from effigate_engine.calendar import Calendar
from effigate_engine.errors import ConfigurationError, EffigateError
from effigate_engine.money import BASIS_POINTS, PARTS_PER_MILLION, Currency
from effigate_engine.money import currency as currency_of
from effigate_engine.priority import PriorityError
from effigate_engine.ratecard.contracts import (
    BURN_CONDITIONS,
    Amendment,
    BaseTiming,
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
from effigate_engine.ratecard.model import Condition, RateCard
from effigate_engine.zone import zone as bundled_zone

SECONDS_PER_HOUR = 3_600
_TOP_KEYS = {"anchor_day", "scope", "bucket", "recurring", "sla_credits", "tax", "tax_exemption"}

#: Amendment kinds :func:`build_contract` understands.
AMENDMENT_KINDS = ("RATE_CARD", "TOP_UP", "NOTE")


# Scalars ------------------------------------------------------------------------------------


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(path, value, "is not true/false")
    return value


def _money(obj: Mapping[str, Any], name: str, money: Currency, path: str) -> int | None:
    """Minor units of ``obj[name]`` (decimal string, major units) or ``obj[name_minor]``."""
    minor_key = f"{name}_minor"
    if name in obj and minor_key in obj:
        raise ConfigurationError(f"{path}.{name}", obj[name], f"and {minor_key} are both given")
    if minor_key in obj:
        return whole_number(obj[minor_key], f"{path}.{minor_key}")
    if name in obj:
        return _money_value(obj[name], money, f"{path}.{name}")
    return None


def _money_value(value: Any, money: Currency, path: str) -> int:
    """Minor units of a decimal-string amount in major units (an int is major units too)."""
    decimal_number(value, path)  # a finite number >= 0 of sane size, never a float
    return money.to_minor(value, path)


def hours_to_seconds(value: Any, path: str) -> int:
    """Whole seconds of a number of hours (integer or decimal string; ``"1.5"`` → 5,400)."""
    seconds = decimal_number(value, path) * SECONDS_PER_HOUR
    if seconds != seconds.to_integral_value():
        raise ConfigurationError(path, value, "is not a whole number of seconds")
    return int(seconds)


def _duration(obj: Mapping[str, Any], stem: str, path: str) -> int | None:
    """Seconds of ``obj[stem_hours]`` (hours) or ``obj[stem_seconds]``."""
    hours, seconds = f"{stem}_hours", f"{stem}_seconds"
    if hours in obj and seconds in obj:
        raise ConfigurationError(f"{path}.{hours}", obj[hours], f"and {seconds} are both given")
    if seconds in obj:
        return whole_number(obj[seconds], f"{path}.{seconds}")
    if hours in obj:
        return hours_to_seconds(obj[hours], f"{path}.{hours}")
    return None


def _durations(obj: Mapping[str, Any], stem: str, path: str) -> list[int] | None:
    hours, seconds = f"{stem}_hours", f"{stem}_seconds"
    if hours in obj and seconds in obj:
        raise ConfigurationError(f"{path}.{hours}", obj[hours], f"and {seconds} are both given")
    for key, convert in (
        (seconds, lambda v, p: whole_number(v, p)),
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
    bp = decimal_number(value, path) * BASIS_POINTS
    if bp != bp.to_integral_value() or bp <= 0:
        raise ConfigurationError(path, value, "is not a positive factor in whole basis points")
    return int(bp)


def _format_factor(bp: int) -> str:
    return format((Decimal(bp) / BASIS_POINTS).normalize(), "f")


# Terms --------------------------------------------------------------------------------------


def validate_terms(contract_type: str, currency: str, terms: dict[str, Any]) -> dict[str, Any]:
    """Validate a contract's terms JSON for its type and currency and return it normalised.

    Money comes back as canonical decimal strings in major units, durations as whole seconds
    (``*_seconds``), lists sorted; every key of a section is written, optional ones without a
    value as ``null`` (a key given as ``null`` is the key absent). Raises
    :class:`ConfigurationError` (an :class:`~effigate_engine.errors.EffigateError`) naming the
    path and the value, e.g. ``terms.bucket.size_hours``.
    """
    try:
        kind = ContractType(contract_type)
    except ValueError:
        raise ConfigurationError(
            "contract_type", contract_type, f"is not one of {[t.value for t in ContractType]}"
        ) from None
    money = currency_of(currency)
    terms = _section(terms if terms is not None else {}, _TOP_KEYS, "terms")
    out: dict[str, Any] = {}

    if "anchor_day" in terms:
        out["anchor_day"] = whole_number(terms["anchor_day"], "terms.anchor_day", low=1, high=31)
    if "scope" in terms:
        out["scope"] = _scope(terms["scope"])
    if "bucket" in terms:
        if kind != ContractType.BUCKET:
            raise ConfigurationError("terms.bucket", terms["bucket"], f"is for BUCKET, not {kind}")
        out["bucket"] = _bucket(terms["bucket"])
    elif kind == ContractType.BUCKET:
        raise ConfigurationError("terms.bucket", None, "is required for a BUCKET contract")
    if "recurring" in terms:
        if kind != ContractType.RECURRING:
            raise ConfigurationError(
                "terms.recurring", terms["recurring"], f"is for RECURRING, not {kind}"
            )
        out["recurring"] = _recurring(terms["recurring"], money)
    elif kind == ContractType.RECURRING:
        raise ConfigurationError("terms.recurring", None, "is required for a RECURRING contract")
    if "sla_credits" in terms:
        out["sla_credits"] = _sla_credits(terms["sla_credits"], kind, money)
    if "tax" in terms:
        out["tax"] = validate_tax(terms["tax"], "terms.tax")
    if "tax_exemption" in terms:
        reason = terms["tax_exemption"]
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigurationError("terms.tax_exemption", reason, "is not a non-empty reason")
        out["tax_exemption"] = reason.strip()
    _terms_objects(kind, money, out)  # the domain's own checks: valid terms always build
    return out


def _section(value: Any, allowed: set[str], path: str) -> dict[str, Any]:
    """A terms object with only known keys, its ``null`` values dropped (null = absent)."""
    obj = json_object(value, path)
    known_keys(obj, allowed, path)
    return {k: v for k, v in obj.items() if v is not None}


def _scope(value: Any) -> dict[str, Any]:
    raw = _section(value, {"support_levels", "job_types", "out_of_scope"}, "terms.scope")
    scope: dict[str, Any] = {}
    for key in ("support_levels", "job_types"):
        if key in raw:
            scope[key] = _strings(raw[key], f"terms.scope.{key}")
    policy = raw.get("out_of_scope", OutOfScope.PRICE.value)
    if policy not in {p.value for p in OutOfScope}:
        raise ConfigurationError("terms.scope.out_of_scope", policy, "is not PRICE or REJECT")
    scope["out_of_scope"] = policy
    return scope


_BUCKET_KEYS = {
    "size_hours",
    "size_seconds",
    "low_balance_hours",
    "low_balance_seconds",
    "burn_factors",
    "per_period",
    "rollover_periods",
    "rollover_cap_hours",
    "rollover_cap_seconds",
}


def _bucket(value: Any) -> dict[str, Any]:
    path = "terms.bucket"
    raw = _section(value, _BUCKET_KEYS, path)
    size = _duration(raw, "size", path)
    if size is None:
        raise ConfigurationError(f"{path}.size_hours", None, "is required")
    low = _durations(raw, "low_balance", path)
    burn: dict[str, str] = {}
    for name, factor in json_object(raw.get("burn_factors", {}), f"{path}.burn_factors").items():
        if Condition.__members__.get(name) not in BURN_CONDITIONS:
            raise ConfigurationError(
                f"{path}.burn_factors.{name}",
                factor,
                "is not a time condition (REGULAR, AFTER_HOURS, WEEKEND, HOLIDAY) or HIGH_PRIORITY",
            )
        burn[name] = _format_factor(_burn_factor(factor, f"{path}.burn_factors.{name}"))
    per_period = _bool(raw.get("per_period", False), f"{path}.per_period")
    cap = _duration(raw, "rollover_cap", path)
    if cap is not None and not per_period:
        key = "rollover_cap_hours" if "rollover_cap_hours" in raw else "rollover_cap_seconds"
        raise ConfigurationError(
            f"{path}.{key}", raw[key], "needs a per-period bucket (per_period: true)"
        )
    return {
        "size_seconds": size,
        "low_balance_seconds": low if low is not None else [36_000],
        "burn_factors": dict(sorted(burn.items())),
        "per_period": per_period,
        "rollover_periods": whole_number(
            raw.get("rollover_periods", 0), f"{path}.rollover_periods"
        ),
        "rollover_cap_seconds": cap,
    }


_RECURRING_KEYS = {
    "base_fee",
    "base_fee_minor",
    "unit_prices",
    "included_hours",
    "included_seconds",
    "prorate",
    "base_timing",
    "prorate_units",
}


def _recurring(value: Any, money: Currency) -> dict[str, Any]:
    path = "terms.recurring"
    raw = _section(value, _RECURRING_KEYS, path)
    fee = _money(raw, "base_fee", money, path)
    if fee is None:
        raise ConfigurationError(f"{path}.base_fee", None, "is required")
    prices = {
        unit: money.format(_money_value(v, money, f"{path}.unit_prices.{unit}"))
        for unit, v in json_object(raw.get("unit_prices", {}), f"{path}.unit_prices").items()
    }
    timing = raw.get("base_timing", BaseTiming.ADVANCE.value)
    if timing not in {t.value for t in BaseTiming}:
        raise ConfigurationError(f"{path}.base_timing", timing, "is not 'advance' or 'arrears'")
    return {
        "base_fee": money.format(fee),
        "unit_prices": dict(sorted(prices.items())),
        # None: no allowance, the cycle's time is time and materials; 0 is an empty allowance.
        "included_seconds": _duration(raw, "included", path),
        "prorate": _bool(raw.get("prorate", True), f"{path}.prorate"),
        "base_timing": timing,
        "prorate_units": _bool(raw.get("prorate_units", False), f"{path}.prorate_units"),
    }


_SLA_CREDIT_KEYS = {
    "per_breach",
    "percent_per_priority",
    "percent_bp",
    "cap",
    "cap_minor",
    "cap_percent_bp",
}


def _sla_credits(value: Any, kind: ContractType, money: Currency) -> dict[str, Any]:
    path = "terms.sla_credits"
    raw = _section(value, _SLA_CREDIT_KEYS, path)
    per_breach: dict[str, str] = {}
    for prio, amount in json_object(raw.get("per_breach", {}), f"{path}.per_breach").items():
        name = priority_key(prio, f"{path}.per_breach.{prio}")
        per_breach[name] = money.format(_money_value(amount, money, f"{path}.per_breach.{prio}"))
    percent: dict[str, int] = {}
    where = f"{path}.percent_per_priority"
    for prio, bp in json_object(raw.get("percent_per_priority", {}), where).items():
        name = priority_key(prio, f"{where}.{prio}")
        if name in per_breach:
            raise ConfigurationError(
                f"{where}.{prio}", bp, f"{name} also has a fixed per_breach amount; give one"
            )
        if name in percent:
            raise ConfigurationError(f"{where}.{prio}", bp, f"{name} is given twice")
        percent[name] = whole_number(bp, f"{where}.{prio}", high=BASIS_POINTS)
    cap = _money(raw, "cap", money, path)
    cap_bp = raw.get("cap_percent_bp")
    if cap_bp is not None:
        cap_bp = whole_number(cap_bp, f"{path}.cap_percent_bp", high=BASIS_POINTS)
        if cap is not None:
            raise ConfigurationError(
                f"{path}.cap_percent_bp", cap_bp, "and cap are both given; give one"
            )
    percent_bp = whole_number(raw.get("percent_bp", 0), f"{path}.percent_bp", high=BASIS_POINTS)
    if kind != ContractType.RECURRING:
        # A percent is of the recurring covered fee: on any other contract it is always zero.
        for key, given in (
            ("percent_per_priority", bool(percent)),
            ("percent_bp", percent_bp > 0),
            ("cap_percent_bp", cap_bp is not None),
        ):
            if given:
                raise ConfigurationError(
                    f"{path}.{key}",
                    raw[key],
                    f"is a share of the covered recurring fee, which a {kind} contract has not",
                )
    return {
        "per_breach": dict(sorted(per_breach.items())),
        "percent_per_priority": dict(sorted(percent.items())),
        "percent_bp": percent_bp,
        "cap": None if cap is None else money.format(cap),
        "cap_percent_bp": cap_bp,
    }


def validate_tax(value: Any, path: str = "tax") -> list[dict[str, Any]]:
    """A list of tax components ``{"name": str, "rate_ppm": int}`` (parts per million)."""
    if not isinstance(value, list):
        raise ConfigurationError(path, value, "is not a list of {name, rate_ppm}")
    out = []
    for i, raw in enumerate(value):
        item = json_object(raw, f"{path}[{i}]")
        known_keys(item, {"name", "rate_ppm"}, f"{path}[{i}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{path}[{i}].name", name, "is not a non-empty string")
        rate = whole_number(item.get("rate_ppm"), f"{path}[{i}].rate_ppm", high=PARTS_PER_MILLION)
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
    """Keyword arguments of :class:`Contract` from normalised terms; an error names its path
    under ``terms.``. A key stored before it existed takes its default: a stored
    ``included_seconds: 0`` stays an empty allowance, an absent or ``null`` one is time and
    materials."""
    try:
        return _domain_terms(kind, money, terms)
    except (ConfigurationError, PriorityError) as exc:
        raise ConfigurationError(f"terms.{exc.field}", exc.value, exc.problem) from None


def _domain_terms(kind: ContractType, money: Currency, terms: Mapping[str, Any]) -> dict[str, Any]:
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
        cap = b.get("rollover_cap_seconds")
        out["bucket"] = BucketTerms(
            size_seconds=int(b["size_seconds"]),
            low_balance_seconds=tuple(int(x) for x in b.get("low_balance_seconds", [36_000])),
            burn_bp={
                Condition[name]: _burn_factor(v, f"bucket.burn_factors.{name}")
                for name, v in b.get("burn_factors", {}).items()
            },
            per_period=bool(b.get("per_period", False)),
            rollover_periods=int(b.get("rollover_periods", 0)),
            rollover_cap_seconds=None if cap is None else int(cap),
        )
    if "recurring" in terms and kind == ContractType.RECURRING:
        r = terms["recurring"]
        included = r.get("included_seconds")
        out["recurring"] = RecurringTerms(
            base_fee=money.to_minor(r["base_fee"], "recurring.base_fee"),
            unit_prices={
                unit: money.to_minor(v, f"recurring.unit_prices.{unit}")
                for unit, v in r.get("unit_prices", {}).items()
            },
            included_seconds=None if included is None else int(included),
            prorate=bool(r.get("prorate", True)),
            base_timing=BaseTiming(r.get("base_timing", BaseTiming.ADVANCE.value)),
            prorate_units=bool(r.get("prorate_units", False)),
        )
    if "sla_credits" in terms:
        c = terms["sla_credits"]
        cap = c.get("cap")
        cap_bp = c.get("cap_percent_bp")
        out["sla_credits"] = SlaCreditTerms(
            per_breach={
                p: money.to_minor(v, f"sla_credits.per_breach.{p}")
                for p, v in c.get("per_breach", {}).items()
            },
            percent_bp=int(c.get("percent_bp", 0)),
            cap_per_period=None if cap is None else money.to_minor(cap, "sla_credits.cap"),
            percent_per_priority={
                p: int(bp) for p, bp in c.get("percent_per_priority", {}).items()
            },
            cap_percent_bp=None if cap_bp is None else int(cap_bp),
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
    return bundled_zone(row["time_zone"])


def utc(instant: datetime) -> datetime:
    """An aware instant in UTC (naive values are refused)."""
    if instant.tzinfo is None:
        raise ConfigurationError("instant", instant.isoformat(), "is naive; give an aware datetime")
    return instant.astimezone(UTC)
