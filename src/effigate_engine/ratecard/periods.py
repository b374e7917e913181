"""Billing periods: monthly cycles anchored on a day of the month, in the contract's zone.

A contract's cycle is anchored on its anchor day (by default the start day: started on the 15th,
cycles run from the 15th to the 14th). An anchor past the end of a month is clamped to the
month's last day (31 → 28/29 February, 30 April), only for that month. A period is the half-open
local date range ``[start, end)``; as instants it runs from local midnight of ``start`` to local
midnight of ``end`` in the contract's zone, so work on 31 March in New York is March work even
when it is already 1 April in UTC. Proration counts days, start inclusive, end exclusive.
"""

from __future__ import annotations

import calendar as _gregorian
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from effigate_engine.errors import ConfigurationError
from effigate_engine.money import round_half_up


def anchored_date(year: int, month: int, anchor_day: int) -> date:
    """The anchor day in a month, clamped to the month's last day."""
    last = _gregorian.monthrange(year, month)[1]
    return date(year, month, min(anchor_day, last))


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    """``(year, month)`` moved by ``months`` months."""
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def local_midnight(day: date, zone: ZoneInfo) -> int:
    """Epoch seconds of local 00:00 on ``day`` in ``zone`` (the first instant of the day; if
    midnight is skipped by a DST change, the first instant after the gap)."""
    # fold=0 reads a skipped midnight with the earlier offset, which lands on the transition
    # instant: the first instant of that local date. A repeated midnight takes its first reading.
    return int(datetime.combine(day, time(0)).replace(tzinfo=zone).timestamp())


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period ``[start, end)`` of local dates; ``ordinal`` counts from the contract's
    first period (0)."""

    ordinal: int
    start: date
    end: date

    @property
    def days(self) -> int:
        """Days in the period (start inclusive, end exclusive)."""
        return (self.end - self.start).days

    def bounds(self, zone: ZoneInfo) -> tuple[int, int]:
        """The period as epoch seconds ``[local midnight of start, local midnight of end)``."""
        return local_midnight(self.start, zone), local_midnight(self.end, zone)


@dataclass(frozen=True, slots=True)
class BillingCycle:
    """Monthly cycles from ``start`` anchored on ``anchor_day`` (1..31)."""

    start: date
    anchor_day: int

    def __post_init__(self) -> None:
        if not 1 <= self.anchor_day <= 31:
            raise ConfigurationError("anchor_day", self.anchor_day, "is not a day 1..31")

    def _anchor_on_or_before(self, day: date) -> date:
        candidate = anchored_date(day.year, day.month, self.anchor_day)
        if candidate <= day:
            return candidate
        year, month = add_months(day.year, day.month, -1)
        return anchored_date(year, month, self.anchor_day)

    def _next_anchor(self, day: date) -> date:
        year, month = day.year, day.month
        candidate = anchored_date(year, month, self.anchor_day)
        while candidate <= day:
            year, month = add_months(year, month, 1)
            candidate = anchored_date(year, month, self.anchor_day)
        return candidate

    def period(self, ordinal: int) -> Period:
        """Period ``ordinal`` (0 = the first). When the start is not on an anchor, period 0 is
        the stub from the start to the first anchor."""
        if ordinal < 0:
            raise ConfigurationError("period", ordinal, "is negative")
        first_end = self._next_anchor(self.start)
        if ordinal == 0:
            return Period(0, self.start, first_end)
        base = self._anchor_on_or_before(self.start)
        year, month = add_months(base.year, base.month, ordinal)
        start = anchored_date(year, month, self.anchor_day)
        year, month = add_months(base.year, base.month, ordinal + 1)
        return Period(ordinal, start, anchored_date(year, month, self.anchor_day))

    def period_of(self, day: date) -> Period:
        """The period holding the local date ``day`` (on or after the cycle's start)."""
        if day < self.start:
            raise ConfigurationError("date", day.isoformat(), "is before the contract's start")
        base = self._anchor_on_or_before(self.start)
        months = (day.year - base.year) * 12 + (day.month - base.month)
        for ordinal in (max(months - 1, 0), max(months, 0), months + 1):
            p = self.period(ordinal)
            if p.start <= day < p.end:
                return p
        raise ConfigurationError("date", day.isoformat(), "has no billing period")

    def periods_until(self, day: date) -> list[Period]:
        """Every period from the first through the one holding ``day``."""
        last = self.period_of(max(day, self.start)).ordinal
        return [self.period(k) for k in range(last + 1)]


def prorate(amount: int, days_used: int, days_in_period: int) -> int:
    """``amount × days_used / days_in_period`` in minor units, rounded half-up once."""
    if days_in_period <= 0 or not 0 <= days_used <= days_in_period:
        raise ConfigurationError(
            "proration", (days_used, days_in_period), "needs 0 <= days used <= days in period"
        )
    return round_half_up(amount * days_used, days_in_period)
