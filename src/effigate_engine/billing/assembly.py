"""Invoice assembly: pure functions from a contract, a period and its evidence to an invoice.

Lines (``DESIGN.md`` §6), each citing its evidence:

* time lines from a classification (grouped by condition, support level, job type, rate and
  frozen rate-card version; ``amount = round_half_up(billed_seconds × rate / 3600)``), with the
  ids of the logs they price;
* approved milestones (``FIXED_PRICE``) and signed-off deliverables (``SCOPE``) not invoiced
  before;
* recurring: the base fee in advance (the next cycle's, and the first cycle's too on the first
  invoice) or in arrears (the invoiced cycle's own), prorated by days when the contract starts
  off-anchor or ends mid-cycle; units in arrears for the invoiced cycle, at the count in force
  at its end or, with unit proration, the opening count for its active days plus one line per
  change from its date; every recurring line states its service period; included-hours
  overage arrives as time lines;
* SLA credits from breach records: a fixed amount per breach by priority, or a percentage of
  the covered fee of the breach's cycle (its recurring base fee and unit lines, never time,
  overage or tax); once per breach id; capped per invoice by an amount or a percentage of the
  invoiced cycle's covered fee, the cap taking breaches in (breach time, breach id) order.

Totals: ``subtotal`` = Σ charge lines; credits (SLA credits plus a credit balance carried in)
are applied before tax up to the subtotal, the excess carried out as a credit balance, so a
total is never negative; tax components (parts per million) apply to the taxable subtotal less
the applied credits, each rounded half-up once per invoice;
``total = subtotal − credits_applied + tax``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import NamedTuple

import pyarrow as pa

from effigate_engine.billing.invoice import (
    CREDIT_KINDS,
    Invoice,
    InvoiceLine,
    LineKind,
    TaxComponent,
    TaxLine,
)
from effigate_engine.billing.recurring import cycle_covered_fee, recurring_lines
from effigate_engine.billing.sla_credits import sla_credit_lines
from effigate_engine.billing.time_lines import time_lines
from effigate_engine.billing.units import UnitCount
from effigate_engine.errors import BillingError
from effigate_engine.money import apply_ppm
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.periods import Period


def item_lines(
    contract: Contract, period: Period, invoiced: Iterable[str] = ()
) -> list[InvoiceLine]:
    """Approved milestones and signed-off deliverables up to the period's end not invoiced
    before (a late approval lands on the first open invoice)."""
    done = set(invoiced)
    out = []
    for m in contract.milestones:
        if m.approved_on is not None and m.approved_on < period.end and m.id not in done:
            out.append(
                InvoiceLine(
                    0, LineKind.MILESTONE, f"Milestone {m.name}", m.amount, item_ids=(m.id,)
                )
            )
    for d in contract.deliverables:
        if d.signed_off_on is not None and d.signed_off_on < period.end and d.id not in done:
            out.append(
                InvoiceLine(
                    0, LineKind.DELIVERABLE, f"Deliverable {d.name}", d.amount, item_ids=(d.id,)
                )
            )
    return out


def assemble_invoice(
    contract: Contract,
    period: Period,
    *,
    classification: Classification | None = None,
    unit_counts: Mapping[str, UnitCount] | None = None,
    breaches: pa.Table | None = None,
    already_credited: Iterable[str] = (),
    invoiced_items: Iterable[str] = (),
    tax: Sequence[TaxComponent] = (),
    exemption: str | None = None,
    credit_balance: int = 0,
    late: Sequence[tuple[Period, Classification]] = (),
) -> Invoice:
    """Assemble the invoice of ``contract`` for ``period``: a pure function of its inputs, so
    assembling twice gives the same invoice.

    ``unit_counts`` gives a recurring contract's units per unit type: a count, or a timeline
    of ``(local date from which the count holds, count)`` (:mod:`~effigate_engine.billing.units`).
    A timeline reaching back to earlier cycles also prices late breaches of those cycles
    against their own covered fee.

    ``late`` carries work dated in earlier, already invoiced periods that no invoice priced
    (late logs): per earlier period, a classification of those logs only. Their time lines
    follow this period's, priced as of their own dates and labelled with their period."""
    charges: list[InvoiceLine] = []
    if classification is not None and contract.id in classification.book.index:
        charges += time_lines(contract, period, classification)
    for earlier, late_classification in late:
        if earlier.start >= period.start:
            raise BillingError("late", earlier.start.isoformat(), "is not an earlier period")
        for line in time_lines(contract, earlier, late_classification):
            label = f"Late work of {earlier.start.isoformat()}..{earlier.end.isoformat()}: "
            charges.append(replace(line, description=label + line.description))
    terms = term_lines(
        contract,
        period,
        unit_counts=unit_counts,
        breaches=breaches,
        already_credited=already_credited,
        invoiced_items=invoiced_items,
        credit_balance=credit_balance,
    )
    ordered = [*charges, *terms.charges, *terms.credits]
    lines = tuple(replace(line, line_no=i + 1) for i, line in enumerate(ordered))
    return Invoice(
        contract.id,
        period,
        contract.currency,
        lines,
        *invoice_totals(*line_sums(lines), tax, exemption),
        exemption,
        tuple(terms.settled),
        tuple(terms.forfeited),
    )


class TermLines(NamedTuple):
    """The lines an invoice gets from the contract's terms rather than from logged time, in
    invoice order, and the breach ids its SLA credits settle."""

    charges: list[InvoiceLine]
    credits: list[InvoiceLine]
    settled: list[str]
    forfeited: list[str]


def term_lines(
    contract: Contract,
    period: Period,
    *,
    unit_counts: Mapping[str, int] | None = None,
    breaches: pa.Table | None = None,
    already_credited: Iterable[str] = (),
    invoiced_items: Iterable[str] = (),
    credit_balance: int = 0,
) -> TermLines:
    """The invoice lines of ``contract`` for ``period`` that do not come from logged time:
    milestones and deliverables, recurring fees, then SLA credits and the credit balance brought
    forward (minor units). :func:`assemble_invoice` and the billing run both take them from
    here."""
    if credit_balance < 0:
        raise BillingError("credit_balance", credit_balance, "is negative")
    charges: list[InvoiceLine] = []
    if contract.type in (ContractType.FIXED_PRICE, ContractType.SCOPE):
        charges += item_lines(contract, period, invoiced_items)
    charges += recurring_lines(contract, period, unit_counts)
    credits, settled, forfeited = sla_credit_lines(
        contract,
        period,
        breaches,
        cycle_covered_fee(contract, period, unit_counts),
        already_credited,
        unit_counts=unit_counts,
    )
    if credit_balance:
        credits.append(
            InvoiceLine(
                0, LineKind.CREDIT_BALANCE, "Credit balance brought forward", -credit_balance
            )
        )
    return TermLines(charges, credits, settled, forfeited)


def line_sums(lines: Iterable[InvoiceLine]) -> tuple[int, int, int]:
    """``(subtotal, taxable subtotal, credits available)`` of invoice lines (minor units): the
    sum of the charge lines, of the taxable charge lines, and minus the sum of the credit
    lines."""
    subtotal = taxable = credits = 0
    for line in lines:
        if line.kind in CREDIT_KINDS:
            credits -= line.amount
        else:
            subtotal += line.amount
            if line.taxable:
                taxable += line.amount
    return subtotal, taxable, credits


class InvoiceTotals(NamedTuple):
    """An invoice's totals, in the order of :class:`Invoice`'s fields (minor units)."""

    subtotal: int
    credits_available: int
    credits_applied: int
    credit_balance_out: int
    taxable_base: int
    taxes: tuple[TaxLine, ...]
    total: int


def invoice_totals(
    subtotal: int,
    taxable_subtotal: int,
    credits_available: int,
    tax: Sequence[TaxComponent] = (),
    exemption: str | None = None,
) -> InvoiceTotals:
    """Credits are applied before tax up to the subtotal (the rest is carried out as a credit
    balance, so a total is never negative); each tax component applies to the taxable subtotal
    less the applied credits, rounded half-up once; ``total = subtotal − applied + tax``. An
    exemption removes the tax. Money in minor units."""
    applied = min(credits_available, subtotal)
    taxable_base = max(0, taxable_subtotal - applied)
    taxes = (
        ()
        if exemption
        else tuple(
            TaxLine(t.name, t.ppm, taxable_base, apply_ppm(taxable_base, t.ppm)) for t in tax
        )
    )
    total = subtotal - applied + sum(t.amount for t in taxes)
    return InvoiceTotals(
        subtotal,
        credits_available,
        applied,
        credits_available - applied,
        taxable_base,
        taxes,
        total,
    )


def period_of(contract: Contract, day: date) -> Period:
    """The contract's billing period holding local date ``day``."""
    return contract.cycle.period_of(day)
