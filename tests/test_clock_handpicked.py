"""Hand-picked business-time cases: each pins one behaviour, checked against a value worked out
by hand and against the minute-walk reference."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from effigate_engine import Calendar, CalendarSet, Horizon, LocalRange, WeeklyEntry, clock
from effigate_engine.errors import BatchError
from effigate_engine.zone import zone as bundled_zone
from tests.reference_clock import ReferenceClock

H = 3600


def local(zone: str, text: str, fold: int = 0) -> datetime:
    """An aware datetime from local wall-clock text in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=bundled_zone(zone), fold=fold)


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def weekdays(start: str, end: str, days: range = range(5)) -> tuple[WeeklyEntry, ...]:
    s = int(start[:2]) * H + int(start[3:]) * 60
    e = int(end[:2]) * H + int(end[3:]) * 60
    return tuple(WeeklyEntry(d, s, e) for d in days)


class Case:
    """A calendar compiled on the default horizon plus its reference over a short window."""

    def __init__(self, calendar: Calendar, window_start: date, window_end: date) -> None:
        self.calendar = calendar
        self.set = CalendarSet([calendar])
        horizon = Horizon.of(window_start, window_end)
        self.ref = ReferenceClock(calendar, horizon.start, horizon.end)

    def elapsed(self, a: datetime, b: datetime) -> int:
        got = clock.elapsed(self.set, 0, a, b)
        assert got == self.ref.elapsed(epoch(a), epoch(b))
        return got

    def deadline(self, a: datetime, seconds: int) -> datetime:
        got = clock.deadline(self.set, 0, a, seconds)
        assert epoch(got) == self.ref.deadline(epoch(a), seconds)
        return got

    def is_open(self, t: datetime) -> bool:
        got = clock.is_open(self.set, 0, t)
        assert got == self.ref.is_open(epoch(t))
        return got

    def next_open(self, t: datetime) -> datetime | None:
        got = clock.next_open(self.set, 0, t)
        assert (None if got is None else epoch(got)) == self.ref.next_open(epoch(t))
        return got

    def next_close(self, t: datetime) -> datetime | None:
        got = clock.next_close(self.set, 0, t)
        assert (None if got is None else epoch(got)) == self.ref.next_close(epoch(t))
        return got


LONDON = "Europe/London"


@pytest.fixture(scope="module")
def office() -> Case:
    """Mon–Fri 09:00–17:00 in London, around the 2024 spring-forward."""
    return Case(Calendar(LONDON, weekdays("09:00", "17:00")), date(2024, 3, 20), date(2024, 4, 10))


def test_start_while_closed_counts_from_next_opening(office: Case) -> None:
    saturday = local(LONDON, "2024-03-23 10:00")
    assert office.deadline(saturday, H) == local(LONDON, "2024-03-25 10:00")
    assert office.elapsed(saturday, local(LONDON, "2024-03-25 09:30")) == 30 * 60


def test_friday_evening_ticket_is_due_monday(office: Case) -> None:
    friday = local(LONDON, "2024-03-22 18:00")
    assert office.deadline(friday, 4 * H) == local(LONDON, "2024-03-25 13:00")


def test_exactly_at_open_and_close(office: Case) -> None:
    opening = local(LONDON, "2024-03-25 09:00")
    closing = local(LONDON, "2024-03-25 17:00")
    assert office.is_open(opening)
    assert not office.is_open(closing)
    assert office.next_open(closing) == local(LONDON, "2024-03-26 09:00")
    assert office.next_close(opening) == closing
    assert office.next_open(opening) == opening
    assert office.next_close(closing) == closing
    assert office.elapsed(closing, local(LONDON, "2024-03-26 09:00")) == 0


def test_deadline_that_uses_up_an_opening_is_its_close(office: Case) -> None:
    assert office.deadline(local(LONDON, "2024-03-25 09:00"), 8 * H) == local(
        LONDON, "2024-03-25 17:00"
    )
    assert office.deadline(local(LONDON, "2024-03-25 16:00"), H) == local(
        LONDON, "2024-03-25 17:00"
    )
    assert office.deadline(local(LONDON, "2024-03-25 16:00"), H + 1) == local(
        LONDON, "2024-03-26 09:00:01"
    )


def test_zero_duration_is_due_at_start_even_while_closed(office: Case) -> None:
    sunday = local(LONDON, "2024-03-24 12:00")
    assert office.deadline(sunday, 0) == sunday
    assert office.elapsed(sunday, sunday) == 0


def test_elapsed_is_negative_backwards(office: Case) -> None:
    a, b = local(LONDON, "2024-03-25 10:00"), local(LONDON, "2024-03-26 10:00")
    assert office.elapsed(b, a) == -office.elapsed(a, b) == -8 * H


def test_spring_forward_entry_holds_fewer_real_hours() -> None:
    # 2024-03-31: London skips 01:00–02:00. A Sunday 00:00–04:00 entry holds 3 real hours and an
    # entry inside the skipped hour holds none.
    case = Case(
        Calendar(LONDON, (WeeklyEntry(6, 0, 4 * H), WeeklyEntry(5, H, 2 * H))),
        date(2024, 3, 25),
        date(2024, 4, 5),
    )
    day = local(LONDON, "2024-03-31 00:00")
    assert case.elapsed(day, day + timedelta(days=1)) == 3 * H
    assert case.deadline(day, 3 * H) == datetime(2024, 3, 31, 3, 0, tzinfo=UTC)
    ny = "America/New_York"
    case = Case(Calendar(ny, (WeeklyEntry(6, H, 4 * H),)), date(2024, 3, 5), date(2024, 3, 15))
    day = local(ny, "2024-03-10 00:00")
    assert case.elapsed(day, day + timedelta(days=1)) == 2 * H


def test_fall_back_counts_the_repeated_hour_twice() -> None:
    case = Case(
        Calendar(LONDON, (WeeklyEntry(6, 0, 3 * H),)), date(2024, 10, 20), date(2024, 11, 1)
    )
    day = local(LONDON, "2024-10-27 00:00")
    assert case.elapsed(day, day + timedelta(days=1)) == 4 * H
    first_one_thirty = local(LONDON, "2024-10-27 01:30", fold=0)
    second_one_thirty = local(LONDON, "2024-10-27 01:30", fold=1)
    assert case.elapsed(first_one_thirty, second_one_thirty) == H
    assert case.is_open(second_one_thirty)


def test_sao_paulo_midnight_that_never_happened() -> None:
    # 2018-11-04: São Paulo jumped from 00:00 to 01:00; a Sunday 00:00–02:00 entry holds 1 hour.
    zone = "America/Sao_Paulo"
    case = Case(Calendar(zone, (WeeklyEntry(6, 0, 2 * H),)), date(2018, 10, 30), date(2018, 11, 10))
    start = datetime(2018, 11, 4, 0, 0, tzinfo=bundled_zone(zone))  # resolves to 01:00 -02
    assert case.elapsed(start - timedelta(hours=2), start + timedelta(hours=5)) == H
    assert case.next_open(datetime(2018, 11, 4, 2, 0, tzinfo=UTC)) == datetime(
        2018, 11, 4, 3, 0, tzinfo=UTC
    )


def test_lord_howe_half_hour_dst() -> None:
    # 2024-10-06 02:00 -> 02:30: a Sunday 00:00–06:00 entry holds 5.5 hours.
    zone = "Australia/Lord_Howe"
    case = Case(Calendar(zone, (WeeklyEntry(6, 0, 6 * H),)), date(2024, 10, 1), date(2024, 10, 12))
    day = local(zone, "2024-10-06 00:00")
    assert case.elapsed(day, day + timedelta(days=1)) == 5 * H + 30 * 60


def test_kathmandu_quarter_hour_offset() -> None:
    zone = "Asia/Kathmandu"
    case = Case(Calendar(zone, weekdays("09:00", "17:00")), date(2024, 6, 1), date(2024, 6, 15))
    assert case.next_open(datetime(2024, 6, 3, 0, 0, tzinfo=UTC)) == datetime(
        2024, 6, 3, 3, 15, tzinfo=UTC
    )


def test_apia_skipped_day_has_no_business_hours() -> None:
    # Samoa skipped Friday 2011-12-30 entirely.
    zone = "Pacific/Apia"
    case = Case(Calendar(zone, weekdays("09:00", "17:00")), date(2011, 12, 20), date(2012, 1, 10))
    thursday_close = local(zone, "2011-12-29 17:00")
    assert case.elapsed(thursday_close, local(zone, "2012-01-02 09:00")) == 0
    assert case.deadline(thursday_close, H) == local(zone, "2012-01-02 10:00")


def test_holiday_on_the_second_day_of_an_overnight_shift() -> None:
    # Fri 22:00–06:00; Saturday is a holiday: only Fri 22:00–24:00 is open.
    zone = "America/New_York"
    calendar = Calendar(
        zone, (WeeklyEntry(4, 22 * H, 6 * H),), holidays=frozenset({date(2024, 7, 6)})
    )
    case = Case(calendar, date(2024, 7, 1), date(2024, 7, 15))
    friday = local(zone, "2024-07-05 20:00")
    assert case.elapsed(friday, friday + timedelta(days=1)) == 2 * H
    assert case.deadline(local(zone, "2024-07-05 23:00"), 2 * H) == local(zone, "2024-07-12 23:00")
    normal = local(zone, "2024-07-12 20:00")
    assert case.elapsed(normal, normal + timedelta(days=1)) == 8 * H


def test_deadline_across_a_two_week_holiday_closure() -> None:
    calendar = Calendar(
        LONDON,
        weekdays("09:00", "17:00"),
        closures=(LocalRange(datetime(2024, 12, 21), datetime(2025, 1, 6), "year-end shutdown"),),
    )
    case = Case(calendar, date(2024, 12, 15), date(2025, 1, 15))
    assert case.deadline(local(LONDON, "2024-12-20 16:00"), 2 * H) == local(
        LONDON, "2025-01-06 10:00"
    )


def test_24_00_entry_next_to_00_00_entry_is_continuous() -> None:
    calendar = Calendar(LONDON, (WeeklyEntry(0, 20 * H, 24 * H), WeeklyEntry(1, 0, 4 * H)))
    case = Case(calendar, date(2024, 6, 1), date(2024, 6, 15))
    assert case.next_close(local(LONDON, "2024-06-03 21:00")) == local(LONDON, "2024-06-04 04:00")
    assert case.deadline(local(LONDON, "2024-06-03 23:30"), H) == local(LONDON, "2024-06-04 00:30")
    assert case.is_open(local(LONDON, "2024-06-04 00:00"))


def test_overlapping_entries_are_merged() -> None:
    calendar = Calendar.from_json(
        {
            "timezone": "UTC",
            "weekly": [
                {"weekday": "mon", "start": "09:00", "end": "13:00"},
                {"weekday": "mon", "start": "12:00", "end": "17:00"},
            ],
        }
    )
    case = Case(calendar, date(2024, 6, 1), date(2024, 6, 15))
    monday = datetime(2024, 6, 3, tzinfo=UTC)
    assert case.elapsed(monday, monday + timedelta(days=1)) == 8 * H


def test_extra_opening_overrides_a_holiday() -> None:
    calendar = Calendar(
        "UTC",
        weekdays("09:00", "17:00"),
        holidays=frozenset({date(2024, 12, 25)}),
        extra_openings=(LocalRange(datetime(2024, 12, 25, 10), datetime(2024, 12, 25, 12)),),
    )
    case = Case(calendar, date(2024, 12, 20), date(2024, 12, 31))
    christmas = datetime(2024, 12, 25, tzinfo=UTC)
    assert case.elapsed(christmas, christmas + timedelta(days=1)) == 2 * H


def test_generated_public_holidays_close_the_day() -> None:
    calendar = Calendar.from_json(
        {
            "timezone": "Australia/Sydney",
            "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
            "holiday_regions": [{"country": "AU", "subdivision": "NSW"}],
        }
    )
    case = Case(calendar, date(2026, 1, 20), date(2026, 2, 1))
    australia_day = local("Australia/Sydney", "2026-01-26 00:00")  # a Monday
    assert case.elapsed(australia_day, australia_day + timedelta(days=1)) == 0


def test_24x7_never_closes_within_the_horizon() -> None:
    case = Case(Calendar.always_open(LONDON), date(2024, 3, 25), date(2024, 4, 5))
    day = local(LONDON, "2024-03-31 00:00")
    assert case.elapsed(day, day + timedelta(days=1)) == 23 * H
    assert case.next_close(day) is None
    # 24 real hours, not 24 wall-clock hours: the day has only 23.
    assert case.deadline(day, 24 * H) == datetime(2024, 4, 1, 0, 0, tzinfo=UTC)


# The horizon's ends -----------------------------------------------------------------------
# The default horizon is [2000-01-01T00:00Z, 2100-01-01T00:00Z], both instants included: the
# state at each end is the calendar's rule, nothing is answered after the end.

HORIZON_END = datetime(2100, 1, 1, tzinfo=UTC)  # a Friday
HORIZON_START = datetime(2000, 1, 1, tzinfo=UTC)  # a Saturday


def at_end(calendar: Calendar) -> Case:
    return Case(calendar, date(2099, 12, 24), date(2100, 1, 1))


def at_start(calendar: Calendar) -> Case:
    return Case(calendar, date(2000, 1, 1), date(2000, 1, 10))


def test_24x7_is_open_at_the_horizon_end() -> None:
    case = at_end(Calendar.always_open())
    assert case.is_open(HORIZON_END)
    assert case.next_open(HORIZON_END) == HORIZON_END
    assert case.next_close(HORIZON_END) is None
    before = HORIZON_END - timedelta(hours=5)
    assert case.next_close(before) is None
    assert case.elapsed(before, HORIZON_END) == 5 * H
    assert case.deadline(before, 5 * H) == HORIZON_END
    assert case.deadline(HORIZON_END, 0) == HORIZON_END


def test_a_calendar_closing_exactly_at_the_horizon_end_is_closed_there() -> None:
    # Open all of Monday..Thursday in UTC: Thursday 2099-12-31 24:00 is the horizon's end.
    case = at_end(Calendar("UTC", weekdays("00:00", "24:00", range(4))))
    before = HORIZON_END - timedelta(hours=5)
    assert case.is_open(before)
    assert not case.is_open(HORIZON_END)
    assert case.next_close(before) == HORIZON_END
    assert case.next_close(HORIZON_END) == HORIZON_END
    assert case.next_open(HORIZON_END) is None
    assert case.deadline(before, 5 * H) == HORIZON_END


def test_a_calendar_opening_exactly_at_the_horizon_end_is_open_there() -> None:
    # Tokyo (+09:00) office hours from 09:00: Friday 2100-01-01 09:00 is the horizon's end.
    tokyo = "Asia/Tokyo"
    case = at_end(Calendar(tokyo, weekdays("09:00", "17:00")))
    assert local(tokyo, "2100-01-01 09:00") == HORIZON_END
    evening = local(tokyo, "2099-12-31 18:00")
    assert not case.is_open(evening)
    assert case.next_open(evening) == HORIZON_END
    assert case.is_open(HORIZON_END)
    assert case.next_open(HORIZON_END) == HORIZON_END
    # It closes at 17:00 local, after the horizon: not answered.
    assert case.next_close(HORIZON_END) is None
    assert case.elapsed(evening, HORIZON_END) == 0


def test_a_calendar_closed_through_the_horizon_end_never_opens_again() -> None:
    case = at_end(Calendar(LONDON, weekdays("09:00", "17:00")))
    evening = local(LONDON, "2099-12-31 18:00")
    assert case.next_open(evening) is None
    assert case.next_open(HORIZON_END) is None
    assert case.next_close(HORIZON_END) == HORIZON_END


def test_deadlines_cannot_run_past_the_horizon_end() -> None:
    case = at_end(Calendar.always_open())
    with pytest.raises(BatchError, match=r"seconds\[0\]: 1 runs past the calendars' horizon"):
        clock.deadline(case.set, 0, HORIZON_END, 1)
    assert case.ref.deadline(epoch(HORIZON_END), 1) is None


@pytest.mark.parametrize("function", ["is_open", "next_open", "next_close"])
def test_instants_after_the_horizon_end_or_before_its_start_are_refused(function: str) -> None:
    calendars = CalendarSet([Calendar.always_open()])
    query = getattr(clock, function)
    for outside in (HORIZON_END + timedelta(seconds=1), HORIZON_START - timedelta(seconds=1)):
        with pytest.raises(BatchError) as refused:
            query(calendars, 0, outside)
        assert str(refused.value) == (
            f"at[0]: {outside.isoformat()!r} is outside the calendars' horizon "
            "2000-01-01..2100-01-01 UTC"
        )


def test_the_horizon_start_answers_by_the_rules() -> None:
    # Saturday 2000-01-01 00:00Z is 01:00 Saturday in Paris; the calendar is open Fri 22:00–06:00
    # local, so it is open at the horizon's start and closes at 05:00Z.
    paris = "Europe/Paris"
    case = at_start(Calendar(paris, (WeeklyEntry(4, 22 * H, 6 * H),)))
    assert case.is_open(HORIZON_START)
    assert case.next_open(HORIZON_START) == HORIZON_START
    assert case.next_close(HORIZON_START) == datetime(2000, 1, 1, 5, tzinfo=UTC)
    assert case.elapsed(HORIZON_START, HORIZON_START + timedelta(days=1)) == 5 * H
    assert case.deadline(HORIZON_START, 5 * H) == datetime(2000, 1, 1, 5, tzinfo=UTC)
    assert clock.open_seconds_before(case.set, 0, HORIZON_START) == 0
