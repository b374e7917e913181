"""The calendar model: JSON round trip and validation errors that name the field and the value."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from effigate_engine import Calendar, CalendarError, CalendarSet, compile_calendar
from effigate_engine.calendar import parse_time_of_day

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "calendars"


def base(**extra: object) -> dict:
    return {
        "timezone": "Europe/London",
        "weekly": [{"weekday": 0, "start": "09:00", "end": "17:00"}],
        **extra,
    }


@pytest.mark.parametrize(
    ("data", "field", "value"),
    [
        ({"timezone": "Mars/Olympus", "weekly": []}, "timezone", "Mars/Olympus"),
        ({"weekly": []}, "timezone", None),
        (base(weekly=[{"weekday": 0, "start": "09:00", "end": "25:00"}]), "weekly[0].end", "25:00"),
        (
            base(weekly=[{"weekday": 0, "start": "24:00", "end": "02:00"}]),
            "weekly[0].start",
            "24:00",
        ),
        (
            base(weekly=[{"weekday": 0, "start": "09:60", "end": "17:00"}]),
            "weekly[0].start",
            "09:60",
        ),
        (base(weekly=[{"weekday": 7, "start": "09:00", "end": "17:00"}]), "weekly[0].weekday", 7),
        (
            base(weekly=[{"weekday": "funday", "start": "09:00", "end": "17:00"}]),
            "weekly[0].weekday",
            "funday",
        ),
        (base(weekly=[{"weekday": 1, "start": "09:00"}]), "weekly[0].end", None),
        (base(holidays=["2025-02-30"]), "holidays[0]", "2025-02-30"),
        (base(holiday_regions=[{"country": "XX"}]), "holiday_regions[0].country", "XX"),
        (
            base(holiday_regions=[{"country": "AU", "subdivision": "ZZZ"}]),
            "holiday_regions[0].subdivision",
            "ZZZ",
        ),
        (
            base(closures=[{"start": "2025-01-02T10:00", "end": "2025-01-02T09:00"}]),
            "closures[0].end",
            "2025-01-02T09:00",
        ),
        (
            base(closures=[{"start": "2025-01-02T10:00+01:00", "end": "2025-01-02T12:00"}]),
            "closures[0].start",
            "2025-01-02T10:00+01:00",
        ),
        (base(opening_hours=[]), "opening_hours", []),
    ],
)
def test_invalid_fields_are_named_with_their_value(data: dict, field: str, value: object) -> None:
    with pytest.raises(CalendarError) as err:
        Calendar.from_json(data)
    assert err.value.field == field
    assert err.value.value == value
    assert field in str(err.value)


def test_time_of_day_forms() -> None:
    assert parse_time_of_day("24:00", "end", allow_24=True) == 86_400
    assert parse_time_of_day("07:30:15", "start", allow_24=False) == 27_015
    with pytest.raises(CalendarError):
        parse_time_of_day("24:00:01", "end", allow_24=True)


def test_json_round_trip(tmp_path: Path) -> None:
    data = {
        "name": "acme-nyc",
        "timezone": "America/New_York",
        "weekly": [
            {"weekday": "fri", "start": "22:00", "end": "06:00"},
            {"weekday": "Monday", "start": "08:00", "end": "24:00"},
        ],
        "holidays": ["2025-07-04", {"date": "2025-12-25", "name": "Christmas"}],
        "holiday_regions": ["US-NY"],
        "closures": [{"start": "2025-08-01T12:00", "end": "2025-08-01T17:00", "reason": "offsite"}],
        "extra_openings": [{"start": "2025-08-02T09:00", "end": "2025-08-02T13:00"}],
    }
    calendar = Calendar.from_json(data)
    path = tmp_path / "cal.json"
    calendar.save(path)
    again = Calendar.load(path)
    assert again == calendar
    assert json.loads(path.read_text())["weekly"][0] == {
        "weekday": 4,
        "start": "22:00",
        "end": "06:00",
    }


def test_24x7_shorthand() -> None:
    calendar = Calendar.from_json({"timezone": "UTC", "24x7": True})
    assert calendar.is_24x7
    compiled = compile_calendar(calendar)
    assert compiled.opens.size == 1
    assert compiled.open_seconds == compiled.horizon.end - compiled.horizon.start


def test_sample_calendars_load_and_compile() -> None:
    paths = sorted(SAMPLES.glob("*.json"))
    assert paths, "the repository ships sample calendars"
    calendars = [Calendar.load(p) for p in paths]
    packed = CalendarSet(calendars)
    assert len(packed) == len(paths)
    assert all(c.open_seconds > 0 for c in packed.compiled)


def test_duplicate_names_in_a_set_are_refused() -> None:
    cal = Calendar.from_json(base(name="x"))
    with pytest.raises(CalendarError, match=r"calendars\[1\].name"):
        CalendarSet([cal, cal])


def test_holiday_dates_come_from_the_holidays_package() -> None:
    calendar = Calendar.from_json(base(holiday_regions=[{"country": "GB", "subdivision": "ENG"}]))
    assert date(2025, 12, 25) in calendar.holiday_dates([2025])
