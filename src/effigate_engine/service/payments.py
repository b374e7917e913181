"""Payments and credit notes against issued invoices.

Money is integer minor units of the invoice's currency. The billing domain computes a credit
note (:func:`~effigate_engine.billing.credit_notes.credit_note`); the database checks the same
caps (payments and credit notes never exceed an invoice's total).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from effigate_engine.billing.credit_notes import CreditNote, credit_note
from effigate_engine.errors import BillingError
from effigate_engine.service import invoice_events
from effigate_engine.service.context import Principal
from effigate_engine.service.contracts import audit
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.service.invoicing import fetch_invoice, lock_invoice
from effigate_engine.store import invoices as invoice_store
from effigate_engine.store.database import Store
from effigate_engine.store.invoices import CreditNoteLineRecord, CreditNoteRecord, InvoiceRecord

_ISSUED = ("ISSUED", "PAID", "OVERDUE")


async def record_payment(
    store: Store,
    principal: Principal,
    invoice_id: int,
    amount_minor: int,
    received_at: datetime,
    reference: str = "",
) -> int:
    """Record a payment of ``amount_minor`` against an issued invoice; returns its id. The
    invoice becomes ``PAID`` once payments and credit notes cover its total; a payment beyond
    what is still due is refused."""
    principal.require_staff("record payments")
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise BillingError("amount_minor", amount_minor, "is not a positive amount of minor units")
    if received_at.tzinfo is None:
        raise BillingError("received_at", received_at.isoformat(), "is naive; give an instant")
    async with store.transaction(principal) as conn:
        row = await lock_invoice(conn, invoice_id)
        if row["status"] not in ("ISSUED", "OVERDUE"):
            raise FailedPrecondition(
                "invoice.status", row["status"], "takes no payment (only ISSUED or OVERDUE)"
            )
        due = row["total_minor"] - row["paid_minor"] - row["credited_minor"]
        if amount_minor > due:
            raise FailedPrecondition(
                "amount_minor", amount_minor, f"exceeds the {due} still due on invoice {invoice_id}"
            )
        payment_id = await invoice_store.insert_payment(
            conn, invoice_id, amount_minor, received_at, reference
        )
        if amount_minor == due:
            await invoice_store.set_status(conn, invoice_id, "PAID")
            record = await fetch_invoice(conn, invoice_id)
            await invoice_events.paid(conn, record, payment_id, amount_minor, received_at)
        await audit(
            conn,
            principal,
            "payment",
            "invoice",
            invoice_id,
            {"payment_id": payment_id, "amount_minor": amount_minor, "paid": amount_minor == due},
        )
    return payment_id


def _previous_notes(
    record: InvoiceRecord, notes: list[tuple[object, dict[int, int]]]
) -> list[CreditNote]:
    """The invoice's earlier credit notes as the domain's :class:`CreditNote` values (lines by
    invoice line position)."""
    position = {line.id: line.position for line in record.lines}
    taxable = {line.position: line.taxable for line in record.lines}
    out = []
    for i, (n, lines) in enumerate(notes):
        credited = {position[line_id]: amount for line_id, amount in lines.items()}
        out.append(
            CreditNote(
                i + 1,
                credited,
                int(n["subtotal_minor"]),  # type: ignore[index]
                sum(a for p, a in credited.items() if taxable.get(p, True)),
                (),
                int(n["total_minor"]),  # type: ignore[index]
            )
        )
    return out


async def create_credit_note(
    store: Store,
    principal: Principal,
    invoice_id: int,
    amounts: Mapping[int, int],
    reason: str = "",
) -> CreditNoteRecord:
    """Credit an issued invoice: ``amounts`` maps invoice line ids to minor units. The billing
    domain checks each line's creditable rest and the invoice's net and computes the note's tax
    on the cumulative credited amount, so credit notes never total more than the invoice (the
    database checks the same caps)."""
    principal.require_staff("create credit notes")
    if not amounts:
        raise BillingError("amounts", {}, "is empty")
    async with store.transaction(principal) as conn:
        row = await lock_invoice(conn, invoice_id)
        if row["status"] not in _ISSUED:
            raise FailedPrecondition(
                "invoice.status", row["status"], "can be credited only once issued"
            )
        record = await fetch_invoice(conn, invoice_id)
        position = {line.id: line.position for line in record.lines}
        line_id_of = {v: k for k, v in position.items()}
        by_position: dict[int, int] = {}
        for line_id, amount in amounts.items():
            if line_id not in position:
                raise NotFound(
                    f"amounts[{line_id}]", line_id, f"is not a line of invoice {invoice_id}"
                )
            by_position[position[line_id]] = amount
        previous = _previous_notes(record, await invoice_store.credit_notes(conn, invoice_id))
        try:
            note = credit_note(record.invoice, previous, by_position)
        except BillingError as exc:
            field = exc.field
            if field.startswith("amounts[") and field[8:-1].isdigit():
                field = f"amounts[{line_id_of.get(int(field[8:-1]), field[8:-1])}]"
            raise FailedPrecondition(field, exc.value, exc.problem) from None
        tax = sum(t.amount for t in note.taxes)
        open_minor = row["total_minor"] - row["paid_minor"] - row["credited_minor"]
        if note.total > open_minor:
            raise FailedPrecondition(
                "amounts",
                note.total,
                f"credits more than the {open_minor} still open on invoice {invoice_id}"
                " (payments and credit notes never exceed its total)",
            )
        lines = [(line_id_of[pos], amount) for pos, amount in sorted(note.lines.items())]
        totals = {"subtotal": note.net, "tax": tax, "total": note.total}
        note_id, issued_at = await invoice_store.insert_credit_note(
            conn, invoice_id, reason, totals, lines
        )
        await audit(
            conn,
            principal,
            "credit_note",
            "invoice",
            invoice_id,
            {"credit_note_id": note_id, "total_minor": note.total, "reason": reason},
        )
    return CreditNoteRecord(
        id=note_id,
        invoice_id=invoice_id,
        reason=reason,
        subtotal_minor=note.net,
        tax_minor=tax,
        total_minor=note.total,
        issued_at=issued_at,
        lines=tuple(CreditNoteLineRecord(line_id, amount) for line_id, amount in lines),
    )


__all__ = ["create_credit_note", "record_payment"]
