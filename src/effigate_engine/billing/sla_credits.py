"""SLA credit lines of an invoice from breach records: a fixed amount per breach by priority
or a percentage of the covered fee of the breach's cycle, once per breach id, capped per
invoice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import pyarrow as pa

from effigate_engine.billing.invoice import (
    InvoiceLine,
    LineKind,
)
from effigate_engine.billing.recurring import cycle_covered_fee
from effigate_engine.billing.schemas import BREACH_RECORDS
from effigate_engine.billing.units import UnitCount
from effigate_engine.errors import BillingError
from effigate_engine.money import apply_basis_points, currency
from effigate_engine.ratecard.contracts import Contract
from effigate_engine.ratecard.model import normalise_priority
from effigate_engine.ratecard.periods import Period


def breach_records(breaches: pa.Table) -> pa.Table:
    """``breaches`` as :data:`~effigate_engine.billing.schemas.BREACH_RECORDS` (its columns,
    in order, cast); a missing column raises :class:`BillingError`."""
    if breaches.schema.equals(BREACH_RECORDS):
        return breaches
    missing = [n for n in BREACH_RECORDS.names if n not in breaches.schema.names]
    if missing:
        raise BillingError("breaches", missing, "are missing breach-record columns")
    return breaches.select(BREACH_RECORDS.names).cast(BREACH_RECORDS)


def sla_credit_lines(
    contract: Contract,
    period: Period,
    breaches: pa.Table | None,
    covered_fee: int,
    already_credited: Iterable[str] = (),
    *,
    unit_counts: Mapping[str, UnitCount] | None = None,
) -> tuple[list[InvoiceLine], list[str], list[str]]:
    """Credit lines for the contract's breaches up to the period's end not credited before.
    Returns ``(lines, settled breach ids, forfeited breach ids)``; a breach the cap trims to
    zero is forfeited (settled with no credit).

    ``covered_fee`` is the covered fee of the invoiced cycle ``period``
    (:func:`cycle_covered_fee`): percent credits of its breaches and a percent cap are shares
    of it. A breach of an earlier cycle (one that lands late on this invoice) is a share of
    its own cycle's covered fee, recomputed from the contract and ``unit_counts`` (give the
    count timelines to have the counts each earlier cycle billed)."""
    terms = contract.sla_credits
    if terms is None or breaches is None or breaches.num_rows == 0:
        return [], [], []
    breaches = breach_records(breaches)
    end = int(period.bounds(contract.zone)[1])
    done = set(already_credited)
    seen: dict[str, dict] = {}
    for row in breaches.to_pylist():
        if row["contract_id"] != contract.id or row["breach_id"] in done:
            continue
        if row["breached_at"] is None or int(row["breached_at"].timestamp()) >= end:
            continue
        seen.setdefault(row["breach_id"], row)
    ordered = sorted(seen.values(), key=lambda r: (r["breached_at"], r["breach_id"]))
    money = currency(contract.currency)
    per_breach = {normalise_priority(k): v for k, v in terms.per_breach.items()}
    percent = {normalise_priority(k): v for k, v in terms.percent_per_priority.items()}
    cap = terms.cap_per_period
    if terms.cap_percent_bp is not None:
        cap = apply_basis_points(covered_fee, terms.cap_percent_bp)
    fees = {period.ordinal: covered_fee}
    lines, settled, forfeited = [], [], []
    granted = 0
    for row in ordered:
        priority = normalise_priority(row["priority"])
        if priority in per_breach:
            amount = per_breach[priority]
            how = f"{priority.lower()} priority"
        else:
            cycle = _breach_cycle(contract, row["breached_at"])
            if cycle.ordinal not in fees:
                fees[cycle.ordinal] = cycle_covered_fee(contract, cycle, unit_counts)
            bp = percent.get(priority, terms.percent_bp)
            amount = apply_basis_points(fees[cycle.ordinal], bp)
            how = (
                f"{bp / 100:g}% of {money.format(fees[cycle.ordinal])}"
                f" for {cycle.start}..{cycle.end}"
            )
        if cap is not None and amount > cap - granted:
            amount = cap - granted
            how += ", capped"
        settled.append(row["breach_id"])
        if amount <= 0:
            forfeited.append(row["breach_id"])
            continue
        granted += amount
        lines.append(
            InvoiceLine(
                0,
                LineKind.SLA_CREDIT,
                f"SLA breach deduction ({row['ticket_id']}, {row['metric']}, {how})",
                -amount,
                breach_ids=(row["breach_id"],),
            )
        )
    return lines, settled, forfeited


def _breach_cycle(contract: Contract, breached_at: datetime) -> Period:
    """The contract cycle holding the breach's local date (the first cycle for a breach
    dated before the contract's start)."""
    day = breached_at.astimezone(contract.zone).date()
    if day < contract.start:
        return contract.cycle.period(0)
    return contract.cycle.period_of(day)
