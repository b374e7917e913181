"""Slow reference for billing: prices time logs one by one with ``decimal``.

Nothing is shared with the kernels but the input model (contracts, rate cards, calendars): the
time condition of every UTC minute comes from ``tests/reference_clock.py`` (each minute's local
wall clock through ``zoneinfo`` and the calendar's rule applied to it), period boundaries are
recomputed from the anchor day, rates are resolved again with ``Decimal``, rounding uses
``Decimal`` quantisation, sharing uses exact fractions, drawdown walks the logs in work order
one by one, and line amounts are quantised half-up from exact products.
"""

from __future__ import annotations

import calendar as gregorian
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from effigate_engine.ratecard.contracts import Contract
from effigate_engine.ratecard.model import RateCard
from effigate_engine.zone import zone as bundled_zone
from tests.reference_clock import ReferenceClock

MINUTE = 60
CONDITIONS = ("REGULAR", "AFTER_HOURS", "WEEKEND", "HOLIDAY")
FOREVER = 2**62


@dataclass
class RefPart:
    """One priced part of a log, as the reference sees it."""

    log_id: str
    part: int
    contract_id: str
    period: int
    version: int
    start: int
    end: int
    status: str
    out_of_scope: bool
    high: bool
    actual: tuple[int, int, int, int]
    billed: tuple[int, int, int, int]
    covered: int = 0
    overage: int = 0


@dataclass
class Reference:
    """Parts keyed by (log id, part) and lines keyed by (contract, period, version, condition,
    level, job, priority applied) → [seconds, rate, amount]."""

    parts: dict[tuple[str, int], RefPart] = field(default_factory=dict)
    lines: dict[tuple, list[int]] = field(default_factory=dict)


def q(value: Decimal | Fraction) -> int:
    """Half-up to an integer (halves away from zero)."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def local_midnight(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=zone).timestamp())


def period_starts(contract: Contract, until: date) -> list[date]:
    """Period start dates from the contract's start through ``until`` and one beyond."""
    anchor = contract.anchor_day or contract.start.day
    out = [contract.start]
    year, month = contract.start.year, contract.start.month
    while out[-1] <= until:
        day = date(year, month, min(anchor, gregorian.monthrange(year, month)[1]))
        if day > out[-1]:
            out.append(day)
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def ref_base(card: RateCard, level: str, job: str) -> int | None:
    for key in ((level, job), (level, "*"), ("*", job), ("*", "*")):
        if key in card.base_rates:
            return card.base_rates[key]
    return None


def ref_apply(card: RateCard, base: int, name: str) -> int | None:
    rule = next((r for c, r in card.rules.items() if c.name == name), None)
    if rule is None:
        return None
    if rule.absolute is not None:
        return rule.absolute
    return q(Decimal(base) * Decimal(rule.multiplier) / Decimal(10_000))


def ref_rate(card: RateCard, base: int, cond: str, high: bool) -> tuple[int, str, int]:
    rules = {c.name: r for c, r in card.rules.items()}
    time_rule = rules.get(cond) if cond != "REGULAR" else None
    time_rate = ref_apply(card, base, cond) if time_rule is not None else base
    if not high:
        return time_rate, cond, 0
    prio_rule = rules["HIGH_PRIORITY"]
    if card.stacking.value == "max":
        prio = ref_apply(card, base, "HIGH_PRIORITY")
        return (prio, "HIGH_PRIORITY", 1) if prio > time_rate else (time_rate, cond, 0)
    applicable = [r for r in (time_rule, prio_rule) if r is not None]
    absolutes = [r.absolute for r in applicable if r.absolute is not None]
    value = Decimal(max(absolutes) if absolutes else base)
    for r in applicable:
        if r.multiplier is not None:
            value = value * Decimal(r.multiplier) / Decimal(10_000)
    return q(value), cond, 1


def portion_rate(card: RateCard, base: int, name: str) -> int:
    rate = ref_apply(card, base, name)
    return base if rate is None else rate


#: Per minute, which time conditions apply: bit 0 AFTER_HOURS (the calendar is closed, or a
#: holiday), bit 1 WEEKEND (a weekend day of the card), bit 2 HOLIDAY (a holiday date).
_AH, _WK, _HO = 1, 2, 4


def ref_winner(card: RateCard, base: int, applicable: int) -> int:
    """The time condition (0..3) pricing a minute where the ``applicable`` bits hold, under the
    card's precedence, recomputed from the precedence's definition."""
    names = [
        n
        for bit, n in ((_AH, "AFTER_HOURS"), (_WK, "WEEKEND"), (_HO, "HOLIDAY"))
        if applicable & bit
    ]
    if not names:
        return 0
    precedence = card.precedence
    if precedence == "default":
        order = ["HOLIDAY", "WEEKEND", "AFTER_HOURS"]
    elif precedence == "highest":

        def rate(name: str) -> int:
            r = ref_apply(card, base, name)
            return base if r is None else r

        order = sorted(
            ["HOLIDAY", "WEEKEND", "AFTER_HOURS"],
            key=lambda n: (-rate(n), -CONDITIONS.index(n)),
        )
    else:
        order = [c.name for c in precedence]
    winner = next(n for n in order if n in names)
    return CONDITIONS.index(winner)


class Conditions:
    """Which time conditions apply to every minute of a window, per (calendar, weekend days)."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start - start % 86_400
        self.end = end + (-end) % 86_400
        self._cache: dict[tuple, tuple[ReferenceClock, np.ndarray]] = {}

    def cells(self, contract: Contract, card: RateCard) -> tuple[ReferenceClock, np.ndarray]:
        key = (id(contract.calendar), card.weekend_days)
        if key not in self._cache:
            ref = ReferenceClock(contract.calendar, self.start, self.end)
            m = ref.minutes
            opened = ref.open_cells(0, m.cells)
            holiday = np.isin(m.day, ref.holidays)
            bits = np.where(opened & ~holiday, 0, _AH)
            bits = bits | np.where(np.isin(m.weekday, list(card.weekend_days)), _WK, 0)
            bits = bits | np.where(holiday, _HO, 0)
            self._cache[key] = (ref, bits)
        return self._cache[key]

    def seconds(
        self, contract: Contract, card: RateCard, a: int, b: int, base: int = 0
    ) -> list[int]:
        """Seconds of ``[a, b)`` per time condition under the card's precedence (``base``,
        minor units per hour, is what ``highest`` compares rates on)."""
        _ref, bits = self.cells(contract, card)
        lo, hi = (a - self.start) // MINUTE, (b - 1 - self.start) // MINUTE + 1
        if lo < 0 or hi > bits.size:
            raise ValueError("log outside the reference window")
        cell_start = self.start + MINUTE * np.arange(lo, hi, dtype=np.int64)
        overlap = np.minimum(cell_start + MINUTE, b) - np.maximum(cell_start, a)
        out = [0, 0, 0, 0]
        window = bits[lo:hi]
        for applicable in range(8):
            sec = int(overlap[window == applicable].sum())
            if sec:
                out[ref_winner(card, base, applicable)] += sec
        return out


def ref_round(actual: int, card: RateCard) -> int:
    inc = card.increment_seconds
    value = Decimal(actual)
    if inc:
        mode = ROUND_CEILING if card.increment_mode.value == "up" else ROUND_HALF_UP
        value = (value / Decimal(inc)).quantize(Decimal(1), rounding=mode) * inc
    return max(card.minimum_seconds, int(value))


def ref_share(total: int, actual: list[int]) -> list[int]:
    duration = sum(actual)
    quotas = [Fraction(total * a, duration) for a in actual]
    floors = [int(x) for x in quotas]
    extra = total - sum(floors)
    ranked = sorted(
        (c for c in range(4) if actual[c] > 0), key=lambda c: (-(quotas[c] - floors[c]), -c)
    )
    for c in ranked[:extra]:
        floors[c] += 1
    return floors


def grants(contract: Contract, starts: list[date]) -> list[list[int]]:
    """Grants ``[from, until, seconds, per_period]`` sorted by start (per_period 1 for a
    per-period bucket grant: the ones a rollover cap trims)."""
    zone = bundled_zone(contract.calendar.timezone)
    end = local_midnight(contract.end, zone) if contract.end else FOREVER
    out: list[list[int]] = []
    if contract.type.value == "BUCKET":
        b = contract.bucket
        if b.per_period:
            for k in range(len(starts) - b.rollover_periods - 1):
                out.append(
                    [
                        local_midnight(starts[k], zone),
                        local_midnight(starts[k + 1 + b.rollover_periods], zone),
                        b.size_seconds,
                        1,
                    ]
                )
        else:
            out.append([local_midnight(contract.start, zone), end, b.size_seconds, 0])
        for t in contract.top_ups:
            out.append([local_midnight(t.effective, zone), end, t.seconds, 0])
    elif contract.type.value == "RECURRING" and contract.recurring.included_seconds is not None:
        for k in range(len(starts) - 1):
            out.append(
                [
                    local_midnight(starts[k], zone),
                    local_midnight(starts[k + 1], zone),
                    contract.recurring.included_seconds,
                    0,
                ]
            )
    return sorted(out)


def cap_rollover(pool: list[list[int]], cap: int | None, done: set[int], until: int) -> None:
    """Apply the rollover cap at every per-period grant start ``s <= until`` not yet in
    ``done``, in time order: the per-period grants granted before ``s`` and still valid at
    ``s`` carry at most ``cap`` seconds in; the excess expires, oldest first."""
    if cap is None:
        return
    for s in sorted({g[0] for g in pool if g[3]}):
        if s > until or s in done:
            continue
        done.add(s)
        carried = [g for g in pool if g[3] and g[0] < s < g[1]]
        excess = sum(g[2] for g in carried) - cap
        for g in sorted(carried, key=lambda g: g[0]):
            if excess <= 0:
                break
            cut = min(g[2], excess)
            g[2] -= cut
            excess -= cut


def price_reference(
    contracts: list[Contract] | tuple[Contract, ...],
    logs: pa.Table,
    conditions: Conditions | None = None,
) -> Reference:
    """Price every log of ``logs`` (the time-log schema) under ``contracts``, one by one."""
    by_id = {c.id: c for c in contracts}
    rows = logs.to_pylist()

    def epoch(value: datetime) -> int:
        return int(value.timestamp())

    if conditions is None:
        conditions = Conditions(
            min(epoch(r["start"]) for r in rows), max(epoch(r["end"]) for r in rows)
        )
    out = Reference()
    drawing: dict[str, list[tuple[int, str, int, RefPart, str, str, RateCard]]] = defaultdict(list)
    period_cache: dict[str, list[date]] = {}
    with localcontext() as ctx:
        ctx.prec = 60
        for row in rows:
            contract = by_id[row["contract_id"]]
            zone = bundled_zone(contract.calendar.timezone)
            start, end = epoch(row["start"]), epoch(row["end"])
            if contract.id not in period_cache:
                until = datetime.fromtimestamp(conditions.end, UTC).date() + timedelta(days=400)
                period_cache[contract.id] = period_starts(contract, until)
            starts = period_cache[contract.id]
            bounds = [local_midnight(d, zone) for d in starts]
            first = max(k for k, b in enumerate(bounds) if b <= start)
            cuts = [b for b in bounds if start < b < end]
            pieces = list(zip([start, *cuts], [*cuts, end], strict=True))
            level, job = row["support_level"], row["job_type"]
            priority = {"P1": "CRITICAL", "P2": "HIGH", "P3": "MEDIUM", "P4": "LOW"}.get(
                row["priority"].upper(), row["priority"].upper()
            )
            for j, (a, b) in enumerate(pieces):
                local_day = datetime.fromtimestamp(a, zone).date()
                version = contract.versions[0]
                for v in contract.versions:
                    if v.effective_from <= local_day:
                        version = v
                card = version.card
                base = ref_base(card, level, job)
                assert base is not None
                actual = conditions.seconds(contract, card, a, b, base)
                assert sum(actual) == b - a
                total = ref_round(b - a, card)
                billed = ref_share(total, actual)
                high = priority in card.high_priorities and any(
                    c.name == "HIGH_PRIORITY" for c in card.rules
                )
                scope = contract.scope
                in_scope = (scope.support_levels is None or level in scope.support_levels) and (
                    scope.job_types is None or job in scope.job_types
                )
                bt = row["billable_type"]
                if not in_scope and scope.out_of_scope.value == "REJECT":
                    status = "REJECTED"  # whatever its approval state or billable type
                elif not row["approved"]:
                    status = "UNAPPROVED"
                else:
                    status = "PRICED"
                part = RefPart(
                    row["log_id"],
                    j,
                    contract.id,
                    first + j,
                    version.version,
                    a,
                    b,
                    status,
                    not in_scope,
                    high,
                    tuple(actual),
                    tuple(billed),
                )
                out.parts[(row["log_id"], j)] = part
                if status != "PRICED":
                    continue
                key = (contract.id, first + j, version.version)
                if bt != "BILLABLE":
                    add_line(out, (*key, bt, level, job, 0), total, 0)
                elif not in_scope:
                    add_line(
                        out,
                        (*key, "OUT_OF_SCOPE", level, job, 0),
                        total,
                        portion_rate(card, base, "OUT_OF_SCOPE"),
                    )
                elif contract.type.value == "HOURLY" or (
                    contract.type.value == "RECURRING"
                    and contract.recurring.included_seconds is None
                ):
                    for c in range(4):
                        if billed[c] > 0:
                            rate, label, hp = ref_rate(card, base, CONDITIONS[c], high)
                            add_line(out, (*key, label, level, job, hp), billed[c], rate)
                elif contract.type.value in ("FIXED_PRICE", "SCOPE"):
                    part.covered = total
                    add_line(out, (*key, "INCLUDED", level, job, 0), total, 0)
                else:
                    burns_high = priority in card.high_priorities
                    drawing[contract.id].append(
                        (a, row["log_id"], j, part, level, job, card, burns_high)
                    )
        for contract_id, items in drawing.items():
            contract = by_id[contract_id]
            pool = grants(contract, period_cache[contract_id])
            bucket = contract.bucket if contract.type.value == "BUCKET" else None
            factors = {c.name: bp for c, bp in (bucket.burn_bp.items() if bucket else ())}
            cap = bucket.rollover_cap_seconds if bucket else None
            capped: set[int] = set()
            for a, _, _, part, level, job, card, burns_high in sorted(items, key=lambda x: x[:3]):
                burn = [factors.get(name, 10_000) for name in CONDITIONS]
                if burns_high and "HIGH_PRIORITY" in factors:
                    burn = [max(x, factors["HIGH_PRIORITY"]) for x in burn]
                need = sum(
                    q(Decimal(part.billed[c]) * Decimal(burn[c]) / Decimal(10_000))
                    for c in range(4)
                )
                cap_rollover(pool, cap, capped, a)
                got = 0
                for g in pool:
                    if got == need:
                        break
                    if g[0] <= a < g[1] and g[2] > 0:
                        take = min(g[2], need - got)
                        g[2] -= take
                        got += take
                part.covered, part.overage = got, need - got
                key = (contract_id, part.period, part.version)
                base = ref_base(card, level, job)
                if got:
                    add_line(out, (*key, "INCLUDED", level, job, 0), got, 0)
                if need > got:
                    add_line(
                        out,
                        (*key, "ADDITIONAL_HOURS", level, job, 0),
                        need - got,
                        portion_rate(card, base, "ADDITIONAL_HOURS"),
                    )
        for line in out.lines.values():
            line[2] = q(Fraction(line[0] * line[1], 3600))
    return out


def add_line(out: Reference, key: tuple, seconds: int, rate: int) -> None:
    """Add seconds to a line; a slot with no seconds makes no line."""
    if seconds == 0:
        return
    line = out.lines.setdefault(key, [0, rate, 0])
    assert line[1] == rate, (key, line, rate)
    line[0] += seconds


__all__ = ["Conditions", "RefPart", "Reference", "cap_rollover", "grants", "price_reference"]
