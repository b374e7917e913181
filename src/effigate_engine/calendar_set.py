"""Compilation of calendars to UTC open intervals, and many calendars packed into one set.

A compiled calendar is the sorted array of its open intervals ``[open_i, close_i)`` in UTC
seconds over a :class:`Horizon`, with the prefix sum ``cum_i`` of open seconds before
``open_i``. A :class:`CalendarSet` packs many compiled calendars (CSR: one offset per calendar)
plus a per-UTC-day index of the first interval that ends after each midnight, and a day table:
per calendar and UTC day, ``F`` at its midnight and the number of its shape (its at most two
openings, shared by all days alike). The kernels in ``_clock`` answer ``F(t)`` (open seconds
before ``t``) from one 8-byte record and ``deadline`` by a few branch-free steps over the
following days; one batch can mix calendars by index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from effigate_engine import _clock
from effigate_engine import intervals as iv
from effigate_engine.calendar import SECONDS_PER_DAY, Calendar
from effigate_engine.errors import CalendarError
from effigate_engine.zone import offset_pieces, utc_offset
from effigate_engine.zone import zone as bundled_zone

_EPOCH = date(1970, 1, 1)
_EPOCH_WEEKDAY = _EPOCH.weekday()  # 1970-01-01 was a Thursday (3)
#: Local days generated beyond each end of the horizon: covers any UTC offset (< 26 h).
_LOCAL_MARGIN_DAYS = 3
#: End marker of every packed calendar: an empty interval that never closes.
_SENTINEL = np.iinfo(np.int64).max


def _epoch_seconds(value: date | datetime) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise CalendarError("horizon", value.isoformat(), "is naive; give a UTC datetime")
        return int(value.timestamp())
    return (value - _EPOCH).days * SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class Horizon:
    """The UTC span ``[start, end]`` (epoch seconds, both at UTC midnight) a compiled calendar
    covers, both ends included: every instant in it answers by the calendar's rules (``end``
    too), no answer lies after ``end``. Instants outside it are errors, never silent wrong
    answers (``docs/clock.md``)."""

    start: int = _epoch_seconds(date(2000, 1, 1))
    end: int = _epoch_seconds(date(2100, 1, 1))

    def __post_init__(self) -> None:
        if self.start % SECONDS_PER_DAY or self.end % SECONDS_PER_DAY:
            raise CalendarError(
                "horizon", (self.start, self.end), "must start and end at UTC midnight"
            )
        if self.end <= self.start:
            raise CalendarError("horizon.end", self.end, "is not after horizon.start")

    @classmethod
    def of(cls, start: date | datetime, end: date | datetime) -> Horizon:
        """The horizon from the UTC midnight of ``start`` to that of ``end``."""
        return cls(_epoch_seconds(start), _epoch_seconds(end))

    @property
    def days(self) -> int:
        return (self.end - self.start) // SECONDS_PER_DAY

    @property
    def years(self) -> range:
        return range(_to_datetime(self.start).year - 1, _to_datetime(self.end).year + 2)

    def __str__(self) -> str:
        return f"{_to_datetime(self.start):%Y-%m-%d}..{_to_datetime(self.end):%Y-%m-%d} UTC"


def _to_datetime(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _local_seconds(value: datetime) -> int:
    """Naive local wall-clock date-time as seconds since 1970-01-01T00:00 wall clock."""
    return (value.date() - _EPOCH).days * SECONDS_PER_DAY + (
        value.hour * 3600 + value.minute * 60 + value.second
    )


def local_open_set(calendar: Calendar, horizon: Horizon) -> iv.IntervalSet:
    """The calendar's open set in local wall-clock seconds, covering the horizon with margin."""
    first_day = horizon.start // SECONDS_PER_DAY - _LOCAL_MARGIN_DAYS
    last_day = horizon.end // SECONDS_PER_DAY + _LOCAL_MARGIN_DAYS
    days = np.arange(first_day, last_day, dtype=np.int64)
    weekdays = (days + _EPOCH_WEEKDAY) % 7
    holiday_days = np.array(
        sorted((d - _EPOCH).days for d in calendar.holiday_dates(horizon.years)), np.int64
    )

    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    dates: list[np.ndarray] = []
    for entry in calendar.weekly:
        on = days[weekdays == entry.weekday]
        midnight = on * SECONDS_PER_DAY
        if entry.overnight:
            starts += [midnight + entry.start, midnight + SECONDS_PER_DAY]
            ends += [midnight + SECONDS_PER_DAY, midnight + SECONDS_PER_DAY + entry.end]
            dates += [on, on + 1]
        else:
            starts.append(midnight + entry.start)
            ends.append(midnight + entry.end)
            dates.append(on)
    if starts:
        all_starts, all_ends = np.concatenate(starts), np.concatenate(ends)
        working = ~np.isin(np.concatenate(dates), holiday_days)
        schedule = iv.union(all_starts[working], all_ends[working])
    else:
        schedule = iv.empty()

    def ranges(items: Iterable) -> iv.IntervalSet:
        pairs = [(_local_seconds(r.start), _local_seconds(r.end)) for r in items]
        if not pairs:
            return iv.empty()
        arr = np.array(pairs, np.int64)
        return iv.union(arr[:, 0], arr[:, 1])

    opened = iv.merge(schedule, ranges(calendar.extra_openings))
    return iv.difference(opened, ranges(calendar.closures))


@dataclass(frozen=True)
class CompiledCalendar:
    """One calendar's UTC open intervals over a horizon: ``opens``/``closes`` (epoch seconds,
    clipped to ``[horizon.start, horizon.end]``), ``cums`` (open seconds before each ``open``)
    and ``open_at_end``, the state at the instant ``horizon.end`` itself (the intervals stop
    there, so it is kept apart)."""

    calendar: Calendar
    horizon: Horizon
    opens: np.ndarray
    closes: np.ndarray
    cums: np.ndarray
    open_at_end: bool

    @property
    def open_seconds(self) -> int:
        """Total open seconds within the horizon."""
        if self.opens.size == 0:
            return 0
        return int(self.cums[-1] + self.closes[-1] - self.opens[-1])


def compile_calendar(calendar: Calendar, horizon: Horizon | None = None) -> CompiledCalendar:
    """Compile a calendar to UTC open intervals and prefix sums over ``horizon``."""
    horizon = horizon or Horizon()
    local_starts, local_ends = local_open_set(calendar, horizon)
    piece_starts, piece_ends, offsets = offset_pieces(calendar.timezone, horizon.start, horizon.end)
    out_starts: list[np.ndarray] = []
    out_ends: list[np.ndarray] = []
    for p_start, p_end, offset in zip(piece_starts, piece_ends, offsets, strict=True):
        s, e = iv.clip((local_starts, local_ends), int(p_start + offset), int(p_end + offset))
        out_starts.append(s - offset)
        out_ends.append(e - offset)
    opens, closes = iv.union(np.concatenate(out_starts), np.concatenate(out_ends))
    lengths = closes - opens
    cums = np.zeros_like(opens)
    np.cumsum(lengths[:-1], out=cums[1:])
    # The state at the horizon's last instant: its local wall clock inside the local open set.
    at_end = horizon.end + utc_offset(bundled_zone(calendar.timezone), horizon.end)
    k = int(np.searchsorted(local_starts, at_end, side="right")) - 1
    open_at_end = k >= 0 and at_end < int(local_ends[k])
    return CompiledCalendar(calendar, horizon, opens, closes, cums, open_at_end)


class CalendarSet:
    """Many compiled calendars packed for the batch kernels; batches name calendars by index.

    ``names`` maps a calendar's name (when it has one) to its index.
    """

    def __init__(self, calendars: Sequence[Calendar], horizon: Horizon | None = None) -> None:
        if not calendars:
            raise CalendarError("calendars", [], "is empty; a set needs at least one calendar")
        self.horizon = horizon or Horizon()
        self.calendars: tuple[Calendar, ...] = tuple(calendars)
        self.compiled = tuple(compile_calendar(c, self.horizon) for c in self.calendars)
        self.names: dict[str, int] = {}
        for i, cal in enumerate(self.calendars):
            if cal.name:
                if cal.name in self.names:
                    raise CalendarError(
                        f"calendars[{i}].name", cal.name, "is used twice in the set"
                    )
                self.names[cal.name] = i
        self._pack()

    def _pack(self) -> None:
        """Pack every calendar's intervals, with a sentinel after each, plus the day and
        deadline indexes the kernels read (see ``_clock.pxd``)."""
        sizes = np.array([c.opens.size + 1 for c in self.compiled], np.int64)
        self.first = np.zeros(len(self.compiled), np.int64)
        np.cumsum(sizes[:-1], out=self.first[1:])
        self.last = np.ascontiguousarray(self.first + sizes - 1)
        self.intervals = np.empty((int(sizes.sum()), 4), np.int64)
        midnights = self.horizon.start + SECONDS_PER_DAY * np.arange(
            self.horizon.days + 1, dtype=np.int64
        )
        self.day_first = np.empty((len(self.compiled), midnights.size), np.int32)
        bucket = _clock.BUSINESS_BUCKET_SECONDS
        by_open = []
        for i, c in enumerate(self.compiled):
            ends = c.cums + (c.closes - c.opens)
            block = self.intervals[self.first[i] : self.last[i] + 1]
            block[:-1, 0], block[:-1, 1], block[:-1, 2], block[:-1, 3] = (
                c.opens,
                c.closes,
                c.cums,
                ends,
            )
            block[-1] = (_SENTINEL, _SENTINEL, c.open_seconds, c.open_seconds)
            self.day_first[i] = np.searchsorted(c.closes, midnights, side="right")
            marks = bucket * np.arange(c.open_seconds // bucket + 1, dtype=np.int64)
            by_open.append(np.searchsorted(ends, marks, side="left").astype(np.int32))
        self.bucket_first = np.zeros(len(self.compiled) + 1, np.int64)
        np.cumsum([b.size for b in by_open], out=self.bucket_first[1:])
        self.by_open = np.ascontiguousarray(np.concatenate(by_open), np.int32)
        self.day_rec, self.day_shape = self._day_table(midnights)
        self.packed = _clock.PackedClock(
            self.intervals,
            self.first,
            self.last,
            self.day_first,
            self.by_open,
            self.bucket_first,
            np.array([c.open_at_end for c in self.compiled], np.uint8),
            self.horizon.start,
            self.horizon.end,
            self.day_rec,
            self.day_shape,
        )

    def _day_table(self, midnights: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The day table the kernels read first (see ``_clock.pxd``): per calendar and UTC day,
        ``F`` at midnight (low 32 bits) and a shape number (high 32 bits) into the shapes
        ``{open1, len1, open2, len2}`` (seconds after midnight) of days with at most two
        openings; shape 0 (a day with more). ``(None, None)`` when the horizon is 2^32 seconds
        or longer, so that ``F`` would not fit 32 bits."""
        if self.horizon.end - self.horizon.start >= 1 << 32:
            return None, None
        ndays = midnights.size
        start = self.horizon.start
        f_mid: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        for i, c in enumerate(self.compiled):
            n = c.opens.size
            after = self.day_first[i].astype(np.int64)
            if n == 0:
                f_mid.append(np.zeros(ndays, np.int64))
                rows.append(np.zeros((ndays, 5), np.int64))
                continue
            k = np.minimum(after, n - 1)
            f_mid.append(
                np.where(
                    after < n,
                    c.cums[k] + np.maximum(midnights - c.opens[k], 0),
                    c.open_seconds,
                )
            )
            # Each interval cut at the UTC midnights it spans, as (day, open, close) in seconds
            # after that day's midnight.
            first_day = (c.opens - start) // SECONDS_PER_DAY
            spans = (c.closes - 1 - start) // SECONDS_PER_DAY - first_day + 1
            owner = np.repeat(np.arange(n), spans)
            group_start = np.repeat(np.cumsum(spans) - spans, spans)
            day = first_day[owner] + (np.arange(owner.size) - group_start)
            midnight = start + day * SECONDS_PER_DAY
            lo = np.maximum(c.opens[owner], midnight) - midnight
            hi = np.minimum(c.closes[owner], midnight + SECONDS_PER_DAY) - midnight
            count = np.bincount(day, minlength=ndays)
            head = np.cumsum(count) - count
            row = np.zeros((ndays, 5), np.int64)  # open1, len1, open2, len2, more than two
            one = count >= 1
            row[one, 0] = lo[head[one]]
            row[one, 1] = hi[head[one]] - lo[head[one]]
            two = count >= 2
            row[two, 2] = lo[head[two] + 1]
            row[two, 3] = hi[head[two] + 1] - lo[head[two] + 1]
            row[:, 4] = count > 2
            rows.append(row)
        every = np.concatenate(rows)
        simple = every[:, 4] == 0
        # Number the distinct shapes: each opening (open, len < 2^17) packs into 34 bits, so
        # a shape is the pair (number of its first opening, its second opening).
        firsts, first_number = np.unique(
            (every[simple, 0] << 17) | every[simple, 1], return_inverse=True
        )
        keys, number = np.unique(
            (first_number.reshape(-1) << 34) | (every[simple, 2] << 17) | every[simple, 3],
            return_inverse=True,
        )
        shape_of = np.zeros(every.shape[0], np.uint64)
        shape_of[simple] = number.reshape(-1).astype(np.uint64) + 1
        day_shape = np.zeros((keys.size + 1, 4), np.int32)
        first = firsts[keys >> 34]
        day_shape[1:, 0] = first >> 17
        day_shape[1:, 1] = first & ((1 << 17) - 1)
        day_shape[1:, 2] = (keys >> 17) & ((1 << 17) - 1)
        day_shape[1:, 3] = keys & ((1 << 17) - 1)
        day_rec = np.concatenate(f_mid).astype(np.uint64) | (shape_of << np.uint64(32))
        return np.ascontiguousarray(day_rec.reshape(len(self.compiled), ndays)), day_shape

    def __len__(self) -> int:
        return len(self.calendars)

    def index(self, calendar: int | str) -> int:
        """The index of a calendar given by index or name."""
        if isinstance(calendar, str):
            if calendar not in self.names:
                raise CalendarError(
                    "calendar", calendar, f"is not in the set ({sorted(self.names)})"
                )
            return self.names[calendar]
        if not 0 <= int(calendar) < len(self):
            raise CalendarError(
                "calendar", calendar, f"is not an index of the set (0..{len(self) - 1})"
            )
        return int(calendar)
