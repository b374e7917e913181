"""Recurring fees of an invoice: the base fee in advance or in arrears (prorated by days off
anchor or at the end), unit lines at the count in force or prorated per change, the covered
fee of a cycle that percent SLA credits apply to."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from effigate_engine.billing.invoice import (
    InvoiceLine,
    LineKind,
)
from effigate_engine.billing.units import UnitCount, unit_timelines
from effigate_engine.money import currency
from effigate_engine.ratecard.contracts import BaseTiming, Contract
from effigate_engine.ratecard.periods import Period, anchored_date, prorate


def recurring_lines(
    contract: Contract, period: Period, unit_counts: Mapping[str, UnitCount] | None = None
) -> list[InvoiceLine]:
    """The recurring lines of the invoice for cycle ``period``: the base fee per the
    contract's ``base_timing`` (:func:`base_cycles`), then the units of ``period`` in arrears
    (:func:`unit_lines`). Every line states its service period."""
    if contract.recurring is None:
        return []
    timing = contract.recurring.base_timing.value
    out: list[InvoiceLine] = []
    for cycle in base_cycles(contract, period):
        fee, days = base_fee(contract, cycle)
        if fee == 0 and days == 0:
            continue
        start, end = _active_span(contract, cycle)
        note = "" if days == _full_cycle_days(contract, cycle) else f", prorated {days} days"
        out.append(
            InvoiceLine(
                0,
                LineKind.RECURRING_BASE,
                f"Base fee {start}..{end} in {timing}{note}",
                fee,
                item_ids=(f"cycle:{cycle.ordinal}",),
                service_start=start,
                service_end=end,
            )
        )
    return out + unit_lines(contract, period, unit_counts)


def base_cycles(contract: Contract, period: Period) -> list[Period]:
    """The cycles whose base fee the invoice for ``period`` carries: in advance the next
    cycle (and, on the first invoice, the first cycle too); in arrears ``period`` itself."""
    terms = contract.recurring
    if terms is None:
        return []
    if terms.base_timing == BaseTiming.ARREARS:
        ordinals = [period.ordinal]
    else:
        ordinals = [period.ordinal + 1] if period.ordinal else [0, 1]
    return [contract.cycle.period(k) for k in ordinals]


def unit_lines(
    contract: Contract, cycle: Period, unit_counts: Mapping[str, UnitCount] | None = None
) -> list[InvoiceLine]:
    """Unit lines of ``cycle`` (billed in arrears), by unit type. Without ``prorate_units``: one
    line at the count in force on the cycle's last day. With it: the opening count (in force
    on the cycle's first active day) for the active days, plus one line per change inside the
    cycle, quantity = new − old count (negative for a decrease), for the days from its date to
    the end of the active span; each amount is ``quantity × price × days / full cycle days``
    rounded half-up. No lines for a cycle the contract is not active in."""
    terms = contract.recurring
    if terms is None:
        return []
    timelines = unit_timelines(unit_counts, terms.unit_prices, contract.id)
    start, end = _active_span(contract, cycle)
    if end <= start:
        return []
    full = _full_cycle_days(contract, cycle)
    money = currency(contract.currency)
    out: list[InvoiceLine] = []

    def line(unit: str, quantity: int, since: date, what: str) -> InvoiceLine:
        price = terms.unit_prices[unit]
        days = (end - since).days
        text = f"{what} at {money.format(price)} for {since}..{end}"
        if terms.prorate_units:
            amount = prorate(quantity * price, days, full)
            if days != full:
                text += f" ({days} of {full} days)"
        else:
            amount = quantity * price
        return InvoiceLine(
            0,
            LineKind.RECURRING_UNITS,
            text,
            amount,
            quantity,
            price,
            item_ids=(unit,),
            service_start=since,
            service_end=end,
        )

    for unit, timeline in sorted(timelines.items()):
        if not terms.prorate_units:
            count = timeline.count_on(cycle.end - timedelta(days=1))
            out.append(line(unit, count, start, f"{unit} × {count}"))
            continue
        count = timeline.count_on(start)
        out.append(line(unit, count, start, f"{unit} × {count}"))
        for since, new in timeline.changes_within(start, end):
            out.append(line(unit, new - count, since, f"{unit} {new - count:+d} (to {new})"))
            count = new
    return out


def _active_span(contract: Contract, cycle: Period) -> tuple[date, date]:
    """``[start, end)``: the local dates of ``cycle`` the contract is active (cut by its end;
    ``end <= start`` when it ended before the cycle)."""
    end = cycle.end if contract.end is None else min(cycle.end, contract.end)
    return cycle.start, end


def _full_cycle_days(contract: Contract, cycle: Period) -> int:
    """Days of the full cycle a (possibly stub) period belongs to: the denominator of every
    proration (a stub first cycle counts the days of the month-long cycle it is cut from)."""
    if cycle.ordinal == 0 and cycle.start.day != contract.cycle.anchor_day:
        year, month = cycle.end.year, cycle.end.month - 1
        if month == 0:
            year, month = year - 1, 12
        return (cycle.end - anchored_date(year, month, contract.cycle.anchor_day)).days
    return cycle.days


def base_fee(contract: Contract, cycle: Period) -> tuple[int, int]:
    """``(fee, days billed)`` of a cycle's base fee: prorated by days (start inclusive, end
    exclusive) for a stub first cycle or a contract ending inside the cycle."""
    terms = contract.recurring
    if terms is None:
        return 0, 0
    start, end = _active_span(contract, cycle)
    days = max(0, (end - start).days)
    full = _full_cycle_days(contract, cycle)
    if days == full or not terms.prorate:
        return (terms.base_fee, full) if days > 0 else (0, 0)
    return prorate(terms.base_fee, days, full), days


def cycle_covered_fee(
    contract: Contract, cycle: Period, unit_counts: Mapping[str, UnitCount] | None = None
) -> int:
    """The covered service fee of ``cycle`` (minor units), on which percent SLA credits and a
    percent cap are computed: the cycle's base fee (whichever invoice bills it, in advance or
    in arrears) plus its unit lines from ``unit_counts``. Time, overage and tax are never
    covered; a contract without recurring terms covers nothing."""
    if contract.recurring is None:
        return 0
    units = unit_lines(contract, cycle, unit_counts)
    return base_fee(contract, cycle)[0] + sum(line.amount for line in units)
