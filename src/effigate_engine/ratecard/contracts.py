"""Contracts: the five commercial models, their terms and their lifecycle.

``DRAFT → ACTIVE → (AMENDED …) → EXPIRED | TERMINATED``. Activation freezes the rate card: the
contract stores its own copy with a version number and the SHA-256 of its canonical JSON, so a
later edit of the rate-card library never changes an active contract, and every priced line can
cite the frozen version that priced it. Activation also locks the type. Amendments are records
with an effective date: a new rate card applies to work starting on or after that date (local
midnight in the contract's zone) and never re-prices earlier work; a top-up adds bucket hours
from its effective date, never backwards.

All money is integer minor units of the card's currency; all durations are seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum
from zoneinfo import ZoneInfo

from effigate_engine.calendar import Calendar
from effigate_engine.errors import ConfigurationError, LifecycleError
from effigate_engine.money import BASIS_POINTS, largest_remainder
from effigate_engine.priority import normalise_priority
from effigate_engine.ratecard.model import Condition, RateCard
from effigate_engine.ratecard.periods import BillingCycle, local_midnight

#: Conditions a bucket burn factor may name: the time conditions and ``HIGH_PRIORITY``.
BURN_CONDITIONS = (
    Condition.REGULAR,
    Condition.AFTER_HOURS,
    Condition.WEEKEND,
    Condition.HOLIDAY,
    Condition.HIGH_PRIORITY,
)


class ContractType(StrEnum):
    """The commercial model, locked at activation."""

    FIXED_PRICE = "FIXED_PRICE"
    HOURLY = "HOURLY"
    BUCKET = "BUCKET"
    SCOPE = "SCOPE"
    RECURRING = "RECURRING"


class ContractStatus(StrEnum):
    """Lifecycle state."""

    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    AMENDED = "AMENDED"
    EXPIRED = "EXPIRED"
    TERMINATED = "TERMINATED"


class OutOfScope(StrEnum):
    """What happens to a log whose support level or job type the contract does not allow."""

    REJECT = "REJECT"
    PRICE = "PRICE"


@dataclass(frozen=True, slots=True)
class Scope:
    """Allowed support levels and job types (``None`` = any) and the out-of-scope policy."""

    support_levels: frozenset[str] | None = None
    job_types: frozenset[str] | None = None
    out_of_scope: OutOfScope = OutOfScope.PRICE

    def allows(self, level: str, job_type: str) -> bool:
        """Whether a (support level, job type) pair is in scope."""
        return (self.support_levels is None or level in self.support_levels) and (
            self.job_types is None or job_type in self.job_types
        )


@dataclass(frozen=True, slots=True)
class Milestone:
    """A ``FIXED_PRICE`` milestone: ``amount`` minor units, invoiceable once approved."""

    id: str
    name: str
    amount: int
    approved_on: date | None = None


@dataclass(frozen=True, slots=True)
class Deliverable:
    """A ``SCOPE`` deliverable: ``amount`` minor units, invoiceable once signed off."""

    id: str
    name: str
    amount: int
    signed_off_on: date | None = None


@dataclass(frozen=True, slots=True)
class BucketTerms:
    """Prepaid hours. ``size_seconds`` is purchased at the start (or granted every period when
    ``per_period``; unused hours then roll over for ``rollover_periods`` periods, consumed
    oldest first, and at each period start the total carried in is capped at
    ``rollover_cap_seconds`` when set: the excess expires, oldest first).
    ``low_balance_seconds`` are alert thresholds on the remaining balance; ``burn_bp`` weights
    billed seconds per time condition (15,000 = after-hours burns 1.5×) and, under
    ``HIGH_PRIORITY``, a high-priority log's (one whose priority is among the card's
    ``high_priorities``): it burns at the higher of its condition's and the priority's factor."""

    size_seconds: int
    low_balance_seconds: tuple[int, ...] = (36_000,)
    burn_bp: Mapping[Condition, int] = field(default_factory=dict)
    per_period: bool = False
    rollover_periods: int = 0
    rollover_cap_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.size_seconds < 0:
            raise ConfigurationError("bucket.size_seconds", self.size_seconds, "is negative")
        burn: dict[Condition, int] = {}
        for key, bp in self.burn_bp.items():
            try:
                burn[Condition[key] if isinstance(key, str) else Condition(key)] = bp
            except (KeyError, ValueError):
                raise ConfigurationError("bucket.burn_bp", key, "is not a condition") from None
        object.__setattr__(self, "burn_bp", burn)
        for cond, bp in self.burn_bp.items():
            if Condition(cond) not in BURN_CONDITIONS:
                raise ConfigurationError(
                    "bucket.burn_bp",
                    Condition(cond).name,
                    "is not a time condition or HIGH_PRIORITY",
                )
            if not isinstance(bp, int) or isinstance(bp, bool) or bp <= 0:
                raise ConfigurationError(f"bucket.burn_bp[{cond}]", bp, "is not a positive bp")
        if self.rollover_periods < 0:
            raise ConfigurationError("bucket.rollover_periods", self.rollover_periods, "< 0")
        if self.rollover_cap_seconds is not None:
            if self.rollover_cap_seconds < 0:
                raise ConfigurationError(
                    "bucket.rollover_cap_seconds", self.rollover_cap_seconds, "is negative"
                )
            if not self.per_period:
                raise ConfigurationError(
                    "bucket.rollover_cap_seconds",
                    self.rollover_cap_seconds,
                    "needs a per-period bucket (per_period)",
                )

    def burn(self, cond: Condition) -> int:
        """Burn factor of a time condition in basis points (10,000 = 1×)."""
        return int(self.burn_bp.get(cond, 10_000))

    def priority_burn(self, cond: Condition) -> int:
        """Burn factor of a high-priority log's time in ``cond``: the higher of the
        condition's and the ``HIGH_PRIORITY`` factor (basis points)."""
        return max(self.burn(cond), int(self.burn_bp.get(Condition.HIGH_PRIORITY, 10_000)))


class BaseTiming(StrEnum):
    """When a recurring cycle's base fee is billed: on the invoice of the cycle before it
    (``ADVANCE``; the first invoice also carries the first cycle's) or on its own
    (``ARREARS``)."""

    ADVANCE = "advance"
    ARREARS = "arrears"


@dataclass(frozen=True, slots=True)
class RecurringTerms:
    """MRR: ``base_fee`` per cycle, billed in advance or in arrears (``base_timing``);
    ``unit_prices`` per unit type billed in arrears, on the count at the cycle's end or, with
    ``prorate_units``, prorated by days; ``prorate`` partial cycles' base fee by days.
    ``included_seconds`` of time per cycle (not prorated) draw the cycle's billable time and
    the rest is overage at ``ADDITIONAL_HOURS``; ``None`` bills the time as time and materials
    at the classified rates."""

    base_fee: int
    unit_prices: Mapping[str, int] = field(default_factory=dict)
    included_seconds: int | None = None
    prorate: bool = True
    base_timing: BaseTiming = BaseTiming.ADVANCE
    prorate_units: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_timing", BaseTiming(self.base_timing))
        if self.included_seconds is not None and self.included_seconds < 0:
            raise ConfigurationError(
                "recurring.included_seconds", self.included_seconds, "is negative"
            )


@dataclass(frozen=True, slots=True)
class SlaCreditTerms:
    """The deduction schedule, per breach by the ticket's priority: a fixed amount
    (``per_breach``, minor units) or a share of the covered service fee of the breach's cycle
    (``percent_per_priority``, basis points; recurring base and units, never time, overage or
    tax); ``percent_bp`` applies to priorities named in neither. Per invoice, credits are
    capped at ``cap_per_period`` (minor units) or ``cap_percent_bp`` of the invoice's covered
    fee: breaches are taken in (breached at, breach id) order, the one crossing the cap gets the
    remainder, later ones get no line."""

    per_breach: Mapping[str, int] = field(default_factory=dict)
    percent_bp: int = 0
    cap_per_period: int | None = None
    percent_per_priority: Mapping[str, int] = field(default_factory=dict)
    cap_percent_bp: int | None = None

    def __post_init__(self) -> None:
        both = {normalise_priority(p) for p in self.per_breach} & {
            normalise_priority(p) for p in self.percent_per_priority
        }
        if both:
            raise ConfigurationError(
                "sla_credits.percent_per_priority",
                sorted(both)[0],
                "also has a fixed per_breach amount; give one or the other",
            )
        if self.cap_per_period is not None and self.cap_percent_bp is not None:
            raise ConfigurationError(
                "sla_credits.cap_percent_bp", self.cap_percent_bp, "and cap are both set"
            )
        shares = {
            "sla_credits.percent_bp": self.percent_bp,
            "sla_credits.cap_percent_bp": self.cap_percent_bp,
            **{
                f"sla_credits.percent_per_priority[{p}]": v
                for p, v in self.percent_per_priority.items()
            },
        }
        for path, bp in shares.items():
            if bp is not None and not (_is_int(bp) and 0 <= bp <= BASIS_POINTS):
                raise ConfigurationError(path, bp, "is not a share of 0..10,000 basis points")
        amounts = {
            "sla_credits.cap_per_period": self.cap_per_period,
            **{f"sla_credits.per_breach[{p}]": v for p, v in self.per_breach.items()},
        }
        for path, amount in amounts.items():
            if amount is not None and not (_is_int(amount) and amount >= 0):
                raise ConfigurationError(path, amount, "is not a non-negative amount")


@dataclass(frozen=True, slots=True)
class RateCardVersion:
    """A frozen copy of a rate card: ``version`` (1 at activation), the SHA-256 ``content_hash``
    of its canonical JSON, and the local date from which it prices work."""

    version: int
    effective_from: date
    card: RateCard
    content_hash: str
    amendment_id: str | None = None


@dataclass(frozen=True, slots=True)
class TopUp:
    """Bucket hours added by an amendment, counting from ``effective`` (local date)."""

    amendment_id: str
    effective: date
    seconds: int


@dataclass(frozen=True, slots=True)
class Amendment:
    """An effective-dated change record: a new rate card and/or added bucket hours."""

    id: str
    effective: date
    rate_card: RateCard | None = None
    add_seconds: int = 0
    note: str = ""


@dataclass(frozen=True)
class Contract:
    """A client contract. Build it in ``DRAFT``, then :meth:`activate`."""

    id: str
    client_id: str
    type: ContractType
    calendar: Calendar
    start: date
    rate_card: RateCard
    end: date | None = None
    anchor_day: int | None = None
    scope: Scope = Scope()
    milestones: tuple[Milestone, ...] = ()
    deliverables: tuple[Deliverable, ...] = ()
    bucket: BucketTerms | None = None
    recurring: RecurringTerms | None = None
    sla_credits: SlaCreditTerms | None = None
    status: ContractStatus = ContractStatus.DRAFT
    versions: tuple[RateCardVersion, ...] = ()
    amendments: tuple[Amendment, ...] = ()
    top_ups: tuple[TopUp, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", ContractType(self.type))
        if self.type == ContractType.BUCKET and self.bucket is None:
            raise ConfigurationError("bucket", None, "is required for a BUCKET contract")
        if self.type == ContractType.RECURRING and self.recurring is None:
            raise ConfigurationError("recurring", None, "is required for a RECURRING contract")
        if self.end is not None and self.end <= self.start:
            raise ConfigurationError("end", self.end.isoformat(), "is not after the start")
        if self.sla_credits is not None:
            for prio in self.sla_credits.per_breach:
                normalise_priority(prio)

    # Derived --------------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The contract's time zone: its calendar's."""
        return self.calendar.zone

    @property
    def currency(self) -> str:
        """ISO-4217 code every amount of the contract is in."""
        return self.rate_card.currency

    @property
    def cycle(self) -> BillingCycle:
        """The monthly billing cycle, anchored on ``anchor_day`` (default: the start day)."""
        return BillingCycle(self.start, self.anchor_day or self.start.day)

    @property
    def is_active(self) -> bool:
        return self.status in (ContractStatus.ACTIVE, ContractStatus.AMENDED)

    def version_at(self, day: date) -> RateCardVersion:
        """The frozen rate card that prices work starting on local date ``day``."""
        if not self.versions:
            raise LifecycleError("contract.status", self.status, "has no frozen rate card yet")
        chosen = self.versions[0]
        for v in self.versions:
            if v.effective_from <= day:
                chosen = v
        return chosen

    def version_starts(self) -> list[int]:
        """Epoch seconds from which each frozen version prices work (local midnights)."""
        return [local_midnight(v.effective_from, self.zone) for v in self.versions]

    # Lifecycle ------------------------------------------------------------------------------

    def activate(self) -> Contract:
        """Freeze the rate card (version 1 + content hash) and lock the type."""
        if self.status != ContractStatus.DRAFT:
            raise LifecycleError("contract.status", self.status, "is not DRAFT; cannot activate")
        if self.type == ContractType.FIXED_PRICE and not self.milestones:
            raise ConfigurationError("milestones", (), "are required for a FIXED_PRICE contract")
        if self.type == ContractType.SCOPE and not self.deliverables:
            raise ConfigurationError("deliverables", (), "are required for a SCOPE contract")
        frozen = freeze(self.rate_card)
        version = RateCardVersion(1, self.start, frozen, frozen.content_hash())
        return replace(self, rate_card=frozen, status=ContractStatus.ACTIVE, versions=(version,))

    def with_type(self, contract_type: ContractType) -> Contract:
        """Change the commercial model: only while ``DRAFT``."""
        if self.status != ContractStatus.DRAFT:
            raise LifecycleError("contract.type", self.type, "is locked at activation")
        return replace(self, type=ContractType(contract_type))

    def amend(self, amendment: Amendment) -> Contract:
        """Record an amendment. A new rate card becomes the next frozen version from
        ``amendment.effective``; added hours become a top-up from that date."""
        if not self.is_active:
            raise LifecycleError("contract.status", self.status, "is not active; cannot amend")
        if amendment.effective < self.start:
            raise ConfigurationError(
                "amendment.effective", amendment.effective.isoformat(), "is before the start"
            )
        if any(a.id == amendment.id for a in self.amendments):
            return self  # an amendment is recorded once, by id
        versions = self.versions
        if amendment.rate_card is not None:
            if amendment.rate_card.currency != self.currency:
                raise ConfigurationError(
                    "amendment.rate_card.currency",
                    amendment.rate_card.currency,
                    f"differs from the contract's {self.currency}",
                )
            frozen = freeze(amendment.rate_card)
            versions = tuple(
                sorted(
                    (
                        *versions,
                        RateCardVersion(
                            len(versions) + 1,
                            amendment.effective,
                            frozen,
                            frozen.content_hash(),
                            amendment.id,
                        ),
                    ),
                    key=lambda v: (v.effective_from, v.version),
                )
            )
        top_ups = self.top_ups
        if amendment.add_seconds:
            if self.bucket is None:
                raise ConfigurationError(
                    "amendment.add_seconds", amendment.add_seconds, "needs a bucket contract"
                )
            if amendment.add_seconds < 0:
                raise ConfigurationError("amendment.add_seconds", amendment.add_seconds, "< 0")
            top_ups = (*top_ups, TopUp(amendment.id, amendment.effective, amendment.add_seconds))
        return replace(
            self,
            status=ContractStatus.AMENDED,
            versions=versions,
            amendments=(*self.amendments, amendment),
            top_ups=top_ups,
        )

    def terminate(self, on: date) -> Contract:
        """End the contract on local date ``on`` (exclusive)."""
        if not self.is_active:
            raise LifecycleError("contract.status", self.status, "is not active")
        return replace(self, status=ContractStatus.TERMINATED, end=on)

    def expire(self) -> Contract:
        """Mark an active contract expired at its end date."""
        if not self.is_active or self.end is None:
            raise LifecycleError("contract.status", self.status, "cannot expire without an end")
        return replace(self, status=ContractStatus.EXPIRED)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def freeze(card: RateCard) -> RateCard:
    """An independent copy of a card (its mappings copied), immune to edits of the original."""
    return replace(card, base_rates=dict(card.base_rates), rules=dict(card.rules))


def split_milestones(
    total: int, names: Sequence[str], weights: Sequence[int] | None = None, prefix: str = "M"
) -> tuple[Milestone, ...]:
    """Milestones sharing ``total`` minor units by ``weights`` (equal by default), by largest
    remainder, ties to the earlier milestone: $10,000 in three is 3,333.34 + 3,333.33 +
    3,333.33."""
    shares = largest_remainder(total, list(weights) if weights else [1] * len(names))
    return tuple(
        Milestone(f"{prefix}{i + 1}", name, amount)
        for i, (name, amount) in enumerate(zip(names, shares, strict=True))
    )
