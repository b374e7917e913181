"""Invoices in the store: invoices with their lines, taxes and time-log evidence, payments,
credit notes, the bucket ledger's drawdowns, and what earlier invoices settled.

A stored invoice is one model, :class:`InvoiceRecord`: the domain
:class:`~effigate_engine.billing.invoice.Invoice` as stored plus what storage adds (id, state,
number, dates, per-line ids and evidence, payments and credit notes). Every line is stored with
its position; credit lines are stored at the amount actually applied, so the domain invoice
read back has ``credits_applied`` equal to its credit lines and the ``subtotal_minor`` column
is the sum of the stored lines (charges less credits). Money is integer minor units of the
invoice's currency, durations whole seconds, tax rates parts per million.

Reading an invoice (or a list of them) is one round trip; storing a generated invoice is two
(the invoice with all its lines, then all their time-log evidence with the audit entry),
whatever the number of lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from effigate_engine.billing.invoice import CREDIT_KINDS, Invoice, InvoiceLine, LineKind, TaxLine
from effigate_engine.ratecard.periods import Period
from effigate_engine.store.contracts import audit_detail, loads
from effigate_engine.zone import zone as bundled_zone


@dataclass(frozen=True)
class InvoiceLineRecord:
    """A stored invoice line: the domain ``line`` (its ``amount`` is what was applied for a
    credit, negative) plus its row ``id``, ``billed_seconds`` / ``actual_seconds`` for time
    lines (``actual_seconds`` ``None`` where a bucket drawdown re-weights the time), the
    ``time_log_ids`` it prices and its ``evidence`` (breach ids, milestone / deliverable ids,
    unit counts, the card's SHA-256, whether it is taxable, credit carried)."""

    id: int
    line: InvoiceLine
    actual_seconds: int | None
    billed_seconds: int | None
    time_log_ids: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    position = property(lambda self: self.line.line_no, doc="1-based position on the invoice.")
    kind = property(lambda self: self.line.kind.value, doc="The line kind's name.")
    description = property(lambda self: self.line.description)
    time_condition = property(lambda self: self.line.condition)
    support_level = property(lambda self: self.line.support_level)
    job_type = property(lambda self: self.line.job_type)
    rate_minor_per_hour = property(lambda self: self.line.rate, doc="Minor units per hour.")
    rate_card_version = property(lambda self: self.line.rate_card_version)
    amount_minor = property(lambda self: self.line.amount, doc="Minor units (< 0: a credit).")
    taxable = property(lambda self: self.line.taxable, doc="Whether in the taxable base.")


@dataclass(frozen=True)
class InvoiceRecord:
    """A stored invoice: the domain ``invoice`` as stored plus its row ``id``, its contract's
    ``client_id``, its billing period, ``status``, ``number`` (``None`` until issued; assigned
    by the database, gap-free per tenant), dates, stored ``lines`` (the domain lines with their
    ids and evidence) and what payments (``paid_minor``) and credit notes (``credited_minor``)
    settled. ``subtotal_minor`` is the sum of the stored lines (charges less the credits
    applied), ``total_minor = subtotal_minor + tax_minor``."""

    invoice: Invoice
    id: int
    client_id: int
    billing_period_id: int | None
    status: str
    number: int | None
    issued_at: datetime | None
    due_at: datetime | None
    created_at: datetime | None
    lines: tuple[InvoiceLineRecord, ...] = ()
    paid_minor: int = 0
    credited_minor: int = 0

    contract_id = property(lambda self: int(self.invoice.contract_id))
    currency = property(lambda self: self.invoice.currency)
    period_start = property(lambda self: self.invoice.period.start, doc="Local date.")
    period_end = property(lambda self: self.invoice.period.end, doc="Local date (exclusive).")
    charges_minor = property(lambda self: self.invoice.subtotal, doc="Charge lines' sum.")
    credits_minor = property(lambda self: self.invoice.credits_applied, doc="Credits applied.")
    tax_minor = property(lambda self: self.invoice.tax_total)
    total_minor = property(lambda self: self.invoice.total)
    taxes = property(lambda self: self.invoice.taxes, doc="Tax components (domain tax lines).")
    exemption = property(lambda self: self.invoice.exemption)
    credit_balance_minor = property(
        lambda self: self.invoice.credit_balance_out, doc="Credit carried to the next invoice."
    )

    @property
    def subtotal_minor(self) -> int:
        """The sum of the stored lines: charges less the credits applied (minor units)."""
        return self.invoice.subtotal - self.invoice.credits_applied

    @property
    def balance_due_minor(self) -> int:
        """What is still owed: total less payments and credit notes (0 once settled)."""
        return max(0, self.total_minor - self.paid_minor - self.credited_minor)

    @property
    def text(self) -> str:
        """The invoice laid out as plain text by the domain's renderer, headed by its number
        (or draft id), contract, period, currency and status."""
        head = f"#{self.number}" if self.number is not None else f"draft {self.id}"
        return self.invoice.format(
            f"Invoice {head} contract {self.contract_id} {self.period_start}..{self.period_end}"
            f" ({self.currency}, {self.status})"
        )


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


# Records ------------------------------------------------------------------------------------

#: A stored line as the reads return it: id, position, kind, description, time condition,
#: support level, job type, rate, rate-card version, actual and billed seconds, amount,
#: evidence (JSON text or dict) and its time-log ids.
LineTuple = tuple[Any, ...]


def line_record(values: LineTuple) -> InvoiceLineRecord:
    """An :class:`InvoiceLineRecord` of a stored line's values (:data:`LineTuple`)."""
    (line_id, position, kind, description, condition, level, job, rate, version, actual,
     billed, amount, evidence, log_ids) = values  # fmt: skip
    ev = loads(evidence) or {}
    line = InvoiceLine(
        position,
        LineKind(kind),
        description,
        amount,
        int(ev.get("quantity", 1)),
        rate,
        condition,
        level,
        job,
        bool(ev.get("taxable", True)),
        version,
        ev.get("rate_card_sha256"),
        tuple(log_ids),
        tuple(ev.get("breach_ids", ())),
        tuple(ev.get("item_ids", ())),
    )
    return InvoiceLineRecord(line_id, line, actual, billed, tuple(log_ids), ev)


def invoice_record(head: Mapping[str, Any], lines: Sequence[LineTuple]) -> InvoiceRecord:
    """An :class:`InvoiceRecord` of an ``invoices`` row joined with its contract and period
    (``head``: see :data:`_INVOICE_SELECT`) and its lines."""
    records = tuple(line_record(x) for x in lines)
    tax_items = loads(head["tax"]) or []
    taxes = tuple(
        TaxLine(t["name"], int(t["rate_ppm"]), int(t["base_minor"]), int(t["amount_minor"]))
        for t in tax_items
        if "name" in t
    )
    exemption = next((t["exemption"] for t in tax_items if "exemption" in t), None)
    credits = -sum(x.line.amount for x in records if x.line.kind in CREDIT_KINDS)
    carried = sum(int(x.evidence.get("carried_minor", 0)) for x in records)
    zone = bundled_zone(head["time_zone"])
    period = Period(
        0, head["starts_at"].astimezone(zone).date(), head["ends_at"].astimezone(zone).date()
    )
    invoice = Invoice(
        str(head["contract_id"]),
        period,
        head["currency"].strip(),
        tuple(x.line for x in records),
        head["subtotal_minor"] + credits,
        credits,
        credits,
        carried,
        taxes[0].base if taxes else 0,
        taxes,
        head["total_minor"],
        exemption,
    )
    return InvoiceRecord(
        invoice=invoice,
        id=head["id"],
        client_id=head["client_id"],
        billing_period_id=head["billing_period_id"],
        status=head["status"],
        number=head["number"],
        issued_at=head["issued_at"],
        due_at=head["due_at"],
        created_at=head["created_at"],
        lines=records,
        paid_minor=int(head["paid_minor"]),
        credited_minor=int(head["credited_minor"]),
    )


# Reads --------------------------------------------------------------------------------------

_LINE_VALUES = (
    "l.id, l.position, l.kind, l.description, l.time_condition, l.support_level, l.job_type,"
    " l.rate_minor_per_hour, l.rate_card_version, l.actual_seconds, l.billed_seconds,"
    " l.amount_minor, l.evidence"
)
_INVOICE_SELECT = (
    "SELECT i.id, i.contract_id, c.client_id, c.time_zone, i.billing_period_id, bp.starts_at,"
    " bp.ends_at, i.status, i.number, i.currency, i.subtotal_minor, i.tax_minor, i.total_minor,"
    " i.tax, i.issued_at, i.due_at, i.created_at, i.paid_minor, i.credited_minor,"
    f" ARRAY(SELECT ROW({_LINE_VALUES},"
    "   ARRAY(SELECT DISTINCT e.time_log_id FROM invoice_line_time_logs e"
    "     WHERE e.invoice_line_id = l.id ORDER BY 1))"
    "   FROM invoice_lines l WHERE l.invoice_id = i.id ORDER BY l.position) AS lines"
    " FROM invoices i JOIN contracts c ON c.id = i.contract_id"
    " LEFT JOIN billing_periods bp ON bp.id = i.billing_period_id"
)


async def fetch_invoice(conn: asyncpg.Connection, invoice_id: int) -> InvoiceRecord | None:
    """The stored invoice ``invoice_id`` with its lines, one round trip (``None``: none)."""
    row = await conn.fetchrow(_INVOICE_SELECT + " WHERE i.id = $1", invoice_id)
    return None if row is None else invoice_record(row, row["lines"])


async def list_invoices(
    conn: asyncpg.Connection,
    contract_id: int | None = None,
    client_id: int | None = None,
    ids: Sequence[int] | None = None,
) -> list[InvoiceRecord]:
    """The tenant's invoices by id, of one contract, one client, or the given ids (each filter
    when given), one round trip."""
    rows = await conn.fetch(
        _INVOICE_SELECT + " WHERE ($1::bigint IS NULL OR i.contract_id = $1)"
        " AND ($2::bigint IS NULL OR c.client_id = $2)"
        " AND ($3::bigint[] IS NULL OR i.id = ANY($3::bigint[])) ORDER BY i.id",
        contract_id,
        client_id,
        None if ids is None else list(ids),
    )
    return [invoice_record(r, r["lines"]) for r in rows]


async def invoice_of_period(
    conn: asyncpg.Connection, contract_id: int, period_start: int
) -> int | None:
    """The id of the contract's invoice (not void) of the period starting at ``period_start``
    (epoch seconds)."""
    return await conn.fetchval(
        "SELECT i.id FROM invoices i JOIN billing_periods p ON p.id = i.billing_period_id"
        " WHERE i.contract_id = $1 AND p.starts_at = to_timestamp($2) AND i.status <> 'VOID'",
        contract_id,
        period_start,
    )


async def lock_contract_for_invoicing(
    conn: asyncpg.Connection, contract_id: int, period_id: int
) -> tuple[int, int | None]:
    """No-key-update lock the contract (edits of its time logs share-lock it: holding this,
    the logs read next stay as priced until the invoice is stored); returns the contract row's
    version and the id of the period's invoice (not void) if there is one."""
    row = await conn.fetchrow(
        "SELECT c.xmin::text::bigint AS row_version, (SELECT i.id FROM invoices i"
        "   WHERE i.contract_id = c.id AND i.billing_period_id = $2 AND i.status <> 'VOID')"
        "   AS existing FROM contracts c WHERE c.id = $1 FOR NO KEY UPDATE",
        contract_id,
        period_id,
    )
    return int(row["row_version"]), row["existing"]


async def lock_invoice(conn: asyncpg.Connection, invoice_id: int) -> asyncpg.Record | None:
    """Invoice ``invoice_id`` locked for update (``id``, ``contract_id``, ``status``,
    ``number``, ``total_minor``, ``paid_minor``, ``credited_minor`` and its contract's
    ``contract_type``); ``None`` when there is none."""
    return await conn.fetchrow(
        "SELECT i.id, i.contract_id, i.status, i.number, i.total_minor, i.paid_minor,"
        " i.credited_minor, c.contract_type FROM invoices i JOIN contracts c"
        " ON c.id = i.contract_id WHERE i.id = $1 FOR UPDATE OF i",
        invoice_id,
    )


# Generated invoices -------------------------------------------------------------------------

#: The columns of a stored line, in the order of :func:`store_invoice`'s arrays and types.
LINE_COLUMNS = (
    ("position", "int"),
    ("kind", "text"),
    ("description", "text"),
    ("time_condition", "text"),
    ("support_level", "text"),
    ("job_type", "text"),
    ("rate_minor_per_hour", "bigint"),
    ("rate_card_version", "int"),
    ("actual_seconds", "bigint"),
    ("billed_seconds", "bigint"),
    ("amount_minor", "bigint"),
    ("evidence", "text"),
)
_UNNEST = ", ".join(f"${i + 8}::{kind}[]" for i, (_, kind) in enumerate(LINE_COLUMNS))
_NAMES = ", ".join(name for name, _ in LINE_COLUMNS)
_PICKED = ", ".join(
    f"u.{name}" if name != "evidence" else "u.evidence::jsonb" for name, _ in LINE_COLUMNS
)
_STORE_SQL = (
    "WITH inv AS (INSERT INTO invoices (contract_id, billing_period_id, currency,"
    "   subtotal_minor, tax_minor, total_minor, tax) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
    "   RETURNING id, status, number, issued_at, due_at, created_at, paid_minor,"
    "   credited_minor),"
    f" lines AS (INSERT INTO invoice_lines (invoice_id, {_NAMES})"
    f"   SELECT inv.id, {_PICKED} FROM inv, unnest({_UNNEST}) AS u({_NAMES})"
    "   RETURNING id, position)"
    " SELECT inv.*, ARRAY(SELECT ROW(position, id) FROM lines) AS line_ids FROM inv"
)
_EVIDENCE_SQL = (
    "WITH ev AS (INSERT INTO invoice_line_time_logs (invoice_id, invoice_line_id, time_log_id,"
    "   part, billed_seconds) SELECT $1, l, t, p, s FROM unnest($2::bigint[], $3::text[],"
    "   $4::smallint[], $5::bigint[]) AS u(l, t, p, s))"
    " INSERT INTO audit_log (actor, action, entity, entity_id, detail)"
    " VALUES ($6, $7, $8, $9, $10::jsonb)"
)


@dataclass(frozen=True)
class NewInvoice:
    """What :func:`store_invoice` writes: the assembled ``invoice`` (currency, taxes), the
    stored ``lines`` (mappings of :data:`LINE_COLUMNS` names, ``evidence`` a dict, ``logs``
    ``{(time log id, part): [billed, actual]}``), the ``tax`` JSON, the contract's
    ``client_id`` and ``time_zone``, and the period's row."""

    contract_id: int
    client_id: int
    time_zone: str
    period_row: Mapping[str, Any]
    invoice: Invoice
    lines: Sequence[Mapping[str, Any]]
    tax: list[dict[str, Any]]


async def store_invoice(
    conn: asyncpg.Connection, new: NewInvoice, actor: str, audit: dict[str, Any]
) -> InvoiceRecord:
    """Store a generated ``DRAFT`` invoice with all its lines, then all their time-log
    evidence and the audit entry (``audit``: its detail, recorded by ``actor``): two round
    trips whatever the number of lines. Returns it as stored, read from what the inserts
    returned."""
    subtotal = sum(int(line["amount_minor"]) for line in new.lines)
    tax = new.invoice.tax_total
    columns = [
        [json.dumps(line[name]) if name == "evidence" else line[name] for line in new.lines]
        for name, _ in LINE_COLUMNS
    ]
    row = await conn.fetchrow(
        _STORE_SQL,
        new.contract_id,
        new.period_row["id"],
        new.invoice.currency,
        subtotal,
        tax,
        subtotal + tax,
        json.dumps(new.tax),
        *columns,
    )
    line_ids = dict(row["line_ids"])
    ev: tuple[list[int], list[str], list[int], list[int]] = ([], [], [], [])
    tuples: list[LineTuple] = []
    for line in new.lines:
        line_id = line_ids[line["position"]]
        for (log_id, part), (billed, _) in sorted(line["logs"].items()):
            ev[0].append(line_id)
            ev[1].append(log_id)
            ev[2].append(part)
            ev[3].append(int(billed or 0))
        evidence = json.loads(json.dumps(line["evidence"]))  # as the database returns it
        logs = sorted({log_id for log_id, _ in line["logs"]})
        values = [line[name] for name, _ in LINE_COLUMNS[:-1]]
        tuples.append((line_id, *values, evidence, logs))
    invoice_id = row["id"]
    await conn.execute(
        _EVIDENCE_SQL,
        invoice_id,
        *ev,
        actor,
        "generate",
        "invoice",
        str(invoice_id),
        audit_detail(audit),
    )
    head = {
        **dict(row),
        "contract_id": new.contract_id,
        "client_id": new.client_id,
        "time_zone": new.time_zone,
        "billing_period_id": new.period_row["id"],
        "starts_at": new.period_row["starts_at"],
        "ends_at": new.period_row["ends_at"],
        "currency": new.invoice.currency,
        "subtotal_minor": subtotal,
        "total_minor": subtotal + tax,
        "tax": new.tax,
    }
    return invoice_record(head, tuples)


# Inputs of a generation ---------------------------------------------------------------------


_BREACH_FIELDS = ("id", "ticket_id", "contract_id", "metric", "breached_at", "evidence")


async def settlement_inputs(
    conn: asyncpg.Connection, contract_id: int, before: int, exclude_period_id: int | None
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """In one round trip: the contract's breach records before ``before`` (epoch seconds) in
    (breached at, id) order, each with its ticket's priority (``ticket_priority``); and the
    ``(kind, evidence)`` of the lines on the contract's other non-void invoices (those of
    period ``exclude_period_id`` left out), what they already settled."""
    row = await conn.fetchrow(
        "SELECT ARRAY(SELECT ROW(b.id, b.ticket_id, b.contract_id, b.metric, b.breached_at,"
        "   b.evidence, t.priority) FROM breach_records b"
        "   LEFT JOIN tickets t ON t.id = b.ticket_id"
        "   WHERE b.contract_id = $1 AND b.breached_at < to_timestamp($2)"
        "   ORDER BY b.breached_at, b.id) AS breaches,"
        " ARRAY(SELECT ROW(l.kind, l.evidence) FROM invoice_lines l"
        "   JOIN invoices i ON i.id = l.invoice_id WHERE i.contract_id = $1"
        "   AND i.status <> 'VOID' AND i.billing_period_id IS DISTINCT FROM $3) AS settled",
        contract_id,
        before,
        exclude_period_id,
    )
    breaches = [
        {**dict(zip(_BREACH_FIELDS, b[:-1], strict=True)), "ticket_priority": b[-1]}
        for b in row["breaches"]
    ]
    return breaches, [(kind, loads(ev) or {}) for kind, ev in row["settled"]]


# State changes ------------------------------------------------------------------------------


async def set_status(conn: asyncpg.Connection, invoice_id: int, status: str) -> None:
    """Set invoice ``invoice_id``'s status (the database checks the transition)."""
    await conn.execute("UPDATE invoices SET status = $2 WHERE id = $1", invoice_id, status)


async def issue(conn: asyncpg.Connection, invoice_id: int, due_days: int) -> None:
    """Issue the invoice now, due ``due_days`` days later (the database numbers it)."""
    await conn.execute(
        "UPDATE invoices SET status = 'ISSUED', issued_at = now(),"
        " due_at = now() + make_interval(days => $2) WHERE id = $1",
        invoice_id,
        due_days,
    )


async def record_drawdown(conn: asyncpg.Connection, invoice_id: int, contract_id: int) -> None:
    """Write the invoice's bucket drawdown: a ``DRAWDOWN`` ledger entry per log part of its
    included (bucket) lines, in work order."""
    await conn.execute(
        "INSERT INTO bucket_ledger (contract_id, entry_at, kind, seconds, time_log_id,"
        " invoice_id, note)"
        " SELECT $2, t.started_at, 'DRAWDOWN', -sum(e.billed_seconds), e.time_log_id, $1,"
        " 'part ' || e.part"
        " FROM invoice_line_time_logs e JOIN invoice_lines l ON l.id = e.invoice_line_id"
        " JOIN time_logs t ON t.id = e.time_log_id"
        " WHERE e.invoice_id = $1 AND l.time_condition = 'INCLUDED'"
        " GROUP BY e.time_log_id, e.part, t.started_at HAVING sum(e.billed_seconds) > 0"
        " ORDER BY t.started_at, e.time_log_id, e.part",
        invoice_id,
        contract_id,
    )


async def void(conn: asyncpg.Connection, invoice_id: int) -> None:
    """Void an issued invoice and reverse its bucket drawdown (``ADJUSTMENT`` entries)."""
    await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", invoice_id)
    await conn.execute(
        "INSERT INTO bucket_ledger (contract_id, entry_at, kind, seconds, time_log_id,"
        " invoice_id, note) SELECT contract_id, entry_at, 'ADJUSTMENT', -seconds, time_log_id,"
        " invoice_id, 'void of invoice ' || invoice_id FROM bucket_ledger"
        " WHERE invoice_id = $1 AND kind = 'DRAWDOWN' ORDER BY id",
        invoice_id,
    )


async def discard_draft(conn: asyncpg.Connection, invoice_id: int) -> None:
    """Discard a draft invoice with its lines (the database does it: the service role deletes
    nothing itself)."""
    await conn.execute("SELECT effigate_discard_draft_invoice($1)", invoice_id)


async def mark_overdue(
    conn: asyncpg.Connection, at: datetime, ids: Sequence[int] | None = None
) -> list[int]:
    """Set ``OVERDUE`` every ``ISSUED`` invoice due before ``at`` and not settled (of ``ids``
    only, when given); returns their ids in order."""
    rows = await conn.fetch(
        "UPDATE invoices i SET status = 'OVERDUE' WHERE i.status = 'ISSUED' AND i.due_at < $1"
        " AND i.total_minor > i.paid_minor + i.credited_minor"
        " AND ($2::bigint[] IS NULL OR i.id = ANY($2::bigint[])) RETURNING i.id",
        at,
        None if ids is None else list(ids),
    )
    return sorted(r["id"] for r in rows)


async def bucket_drawn(conn: asyncpg.Connection, contract_id: int) -> int:
    """Seconds issued invoices of the contract drew down from its bucket (net of voids)."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(-sum(seconds), 0) FROM bucket_ledger WHERE contract_id = $1"
            " AND invoice_id IS NOT NULL AND kind IN ('DRAWDOWN', 'ADJUSTMENT')",
            contract_id,
        )
    )


# Payments and credit notes ------------------------------------------------------------------


async def insert_payment(
    conn: asyncpg.Connection,
    invoice_id: int,
    amount_minor: int,
    received_at: datetime,
    reference: str,
) -> int:
    """Store a payment against an invoice; returns its id."""
    return int(
        await conn.fetchval(
            "INSERT INTO payments (invoice_id, amount_minor, received_at, reference)"
            " VALUES ($1, $2, $3, $4) RETURNING id",
            invoice_id,
            amount_minor,
            received_at,
            reference,
        )
    )


async def credit_notes(
    conn: asyncpg.Connection, invoice_id: int
) -> list[tuple[asyncpg.Record, dict[int, int]]]:
    """The invoice's credit notes by id, each with ``{invoice line id: amount}``."""
    rows = await conn.fetch(
        "SELECT n.id, n.subtotal_minor, n.tax_minor, n.total_minor,"
        " ARRAY(SELECT ROW(x.invoice_line_id, x.amount_minor) FROM credit_note_lines x"
        "   WHERE x.credit_note_id = n.id) AS lines"
        " FROM credit_notes n WHERE n.invoice_id = $1 ORDER BY n.id",
        invoice_id,
    )
    return [(r, {int(i): int(a) for i, a in r["lines"]}) for r in rows]


async def insert_credit_note(
    conn: asyncpg.Connection,
    invoice_id: int,
    reason: str,
    amounts: Mapping[str, int],
    lines: Sequence[tuple[int, int]],
) -> tuple[int, datetime]:
    """Store a credit note (``amounts``: ``subtotal``, ``tax``, ``total``) with its lines
    (``(invoice line id, amount)``) in one statement; returns its id and issue instant."""
    row = await conn.fetchrow(
        "WITH note AS (INSERT INTO credit_notes (invoice_id, reason, subtotal_minor, tax_minor,"
        "   total_minor) VALUES ($1, $2, $3, $4, $5) RETURNING id, issued_at),"
        " x AS (INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
        "   amount_minor) SELECT note.id, $1, u.l, u.a FROM note,"
        "   unnest($6::bigint[], $7::bigint[]) WITH ORDINALITY AS u(l, a, k) ORDER BY u.k)"
        " SELECT id, issued_at FROM note",
        invoice_id,
        reason,
        amounts["subtotal"],
        amounts["tax"],
        amounts["total"],
        [line_id for line_id, _ in lines],
        [amount for _, amount in lines],
    )
    return int(row["id"]), row["issued_at"]
