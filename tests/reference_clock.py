"""Slow reference for business time: the rule of docs/clock.md (*What open means*) applied
instant by instant.

For every UTC minute of a window, ``zoneinfo`` gives the local wall-clock date and time; a
calendar's rule (weekly entry for that local date, holiday, extra opening, closure) then says
whether that minute is open. Business seconds are counted by walking those minutes. No interval
compilation, no offset pieces, no local→UTC mapping: nothing shared with the kernel.

The window is the closed span ``[start, end]`` like a compiled horizon: the minute from ``end``
is walked too, so the state at ``end`` itself is the rules' answer, while durations, deadlines
and next events never count or return anything after ``end``.

Openness is constant inside a UTC minute when every schedule boundary is a whole local minute
and the zone's offsets are whole minutes (true of every zone in the window's years), so a minute
is the walk's unit and partial minutes are counted by the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from effigate_engine.calendar import Calendar
from effigate_engine.zone import zone as bundled_zone

MINUTE = 60
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class LocalMinutes:
    """Local wall clock of every UTC minute in ``[start, end)`` for one zone."""

    zone: str
    start: int
    end: int
    day: np.ndarray  # local date as days since 1970-01-01
    second_of_day: np.ndarray
    weekday: np.ndarray
    offset: np.ndarray

    def cell(self, t: int) -> int:
        return (t - self.start) // MINUTE

    @property
    def cells(self) -> int:
        return self.day.size


@lru_cache(maxsize=16)
def local_minutes(zone_name: str, start: int, end: int) -> LocalMinutes:
    zone = bundled_zone(zone_name)
    n = (end - start) // MINUTE
    day = np.empty(n, np.int64)
    sod = np.empty(n, np.int64)
    weekday = np.empty(n, np.int64)
    offset = np.empty(n, np.int64)
    base = datetime.fromtimestamp(start, UTC)
    for i in range(n):
        local = (base + timedelta(minutes=i)).astimezone(zone)
        d = local.date()
        day[i] = (d - _EPOCH).days
        sod[i] = local.hour * 3600 + local.minute * 60 + local.second
        weekday[i] = d.weekday()
        offset[i] = int(local.utcoffset().total_seconds())
    return LocalMinutes(zone_name, start, end, day, sod, weekday, offset)


def _local_seconds(value: datetime) -> int:
    return (
        (value.date() - _EPOCH).days * 86400 + value.hour * 3600 + value.minute * 60 + value.second
    )


class ReferenceClock:
    """Business time of one calendar inside the window ``[start, end]``, by walking minutes."""

    def __init__(self, calendar: Calendar, start: int, end: int) -> None:
        self.calendar = calendar
        self.start = start
        self.end = end
        # One minute past the window: the state at ``end`` is known, nothing after it is used.
        self.minutes = local_minutes(calendar.timezone, start, end + MINUTE)
        self._last_cell = self.minutes.cell(end)
        years = range(
            datetime.fromtimestamp(start, UTC).year - 1, datetime.fromtimestamp(end, UTC).year + 2
        )
        self.holidays = np.array(
            sorted((d - _EPOCH).days for d in calendar.holiday_dates(years)), np.int64
        )
        day0 = int(self.minutes.day.min())
        self._day0 = day0
        self._holiday = np.zeros(int(self.minutes.day.max()) - day0 + 1, bool)
        last = day0 + self._holiday.size - 1
        inside = self.holidays[(self.holidays >= day0) & (self.holidays <= last)]
        self._holiday[inside - day0] = True

    def open_cells(self, lo: int, hi: int) -> np.ndarray:
        """Openness of minute cells ``lo..hi-1`` by the calendar's rules."""
        m = self.minutes
        day, sod, wd = m.day[lo:hi], m.second_of_day[lo:hi], m.weekday[lo:hi]
        scheduled = np.zeros(hi - lo, bool)
        for entry in self.calendar.weekly:
            if entry.end > entry.start:
                scheduled |= (wd == entry.weekday) & (sod >= entry.start) & (sod < entry.end)
            else:
                scheduled |= (wd == entry.weekday) & (sod >= entry.start)
                scheduled |= (wd == (entry.weekday + 1) % 7) & (sod < entry.end)
        opened = scheduled & ~self._holiday[day - self._day0]
        local = day * 86400 + sod
        for rng in self.calendar.extra_openings:
            opened |= (local >= _local_seconds(rng.start)) & (local < _local_seconds(rng.end))
        for rng in self.calendar.closures:
            opened &= ~((local >= _local_seconds(rng.start)) & (local < _local_seconds(rng.end)))
        return opened

    def _cells_from(self, lo: int, stop: int):
        """Yield (first cell, openness) chunks from cell ``lo`` up to cell ``stop`` excluded."""
        step = 2 * 24 * 60
        while lo < stop:
            hi = min(lo + step, stop)
            yield lo, self.open_cells(lo, hi)
            lo, step = hi, step * 4

    def _check(self, t: int) -> None:
        if not self.start <= t <= self.end:
            raise ValueError(f"{t} is outside the window [{self.start}, {self.end}]")

    def is_open(self, t: int) -> bool:
        self._check(t)
        cell = self.minutes.cell(t)
        return bool(self.open_cells(cell, cell + 1)[0])

    def elapsed(self, a: int, b: int) -> int:
        """Open seconds in [a, b) (negated when b < a), counted minute by minute."""
        self._check(a)
        self._check(b)
        if b < a:
            return -self.elapsed(b, a)
        if a == b:
            return 0
        lo, hi = self.minutes.cell(a), self.minutes.cell(b - 1) + 1
        opened = self.open_cells(lo, hi)
        cell_start = self.start + MINUTE * np.arange(lo, hi, dtype=np.int64)
        overlap = np.minimum(cell_start + MINUTE, b) - np.maximum(cell_start, a)
        return int(overlap[opened].sum())

    def deadline(self, a: int, seconds: int) -> int | None:
        """Earliest t >= a with `seconds` open seconds in [a, t); None past the window's end."""
        self._check(a)
        if seconds == 0:
            return a
        done = 0
        for lo, opened in self._cells_from(self.minutes.cell(a), self._last_cell):
            cell_start = self.start + MINUTE * np.arange(lo, lo + opened.size, dtype=np.int64)
            usable = np.where(opened, cell_start + MINUTE - np.maximum(cell_start, a), 0)
            total = done + np.cumsum(usable)
            k = int(np.searchsorted(total, seconds, side="left"))
            if k < total.size:
                before = int(total[k - 1]) if k else done
                return int(max(cell_start[k], a) + (seconds - before))
            done = int(total[-1])
        return None

    def _first_cell(self, t: int, want_open: bool) -> int | None:
        """Start of the first minute after t's whose openness is ``want_open``, up to the
        minute from ``end`` included (its start, ``end``, is the last answer possible)."""
        for lo, opened in self._cells_from(self.minutes.cell(t) + 1, self._last_cell + 1):
            hits = np.flatnonzero(opened == want_open)
            if hits.size:
                return self.start + MINUTE * (lo + int(hits[0]))
        return None

    def next_open(self, t: int) -> int | None:
        """Earliest open instant in [t, end]; None when there is none."""
        return t if self.is_open(t) else self._first_cell(t, True)

    def next_close(self, t: int) -> int | None:
        """Earliest closed instant in [t, end]; None when there is none."""
        return t if not self.is_open(t) else self._first_cell(t, False)
