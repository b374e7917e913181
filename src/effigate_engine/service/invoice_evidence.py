"""What a stored invoice is made of: the inputs gathered for the billing domain (unit counts,
breaches, what earlier invoices settled), the domain run (classify + ``assemble_invoice``) and
the rows stored for its lines with their evidence.

How a stored invoice relates to the assembled one: every line is stored with its position;
credit lines (SLA credits, a credit balance brought forward) are stored at the amount actually
applied (credits never take a total below zero), and the part not applied is kept in the line's
evidence as ``carried_minor``, the credit balance carried to the contract's next invoice. So
``subtotal_minor`` is the sum of the stored lines and ``total_minor = subtotal_minor +
tax_minor``, as the database checks. Breaches the per-period cap trims to nothing are recorded
on a zero line (settled, never credited again). Money is integer minor units of the contract's
currency, durations whole seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import numpy as np
import pyarrow as pa

from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.invoice import CREDIT_KINDS, Invoice, InvoiceLine, LineKind
from effigate_engine.billing.schemas import BREACH_RECORDS
from effigate_engine.billing.terms_json import tax_components
from effigate_engine.calendar_set import Horizon
from effigate_engine.errors import BillingError
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.book import book_horizon
from effigate_engine.ratecard.classify import Classification, ContractBook, classify
from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.model import Condition
from effigate_engine.ratecard.periods import Period
from effigate_engine.store.contracts import StoredContract, loads

_TIME_LABELS = {int(c) for c in Condition if c <= Condition.HIGH_PRIORITY}

# Inputs -------------------------------------------------------------------------------------

#: Unit counts as :func:`assemble_invoice` takes them: per unit type, the count in force on the
#: period's last day, or (prorated units) a timeline of (local date from which it holds, count).
UnitCounts = dict[str, int | list[tuple[date, int]]]


@dataclass
class Inputs:
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


def unit_counts(
    stored: StoredContract, period: Period, contract: Contract | None = None
) -> UnitCounts:
    """The stored unit counts of a contract for the invoice of ``period``. A count holds
    from its local date until the next count of its unit type. Without ``prorate_units``: per
    unit type the count in force on the period's last day. With it: the unit type's timeline up
    to the period's end, from the contract's start (a count of 0 before its first count), so
    the period's proration and the covered fee of earlier cycles (late breaches) see the counts
    each day had. ``contract``: the terms to read them under (default the stored ones)."""
    contract = contract or stored.contract
    timelines: dict[str, list[tuple[date, int]]] = {}
    for u in stored.unit_counts:
        if u.effective_on < period.end:
            timelines.setdefault(u.unit_type, []).append((u.effective_on, u.count))
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


def breaches_table(rows: Sequence[Any]) -> pa.Table:
    """Stored ``breach_records`` rows (evidence ``{"priority", "breach_seconds", "severity",
    "client_id"}``; the ticket's priority when the evidence has none) as ``BREACH_RECORDS``."""
    out = []
    for r in rows:
        ev = loads(r["evidence"]) or {}
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


def settled(lines: Iterable[tuple[str, dict[str, Any]]]) -> tuple[set[str], set[str], int]:
    """Breach ids and item ids on the ``(kind, evidence)`` lines of a contract's other
    non-void invoices, and the credit balance those invoices carry forward (minor units)."""
    breaches: set[str] = set()
    items: set[str] = set()
    balance = 0
    for kind, ev in lines:
        breaches.update(ev.get("breach_ids", ()))
        if kind in (LineKind.MILESTONE, LineKind.DELIVERABLE):
            items.update(ev.get("item_ids", ()))
        balance += int(ev.get("carried_minor", 0))
        if kind == LineKind.CREDIT_BALANCE:
            balance -= int(ev.get("credit_minor", 0))
    return breaches, items, max(0, balance)


def horizon(contract: Contract, until: date, logs: pa.Table | None) -> Horizon:
    """The horizon of a book of ``contract`` alone (:func:`~effigate_engine.ratecard.book.
    book_horizon`)."""
    return book_horizon([contract], until, logs)


def _classify(contract: Contract, until: date, logs: pa.Table | None) -> Classification | None:
    if logs is None or logs.num_rows == 0:
        return None
    book = ContractBook([contract], horizon(contract, until, logs))
    return classify(book, logs, evidence=True)


def _late(contract: Contract, until: date, logs: pa.Table | None) -> list[tuple[Period, Any]]:
    """The late logs classified, and the earlier periods their parts fall in."""
    cls = _classify(contract, until, logs)
    if cls is None:
        return []
    ordinals = sorted(set(cls.lines.column("period").to_pylist()))
    return [(contract.cycle.period(int(k)), cls) for k in ordinals]


def classified(inputs: Inputs) -> tuple[Classification | None, list[tuple[Period, Any]]]:
    """The period's logs and the late ones (with the earlier periods they fall in) classified
    under ``inputs.contract``."""
    contract, until = inputs.contract, inputs.period.end
    return _classify(contract, until, inputs.logs), _late(contract, until, inputs.late_logs)


def compute(inputs: Inputs) -> tuple[Invoice, Classification | None, list[tuple[Period, Any]]]:
    """Classify the period's logs (and the late ones) and assemble the invoice (CPU-bound: run
    off the loop)."""
    cls, late = classified(inputs)
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


def stored_lines(
    inputs: Inputs,
    invoice: Invoice,
    cls: Classification | None,
    late: Sequence[tuple[Period, Any]] = (),
) -> list[dict[str, Any]]:
    """The rows to store for an assembled invoice (see the module docstring), keyed by the
    store's line columns, with ``logs``: ``{(time log id, part): [billed, actual]}``."""
    contract = inputs.contract
    parts = _time_line_parts(contract, invoice.period, cls) if cls is not None else []
    for period, late_cls in late:
        parts += _time_line_parts(contract, period, late_cls)
    sources = {
        v.version: (
            {"library_version": inputs.library_version}
            if v.amendment_id is None
            else {"amendment_id": int(v.amendment_id)}
        )
        for v in contract.versions
    }
    applied = _applied_credits(invoice)
    out: list[dict[str, Any]] = []
    time_lines = iter(parts)
    for line in invoice.lines:
        row = _line_row(line)
        evidence = row["evidence"]
        if line.kind == LineKind.TIME:
            _time_row(row, line, next(time_lines, {}))
            if line.rate_card_version in sources:
                evidence["rate_card_source"] = sources[line.rate_card_version]
        elif line.kind == LineKind.RECURRING_UNITS:
            unit = line.item_ids[0]
            counted = inputs.unit_counts.get(unit)
            evidence.update(unit_type=unit, unit_price_minor=line.rate)
            if isinstance(counted, list):
                evidence["unit_timeline"] = _cycle_counts(counted, invoice.period)
            else:
                evidence["unit_count"] = counted
        elif line.kind in CREDIT_KINDS:
            full = -line.amount
            row["amount_minor"] = -applied[line.line_no]
            evidence.update(credit_minor=full, carried_minor=full - applied[line.line_no])
        if line.breach_ids:
            evidence["breach_ids"] = list(line.breach_ids)
        if line.item_ids:
            evidence["item_ids"] = list(line.item_ids)
        out.append(row)
    if invoice.forfeited_breach_ids:
        out.append(_forfeited_row(len(out) + 1, invoice.forfeited_breach_ids))
    return out


def _applied_credits(invoice: Invoice) -> dict[int, int]:
    """Per credit line (by line number), the part of it applied: a credit balance brought
    forward first, then the SLA credits in line order, up to the credits applied."""
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
    return applied


def _line_row(line: InvoiceLine) -> dict[str, Any]:
    """The stored row of a line before its kind's evidence."""
    return {
        "position": line.line_no,
        "kind": line.kind.value,
        "description": line.description,
        "time_condition": line.condition,
        "support_level": line.support_level,
        "job_type": line.job_type,
        "rate_minor_per_hour": None,
        "rate_card_version": line.rate_card_version,
        "actual_seconds": None,
        "billed_seconds": None,
        "amount_minor": line.amount,
        "evidence": {"taxable": line.taxable, "quantity": line.quantity},
        "logs": {},
    }


def _time_row(
    row: dict[str, Any], line: InvoiceLine, logs: dict[tuple[str, int], list[int | None]]
) -> None:
    """Fill a time line's row: rate, billed and actual seconds, the log parts it prices."""
    if sum(int(v[0] or 0) for v in logs.values()) != line.quantity or {
        log_id for log_id, _ in logs
    } != set(line.log_ids):
        raise BillingError(
            "invoice.lines", line.line_no, "evidence does not match the line's seconds"
        )
    row["rate_minor_per_hour"] = line.rate
    row["billed_seconds"] = line.quantity
    actuals = [v[1] for v in logs.values()]
    row["actual_seconds"] = None if None in actuals else sum(int(a or 0) for a in actuals)
    row["logs"] = logs
    row["evidence"]["rate_card_sha256"] = line.rate_card_hash


def _forfeited_row(position: int, breach_ids: Sequence[str]) -> dict[str, Any]:
    """The zero line recording the breaches the period's credit cap trimmed to nothing."""
    return {
        "position": position,
        "kind": LineKind.SLA_CREDIT.value,
        "description": "SLA breaches past the period's credit cap (no credit)",
        "time_condition": None,
        "support_level": None,
        "job_type": None,
        "rate_minor_per_hour": None,
        "rate_card_version": None,
        "actual_seconds": None,
        "billed_seconds": None,
        "logs": {},
        "amount_minor": 0,
        "evidence": {
            "taxable": True,
            "quantity": len(breach_ids),
            "breach_ids": list(breach_ids),
            "forfeited": True,
            "credit_minor": 0,
            "carried_minor": 0,
        },
    }


def tax_json(invoice: Invoice) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": t.name, "rate_ppm": t.ppm, "base_minor": t.base, "amount_minor": t.amount}
        for t in invoice.taxes
    ]
    if invoice.exemption:
        out.append({"exemption": invoice.exemption, "base_minor": invoice.taxable_base})
    return out
