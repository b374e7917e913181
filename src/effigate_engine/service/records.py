"""Records the billing operations return: plain frozen values read back from the store.

Units are in the field names: money in integer minor units of the record's currency
(``*_minor``), rates in minor units per hour (``*_minor_per_hour``), durations in whole seconds
(``*_seconds``), tax rates in parts per million (``*_ppm``). Instants are timezone-aware
``datetime`` values (UTC as the database returns them); local dates are ``date``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from effigate_engine.money import currency as _currency
from effigate_engine.store.bulk import IngestResult


@dataclass(frozen=True)
class RateCardVersionRecord:
    """A published, immutable version of a library rate card. ``body`` is the card's canonical
    JSON (:meth:`RateCard.to_json`, rates in minor units per hour); ``content_sha256`` is
    :meth:`RateCard.content_hash` of it."""

    rate_card_id: int
    version: int
    currency: str
    content_sha256: str
    body: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class ContractRecord:
    """A stored contract. ``terms`` is the normalised terms JSON (``docs/contract-terms.md``);
    the ``frozen_rate_card*`` fields are the copy taken at activation (``None`` while
    ``DRAFT``): the library version it was copied from and the SHA-256 of its content."""

    id: int
    client_id: int
    contract_type: str
    status: str
    currency: str
    time_zone: str
    starts_on: date
    ends_on: date | None
    calendar_id: int | None
    sla_policy_id: int | None
    rate_card_id: int | None
    frozen_rate_card_version: int | None
    frozen_rate_card_sha256: str | None
    activated_at: datetime | None
    terms: dict[str, Any]
    frozen_rate_card: dict[str, Any] | None = None


@dataclass(frozen=True)
class PeriodRecord:
    """A billing period of a contract: local dates ``[starts_on, ends_on)`` in the contract's
    zone, the same span as instants ``[starts_at, ends_at)``; ``ordinal`` counts from the
    contract's first period (0). ``id`` is ``None`` for a period not stored yet (never closed
    nor invoiced)."""

    id: int | None
    contract_id: int
    ordinal: int
    starts_on: date
    ends_on: date
    starts_at: datetime
    ends_at: datetime
    status: str
    closed_at: datetime | None = None


@dataclass(frozen=True)
class InvoiceLineRecord:
    """A stored invoice line. ``amount_minor`` is negative for credits; ``billed_seconds`` and
    ``actual_seconds`` are set for time lines (``actual_seconds`` ``None`` where a bucket
    drawdown re-weights the time); ``rate_card_version`` is the contract's frozen version (1 =
    the card frozen at activation, then one per rate-card amendment). ``time_log_ids`` are the
    logs the line prices; ``evidence`` holds the rest (breach ids, milestone / deliverable
    ids, unit counts, the card's SHA-256, whether the line is taxable, credit carried)."""

    id: int
    position: int
    kind: str
    description: str
    time_condition: str | None
    support_level: str | None
    job_type: str | None
    rate_minor_per_hour: int | None
    rate_card_version: int | None
    actual_seconds: int | None
    billed_seconds: int | None
    amount_minor: int
    time_log_ids: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def taxable(self) -> bool:
        """Whether the line is in the taxable base (time, fees, units: yes by default)."""
        return bool(self.evidence.get("taxable", True))


@dataclass(frozen=True)
class TaxRecord:
    """A tax component of an invoice: ``rate_ppm`` on ``base_minor``, rounded half-up once."""

    name: str
    rate_ppm: int
    base_minor: int
    amount_minor: int


@dataclass(frozen=True)
class InvoiceRecord:
    """A stored invoice. ``subtotal_minor`` is the sum of all its lines (charges less the
    credits applied), so ``total_minor = subtotal_minor + tax_minor``; ``charges_minor`` and
    ``credits_minor`` (positive) split it. ``number`` is ``None`` until issued (assigned by the
    database, gap-free per tenant). ``credit_balance_minor`` is the credit carried out to the
    contract's next invoice; ``paid_minor`` / ``credited_minor`` sum payments and credit
    notes."""

    id: int
    contract_id: int
    client_id: int
    billing_period_id: int | None
    period_start: date
    period_end: date
    status: str
    number: int | None
    currency: str
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    issued_at: datetime | None
    due_at: datetime | None
    created_at: datetime | None
    lines: tuple[InvoiceLineRecord, ...] = ()
    taxes: tuple[TaxRecord, ...] = ()
    charges_minor: int = 0
    credits_minor: int = 0
    credit_balance_minor: int = 0
    paid_minor: int = 0
    credited_minor: int = 0
    exemption: str | None = None

    @property
    def balance_due_minor(self) -> int:
        """What is still owed: total less payments and credit notes (0 once settled)."""
        return max(0, self.total_minor - self.paid_minor - self.credited_minor)

    @property
    def text(self) -> str:
        """The invoice laid out as plain text (one line per invoice line, then the totals)."""
        money = _currency(self.currency)
        head = f"#{self.number}" if self.number is not None else f"draft {self.id}"
        out = [
            f"Invoice {head} contract {self.contract_id} {self.period_start}..{self.period_end}"
            f" ({self.currency}, {self.status})"
        ]
        for line in self.lines:
            out.append(
                f"{line.position:>3} {line.description:<60} {money.format(line.amount_minor):>12}"
            )
        out.append(f"{'':>3} {'Subtotal':<60} {money.format(self.subtotal_minor):>12}")
        for t in self.taxes:
            label = f"Tax {t.name} ({t.rate_ppm / 10_000:g}%)"
            out.append(f"{'':>3} {label:<60} {money.format(t.amount_minor):>12}")
        if self.exemption:
            out.append(f"{'':>3} {'Tax exempt: ' + self.exemption:<60} {money.format(0):>12}")
        out.append(f"{'':>3} {'Total':<60} {money.format(self.total_minor):>12}")
        if self.credit_balance_minor:
            out.append(
                f"{'':>3} {'Credit balance carried':<60} "
                f"{money.format(self.credit_balance_minor):>12}"
            )
        return "\n".join(out)


@dataclass(frozen=True)
class CreditNoteLineRecord:
    """The amount (minor units, positive) a credit note credits on one invoice line."""

    invoice_line_id: int
    amount_minor: int


@dataclass(frozen=True)
class CreditNoteRecord:
    """A credit note against an issued invoice: ``total_minor = subtotal_minor + tax_minor``;
    its tax is the tax on the cumulative credited taxable amount less the earlier notes'."""

    id: int
    invoice_id: int
    reason: str
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    issued_at: datetime
    lines: tuple[CreditNoteLineRecord, ...] = ()


@dataclass(frozen=True)
class BucketAlertRecord:
    """A low-balance threshold crossed by the work of ``time_log_id`` starting at ``at``;
    ``balance_seconds`` is the (burn-weighted) balance just after."""

    threshold_seconds: int
    balance_seconds: int
    at: datetime
    time_log_id: str


@dataclass(frozen=True)
class BucketBalance:
    """A prepaid bucket's position at instant ``at``, from its approved time logs. Seconds are
    burn-weighted; ``burned + remaining + expired = purchased + top_up``. ``overage_seconds`` is
    work beyond the balance (billed as additional hours); ``invoiced_drawdown_seconds`` is what
    issued invoices drew down (the bucket ledger); ``alerts`` are the low-balance thresholds
    crossed so far, once per crossing."""

    contract_id: int
    at: datetime
    purchased_seconds: int
    top_up_seconds: int
    burned_seconds: int
    remaining_seconds: int
    expired_seconds: int
    overage_seconds: int
    invoiced_drawdown_seconds: int
    low_balance_thresholds_seconds: tuple[int, ...]
    alerts: tuple[BucketAlertRecord, ...] = ()

    @property
    def low_balance(self) -> bool:
        """True when the remaining balance is at or below any low-balance threshold."""
        return any(self.remaining_seconds <= t for t in self.low_balance_thresholds_seconds)


__all__ = [
    "BucketAlertRecord",
    "BucketBalance",
    "ContractRecord",
    "CreditNoteLineRecord",
    "CreditNoteRecord",
    "IngestResult",
    "InvoiceLineRecord",
    "InvoiceRecord",
    "PeriodRecord",
    "RateCardVersionRecord",
    "TaxRecord",
]
