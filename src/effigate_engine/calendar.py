"""Business-hours calendars: the model, its JSON form and its validation.

A calendar has an IANA time zone, a weekly schedule, holidays (explicit dates and/or generated
from a country/subdivision with the ``holidays`` package), partial closures and extra openings.
Its exact meaning (``docs/clock.md``, *What open means*): an instant is open iff its local
wall-clock time falls in a schedule entry for its local date (or in an extra opening) and not
in a closure; a holiday closes every instant whose local date is that day.

Decisions pinned here:

* Weekly entries of one weekday that overlap or touch are **merged** (the schedule is the union
  of its entries), never rejected: "09:00–13:00" plus "12:00–17:00" is open 09:00–17:00.
* An entry whose ``end <= start`` runs past midnight into the next day (``22:00–06:00``); the part
  after midnight belongs to the next local date, so a holiday on that date closes it.
  ``end == start`` is a 24-hour shift. ``24:00`` is allowed as an end only.
* Extra openings override holidays (a special opening on a public holiday is open); closures
  override everything.
* Closures and extra openings are local wall-clock date-times (ISO, no offset); an offset is an
  error because it would make the range ambiguous.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from effigate_engine.errors import CalendarError
from effigate_engine.zone import TZDATA_VERSION, UnknownZoneError
from effigate_engine.zone import zone as bundled_zone

SECONDS_PER_DAY = 86_400
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_OF_DAY = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")


def parse_time_of_day(text: object, field_name: str, *, allow_24: bool) -> int:
    """Parse ``HH:MM[:SS]`` into seconds after local midnight (``24:00`` = 86400 when allowed)."""
    if not isinstance(text, str):
        raise CalendarError(field_name, text, "is not a time of day (expected 'HH:MM[:SS]')")
    match = _TIME_OF_DAY.match(text)
    if match is None:
        raise CalendarError(field_name, text, "is not a time of day (expected 'HH:MM[:SS]')")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if minutes > 59 or seconds > 59:
        raise CalendarError(field_name, text, "is not a time of day (minutes/seconds above 59)")
    total = hours * 3600 + minutes * 60 + seconds
    if total == SECONDS_PER_DAY and allow_24:
        return total
    if hours > 23:
        allowed = "00:00–24:00" if allow_24 else "00:00–23:59:59"
        raise CalendarError(field_name, text, f"is not a time of day (allowed {allowed})")
    return total


def format_time_of_day(seconds: int) -> str:
    """Format seconds after local midnight as ``HH:MM`` or ``HH:MM:SS``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


_WEEKDAY_WORDS = {
    **{name: i for i, name in enumerate(WEEKDAY_NAMES)},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}


def _parse_weekday(value: object, field_name: str) -> int:
    """0=Mon..6=Sun from an int, or a day name / three-letter abbreviation in any case."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str) and value.strip().lower() in _WEEKDAY_WORDS:
        return _WEEKDAY_WORDS[value.strip().lower()]
    raise CalendarError(field_name, value, "is not a weekday (0=Mon..6=Sun or 'mon'..'sun')")


def _parse_local_datetime(value: object, field_name: str) -> datetime:
    if not isinstance(value, str):
        raise CalendarError(field_name, value, "is not a local date-time ('YYYY-MM-DDTHH:MM')")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CalendarError(
            field_name, value, "is not a local date-time ('YYYY-MM-DDTHH:MM')"
        ) from None
    if parsed.tzinfo is not None:
        raise CalendarError(
            field_name, value, "has a UTC offset; give local wall-clock time in the calendar's zone"
        )
    return parsed


def _parse_date(value: object, field_name: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise CalendarError(field_name, value, "is not a date ('YYYY-MM-DD')")


@dataclass(frozen=True, slots=True)
class WeeklyEntry:
    """One opening of the weekly schedule: ``weekday`` 0=Mon..6=Sun, ``start``/``end`` in seconds
    after local midnight (``end`` may be 86400 = 24:00; ``end <= start`` runs past midnight)."""

    weekday: int
    start: int
    end: int

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def to_json(self) -> dict[str, Any]:
        return {
            "weekday": self.weekday,
            "start": format_time_of_day(self.start),
            "end": format_time_of_day(self.end),
        }


@dataclass(frozen=True, slots=True)
class LocalRange:
    """A local wall-clock range ``[start, end)`` in the calendar's zone: a closure or an extra
    opening."""

    start: datetime
    end: datetime
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class HolidayRegion:
    """Public holidays generated by the ``holidays`` package for a country (and subdivision)."""

    country: str
    subdivision: str | None = None

    def dates(self, years: Iterable[int]) -> set[date]:
        """Holiday dates of this region in ``years`` (years without data in the package add
        none)."""
        import holidays

        with warnings.catch_warnings():
            # Some countries' rules cover only some years; the package warns for the rest.
            warnings.simplefilter("ignore", UserWarning)
            return set(
                holidays.country_holidays(self.country, subdiv=self.subdivision, years=years)
            )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"country": self.country}
        if self.subdivision:
            out["subdivision"] = self.subdivision
        return out


@dataclass(frozen=True)
class Calendar:
    """A business-hours calendar. Build it with :meth:`from_json` / :meth:`load`, or directly."""

    timezone: str
    weekly: tuple[WeeklyEntry, ...]
    holidays: frozenset[date] = frozenset()
    holiday_regions: tuple[HolidayRegion, ...] = ()
    closures: tuple[LocalRange, ...] = ()
    extra_openings: tuple[LocalRange, ...] = ()
    name: str = ""
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", _zone(self.timezone, "timezone"))
        for i, entry in enumerate(self.weekly):
            if not 0 <= entry.weekday <= 6:
                raise CalendarError(f"weekly[{i}].weekday", entry.weekday, "is not 0..6")
            if not 0 <= entry.start < SECONDS_PER_DAY:
                raise CalendarError(f"weekly[{i}].start", entry.start, "is not in [0, 86400)")
            if not 0 <= entry.end <= SECONDS_PER_DAY:
                raise CalendarError(f"weekly[{i}].end", entry.end, "is not in [0, 86400]")
        for label, ranges in (("closures", self.closures), ("extra_openings", self.extra_openings)):
            for i, rng in enumerate(ranges):
                if rng.end <= rng.start:
                    raise CalendarError(
                        f"{label}[{i}].end", rng.end.isoformat(), "is not after its start"
                    )

    @classmethod
    def always_open(cls, timezone: str = "UTC", name: str = "24x7") -> Calendar:
        """The 24x7 calendar: open every instant."""
        return cls(timezone, tuple(WeeklyEntry(d, 0, SECONDS_PER_DAY) for d in range(7)), name=name)

    @property
    def is_24x7(self) -> bool:
        days = {e.weekday for e in self.weekly if e.start == 0 and e.end == SECONDS_PER_DAY}
        return days == set(range(7)) and not (
            self.holidays or self.holiday_regions or self.closures
        )

    def holiday_dates(self, years: Iterable[int]) -> set[date]:
        """Explicit holidays plus those generated for ``years`` from the holiday regions."""
        years = list(years)
        out = {d for d in self.holidays if d.year in years} if years else set(self.holidays)
        for region in self.holiday_regions:
            out |= region.dates(years)
        return out

    # JSON ---------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calendar:
        """Build a calendar from its JSON object, validating every field."""
        if not isinstance(data, Mapping):
            raise CalendarError("calendar", data, "is not a JSON object")
        known = {
            "name",
            "timezone",
            "weekly",
            "24x7",
            "holidays",
            "holiday_regions",
            "closures",
            "extra_openings",
        }
        for key in data:
            if key not in known:
                raise CalendarError(key, data[key], f"is not a calendar field ({sorted(known)})")
        timezone = data.get("timezone")
        if timezone is None:
            raise CalendarError(
                "timezone", None, "is required (an IANA zone such as 'Europe/London')"
            )
        _zone(timezone, "timezone")
        name = data.get("name", "")
        if not isinstance(name, str):
            raise CalendarError("name", name, "is not a string")

        weekly: list[WeeklyEntry] = []
        always = data.get("24x7", False)
        if not isinstance(always, bool):
            raise CalendarError("24x7", always, "is not true/false")
        if always:
            weekly.extend(WeeklyEntry(d, 0, SECONDS_PER_DAY) for d in range(7))
        raw_weekly = data.get("weekly", [])
        if not isinstance(raw_weekly, list):
            raise CalendarError("weekly", raw_weekly, "is not a list of entries")
        for i, raw in enumerate(raw_weekly):
            path = f"weekly[{i}]"
            if not isinstance(raw, Mapping):
                raise CalendarError(path, raw, "is not an object {weekday, start, end}")
            for key in ("weekday", "start", "end"):
                if key not in raw:
                    raise CalendarError(f"{path}.{key}", None, "is required")
            weekday = _parse_weekday(raw["weekday"], f"{path}.weekday")
            start = parse_time_of_day(raw["start"], f"{path}.start", allow_24=False)
            end = parse_time_of_day(raw["end"], f"{path}.end", allow_24=True)
            weekly.append(WeeklyEntry(weekday, start, end))

        explicit: set[date] = set()
        raw_holidays = data.get("holidays", [])
        if not isinstance(raw_holidays, list):
            raise CalendarError("holidays", raw_holidays, "is not a list of dates")
        for i, raw in enumerate(raw_holidays):
            value = raw.get("date") if isinstance(raw, Mapping) else raw
            explicit.add(_parse_date(value, f"holidays[{i}]"))

        regions: list[HolidayRegion] = []
        raw_regions = data.get("holiday_regions", [])
        if not isinstance(raw_regions, list):
            raise CalendarError("holiday_regions", raw_regions, "is not a list")
        for i, raw in enumerate(raw_regions):
            regions.append(_parse_region(raw, f"holiday_regions[{i}]"))

        closures = tuple(_parse_ranges(data.get("closures", []), "closures"))
        openings = tuple(_parse_ranges(data.get("extra_openings", []), "extra_openings"))
        return cls(
            timezone=timezone,
            weekly=tuple(weekly),
            holidays=frozenset(explicit),
            holiday_regions=tuple(regions),
            closures=closures,
            extra_openings=openings,
            name=name,
        )

    def to_json(self) -> dict[str, Any]:
        """The calendar as a JSON object that :meth:`from_json` reads back to an equal calendar."""
        out: dict[str, Any] = {"timezone": self.timezone}
        if self.name:
            out["name"] = self.name
        out["weekly"] = [e.to_json() for e in self.weekly]
        if self.holidays:
            out["holidays"] = [d.isoformat() for d in sorted(self.holidays)]
        if self.holiday_regions:
            out["holiday_regions"] = [r.to_json() for r in self.holiday_regions]
        if self.closures:
            out["closures"] = [r.to_json() for r in self.closures]
        if self.extra_openings:
            out["extra_openings"] = [r.to_json() for r in self.extra_openings]
        return out

    @classmethod
    def load(cls, path: str | Path) -> Calendar:
        """Read a calendar from a JSON file."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalendarError(str(path), text[:40], f"is not JSON ({exc.msg})") from None
        return cls.from_json(data)

    def save(self, path: str | Path) -> None:
        """Write the calendar as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _zone(name: object, field_name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise CalendarError(field_name, name, "is not an IANA time zone name")
    try:
        return bundled_zone(name)
    except UnknownZoneError:
        raise CalendarError(
            field_name, name, f"is not a known IANA time zone (tzdata {TZDATA_VERSION})"
        ) from None


def _parse_region(raw: object, path: str) -> HolidayRegion:
    import holidays

    if isinstance(raw, str):
        country, _, subdivision = raw.partition("-")
        raw = {"country": country, "subdivision": subdivision or None}
    if not isinstance(raw, Mapping) or "country" not in raw:
        raise CalendarError(path, raw, "is not {country, subdivision?} or 'CC[-SUB]'")
    country = raw["country"]
    subdivision = raw.get("subdivision")
    supported = holidays.list_supported_countries()
    if not isinstance(country, str) or country.upper() not in supported:
        raise CalendarError(
            f"{path}.country", country, "is not a country the holidays package knows"
        )
    country = country.upper()
    if subdivision is not None:
        if not isinstance(subdivision, str) or subdivision.upper() not in {
            s.upper() for s in supported[country]
        }:
            raise CalendarError(
                f"{path}.subdivision", subdivision, f"is not a subdivision of {country}"
            )
        subdivision = next(s for s in supported[country] if s.upper() == subdivision.upper())
    return HolidayRegion(country, subdivision)


def _parse_ranges(raw: object, label: str) -> list[LocalRange]:
    if not isinstance(raw, list):
        raise CalendarError(label, raw, "is not a list of {start, end}")
    out = []
    for i, item in enumerate(raw):
        path = f"{label}[{i}]"
        if not isinstance(item, Mapping) or "start" not in item or "end" not in item:
            raise CalendarError(path, item, "is not an object {start, end, reason?}")
        start = _parse_local_datetime(item["start"], f"{path}.start")
        end = _parse_local_datetime(item["end"], f"{path}.end")
        if end <= start:
            raise CalendarError(f"{path}.end", item["end"], "is not after its start")
        out.append(LocalRange(start, end, str(item.get("reason", ""))))
    return out
