"""Invoices: preview, generate (idempotent per contract and period), review, issue, void,
mark overdue, and reads.

The money is computed by the billing domain (classify + ``assemble_invoice``, see
:mod:`effigate_engine.service.invoice_evidence`); this module gathers the inputs from the store
and has the results written with their evidence. Money is integer minor units of the
contract's currency, durations whole seconds, tax rates parts per million.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from effigate_engine.billing.invoice import Invoice
from effigate_engine.errors import BillingError
from effigate_engine.ratecard.contracts import ContractType
from effigate_engine.ratecard.periods import Period, local_midnight
from effigate_engine.service import invoice_events
from effigate_engine.service.context import Principal
from effigate_engine.service.contracts import audit, check_visible, load_stored
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.service.invoice_evidence import (
    Inputs,
    breaches_table,
    compute,
    settled,
    stored_lines,
    tax_json,
    unit_counts,
)
from effigate_engine.service.timelogs import cycle_period, lock_period, state_errors
from effigate_engine.store import contracts as contract_store
from effigate_engine.store import invoices as invoice_store
from effigate_engine.store import periods as period_store
from effigate_engine.store import timelogs as log_store
from effigate_engine.store.contracts import StoredContract
from effigate_engine.store.database import Store
from effigate_engine.store.errors import InvariantViolation
from effigate_engine.store.invoices import InvoiceLineRecord, InvoiceRecord, NewInvoice

_DRAWING = (ContractType.BUCKET, ContractType.RECURRING)


async def invoice_inputs(
    conn: Any,
    stored: StoredContract,
    period: Period,
    bounds: tuple[int, int],
    exclude_period_id: int | None,
) -> Inputs:
    """Everything the domain needs for the invoice of ``period`` (spanning ``bounds``, epoch
    seconds): two round trips (logs with the late ones; breaches with what other invoices of
    the contract settled, those of period ``exclude_period_id`` left out). Reads only."""
    contract = stored.contract
    record = stored.record
    start_bound = local_midnight(contract.start, contract.zone)
    drawing = contract.type in _DRAWING
    since = start_bound if drawing else bounds[0]
    logs, late = await log_store.invoice_logs(
        conn, record.id, bounds, since, start_bound, late=not drawing
    )
    breach_rows, lines = await invoice_store.settlement_inputs(
        conn, record.id, bounds[1], exclude_period_id
    )
    credited, items, balance = settled(lines)
    tax = record.terms.get("tax")
    return Inputs(
        contract=contract,
        period=period,
        logs=logs,
        unit_counts=unit_counts(stored, period),
        breaches=breaches_table(breach_rows),
        already_credited=credited,
        invoiced_items=items,
        credit_balance=balance,
        tax=list(stored.default_tax if tax is None else tax),
        exemption=record.terms.get("tax_exemption"),
        library_version=record.frozen_rate_card_version,
        late_logs=late,
    )


# Reads --------------------------------------------------------------------------------------


async def fetch_invoice(
    conn: Any, invoice_id: int, principal: Principal | None = None
) -> InvoiceRecord:
    """The stored invoice ``invoice_id`` with its lines (a portal principal: only its
    client's; another client's is :class:`NotFound`)."""
    record = await invoice_store.fetch_invoice(conn, invoice_id)
    if record is None:
        raise NotFound("invoice_id", invoice_id, "is not an invoice of this tenant")
    if principal is not None:
        check_visible(principal, record.client_id, "invoice_id", invoice_id)
    return record


async def lock_invoice(conn: Any, invoice_id: int) -> Any:
    """Invoice ``invoice_id`` locked for update (see :func:`invoice_store.lock_invoice`);
    :class:`NotFound` when there is none."""
    row = await invoice_store.lock_invoice(conn, invoice_id)
    if row is None:
        raise NotFound("invoice_id", invoice_id, "is not an invoice of this tenant")
    return row


async def get_invoice(store: Store, principal: Principal, invoice_id: int) -> InvoiceRecord:
    """The stored invoice with its lines and each line's time-log ids. A portal principal
    sees only its own client's invoices: another client's id is :class:`NotFound`. An
    ``ISSUED`` invoice found past due and unsettled becomes ``OVERDUE`` in this transaction,
    with its ``INVOICE_OVERDUE`` event (``invoice_events``)."""
    async with store.transaction(principal) as conn:
        record = await fetch_invoice(conn, invoice_id, principal)
        if _due(record):
            await invoice_events.mark_overdue(conn, datetime.now(UTC), [invoice_id])
            record = await fetch_invoice(conn, invoice_id, principal)
        return record


async def list_invoices(
    store: Store, principal: Principal, contract_id: int | None = None
) -> list[InvoiceRecord]:
    """The tenant's invoices by id (of one contract when given); a portal principal gets only
    its own client's. Those found past due and unsettled become ``OVERDUE``, as in
    :func:`get_invoice`."""
    async with store.transaction(principal) as conn:
        records = await invoice_store.list_invoices(conn, contract_id, principal.client_id)
        due = [r.id for r in records if _due(r)]
        if not due:
            return records
        marked = {r.id: r for r in await invoice_events.mark_overdue(conn, datetime.now(UTC), due)}
        return [marked.get(r.id, r) for r in records]


def _due(record: InvoiceRecord) -> bool:
    """Whether ``record`` is ``ISSUED``, past its due instant and not settled (so overdue)."""
    return (
        record.status == "ISSUED"
        and record.due_at is not None
        and record.due_at < datetime.now(UTC)
        and record.balance_due_minor > 0
    )


# Operations ---------------------------------------------------------------------------------


async def preview_invoice(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> Invoice:
    """The invoice the contract's billing period holding ``period_start`` would get, assembled
    by the billing domain from the stored approved logs, milestones, deliverables, unit counts,
    SLA breaches and tax; nothing is stored."""
    principal.require_staff("preview invoices")
    async with store.transaction(principal) as conn:
        stored = await load_stored(conn, contract_id, principal)
        period, bounds = cycle_period(stored, period_start)
        row = await period_store.fetch_period(conn, contract_id, bounds)
        period_id = None if row is None else row["id"]
        inputs = await invoice_inputs(conn, stored, period, bounds, period_id)
    invoice, _, _ = await asyncio.to_thread(compute, inputs)
    return invoice


async def generate_invoice(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> InvoiceRecord:
    """Store the ``DRAFT`` invoice of the contract's billing period holding ``period_start``,
    with its lines and evidence (each line's time-log parts; breach, milestone, deliverable
    and unit evidence; the frozen rate-card version and hash). Idempotent per (contract,
    period): the period row is locked first, so a second call, even a concurrent one, returns
    the invoice already there; the database's unique index is the backstop.

    Round trips: begin, bind, the contract's aggregate, the period lock, the contract lock
    (with the period's invoice if any), two reads of inputs, the invoice with its lines, the
    evidence with the audit entry, commit: ten, whatever the number of lines (one more when
    the contract changed between its read and its lock)."""
    principal.require_staff("generate invoices")
    try:
        async with store.transaction(principal) as conn:
            return await _generate(conn, principal, contract_id, period_start)
    except InvariantViolation as exc:
        if exc.sqlstate != "23505":
            raise
    async with store.transaction(principal) as conn:
        stored = await load_stored(conn, contract_id, principal)
        _, bounds = cycle_period(stored, period_start)
        existing = await invoice_store.invoice_of_period(conn, contract_id, bounds[0])
        if existing is None:  # pragma: no cover - the unique clash names a stored invoice
            raise FailedPrecondition("invoice", contract_id, "could not be generated; retry")
        return await fetch_invoice(conn, existing)


async def _generate(
    conn: Any, principal: Principal, contract_id: int, period_start: date
) -> InvoiceRecord:
    """:func:`generate_invoice` inside its transaction."""
    stored = await load_stored(conn, contract_id, principal)
    period, bounds = cycle_period(stored, period_start)
    period_row = await lock_period(conn, contract_id, bounds)
    # Edits of the contract's time logs share-lock the contract: holding it, the logs read
    # below stay as priced until the invoice and its evidence are stored.
    version, existing = await invoice_store.lock_contract_for_invoicing(
        conn, contract_id, period_row["id"]
    )
    if existing is not None:
        return await fetch_invoice(conn, existing)
    if version != stored.row_version:  # amended after it was read: price the amended one
        stored = await load_stored(conn, contract_id, principal)
    inputs = await invoice_inputs(conn, stored, period, bounds, period_row["id"])
    invoice, cls, late = await asyncio.to_thread(compute, inputs)
    new = NewInvoice(
        contract_id=contract_id,
        client_id=stored.record.client_id,
        time_zone=stored.record.time_zone,
        period_row=period_row,
        invoice=invoice,
        lines=stored_lines(inputs, invoice, cls, late),
        tax=tax_json(invoice),
    )
    detail = {"contract_id": contract_id, "period_start": period.start, "total": invoice.total}
    return await invoice_store.store_invoice(conn, new, principal.actor, detail)


async def review_invoice(store: Store, principal: Principal, invoice_id: int) -> InvoiceRecord:
    """Move a ``DRAFT`` invoice to ``REVIEW`` (``REVIEW`` stays ``REVIEW``)."""
    principal.require_staff("review invoices")
    async with store.transaction(principal) as conn:
        row = await lock_invoice(conn, invoice_id)
        if row["status"] not in ("DRAFT", "REVIEW"):
            raise FailedPrecondition("invoice.status", row["status"], "is not DRAFT")
        if row["status"] == "DRAFT":
            await invoice_store.set_status(conn, invoice_id, "REVIEW")
            await audit(conn, principal, "review", "invoice", invoice_id)
        return await fetch_invoice(conn, invoice_id)


def _evidence_ids(records: Iterable[InvoiceLineRecord], prefix: str) -> list[int]:
    out = []
    for line in records:
        for item in line.evidence.get("item_ids", ()):
            if item.startswith(prefix):
                out.append(int(item.removeprefix(prefix)))
    return out


async def _set_items(conn: Any, record: InvoiceRecord, milestones: str, deliverables: str) -> None:
    """Set the status of the invoice's milestones and deliverables."""
    for table, prefix, status in (
        ("milestones", "milestone:", milestones),
        ("deliverables", "deliverable:", deliverables),
    ):
        ids = _evidence_ids(record.lines, prefix)
        await contract_store.set_items_status(conn, table, ids, status)


async def issue_invoice(
    store: Store, principal: Principal, invoice_id: int, *, due_days: int = 30
) -> InvoiceRecord:
    """Issue a ``DRAFT`` or ``REVIEW`` invoice: the database assigns the next gap-free number
    and freezes it (lines, amounts and dates can no longer change). Due ``due_days`` days after
    issue. Records the bucket drawdown (``DRAWDOWN`` ledger entries, seconds, per log part)
    and marks its milestones and deliverables invoiced."""
    principal.require_staff("issue invoices")
    if not isinstance(due_days, int) or isinstance(due_days, bool) or due_days < 0:
        raise BillingError("due_days", due_days, "is not a whole number of days >= 0")
    async with state_errors(), store.transaction(principal) as conn:
        row = await lock_invoice(conn, invoice_id)
        if row["status"] not in ("DRAFT", "REVIEW"):
            raise FailedPrecondition(
                "invoice.status", row["status"], f"invoice {invoice_id} is already issued"
            )
        await invoice_store.issue(conn, invoice_id, due_days)
        if row["contract_type"] == "BUCKET":
            await invoice_store.record_drawdown(conn, invoice_id, row["contract_id"])
        record = await fetch_invoice(conn, invoice_id)
        await _set_items(conn, record, "INVOICED", "INVOICED")
        await invoice_events.issued(conn, record)
        await audit(
            conn,
            principal,
            "issue",
            "invoice",
            invoice_id,
            {"number": record.number, "total_minor": record.total_minor, "due_days": due_days},
        )
        return record


async def void_invoice(store: Store, principal: Principal, invoice_id: int) -> InvoiceRecord:
    """Void an invoice. An issued (or overdue) invoice without payments becomes ``VOID``: its
    number stays used, its time logs are released, its bucket drawdown is reversed
    (``ADJUSTMENT`` ledger entries) and its milestones and deliverables become invoiceable
    again. A ``DRAFT`` / ``REVIEW`` invoice is discarded (deleted with its lines) and returned
    as it was, with status ``VOID``; the period can then be generated afresh."""
    principal.require_staff("void invoices")
    async with state_errors(), store.transaction(principal) as conn:
        row = await lock_invoice(conn, invoice_id)
        record = await fetch_invoice(conn, invoice_id)
        status = row["status"]
        if status in ("DRAFT", "REVIEW"):
            await invoice_store.discard_draft(conn, invoice_id)
            await audit(conn, principal, "void", "invoice", invoice_id, {"discarded": status})
            return replace(record, status="VOID")
        if status not in ("ISSUED", "OVERDUE"):
            raise FailedPrecondition("invoice.status", status, "cannot be voided")
        if record.paid_minor:
            raise FailedPrecondition(
                "invoice.payments",
                record.paid_minor,
                f"invoice {invoice_id} has payments and cannot be voided; issue a credit note",
            )
        await invoice_store.void(conn, invoice_id)
        await _set_items(conn, record, "APPROVED", "SIGNED_OFF")
        await audit(conn, principal, "void", "invoice", invoice_id, {"number": record.number})
        return await fetch_invoice(conn, invoice_id)


async def mark_overdue(
    store: Store, principal: Principal, as_of: datetime | None = None
) -> list[InvoiceRecord]:
    """Move every ``ISSUED`` invoice whose due instant is before ``as_of`` (default now) and
    that payments and credit notes have not settled to ``OVERDUE``; returns those invoices.
    Running it again changes nothing (an ``OVERDUE`` invoice stays so until it is paid).
    Each invoice moved gets its ``INVOICE_OVERDUE`` event in the same transaction."""
    principal.require_staff("mark invoices overdue")
    at = as_of or datetime.now(UTC)
    if at.tzinfo is None:
        raise BillingError("as_of", at.isoformat(), "is naive; give an instant")
    async with store.transaction(principal) as conn:
        records = await invoice_events.mark_overdue(conn, at)
        if not records:
            return []
        entries = [(r.id, {"as_of": at}) for r in records]
        await contract_store.audit_many(conn, principal.actor, "overdue", "invoice", entries)
        return records


__all__ = [
    "InvoiceRecord",
    "fetch_invoice",
    "generate_invoice",
    "get_invoice",
    "issue_invoice",
    "list_invoices",
    "mark_overdue",
    "preview_invoice",
    "review_invoice",
    "void_invoice",
]
