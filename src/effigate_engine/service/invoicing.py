"""Invoices: preview, generate (idempotent per contract and period), review, issue, payments,
credit notes, void, reads, and bucket balances.

The money is computed by the billing domain (``classify`` + ``assemble_invoice``,
``credit_note``, ``bucket_statement``); this module only gathers the inputs from the store and
writes the results with their evidence. Money is integer minor units of the contract's
currency, durations whole seconds, tax rates parts per million.

How a stored invoice relates to the assembled one: every line is stored with its position;
credit lines (SLA credits, a credit balance brought forward) are stored at the amount actually
applied (credits never take a total below zero), and the part not applied is kept in the line's
evidence as ``carried_minor``, the credit balance carried to the contract's next invoice. So
``subtotal_minor`` is the sum of the stored lines and ``total_minor = subtotal_minor +
tax_minor``, as the database checks. Breaches the per-period cap trims to nothing are recorded
on a zero line (settled, never credited again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa

from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.buckets import bucket_statement
from effigate_engine.billing.credit_notes import CreditNote, credit_note
from effigate_engine.billing.invoice import CREDIT_KINDS, Invoice, InvoiceLine, LineKind, TaxLine
from effigate_engine.billing.schemas import BREACH_RECORDS
from effigate_engine.calendar_set import Horizon
from effigate_engine.errors import BillingError, EffigateError
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.model import Condition
from effigate_engine.ratecard.periods import Period, local_midnight
from effigate_engine.ratecard.schemas import TIME_LOGS, TIME_LOGS_REQUIRED
from effigate_engine.service.context import Principal, Store
from effigate_engine.service.contracts import (
    audit,
    check_visible,
    fetch_contract_row,
    load_contract,
)
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.service.records import (
    BucketAlertRecord,
    BucketBalance,
    CreditNoteLineRecord,
    CreditNoteRecord,
    InvoiceLineRecord,
    InvoiceRecord,
    TaxRecord,
)
from effigate_engine.service.terms import tax_components
from effigate_engine.service.timelogs import cycle_period, lock_period, state_errors
from effigate_engine.store.errors import InvariantViolation
from effigate_engine.zone import zone as bundled_zone

#: Billable types that reach an invoice (non-billable and warranty as zero-priced lines).
BILLED_TYPES = ("BILLABLE", "NON_BILLABLE", "WARRANTY")

#: Late logs of a contract for the invoice of the period starting at $2 (epoch seconds):
#: approved logs that ended before that period, are on no invoice that is not void, and
#: started in an earlier period whose invoice already exists (not void) — so no other invoice
#: will ever price them. They keep their dates (and so their rates and conditions).
LATE_LOGS_SQL = (
    "SELECT l.id, l.ticket_id, l.task_ref, l.agent, l.support_level, l.job_type, l.priority,"
    " l.started_at, l.ended_at, l.billable_type, l.approval_state FROM time_logs l"
    " WHERE l.contract_id = $1 AND l.approval_state = 'APPROVED'"
    " AND l.billable_type IN ('BILLABLE', 'NON_BILLABLE', 'WARRANTY')"
    " AND l.ended_at <= to_timestamp($2)"
    " AND NOT EXISTS (SELECT 1 FROM invoice_line_time_logs e JOIN invoices i ON i.id = e.invoice_id"
    "   WHERE e.time_log_id = l.id AND i.status <> 'VOID')"
    " AND EXISTS (SELECT 1 FROM billing_periods p JOIN invoices i ON i.billing_period_id = p.id"
    "   WHERE p.contract_id = l.contract_id AND i.status <> 'VOID'"
    "   AND l.started_at >= p.starts_at AND l.started_at < p.ends_at)"
    " ORDER BY l.started_at, l.id"
)
#: Priority given to a log stored without one (never a high priority on a default card).
DEFAULT_PRIORITY = "LOW"
_ISSUED = ("ISSUED", "PAID", "OVERDUE")
_TIME_LABELS = {int(c) for c in Condition if c <= Condition.HIGH_PRIORITY}


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# Inputs -------------------------------------------------------------------------------------

#: Unit counts as :func:`assemble_invoice` takes them: per unit type, the count in force on the
#: period's last day, or (prorated units) a timeline of (local date from which it holds, count).
UnitCounts = dict[str, int | list[tuple[date, int]]]


@dataclass
class _Inputs:
    """Everything :func:`assemble_invoice` needs for one contract and period."""

    contract: Contract
    period: Period
    logs: pa.Table | None
    unit_counts: UnitCounts
    breaches: pa.Table
    already_credited: set[str]
    invoiced_items: set[str]
    credit_balance: int
    tax: list[dict[str, Any]]
    exemption: str | None
    library_version: int | None
    late_logs: pa.Table | None = None


async def unit_counts(conn: asyncpg.Connection, contract: Contract, period: Period) -> UnitCounts:
    """The stored unit counts of ``contract`` for the invoice of ``period``. A count holds
    from its local date until the next count of its unit type. Without ``prorate_units``: per
    unit type the count in force on the period's last day. With it: the unit type's timeline up
    to the period's end, from the contract's start (a count of 0 before its first count), so
    the period's proration and the covered fee of earlier cycles (late breaches) see the counts
    each day had."""
    rows = await conn.fetch(
        "SELECT unit_type, effective_on, unit_count FROM unit_counts"
        " WHERE contract_id = $1 AND effective_on < $2 ORDER BY unit_type, effective_on",
        int(contract.id),
        period.end,
    )
    timelines: dict[str, list[tuple[date, int]]] = {}
    for r in rows:
        timelines.setdefault(r["unit_type"], []).append((r["effective_on"], int(r["unit_count"])))
    if contract.recurring is None or not contract.recurring.prorate_units:
        return {unit: timeline[-1][1] for unit, timeline in timelines.items()}
    out: UnitCounts = {}
    for unit, timeline in timelines.items():
        # assemble_invoice holds a timeline's first count before its first date: say "none"
        none_before = [(contract.start, 0)] if timeline[0][0] > contract.start else []
        out[unit] = none_before + timeline
    return out


def _cycle_counts(timeline: Sequence[tuple[date, int]], period: Period) -> list[list[Any]]:
    """The part of a unit timeline that ``period`` billed, as evidence: ``[date, count]`` pairs,
    the count in force on its first day, then each change inside it."""
    opening = [[period.start.isoformat(), n] for day, n in timeline if day <= period.start][-1:]
    inside = [[day.isoformat(), n] for day, n in timeline if period.start < day < period.end]
    return opening + inside


def logs_table(rows: Sequence[asyncpg.Record], contract_id: str) -> pa.Table:
    """Stored time-log rows as the billing ``TIME_LOGS`` Arrow batch (approved ones)."""
    n = len(rows)
    instant = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "log_id": pa.array([r["id"] for r in rows], pa.string()),
            "contract_id": pa.array([contract_id] * n, pa.string()),
            "ticket_id": pa.array([r["ticket_id"] for r in rows], pa.string()),
            "task_id": pa.array([r["task_ref"] for r in rows], pa.string()),
            "agent_id": pa.array([r["agent"] for r in rows], pa.string()),
            "support_level": pa.array([r["support_level"] for r in rows], pa.string()),
            "job_type": pa.array([r["job_type"] for r in rows], pa.string()),
            "priority": pa.array([r["priority"] or DEFAULT_PRIORITY for r in rows], pa.string()),
            "start": pa.array([r["started_at"] for r in rows], instant),
            "end": pa.array([r["ended_at"] for r in rows], instant),
            "billable_type": pa.array([r["billable_type"] for r in rows], pa.string()),
            "approved": pa.array([r["approval_state"] == "APPROVED" for r in rows], pa.bool_()),
        }
    )


def breaches_table(rows: Sequence[asyncpg.Record]) -> pa.Table:
    """Stored ``breach_records`` rows (evidence ``{"priority", "breach_seconds", "severity",
    "client_id"}``; the ticket's priority when the evidence has none) as ``BREACH_RECORDS``."""
    out = []
    for r in rows:
        ev = _loads(r["evidence"]) or {}
        client = ev.get("client_id")
        out.append(
            {
                "breach_id": r["id"],
                "ticket_id": r["ticket_id"],
                "contract_id": None if r["contract_id"] is None else str(r["contract_id"]),
                "client_id": None if client is None else str(client),
                "metric": r["metric"],
                "priority": ev.get("priority") or r["ticket_priority"],
                "breached_at": r["breached_at"].astimezone(UTC).replace(microsecond=0),
                "breach_seconds": int(ev.get("breach_seconds", 0)),
                "severity": str(ev.get("severity", "")),
            }
        )
    return pa.Table.from_pylist(out, schema=BREACH_RECORDS)


async def _settled_elsewhere(
    conn: asyncpg.Connection, contract_id: int, exclude_period_id: int | None
) -> tuple[set[str], set[str], int]:
    """Breach ids and item ids already on the contract's other non-void invoices, and the
    credit balance those invoices carry forward (minor units)."""
    rows = await conn.fetch(
        "SELECT l.kind, l.evidence FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " WHERE i.contract_id = $1 AND i.status <> 'VOID'"
        " AND i.billing_period_id IS DISTINCT FROM $2",
        contract_id,
        exclude_period_id,
    )
    breaches: set[str] = set()
    items: set[str] = set()
    balance = 0
    for r in rows:
        ev = _loads(r["evidence"]) or {}
        breaches.update(ev.get("breach_ids", ()))
        if r["kind"] in (LineKind.MILESTONE, LineKind.DELIVERABLE):
            items.update(ev.get("item_ids", ()))
        balance += int(ev.get("carried_minor", 0))
        if r["kind"] == LineKind.CREDIT_BALANCE:
            balance -= int(ev.get("credit_minor", 0))
    return breaches, items, max(0, balance)


async def _inputs(
    conn: asyncpg.Connection,
    principal: Principal,
    contract_id: int,
    period: Period,
    bounds: tuple[int, int],
    exclude_period_id: int | None,
) -> _Inputs:
    row = await fetch_contract_row(conn, contract_id)
    contract = await load_contract(conn, contract_id)
    start_bound = local_midnight(contract.start, contract.zone)
    drawing = contract.type in (ContractType.BUCKET, ContractType.RECURRING)
    since = start_bound if drawing else bounds[0]
    log_rows = await conn.fetch(
        "SELECT id, ticket_id, task_ref, agent, support_level, job_type, priority, started_at,"
        " ended_at, billable_type, approval_state FROM time_logs"
        " WHERE contract_id = $1 AND approval_state = 'APPROVED'"
        " AND billable_type = ANY($2::text[])"
        " AND started_at < to_timestamp($3) AND ended_at > to_timestamp($4)"
        " AND started_at >= to_timestamp($5) ORDER BY started_at, id",
        contract_id,
        list(BILLED_TYPES),
        bounds[1],
        since,
        start_bound,
    )
    late_rows = [] if drawing else await conn.fetch(LATE_LOGS_SQL, contract_id, bounds[0])
    units = await unit_counts(conn, contract, period)
    breach_rows = await conn.fetch(
        "SELECT b.id, b.ticket_id, b.contract_id, b.metric, b.breached_at, b.evidence,"
        " t.priority AS ticket_priority FROM breach_records b"
        " LEFT JOIN tickets t ON t.id = b.ticket_id"
        " WHERE b.contract_id = $1 AND b.breached_at < to_timestamp($2)"
        " ORDER BY b.breached_at, b.id",
        contract_id,
        bounds[1],
    )
    credited, items, balance = await _settled_elsewhere(conn, contract_id, exclude_period_id)
    terms = _loads(row["terms"]) or {}
    tax = terms.get("tax")
    if tax is None:
        tax = (
            _loads(
                await conn.fetchval(
                    "SELECT default_tax FROM tenants WHERE id = $1", principal.tenant_id
                )
            )
            or []
        )
    return _Inputs(
        contract=contract,
        period=period,
        logs=logs_table(log_rows, contract.id) if log_rows else None,
        unit_counts=units,
        breaches=breaches_table(breach_rows),
        already_credited=credited,
        invoiced_items=items,
        credit_balance=balance,
        tax=list(tax),
        exemption=terms.get("tax_exemption"),
        library_version=row["frozen_rate_card_version"],
        late_logs=logs_table(late_rows, contract.id) if late_rows else None,
    )


def _horizon(contract: Contract, until: date, logs: pa.Table | None) -> Horizon:
    first = contract.start
    last = until
    if logs is not None and logs.num_rows:
        first = min(first, logs.column("start").to_pylist()[0].date())
        last = max(last, max(logs.column("end").to_pylist()).date())
    return Horizon.of(date(first.year - 1, 1, 1), date(last.year + 2, 1, 1))


def _classify(contract: Contract, until: date, logs: pa.Table | None) -> Classification | None:
    if logs is None or logs.num_rows == 0:
        return None
    book = ContractBook([contract], _horizon(contract, until, logs))
    return classify(book, logs, evidence=True)


def _late(contract: Contract, until: date, logs: pa.Table | None) -> list[tuple[Period, Any]]:
    """The late logs classified, and the earlier periods their parts fall in."""
    cls = _classify(contract, until, logs)
    if cls is None:
        return []
    ordinals = sorted(set(cls.lines.column("period").to_pylist()))
    return [(contract.cycle.period(int(k)), cls) for k in ordinals]


def _compute(inputs: _Inputs) -> tuple[Invoice, Classification | None, list[tuple[Period, Any]]]:
    """Classify the period's logs (and the late ones) and assemble the invoice (CPU-bound: run
    off the loop)."""
    cls = _classify(inputs.contract, inputs.period.end, inputs.logs)
    late = _late(inputs.contract, inputs.period.end, inputs.late_logs)
    invoice = assemble_invoice(
        inputs.contract,
        inputs.period,
        classification=cls,
        unit_counts=inputs.unit_counts,
        breaches=inputs.breaches,
        already_credited=inputs.already_credited,
        invoiced_items=inputs.invoiced_items,
        tax=tax_components(inputs.tax),
        exemption=inputs.exemption,
        credit_balance=inputs.credit_balance,
        late=late,
    )
    return invoice, cls, late


# Evidence -----------------------------------------------------------------------------------


def _time_line_parts(
    contract: Contract, period: Period, cls: Classification
) -> list[dict[tuple[str, int], list[int | None]]]:
    """Per time line of ``contract`` in ``period`` (in :func:`time_lines` order): the billed
    and actual seconds of each (log id, part) it prices (actual ``None`` for bucket drawdown
    portions, whose seconds are burn-weighted)."""
    lines = cls.lines
    mask = (np.asarray(lines.column("contract_id").to_pylist(), dtype=object) == contract.id) & (
        lines.column("period").to_numpy() == period.ordinal
    )
    keys = cls.line_keys[mask].tolist()
    out: list[dict[tuple[str, int], list[int | None]]] = [{} for _ in keys]
    if not keys or cls.slot_keys is None:
        return out
    where = {k: i for i, k in enumerate(keys)}
    p = cls.parts
    slot_keys = cls.slot_keys
    log_ids = cls.logs.column("log_id").to_pylist()
    rows, slots = np.nonzero(np.isin(slot_keys, np.asarray(keys, np.int64)))
    for k, m in zip(rows.tolist(), slots.tolist(), strict=True):
        key = int(slot_keys[k, m])
        label = (key >> K.KEY_BITS[5]) & ((1 << K.KEY_BITS[4]) - 1)
        billed_row = p["billed"][k]
        actual_row = p["actual"][k]
        actual: int | None
        if label in _TIME_LABELS:
            conds = [c for c in range(4) if billed_row[c] > 0]
            cond = conds[m]
            billed, actual = int(billed_row[cond]), int(actual_row[cond])
        elif label == Condition.INCLUDED:
            billed = int(p["covered"][k])
            drawing = contract.type in (ContractType.BUCKET, ContractType.RECURRING)
            actual = None if drawing else int(actual_row.sum())
        elif label == Condition.ADDITIONAL_HOURS:
            billed, actual = int(p["overage"][k]), None
        else:
            billed, actual = int(billed_row.sum()), int(actual_row.sum())
        entry = out[where[key]].setdefault(
            (log_ids[int(p["part_log"][k])], int(p["part_no"][k])), [0, 0]
        )
        entry[0] = int(entry[0] or 0) + billed
        entry[1] = None if actual is None or entry[1] is None else int(entry[1]) + actual
    return out


def _stored_lines(
    contract: Contract,
    invoice: Invoice,
    cls: Classification | None,
    library_version: int | None,
    unit_counts: UnitCounts,
    late: Sequence[tuple[Period, Any]] = (),
) -> list[dict[str, Any]]:
    """The rows to store for an assembled invoice (see the module docstring)."""
    parts = _time_line_parts(contract, invoice.period, cls) if cls is not None else []
    for period, late_cls in late:
        parts += _time_line_parts(contract, period, late_cls)
    sources = {
        v.version: (
            {"library_version": library_version}
            if v.amendment_id is None
            else {"amendment_id": int(v.amendment_id)}
        )
        for v in contract.versions
    }
    left = invoice.credits_applied
    applied: dict[int, int] = {}
    credit_order = sorted(
        (line for line in invoice.lines if line.kind in CREDIT_KINDS),
        key=lambda line: (line.kind != LineKind.CREDIT_BALANCE, line.line_no),
    )
    for line in credit_order:
        take = min(-line.amount, left)
        applied[line.line_no] = take
        left -= take
    out: list[dict[str, Any]] = []
    time_index = 0
    for line in invoice.lines:
        evidence: dict[str, Any] = {"taxable": line.taxable, "quantity": line.quantity}
        amount = line.amount
        row: dict[str, Any] = {
            "position": line.line_no,
            "kind": line.kind.value,
            "description": line.description,
            "time_condition": line.condition,
            "support_level": line.support_level,
            "job_type": line.job_type,
            "rate": None,
            "rate_card_version": line.rate_card_version,
            "actual_seconds": None,
            "billed_seconds": None,
            "logs": {},
        }
        if line.kind == LineKind.TIME:
            logs = parts[time_index] if time_index < len(parts) else {}
            time_index += 1
            if sum(int(v[0] or 0) for v in logs.values()) != line.quantity or set(
                log_id for log_id, _ in logs
            ) != set(line.log_ids):
                raise BillingError(
                    "invoice.lines", line.line_no, "evidence does not match the line's seconds"
                )
            row["rate"] = line.rate
            row["billed_seconds"] = line.quantity
            actuals = [v[1] for v in logs.values()]
            row["actual_seconds"] = None if None in actuals else sum(int(a or 0) for a in actuals)
            row["logs"] = logs
            evidence["rate_card_sha256"] = line.rate_card_hash
            if line.rate_card_version in sources:
                evidence["rate_card_source"] = sources[line.rate_card_version]
        elif line.kind == LineKind.RECURRING_UNITS:
            unit = line.item_ids[0]
            counted = unit_counts.get(unit)
            evidence.update(unit_type=unit, unit_price_minor=line.rate)
            if isinstance(counted, list):
                evidence["unit_timeline"] = _cycle_counts(counted, invoice.period)
            else:
                evidence["unit_count"] = counted
        elif line.kind in CREDIT_KINDS:
            full = -line.amount
            amount = -applied[line.line_no]
            evidence.update(credit_minor=full, carried_minor=full - applied[line.line_no])
        if line.breach_ids:
            evidence["breach_ids"] = list(line.breach_ids)
        if line.item_ids:
            evidence["item_ids"] = list(line.item_ids)
        row["amount"] = amount
        row["evidence"] = evidence
        out.append(row)
    if invoice.forfeited_breach_ids:
        out.append(
            {
                "position": len(out) + 1,
                "kind": LineKind.SLA_CREDIT.value,
                "description": "SLA breaches past the period's credit cap (no credit)",
                "time_condition": None,
                "support_level": None,
                "job_type": None,
                "rate": None,
                "rate_card_version": None,
                "actual_seconds": None,
                "billed_seconds": None,
                "logs": {},
                "amount": 0,
                "evidence": {
                    "taxable": True,
                    "quantity": len(invoice.forfeited_breach_ids),
                    "breach_ids": list(invoice.forfeited_breach_ids),
                    "forfeited": True,
                    "credit_minor": 0,
                    "carried_minor": 0,
                },
            }
        )
    return out


def _tax_json(invoice: Invoice) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": t.name, "rate_ppm": t.ppm, "base_minor": t.base, "amount_minor": t.amount}
        for t in invoice.taxes
    ]
    if invoice.exemption:
        out.append({"exemption": invoice.exemption, "base_minor": invoice.taxable_base})
    return out


async def _store_invoice(
    conn: asyncpg.Connection,
    contract_id: int,
    period_id: int,
    invoice: Invoice,
    lines: list[dict[str, Any]],
) -> int:
    subtotal = sum(line["amount"] for line in lines)
    tax = invoice.tax_total
    invoice_id = await conn.fetchval(
        "INSERT INTO invoices (contract_id, billing_period_id, currency, subtotal_minor,"
        " tax_minor, total_minor, tax) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING id",
        contract_id,
        period_id,
        invoice.currency,
        subtotal,
        tax,
        subtotal + tax,
        json.dumps(_tax_json(invoice)),
    )
    line_ids: list[int] = []
    log_ids: list[str] = []
    part_nos: list[int] = []
    seconds: list[int] = []
    for line in lines:
        line_id = await conn.fetchval(
            "INSERT INTO invoice_lines (invoice_id, position, kind, description, time_condition,"
            " support_level, job_type, rate_minor_per_hour, rate_card_version, actual_seconds,"
            " billed_seconds, amount_minor, evidence)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb) RETURNING id",
            invoice_id,
            line["position"],
            line["kind"],
            line["description"],
            line["time_condition"],
            line["support_level"],
            line["job_type"],
            line["rate"],
            line["rate_card_version"],
            line["actual_seconds"],
            line["billed_seconds"],
            line["amount"],
            json.dumps(line["evidence"]),
        )
        for (log_id, part), (billed, _) in sorted(line["logs"].items()):
            line_ids.append(int(line_id))
            log_ids.append(log_id)
            part_nos.append(part)
            seconds.append(int(billed or 0))
    if line_ids:
        await conn.execute(
            "INSERT INTO invoice_line_time_logs (invoice_id, invoice_line_id, time_log_id, part,"
            " billed_seconds) SELECT $1, l, t, p, s FROM unnest($2::bigint[], $3::text[],"
            " $4::smallint[], $5::bigint[]) AS u(l, t, p, s)",
            invoice_id,
            line_ids,
            log_ids,
            part_nos,
            seconds,
        )
    return int(invoice_id)


# Reads --------------------------------------------------------------------------------------

_INVOICE_SELECT = (
    "SELECT i.id, i.contract_id, c.client_id, c.time_zone, i.billing_period_id, bp.starts_at,"
    " bp.ends_at, i.status, i.number, i.currency, i.subtotal_minor, i.tax_minor, i.total_minor,"
    " i.tax, i.issued_at, i.due_at, i.created_at, i.paid_minor AS paid,"
    " i.credited_minor AS credited"
    " FROM invoices i JOIN contracts c ON c.id = i.contract_id"
    " LEFT JOIN billing_periods bp ON bp.id = i.billing_period_id"
)


async def _records(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[InvoiceRecord]:
    ids = [r["id"] for r in rows]
    lines: dict[int, list[asyncpg.Record]] = {i: [] for i in ids}
    logs: dict[int, list[str]] = {}
    if ids:
        for r in await conn.fetch(
            "SELECT * FROM invoice_lines WHERE invoice_id = ANY($1::bigint[])"
            " ORDER BY invoice_id, position",
            ids,
        ):
            lines[r["invoice_id"]].append(r)
        for r in await conn.fetch(
            "SELECT invoice_line_id, array_agg(DISTINCT time_log_id ORDER BY time_log_id) AS ids"
            " FROM invoice_line_time_logs WHERE invoice_id = ANY($1::bigint[])"
            " GROUP BY invoice_line_id",
            ids,
        ):
            logs[r["invoice_line_id"]] = list(r["ids"])
    out = []
    for r in rows:
        zone = bundled_zone(r["time_zone"])
        line_records = tuple(
            InvoiceLineRecord(
                id=x["id"],
                position=x["position"],
                kind=x["kind"],
                description=x["description"],
                time_condition=x["time_condition"],
                support_level=x["support_level"],
                job_type=x["job_type"],
                rate_minor_per_hour=x["rate_minor_per_hour"],
                rate_card_version=x["rate_card_version"],
                actual_seconds=x["actual_seconds"],
                billed_seconds=x["billed_seconds"],
                amount_minor=x["amount_minor"],
                time_log_ids=tuple(logs.get(x["id"], ())),
                evidence=_loads(x["evidence"]) or {},
            )
            for x in lines[r["id"]]
        )
        tax_items = _loads(r["tax"]) or []
        taxes = tuple(
            TaxRecord(t["name"], int(t["rate_ppm"]), int(t["base_minor"]), int(t["amount_minor"]))
            for t in tax_items
            if "name" in t
        )
        exemption = next((t["exemption"] for t in tax_items if "exemption" in t), None)
        credits = -sum(x.amount_minor for x in line_records if x.kind in CREDIT_KINDS)
        carried = sum(int(x.evidence.get("carried_minor", 0)) for x in line_records)
        out.append(
            InvoiceRecord(
                id=r["id"],
                contract_id=r["contract_id"],
                client_id=r["client_id"],
                billing_period_id=r["billing_period_id"],
                period_start=r["starts_at"].astimezone(zone).date(),
                period_end=r["ends_at"].astimezone(zone).date(),
                status=r["status"],
                number=r["number"],
                currency=r["currency"].strip(),
                subtotal_minor=r["subtotal_minor"],
                tax_minor=r["tax_minor"],
                total_minor=r["total_minor"],
                issued_at=r["issued_at"],
                due_at=r["due_at"],
                created_at=r["created_at"],
                lines=line_records,
                taxes=taxes,
                charges_minor=r["subtotal_minor"] + credits,
                credits_minor=credits,
                credit_balance_minor=carried,
                paid_minor=int(r["paid"]),
                credited_minor=int(r["credited"]),
                exemption=exemption,
            )
        )
    return out


async def fetch_invoice(
    conn: asyncpg.Connection, invoice_id: int, principal: Principal | None = None
) -> InvoiceRecord:
    """The stored invoice ``invoice_id`` with its lines (a portal principal: only its
    client's; another client's is :class:`NotFound`)."""
    row = await conn.fetchrow(_INVOICE_SELECT + " WHERE i.id = $1", invoice_id)
    if row is None:
        raise NotFound("invoice_id", invoice_id, "is not an invoice of this tenant")
    if principal is not None:
        check_visible(principal, row["client_id"], "invoice_id", invoice_id)
    return (await _records(conn, [row]))[0]


async def _lock_invoice(conn: asyncpg.Connection, invoice_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, contract_id, status, number, total_minor, paid_minor, credited_minor"
        " FROM invoices WHERE id = $1 FOR UPDATE",
        invoice_id,
    )
    if row is None:
        raise NotFound("invoice_id", invoice_id, "is not an invoice of this tenant")
    return row


async def get_invoice(store: Store, principal: Principal, invoice_id: int) -> InvoiceRecord:
    """The stored invoice with its lines and each line's time-log ids. A portal principal
    sees only its own client's invoices: another client's id is :class:`NotFound`."""
    async with store.transaction(principal) as conn:
        return await fetch_invoice(conn, invoice_id, principal)


async def list_invoices(
    store: Store, principal: Principal, contract_id: int | None = None
) -> list[InvoiceRecord]:
    """The tenant's invoices by id (of one contract when given); a portal principal gets only
    its own client's."""
    async with store.transaction(principal) as conn:
        rows = await conn.fetch(
            _INVOICE_SELECT + " WHERE ($1::bigint IS NULL OR i.contract_id = $1)"
            " AND ($2::bigint IS NULL OR c.client_id = $2) ORDER BY i.id",
            contract_id,
            principal.client_id,
        )
        return await _records(conn, rows)


# Operations ---------------------------------------------------------------------------------


async def preview_invoice(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> Invoice:
    """The invoice the contract's billing period holding ``period_start`` would get, assembled
    by the billing domain from the stored approved logs, milestones, deliverables, unit counts,
    SLA breaches and tax; nothing is stored."""
    principal.require_staff("preview invoices")
    async with store.transaction(principal) as conn:
        period, bounds = await cycle_period(conn, contract_id, period_start)
        period_id = await conn.fetchval(
            "SELECT id FROM billing_periods WHERE contract_id = $1"
            " AND starts_at = to_timestamp($2)",
            contract_id,
            bounds[0],
        )
        inputs = await _inputs(conn, principal, contract_id, period, bounds, period_id)
    invoice, _, _ = await asyncio.to_thread(_compute, inputs)
    return invoice


async def generate_invoice(
    store: Store, principal: Principal, contract_id: int, period_start: date
) -> InvoiceRecord:
    """Store the ``DRAFT`` invoice of the contract's billing period holding ``period_start``,
    with its lines and evidence (each line's time-log parts; breach, milestone, deliverable
    and unit evidence; the frozen rate-card version and hash). Idempotent per (contract,
    period): the period row is locked first, so a second call, even a concurrent one, returns
    the invoice already there; the database's unique index is the backstop."""
    principal.require_staff("generate invoices")
    try:
        async with store.transaction(principal) as conn:
            period, bounds = await cycle_period(conn, contract_id, period_start)
            period_row = await lock_period(conn, contract_id, period, bounds)
            # Edits of the contract's time logs share-lock the contract: holding it, the logs
            # read below stay as priced until the invoice and its evidence are stored.
            await conn.execute(
                "SELECT 1 FROM contracts WHERE id = $1 FOR NO KEY UPDATE", contract_id
            )
            existing = await conn.fetchval(
                "SELECT id FROM invoices WHERE contract_id = $1 AND billing_period_id = $2"
                " AND status <> 'VOID'",
                contract_id,
                period_row["id"],
            )
            if existing is not None:
                return await fetch_invoice(conn, existing)
            inputs = await _inputs(conn, principal, contract_id, period, bounds, period_row["id"])
            invoice, cls, late = await asyncio.to_thread(_compute, inputs)
            lines = _stored_lines(
                inputs.contract, invoice, cls, inputs.library_version, inputs.unit_counts, late
            )
            invoice_id = await _store_invoice(conn, contract_id, period_row["id"], invoice, lines)
            await audit(
                conn,
                principal,
                "generate",
                "invoice",
                invoice_id,
                {"contract_id": contract_id, "period_start": period.start, "total": invoice.total},
            )
            return await fetch_invoice(conn, invoice_id)
    except InvariantViolation as exc:
        if exc.sqlstate != "23505":
            raise
    async with store.transaction(principal) as conn:
        period, bounds = await cycle_period(conn, contract_id, period_start)
        existing = await conn.fetchval(
            "SELECT i.id FROM invoices i JOIN billing_periods p ON p.id = i.billing_period_id"
            " WHERE i.contract_id = $1 AND p.starts_at = to_timestamp($2) AND i.status <> 'VOID'",
            contract_id,
            bounds[0],
        )
        if existing is None:  # pragma: no cover - the unique clash names a stored invoice
            raise FailedPrecondition("invoice", contract_id, "could not be generated; retry")
        return await fetch_invoice(conn, existing)


async def review_invoice(store: Store, principal: Principal, invoice_id: int) -> InvoiceRecord:
    """Move a ``DRAFT`` invoice to ``REVIEW`` (``REVIEW`` stays ``REVIEW``)."""
    principal.require_staff("review invoices")
    async with store.transaction(principal) as conn:
        row = await _lock_invoice(conn, invoice_id)
        if row["status"] not in ("DRAFT", "REVIEW"):
            raise FailedPrecondition("invoice.status", row["status"], "is not DRAFT")
        if row["status"] == "DRAFT":
            await conn.execute("UPDATE invoices SET status = 'REVIEW' WHERE id = $1", invoice_id)
            await audit(conn, principal, "review", "invoice", invoice_id)
        return await fetch_invoice(conn, invoice_id)


def _evidence_ids(records: Iterable[InvoiceLineRecord], prefix: str) -> list[int]:
    out = []
    for line in records:
        for item in line.evidence.get("item_ids", ()):
            if item.startswith(prefix):
                out.append(int(item.removeprefix(prefix)))
    return out


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
        row = await _lock_invoice(conn, invoice_id)
        if row["status"] not in ("DRAFT", "REVIEW"):
            raise FailedPrecondition(
                "invoice.status", row["status"], f"invoice {invoice_id} is already issued"
            )
        await conn.execute(
            "UPDATE invoices SET status = 'ISSUED', issued_at = now(),"
            " due_at = now() + make_interval(days => $2) WHERE id = $1",
            invoice_id,
            due_days,
        )
        contract_type = await conn.fetchval(
            "SELECT contract_type FROM contracts WHERE id = $1", row["contract_id"]
        )
        if contract_type == "BUCKET":
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
                row["contract_id"],
            )
        record = await fetch_invoice(conn, invoice_id)
        for table, prefix in (("milestones", "milestone:"), ("deliverables", "deliverable:")):
            ids = _evidence_ids(record.lines, prefix)
            if ids:
                await conn.execute(
                    f"UPDATE {table} SET status = 'INVOICED' WHERE id = ANY($1::bigint[])", ids
                )
        await audit(
            conn,
            principal,
            "issue",
            "invoice",
            invoice_id,
            {"number": record.number, "total_minor": record.total_minor, "due_days": due_days},
        )
        return record


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
        row = await _lock_invoice(conn, invoice_id)
        if row["status"] not in ("ISSUED", "OVERDUE"):
            raise FailedPrecondition(
                "invoice.status", row["status"], "takes no payment (only ISSUED or OVERDUE)"
            )
        due = row["total_minor"] - row["paid_minor"] - row["credited_minor"]
        if amount_minor > due:
            raise FailedPrecondition(
                "amount_minor", amount_minor, f"exceeds the {due} still due on invoice {invoice_id}"
            )
        payment_id = await conn.fetchval(
            "INSERT INTO payments (invoice_id, amount_minor, received_at, reference)"
            " VALUES ($1, $2, $3, $4) RETURNING id",
            invoice_id,
            amount_minor,
            received_at,
            reference,
        )
        if amount_minor == due:
            await conn.execute("UPDATE invoices SET status = 'PAID' WHERE id = $1", invoice_id)
        await audit(
            conn,
            principal,
            "payment",
            "invoice",
            invoice_id,
            {"payment_id": payment_id, "amount_minor": amount_minor, "paid": amount_minor == due},
        )
    return int(payment_id)


def _domain_invoice(record: InvoiceRecord) -> Invoice:
    """The stored invoice as a domain :class:`Invoice` for the credit-note arithmetic."""
    lines = tuple(
        InvoiceLine(
            line.position,
            LineKind(line.kind),
            line.description,
            line.amount_minor,
            int(line.evidence.get("quantity", 1)),
            line.rate_minor_per_hour,
            line.time_condition,
            line.support_level,
            line.job_type,
            line.taxable,
        )
        for line in record.lines
    )
    taxes = tuple(TaxLine(t.name, t.rate_ppm, t.base_minor, t.amount_minor) for t in record.taxes)
    return Invoice(
        str(record.contract_id),
        Period(0, record.period_start, record.period_end),
        record.currency,
        lines,
        record.charges_minor,
        record.credits_minor,
        record.credits_minor,
        record.credit_balance_minor,
        taxes[0].base if taxes else 0,
        taxes,
        record.total_minor,
        record.exemption,
    )


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
        row = await _lock_invoice(conn, invoice_id)
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
        previous: list[CreditNote] = []
        notes = await conn.fetch(
            "SELECT id, subtotal_minor, tax_minor, total_minor FROM credit_notes"
            " WHERE invoice_id = $1 ORDER BY id",
            invoice_id,
        )
        note_lines = await conn.fetch(
            "SELECT credit_note_id, invoice_line_id, amount_minor FROM credit_note_lines"
            " WHERE invoice_id = $1",
            invoice_id,
        )
        taxable = {line.position: line.taxable for line in record.lines}
        for i, n in enumerate(notes):
            credited = {
                position[x["invoice_line_id"]]: int(x["amount_minor"])
                for x in note_lines
                if x["credit_note_id"] == n["id"]
            }
            previous.append(
                CreditNote(
                    i + 1,
                    credited,
                    int(n["subtotal_minor"]),
                    sum(a for p, a in credited.items() if taxable.get(p, True)),
                    (),
                    int(n["total_minor"]),
                )
            )
        try:
            note = credit_note(_domain_invoice(record), previous, by_position)
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
        stored = await conn.fetchrow(
            "INSERT INTO credit_notes (invoice_id, reason, subtotal_minor, tax_minor, total_minor)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id, issued_at",
            invoice_id,
            reason,
            note.net,
            tax,
            note.total,
        )
        for pos, amount in sorted(note.lines.items()):
            await conn.execute(
                "INSERT INTO credit_note_lines (credit_note_id, invoice_id, invoice_line_id,"
                " amount_minor) VALUES ($1, $2, $3, $4)",
                stored["id"],
                invoice_id,
                line_id_of[pos],
                amount,
            )
        await audit(
            conn,
            principal,
            "credit_note",
            "invoice",
            invoice_id,
            {"credit_note_id": stored["id"], "total_minor": note.total, "reason": reason},
        )
    return CreditNoteRecord(
        id=stored["id"],
        invoice_id=invoice_id,
        reason=reason,
        subtotal_minor=note.net,
        tax_minor=tax,
        total_minor=note.total,
        issued_at=stored["issued_at"],
        lines=tuple(
            CreditNoteLineRecord(line_id_of[pos], amount)
            for pos, amount in sorted(note.lines.items())
        ),
    )


async def void_invoice(store: Store, principal: Principal, invoice_id: int) -> InvoiceRecord:
    """Void an invoice. An issued (or overdue) invoice without payments becomes ``VOID``: its
    number stays used, its time logs are released, its bucket drawdown is reversed
    (``ADJUSTMENT`` ledger entries) and its milestones and deliverables become invoiceable
    again. A ``DRAFT`` / ``REVIEW`` invoice is discarded (deleted with its lines) and returned
    as it was, with status ``VOID``; the period can then be generated afresh."""
    principal.require_staff("void invoices")
    async with state_errors(), store.transaction(principal) as conn:
        row = await _lock_invoice(conn, invoice_id)
        record = await fetch_invoice(conn, invoice_id)
        status = row["status"]
        if status in ("DRAFT", "REVIEW"):
            # the service role deletes nothing itself: the database discards the draft
            await conn.execute("SELECT effigate_discard_draft_invoice($1)", invoice_id)
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
        await conn.execute("UPDATE invoices SET status = 'VOID' WHERE id = $1", invoice_id)
        await conn.execute(
            "INSERT INTO bucket_ledger (contract_id, entry_at, kind, seconds, time_log_id,"
            " invoice_id, note) SELECT contract_id, entry_at, 'ADJUSTMENT', -seconds, time_log_id,"
            " invoice_id, 'void of invoice ' || invoice_id FROM bucket_ledger"
            " WHERE invoice_id = $1 AND kind = 'DRAWDOWN' ORDER BY id",
            invoice_id,
        )
        for table, prefix, back in (
            ("milestones", "milestone:", "APPROVED"),
            ("deliverables", "deliverable:", "SIGNED_OFF"),
        ):
            ids = _evidence_ids(record.lines, prefix)
            if ids:
                await conn.execute(
                    f"UPDATE {table} SET status = $2 WHERE id = ANY($1::bigint[])", ids, back
                )
        await audit(conn, principal, "void", "invoice", invoice_id, {"number": record.number})
        return await fetch_invoice(conn, invoice_id)


# Buckets ------------------------------------------------------------------------------------


async def bucket_balance(
    store: Store, principal: Principal, contract_id: int, at: datetime | None = None
) -> BucketBalance:
    """The prepaid bucket of a ``BUCKET`` contract at instant ``at`` (default now): purchased,
    top-ups, burned, remaining and expired burn-weighted seconds from its approved billable
    logs in work order, the low-balance alerts crossed, and what issued invoices drew down. A
    portal principal may ask about its own client's contracts only."""
    at = datetime.now(UTC) if at is None else at
    if at.tzinfo is None:
        raise BillingError("at", at.isoformat(), "is naive; give an aware instant")
    async with store.transaction(principal) as conn:
        row = await fetch_contract_row(conn, contract_id)
        check_visible(principal, row["client_id"], "contract_id", contract_id)
        if row["contract_type"] != "BUCKET":
            raise FailedPrecondition(
                "contract.contract_type", row["contract_type"], "has no prepaid bucket"
            )
        if row["status"] == "DRAFT":
            raise FailedPrecondition("contract.status", "DRAFT", "is not activated yet")
        contract = await load_contract(conn, contract_id)
        start_bound = local_midnight(contract.start, contract.zone)
        log_rows = await conn.fetch(
            "SELECT id, ticket_id, task_ref, agent, support_level, job_type, priority, started_at,"
            " ended_at, billable_type, approval_state FROM time_logs"
            " WHERE contract_id = $1 AND approval_state = 'APPROVED'"
            " AND billable_type = 'BILLABLE' AND started_at < $2"
            " AND started_at >= to_timestamp($3) ORDER BY started_at, id",
            contract_id,
            at,
            start_bound,
        )
        drawn = await conn.fetchval(
            "SELECT coalesce(-sum(seconds), 0) FROM bucket_ledger WHERE contract_id = $1"
            " AND invoice_id IS NOT NULL AND kind IN ('DRAWDOWN', 'ADJUSTMENT')",
            contract_id,
        )
    logs = logs_table(log_rows, contract.id) if log_rows else None
    instant = int(at.timestamp())

    def compute() -> BucketBalance:
        assert contract.bucket is not None
        thresholds = tuple(sorted(contract.bucket.low_balance_seconds))
        classification = None
        if logs is not None:
            book = ContractBook([contract], _horizon(contract, at.date(), logs))
            classification = classify(book, logs)
        st = bucket_statement(contract, classification, instant)
        return BucketBalance(
            contract_id,
            at,
            st.purchased_seconds,
            st.top_up_seconds,
            st.burned_seconds,
            st.remaining_seconds,
            st.expired_seconds,
            st.overage_seconds,
            int(drawn),
            thresholds,
            tuple(
                BucketAlertRecord(a.threshold_seconds, a.balance_seconds, _utc(a.at), a.log_id)
                for a in st.alerts
            ),
        )

    return await asyncio.to_thread(compute)


__all__ = [
    "bucket_balance",
    "create_credit_note",
    "fetch_invoice",
    "generate_invoice",
    "get_invoice",
    "issue_invoice",
    "list_invoices",
    "preview_invoice",
    "record_payment",
    "review_invoice",
    "void_invoice",
]


def caller_logs(logs: pa.Table) -> pa.Table:
    """A caller's time-log batch in the billing ``TIME_LOGS`` types, every required column
    present and non-null, instants within the calendars' horizon; anything else is an input
    error naming the column (and the row)."""
    for name in TIME_LOGS_REQUIRED:
        if name not in logs.column_names:
            raise EffigateError(f"logs.{name}: is a required time-log column")
    if logs.num_rows == 0:
        raise EffigateError("logs: is an empty batch")
    horizon = Horizon()
    columns, names = [], []
    for spec in TIME_LOGS:
        if spec.name not in logs.column_names:
            continue
        column = logs.column(spec.name)
        try:
            column = column.cast(spec.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise EffigateError(
                f"logs.{spec.name}: {column.type} is not {spec.type} ({exc})"
            ) from exc
        if not spec.nullable and column.null_count:
            row = column.to_pylist().index(None)
            raise EffigateError(f"logs.{spec.name}[{row}]: is required but null")
        if spec.name in ("start", "end"):
            seconds = column.cast(pa.int64()).to_numpy()
            outside = np.flatnonzero((seconds < horizon.start) | (seconds >= horizon.end))
            if outside.size:
                row = int(outside[0])
                raise EffigateError(
                    f"logs.{spec.name}[{row}]: {column[row].as_py().isoformat()} is outside"
                    f" {horizon}"
                )
        columns.append(column)
        names.append(spec.name)
    return pa.table(columns, names=names)


async def classify_logs(
    store: Store, principal: Principal, contract_id: int, logs: pa.Table
) -> pa.Table:
    """Classify caller-given time logs (the billing ``LOGS`` columns) under a stored contract's
    frozen rate card and calendar; returns the per-log results (``LOG_RESULTS``). Nothing is
    read from or written to the stored time logs: a what-if, or a check before ingest."""
    principal.require_staff("classify time logs")
    async with store.transaction(principal) as conn:
        contract = await load_contract(conn, contract_id)
    ids = pa.array([contract.id] * logs.num_rows, pa.string())
    if "contract_id" in logs.column_names:
        logs = logs.set_column(logs.column_names.index("contract_id"), "contract_id", ids)
    else:
        logs = logs.append_column("contract_id", ids)
    logs = caller_logs(logs)
    until = contract.end or date.today()

    def run() -> pa.Table:
        book = ContractBook([contract], _horizon(contract, until, logs))
        return classify(book, logs).results

    return await asyncio.to_thread(run)


async def mark_overdue(
    store: Store, principal: Principal, as_of: datetime | None = None
) -> list[InvoiceRecord]:
    """Move every ``ISSUED`` invoice whose due instant is before ``as_of`` (default now) and
    that payments and credit notes have not settled to ``OVERDUE``; returns those invoices.
    Running it again changes nothing (an ``OVERDUE`` invoice stays so until it is paid)."""
    principal.require_staff("mark invoices overdue")
    at = as_of or datetime.now(UTC)
    if at.tzinfo is None:
        raise BillingError("as_of", at.isoformat(), "is naive; give an instant")
    async with store.transaction(principal) as conn:
        ids = await conn.fetch(
            """UPDATE invoices i SET status = 'OVERDUE'
               WHERE i.status = 'ISSUED' AND i.due_at < $1
                 AND i.total_minor > i.paid_minor + i.credited_minor
               RETURNING i.id""",
            at,
        )
        for row in ids:
            await audit(conn, principal, "overdue", "invoice", row["id"], {"as_of": at})
        return [await fetch_invoice(conn, row["id"]) for row in sorted(ids, key=lambda r: r["id"])]
