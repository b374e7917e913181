"""Shared makings of the routing tests: ticket tables from dicts, a few calendars over a short
horizon, the engine's answers as plain rows, and the reference clock's shifts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import pyarrow as pa

from effigate_engine import Calendar, CalendarSet, Horizon, WeeklyEntry, routing
from effigate_engine.routing.schemas import ROUTING_TICKETS
from tests.reference_clock import ReferenceClock

H = 3600
DAY = 86_400
#: The horizon the test calendars compile over, and the window assign instants are drawn from.
HORIZON = Horizon.of(date(2026, 1, 1), date(2026, 2, 1))
WINDOW_START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())  # a Monday
WINDOW_END = WINDOW_START + 14 * DAY


def _calendars() -> list[Calendar]:
    return [
        Calendar(
            "Europe/London",
            tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)),
            holidays=frozenset({date(2026, 1, 12)}),
            name="london-office",
        ),
        Calendar(
            "America/New_York",
            tuple(WeeklyEntry(d, 22 * H, 6 * H) for d in range(5)),
            name="ny-overnight",
        ),
        Calendar(
            "Australia/Sydney",
            tuple(
                WeeklyEntry(d, s, e)
                for d in range(5)
                for s, e in ((9 * H, 12 * H), (13 * H, 17 * H))
            ),
            name="sydney-lunch",
        ),
        Calendar.always_open("UTC", name="24x7"),
    ]


CALENDAR_NAMES = ("london-office", "ny-overnight", "sydney-lunch", "24x7")


@cache
def calendar_set() -> CalendarSet:
    """The test calendars, compiled once."""
    return CalendarSet(_calendars(), HORIZON)


@cache
def _reference_clocks() -> dict[str, ReferenceClock]:
    return {c.name: ReferenceClock(c, HORIZON.start, HORIZON.end - 1) for c in _calendars()}


@cache
def on_shift(calendar: str, t: int) -> bool:
    """The minute-walking reference clock's answer: is ``calendar`` open at ``t``."""
    return _reference_clocks()[calendar].is_open(t)


def table(rows: Sequence[Mapping[str, Any]], **types: pa.DataType) -> pa.Table:
    """A ROUTING_TICKETS table holding the columns the rows name (instants as epoch seconds
    become ``timestamp[s, UTC]``)."""
    names = [f.name for f in ROUTING_TICKETS if not rows or any(f.name in r for r in rows)]
    fields = [pa.field(n, types[n]) if n in types else ROUTING_TICKETS.field(n) for n in names]
    columns = []
    for f in fields:
        values = [r.get(f.name) for r in rows]
        if f.name == "assign_at":
            values = [None if v is None else datetime.fromtimestamp(v, UTC) for v in values]
        columns.append(pa.array(values, f.type))
    return pa.Table.from_arrays(columns, schema=pa.schema([f.with_nullable(True) for f in fields]))


def rows_of(result: pa.Table) -> list[dict[str, Any]]:
    """A result table as plain rows (dictionary columns decoded)."""
    return result.to_pylist()


def rules(data: Mapping[str, Any]) -> routing.RoutingRules:
    return routing.RoutingRules.from_json(data)
