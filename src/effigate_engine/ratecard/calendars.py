"""Condition calendars: one contract calendar seen as three calendars the clock can measure.

Classification must not re-implement calendar arithmetic, so each time condition becomes an
ordinary :class:`~effigate_engine.calendar.Calendar` compiled by the same code as every other
calendar, and the seconds of a log in a condition are ``clock.elapsed`` over it:

* ``holiday``  — open 00:00–24:00 (local) on every holiday date;
* ``nonworking`` — open 00:00–24:00 on every weekend day of the rate card and every holiday;
* ``regular`` — the business calendar with every holiday and weekend date closed all day,
  including extra openings that fall on those dates (holiday and weekend outrank business
  hours).

Then ``HOLIDAY = holiday``, ``WEEKEND = nonworking − holiday``, ``REGULAR = regular`` and
``AFTER_HOURS = duration − nonworking − regular``: the precedence ``HOLIDAY > WEEKEND >
AFTER_HOURS > REGULAR`` holds exactly, DST included (a local day is 23 or 25 real hours).
Classification reads these ``elapsed`` answers from tables the clock fills once per contract
book (``ContractBook.conditions``), asking the clock per log only where a calendar opens or
closes off a 15-minute UTC slot bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from effigate_engine.calendar import SECONDS_PER_DAY, Calendar, LocalRange, WeeklyEntry
from effigate_engine.calendar_set import Horizon

_EPOCH = date(1970, 1, 1)
#: Local dates generated beyond each end of the horizon (covers any UTC offset).
_MARGIN_DAYS = 3


@dataclass(frozen=True)
class ConditionCalendars:
    """The three derived calendars of one (calendar, weekend days) pair."""

    holiday: Calendar
    nonworking: Calendar
    regular: Calendar


def _all_day(day: date) -> LocalRange:
    start = datetime.combine(day, time(0))
    return LocalRange(start, start + timedelta(days=1))


def _dates_in(horizon: Horizon) -> tuple[date, date]:
    first = _EPOCH + timedelta(days=horizon.start // SECONDS_PER_DAY - _MARGIN_DAYS)
    last = _EPOCH + timedelta(days=horizon.end // SECONDS_PER_DAY + _MARGIN_DAYS)
    return first, last


def _closed_on(calendar: Calendar, closed: frozenset[date]) -> Calendar:
    """``calendar`` closed all day on the ``closed`` dates. An extra opening outranks a
    holiday in the business calendar, but not in classification: the whole date is closed
    wherever an opening touches one of them."""
    touched: set[date] = set()
    for rng in calendar.extra_openings:
        day = rng.start.date()
        while datetime.combine(day, time(0)) < rng.end:
            if day in closed:
                touched.add(day)
            day += timedelta(days=1)
    return Calendar(
        calendar.timezone,
        calendar.weekly,
        holidays=closed,
        closures=(*calendar.closures, *(_all_day(d) for d in sorted(touched))),
        extra_openings=calendar.extra_openings,
    )


def condition_calendars(
    calendar: Calendar, weekend_days: tuple[int, ...], horizon: Horizon
) -> ConditionCalendars:
    """Derive the holiday, non-working and regular calendars of ``calendar`` over ``horizon``."""
    first, last = _dates_in(horizon)
    holidays = sorted(d for d in calendar.holiday_dates(horizon.years) if first <= d <= last)
    span = (last - first).days + 1
    weekends = [
        first + timedelta(days=k)
        for k in range(span)
        if (first + timedelta(days=k)).weekday() in weekend_days
    ]
    zone = calendar.timezone
    holiday = Calendar(zone, (), extra_openings=tuple(_all_day(d) for d in holidays))
    nonworking = Calendar(
        zone,
        tuple(WeeklyEntry(d, 0, SECONDS_PER_DAY) for d in weekend_days),
        extra_openings=tuple(_all_day(d) for d in holidays),
    )
    regular = _closed_on(calendar, frozenset(holidays) | frozenset(weekends))
    return ConditionCalendars(holiday, nonworking, regular)


@dataclass(frozen=True)
class PrecedenceCalendars:
    """Two more calendars of a (calendar, weekend days) pair, for cards whose precedence is not
    the default order: what applies to an instant then matters, not only which condition
    outranks. ``holiday_weekend`` is open all day on holidays that fall on a weekend day;
    ``open_days`` is the business calendar with every holiday closed all day (extra openings
    touching a holiday too). With the three condition calendars they split time into six
    classes by the conditions that apply: holiday on a weekend day, other holidays (both also
    closed), weekend open (``open_days − regular``), weekend closed, closed weekday, open
    weekday."""

    holiday_weekend: Calendar
    open_days: Calendar


def precedence_calendars(
    calendar: Calendar, weekend_days: tuple[int, ...], horizon: Horizon
) -> PrecedenceCalendars:
    """Derive the holiday-on-a-weekend and open-days calendars of ``calendar``."""
    first, last = _dates_in(horizon)
    holidays = sorted(d for d in calendar.holiday_dates(horizon.years) if first <= d <= last)
    zone = calendar.timezone
    holiday_weekend = Calendar(
        zone,
        (),
        extra_openings=tuple(_all_day(d) for d in holidays if d.weekday() in weekend_days),
    )
    open_days = _closed_on(calendar, frozenset(holidays))
    return PrecedenceCalendars(holiday_weekend, open_days)
