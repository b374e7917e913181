"""Invoice events: ``INVOICE_ISSUED``, ``INVOICE_PAID`` and ``INVOICE_OVERDUE``, appended to
the outbox in the transaction that issues, settles or marks the invoice, once per invoice and
state (dedupe key ``invoice:<id>:<STATE>``; docs/events.md).

Overdue is a state reached by time passing, so besides ``MarkOverdue`` (the call for a daily
job) every read of invoices checks the invoices it reads: an ``ISSUED`` invoice due before
the read and not settled becomes ``OVERDUE`` in the read's transaction, with its event
(:func:`mark_overdue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from effigate_engine.events.types import (
    INVOICE_ISSUED,
    INVOICE_OVERDUE,
    INVOICE_PAID,
    invoice_key,
)
from effigate_engine.store import events as outbox
from effigate_engine.store import invoices as invoice_store
from effigate_engine.store.invoices import InvoiceRecord


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def invoice_data(record: InvoiceRecord, **extra: Any) -> dict[str, Any]:
    """The evidence of an invoice event: number, contract and client, status, money in minor
    units of ``currency`` (total, paid, credited, still due), the period (local dates, end
    exclusive) and the issue and due instants (and due date, UTC)."""
    return {
        "invoice_id": record.id,
        "number": record.number,
        "contract_id": record.contract_id,
        "client_id": record.client_id,
        "status": record.status,
        "currency": record.currency,
        "total_minor": record.total_minor,
        "paid_minor": record.paid_minor,
        "credited_minor": record.credited_minor,
        "balance_due_minor": record.balance_due_minor,
        "period_start": record.period_start.isoformat(),
        "period_end": record.period_end.isoformat(),
        "issued_at": _iso(record.issued_at),
        "due_at": _iso(record.due_at),
        "due_date": None if record.due_at is None else record.due_at.date().isoformat(),
        **extra,
    }


def invoice_event(
    record: InvoiceRecord, event_type: str, occurred_at: datetime, **extra: Any
) -> outbox.NewEvent:
    """The outbox event of ``record`` reaching ``event_type``'s state at ``occurred_at``."""
    return outbox.NewEvent(
        type=event_type,
        dedupe_key=invoice_key(record.id, event_type),
        subject=str(record.id),
        occurred_at=occurred_at,
        data=invoice_data(record, **extra),
        client_id=record.client_id,
    )


async def issued(conn: Any, record: InvoiceRecord) -> int:
    """Append ``INVOICE_ISSUED`` for the just-issued ``record`` (at its issue instant)."""
    assert record.issued_at is not None
    return await outbox.append_events(
        conn, [invoice_event(record, INVOICE_ISSUED, record.issued_at)]
    )


async def paid(
    conn: Any, record: InvoiceRecord, payment_id: int, amount_minor: int, received_at: datetime
) -> int:
    """Append ``INVOICE_PAID`` for ``record``, settled by payment ``payment_id`` (at the
    instant the payment was received)."""
    event = invoice_event(
        record,
        INVOICE_PAID,
        received_at,
        payment_id=payment_id,
        payment_amount_minor=amount_minor,
        received_at=received_at.isoformat(),
    )
    return await outbox.append_events(conn, [event])


async def mark_overdue(
    conn: Any, at: datetime, ids: Sequence[int] | None = None
) -> list[InvoiceRecord]:
    """Move the ``ISSUED`` invoices due before ``at`` and not settled (of ``ids`` when given)
    to ``OVERDUE`` and append their ``INVOICE_OVERDUE`` events (at each one's due instant);
    returns them. Inside the caller's tenant-bound transaction."""
    changed = await invoice_store.mark_overdue(conn, at, ids)
    if not changed:
        return []
    records = await invoice_store.list_invoices(conn, ids=changed)
    events = [
        invoice_event(r, INVOICE_OVERDUE, r.due_at or at, as_of=at.isoformat()) for r in records
    ]
    await outbox.append_events(conn, events)
    return records
