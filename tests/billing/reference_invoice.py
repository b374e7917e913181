"""Slow reference for the recurring and SLA-credit terms of an invoice, with ``decimal``.

Nothing is shared with ``billing/invoice.py`` but the input model (contracts and their terms):
cycle boundaries are walked month by month from the anchor day, the days of a stub's full cycle
are counted from the anchor date on or before the start, counts are looked up in the timeline
entry by entry, every amount is an exact ``Decimal`` quotient quantised half-up once per line,
covered fees are recomputed per cycle, and credits are granted breach by breach against the cap.

The rules it encodes (``docs/contract-terms.md``):

* base fee: in advance, the invoice for cycle P bills cycle P+1 (the first invoice also cycle
  0); in arrears, cycle P. A cycle's fee is prorated by its active days (start inclusive, the
  earlier of the cycle end and the contract end exclusive) over the days of the full cycle when
  ``prorate`` is set; a cycle with no active day bills nothing;
* units, in arrears for cycle P: without proration the count in force on the cycle's last day;
  with it the opening count (in force on the first day) for the active days, then per change
  dated inside the active span, ``new - old`` for the days from its date to the span's end;
  a timeline holds its first count before its first date;
* credits: per breach by priority, the fixed amount, else the share (per priority, else the
  default share) of the covered fee (base fee + unit lines) of the cycle holding the breach's
  local date (the first cycle if earlier); breaches up to the invoiced cycle's end, once per
  id, in (breached at, id) order, the cap (an amount or a share of cycle P's covered fee)
  trimming the crossing breach to the remainder and forfeiting the rest.
"""

from __future__ import annotations

import calendar as gregorian
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from effigate_engine.ratecard.contracts import Contract
from effigate_engine.zone import zone as bundled_zone

ALIASES = {"P1": "CRITICAL", "P2": "HIGH", "P3": "MEDIUM", "P4": "LOW"}
ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class RefLine:
    """A recurring or credit line: ``evidence`` is ``cycle:<k>`` for a base fee, the unit type
    for units, the breach id for a credit; ``service`` is ``(start, end)`` for recurring lines."""

    kind: str
    amount: int
    quantity: int
    rate: int | None
    service: tuple[date, date] | None
    evidence: tuple[str, ...]


@dataclass
class RefTerms:
    """The recurring and credit lines of one invoice, and the breaches it settles."""

    lines: list[RefLine] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    forfeited: list[str] = field(default_factory=list)


def half_up(numerator: int, denominator: int = 1) -> int:
    """``numerator / denominator`` quantised half-up (halves away from zero) with Decimal."""
    with localcontext() as ctx:
        ctx.prec = 80
        value = Decimal(numerator) / Decimal(denominator)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def anchor_in(year: int, month: int, anchor: int) -> date:
    return date(year, month, min(anchor, gregorian.monthrange(year, month)[1]))


class Cycles:
    """A contract's cycles: boundaries walked month by month from the start."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.anchor = contract.anchor_day or contract.start.day
        self.bounds = [contract.start]
        self._year, self._month = contract.start.year, contract.start.month

    def _grow(self, count: int) -> None:
        while len(self.bounds) < count:
            day = anchor_in(self._year, self._month, self.anchor)
            if day > self.bounds[-1]:
                self.bounds.append(day)
            self._month += 1
            if self._month == 13:
                self._year, self._month = self._year + 1, 1

    def cycle(self, k: int) -> tuple[date, date]:
        self._grow(k + 2)
        return self.bounds[k], self.bounds[k + 1]

    def index_of(self, day: date) -> int:
        if day < self.contract.start:
            return 0
        k = 0
        while not self.cycle(k)[0] <= day < self.cycle(k)[1]:
            k += 1
        return k

    def full_days(self, k: int) -> int:
        """Days of the month-long cycle cycle ``k`` belongs to (a stub counts its whole one)."""
        start, end = self.cycle(k)
        before = anchor_in(start.year, start.month, self.anchor)
        if before > start:
            month = start.month - 1 or 12
            before = anchor_in(start.year - (start.month == 1), month, self.anchor)
        return (end - before).days

    def active(self, k: int) -> tuple[date, date]:
        start, end = self.cycle(k)
        if self.contract.end is not None and self.contract.end < end:
            end = self.contract.end
        return start, end


def count_on(timeline: Sequence[tuple[date, int]], day: date) -> int:
    count = timeline[0][1]
    for since, value in timeline:
        if since <= day:
            count = value
    return count


def as_timeline(given: int | Sequence[tuple[date, int]]) -> list[tuple[date, int]]:
    if isinstance(given, int):
        return [(date.min, given)]
    return sorted((since, count) for since, count in given)


def base_line(cycles: Cycles, k: int) -> RefLine | None:
    terms = cycles.contract.recurring
    start, end = cycles.active(k)
    days = (end - start).days
    if days <= 0:
        return None
    full = cycles.full_days(k)
    amount = terms.base_fee
    if terms.prorate and days != full:
        amount = half_up(terms.base_fee * days, full)
    return RefLine("RECURRING_BASE", amount, 1, None, (start, end), (f"cycle:{k}",))


def unit_lines(
    cycles: Cycles, k: int, unit_counts: Mapping[str, int | Sequence[tuple[date, int]]] | None
) -> list[RefLine]:
    terms = cycles.contract.recurring
    start, end = cycles.active(k)
    if end <= start:
        return []
    full = cycles.full_days(k)
    out = []
    for unit in sorted(unit_counts or {}):
        price = terms.unit_prices[unit]
        timeline = as_timeline(unit_counts[unit])
        if not terms.prorate_units:
            count = count_on(timeline, cycles.cycle(k)[1] - ONE_DAY)
            out.append(
                RefLine("RECURRING_UNITS", count * price, count, price, (start, end), (unit,))
            )
            continue
        count = count_on(timeline, start)
        amount = half_up(count * price * (end - start).days, full)
        out.append(RefLine("RECURRING_UNITS", amount, count, price, (start, end), (unit,)))
        for since, value in timeline:
            if not start < since < end:
                continue
            change = value - count
            count = value
            if change:
                amount = half_up(change * price * (end - since).days, full)
                out.append(RefLine("RECURRING_UNITS", amount, change, price, (since, end), (unit,)))
    return out


def covered_fee(cycles: Cycles, k: int, unit_counts) -> int:
    base = base_line(cycles, k)
    return (base.amount if base else 0) + sum(u.amount for u in unit_lines(cycles, k, unit_counts))


def reference_terms(
    contract: Contract,
    ordinal: int,
    unit_counts: Mapping[str, int | Sequence[tuple[date, int]]] | None = None,
    breaches: Sequence[Mapping] = (),
    already_credited: Sequence[str] = (),
) -> RefTerms:
    """The recurring and SLA-credit lines of ``contract``'s invoice for cycle ``ordinal``.
    ``breaches`` are breach-record rows (``breached_at`` an aware datetime)."""
    out = RefTerms()
    cycles = Cycles(contract)
    terms = contract.recurring
    if terms is not None:
        if terms.base_timing.value == "arrears":
            base_cycles = [ordinal]
        else:
            base_cycles = [0, 1] if ordinal == 0 else [ordinal + 1]
        for k in base_cycles:
            line = base_line(cycles, k)
            if line is not None:
                out.lines.append(line)
        out.lines += unit_lines(cycles, ordinal, unit_counts)
    credits = contract.sla_credits
    if credits is None:
        return out
    zone = bundled_zone(contract.calendar.timezone)
    period_end = datetime.combine(cycles.cycle(ordinal)[1], time(0), tzinfo=zone)
    firsts: dict[str, Mapping] = {}
    for row in breaches:
        if row["contract_id"] != contract.id or row["breach_id"] in already_credited:
            continue
        if row["breached_at"].timestamp() >= period_end.timestamp():
            continue
        firsts.setdefault(row["breach_id"], row)
    ordered = sorted(firsts.values(), key=lambda r: (r["breached_at"].timestamp(), r["breach_id"]))

    def fee(k: int) -> int:
        return covered_fee(cycles, k, unit_counts) if terms is not None else 0

    def name(priority: str) -> str:
        return ALIASES.get(priority.upper(), priority.upper())

    fixed = {name(p): v for p, v in credits.per_breach.items()}
    shares = {name(p): v for p, v in credits.percent_per_priority.items()}
    cap = credits.cap_per_period
    if credits.cap_percent_bp is not None:
        cap = half_up(fee(ordinal) * credits.cap_percent_bp, 10_000)
    granted = 0
    for row in ordered:
        priority = name(row["priority"])
        if priority in fixed:
            amount = fixed[priority]
        else:
            k = cycles.index_of(row["breached_at"].astimezone(zone).date())
            amount = half_up(fee(k) * shares.get(priority, credits.percent_bp), 10_000)
        if cap is not None:
            amount = min(amount, cap - granted)
        out.settled.append(row["breach_id"])
        if amount <= 0:
            out.forfeited.append(row["breach_id"])
            continue
        granted += amount
        out.lines.append(RefLine("SLA_CREDIT", -amount, 1, None, None, (row["breach_id"],)))
    return out
