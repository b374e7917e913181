"""Credit notes: corrections of an issued invoice, never more than it billed.

What is still creditable on a line is its amount less everything credited on it before. The
net of all credit notes of an invoice never exceeds the invoice's net (subtotal less applied
credits). A credit note's tax is computed on the cumulative credited taxable amount and the
tax of the notes before it subtracted, so rounding never lets the notes' tax (or total) exceed
the invoice's: the pitfall of notes totalling $335.00 against a $334.99 invoice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from effigate_engine.billing.invoice import CREDIT_KINDS, Invoice, TaxLine
from effigate_engine.errors import LifecycleError
from effigate_engine.money import apply_ppm


@dataclass(frozen=True)
class CreditNote:
    """A credit note: ``lines`` maps invoice line numbers to credited amounts (minor units,
    positive); ``taxes`` are this note's share of each tax component; ``total`` = net + tax."""

    number: int
    lines: Mapping[int, int]
    net: int
    taxable: int
    taxes: tuple[TaxLine, ...]
    total: int


def creditable(invoice: Invoice, previous: Sequence[CreditNote] = ()) -> dict[int, int]:
    """What is still creditable per charge line (minor units)."""
    out = {line.line_no: line.amount for line in invoice.lines if line.kind not in CREDIT_KINDS}
    for note in previous:
        for line_no, amount in note.lines.items():
            out[line_no] -= amount
    return out


def credit_note(
    invoice: Invoice, previous: Sequence[CreditNote], amounts: Mapping[int, int]
) -> CreditNote:
    """The next credit note crediting ``amounts`` per line. Raises :class:`LifecycleError` when
    a line would be credited beyond what it still has, or the notes beyond the invoice."""
    left = creditable(invoice, previous)
    taxable_lines = {line.line_no for line in invoice.lines if line.taxable}
    for line_no, amount in amounts.items():
        if line_no not in left:
            raise LifecycleError("line_no", line_no, "is not a charge line of the invoice")
        if amount <= 0:
            raise LifecycleError(f"amounts[{line_no}]", amount, "is not positive")
        if amount > left[line_no]:
            raise LifecycleError(
                f"amounts[{line_no}]", amount, f"exceeds the {left[line_no]} still creditable"
            )
    net_before = sum(n.net for n in previous)
    net = sum(amounts.values())
    invoice_net = invoice.subtotal - invoice.credits_applied
    if net_before + net > invoice_net:
        raise LifecycleError(
            "amounts", net, f"would credit more than the invoice's net {invoice_net}"
        )
    taxable_before = sum(n.taxable for n in previous)
    taxable = sum(a for line_no, a in amounts.items() if line_no in taxable_lines)
    taxes = []
    for t in invoice.taxes:
        before = apply_ppm(min(taxable_before, t.base), t.ppm)
        after = apply_ppm(min(taxable_before + taxable, t.base), t.ppm)
        taxes.append(TaxLine(t.name, t.ppm, taxable, after - before))
    total = net + sum(t.amount for t in taxes)
    return CreditNote(len(previous) + 1, dict(amounts), net, taxable, tuple(taxes), total)
