"""Invoices and their lines: what an invoice bills or credits (:class:`InvoiceLine`, each
citing its evidence), tax components and amounts, the :class:`Invoice` with its totals, and
lines as rows of :data:`~effigate_engine.billing.schemas.INVOICE_LINES`. Assembly is
:mod:`effigate_engine.billing.assembly`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import pyarrow as pa

from effigate_engine.billing.schemas import INVOICE_LINES
from effigate_engine.errors import BillingError
from effigate_engine.money import PARTS_PER_MILLION, currency
from effigate_engine.ratecard.periods import Period


class LineKind(StrEnum):
    """What an invoice line bills or credits."""

    TIME = "TIME"
    MILESTONE = "MILESTONE"
    DELIVERABLE = "DELIVERABLE"
    RECURRING_BASE = "RECURRING_BASE"
    RECURRING_UNITS = "RECURRING_UNITS"
    SLA_CREDIT = "SLA_CREDIT"
    CREDIT_BALANCE = "CREDIT_BALANCE"


#: Kinds that reduce the invoice (negative amounts), applied before tax.
CREDIT_KINDS = (LineKind.SLA_CREDIT, LineKind.CREDIT_BALANCE)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line. ``amount`` in minor units (negative for credits); ``quantity`` is billed
    seconds for time, a unit count (or, for a prorated change, the change in the count) for
    units, 1 otherwise; ``rate`` per hour or per unit. Recurring lines state their service
    period ``[service_start, service_end)`` in local dates (``None`` on other kinds)."""

    line_no: int
    kind: LineKind
    description: str
    amount: int
    quantity: int = 1
    rate: int | None = None
    condition: str | None = None
    support_level: str | None = None
    job_type: str | None = None
    taxable: bool = True
    rate_card_version: int | None = None
    rate_card_hash: str | None = None
    log_ids: tuple[str, ...] = ()
    breach_ids: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()
    service_start: date | None = None
    service_end: date | None = None


@dataclass(frozen=True, slots=True)
class TaxComponent:
    """A tax component: ``ppm`` parts per million (GST 10 % = 100,000; QST 9.975 % = 99,750)."""

    name: str
    ppm: int

    def __post_init__(self) -> None:
        if not 0 <= self.ppm <= PARTS_PER_MILLION:
            raise BillingError(f"tax[{self.name}].ppm", self.ppm, "is not 0..1,000,000")


@dataclass(frozen=True, slots=True)
class TaxLine:
    """A tax component's amount on the invoice's taxable base (minor units)."""

    name: str
    ppm: int
    base: int
    amount: int


@dataclass(frozen=True)
class Invoice:
    """An assembled invoice (a draft until issued by the store). Money in minor units."""

    contract_id: str
    period: Period
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: int
    credits_available: int
    credits_applied: int
    credit_balance_out: int
    taxable_base: int
    taxes: tuple[TaxLine, ...]
    total: int
    exemption: str | None = None
    settled_breach_ids: tuple[str, ...] = ()
    forfeited_breach_ids: tuple[str, ...] = field(default=())

    @property
    def charges(self) -> tuple[InvoiceLine, ...]:
        """The lines that bill (non-negative)."""
        return tuple(line for line in self.lines if line.kind not in CREDIT_KINDS)

    @property
    def credit_lines(self) -> tuple[InvoiceLine, ...]:
        """The credit lines (negative)."""
        return tuple(line for line in self.lines if line.kind in CREDIT_KINDS)

    @property
    def tax_total(self) -> int:
        return sum(t.amount for t in self.taxes)

    def format(self, heading: str | None = None) -> str:
        """A plain-text rendering: ``heading`` (by default the contract, period and currency),
        one line per invoice line, then the totals."""
        money = currency(self.currency)
        width = max([60, *(len(line.description) for line in self.lines)])
        title = f"{self.contract_id} {self.period.start}..{self.period.end} ({self.currency})"
        out = [title if heading is None else heading]

        def row(number: str, label: str, amount: int) -> None:
            out.append(f"{number:>3} {label:<{width}} {money.format(amount):>12}")

        for line in self.lines:
            row(str(line.line_no), line.description, line.amount)
        row("", "Subtotal", self.subtotal)
        if self.credits_applied:
            row("", "Credits applied", -self.credits_applied)
        for t in self.taxes:
            row("", f"Tax {t.name} ({t.ppm / 10_000:g}%)", t.amount)
        if self.exemption:
            row("", "Tax exempt: " + self.exemption, 0)
        row("", "Total", self.total)
        if self.credit_balance_out:
            row("", "Credit balance carried", self.credit_balance_out)
        return "\n".join(out)

    def to_arrow(self) -> pa.Table:
        """The lines as an Arrow table (:data:`~effigate_engine.billing.schemas.INVOICE_LINES`)."""
        rows = [line_row(self.contract_id, self.currency, line) for line in self.lines]
        return pa.Table.from_pylist(rows, schema=INVOICE_LINES)


def line_row(contract_id: str, currency_code: str, line: InvoiceLine) -> dict:
    """An invoice line as a row of :data:`~effigate_engine.billing.schemas.INVOICE_LINES`."""
    row = dict(zip(INVOICE_LINES.names, line_values(contract_id, currency_code, line), strict=True))
    for name in ("log_ids", "breach_ids", "item_ids"):
        row[name] = list(row[name])
    return row


def line_values(contract_id: str, currency_code: str, line: InvoiceLine) -> tuple:
    """An invoice line's values in the column order of
    :data:`~effigate_engine.billing.schemas.INVOICE_LINES` (evidence as tuples)."""
    return (
        line.line_no,
        contract_id,
        line.kind.value,
        line.description,
        line.condition,
        line.support_level,
        line.job_type,
        line.quantity,
        line.rate,
        line.amount,
        currency_code,
        line.taxable,
        line.rate_card_version,
        line.rate_card_hash,
        line.log_ids,
        line.breach_ids,
        line.item_ids,
        line.service_start,
        line.service_end,
    )


def line_from_row(row: Mapping) -> InvoiceLine:
    """The invoice line of a row of :data:`~effigate_engine.billing.schemas.INVOICE_LINES` (the
    inverse of :func:`line_row`)."""
    return InvoiceLine(
        row["line_no"],
        LineKind(row["kind"]),
        row["description"],
        row["amount"],
        row["quantity"],
        row["rate"],
        row["condition"],
        row["support_level"],
        row["job_type"],
        row["taxable"],
        row["rate_card_version"],
        row["rate_card_hash"],
        tuple(row["log_ids"]),
        tuple(row["breach_ids"]),
        tuple(row["item_ids"]),
        row.get("service_start"),
        row.get("service_end"),
    )


#: Two-digit minutes and seconds, ``"00"`` to ``"59"``.
