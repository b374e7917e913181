"""The typed clock API: compiled backing, input forms, nulls, errors and threading."""

from __future__ import annotations

import importlib.machinery
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

import effigate_engine
from effigate_engine import Calendar, CalendarSet, Horizon, WeeklyEntry, clock
from effigate_engine.errors import BatchError

H = 3600


@pytest.fixture(scope="module")
def calendars() -> CalendarSet:
    office = Calendar(
        "Europe/Berlin",
        tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)),
        name="berlin-office",
    )
    return CalendarSet([office, Calendar.always_open("UTC")])


MONDAY_0800_UTC = datetime(2025, 6, 2, 8, tzinfo=UTC)  # 10:00 in Berlin


def test_public_api_is_backed_by_the_compiled_extension() -> None:
    from effigate_engine import _clock

    path = clock.compiled_module()
    assert path == _clock.__file__
    assert any(path.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    assert clock._clock is _clock
    assert type(_clock.elapsed).__name__ in (
        "cython_function_or_method",
        "builtin_function_or_method",
    )
    assert not hasattr(effigate_engine, "_pure_python_clock")


def test_scalars_in_scalars_out(calendars: CalendarSet) -> None:
    due = clock.deadline(calendars, "berlin-office", MONDAY_0800_UTC, 2 * H)
    assert due == datetime(2025, 6, 2, 10, tzinfo=UTC)
    assert clock.elapsed(calendars, 0, MONDAY_0800_UTC, due) == 2 * H
    assert clock.deadline(calendars, 0, MONDAY_0800_UTC, timedelta(hours=2)) == due
    assert clock.is_open(calendars, 0, MONDAY_0800_UTC) is True


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", ["UTC", "America/Chicago"])
def test_arrow_timestamps_of_any_unit_and_zone(calendars: CalendarSet, unit: str, tz: str) -> None:
    start = pa.array(
        [MONDAY_0800_UTC, MONDAY_0800_UTC + timedelta(seconds=1.5)], pa.timestamp(unit, tz=tz)
    )
    due = clock.deadline(calendars, 0, start, pa.array([timedelta(hours=1)] * 2, pa.duration(unit)))
    assert due.type == pa.timestamp("s", tz="UTC")
    expected = [
        datetime(2025, 6, 2, 9, tzinfo=UTC),
        datetime(2025, 6, 2, 9, 0, 1, tzinfo=UTC),
    ]  # sub-second floored
    assert due.to_pylist() == expected
    chunked = pa.chunked_array([start[:1], start[1:]])
    spent = clock.elapsed(calendars, 0, chunked, due)
    assert spent.type == pa.duration("s")
    assert [d.total_seconds() for d in spent.to_pylist()] == [H, H]


def test_numpy_in_numpy_out(calendars: CalendarSet) -> None:
    start = np.array(["2025-06-02T08:00:00.750", "2025-06-07T12:00"], dtype="datetime64[ms]")
    due = clock.deadline(calendars, np.array([0, 1]), start, 3 * H)
    assert due.dtype == np.dtype("datetime64[s]")
    assert due.tolist() == [datetime(2025, 6, 2, 11), datetime(2025, 6, 7, 15)]
    seconds = np.array([MONDAY_0800_UTC.timestamp()], np.int64)
    assert clock.elapsed(calendars, 0, seconds, seconds + 86_400).tolist() == [8 * H]


def test_nulls_propagate(calendars: CalendarSet) -> None:
    start = pa.array([MONDAY_0800_UTC, None], pa.timestamp("s", tz="UTC"))
    assert clock.deadline(calendars, 0, start, H).to_pylist() == [
        datetime(2025, 6, 2, 9, tzinfo=UTC),
        None,
    ]
    nat = np.array(["2025-06-02T08:00", "NaT"], dtype="datetime64[s]")
    assert np.isnat(clock.next_open(calendars, 0, nat)).tolist() == [False, True]


def test_naive_datetimes_are_refused(calendars: CalendarSet) -> None:
    with pytest.raises(BatchError, match="naive datetime"):
        clock.deadline(calendars, 0, datetime(2025, 6, 2, 8), H)
    with pytest.raises(BatchError, match="without a time zone"):
        clock.is_open(calendars, 0, pa.array([datetime(2025, 6, 2, 8)], pa.timestamp("s")))


def test_out_of_horizon_names_position_and_value(calendars: CalendarSet) -> None:
    start = np.array(["2025-06-02T08:00", "2150-01-01T00:00"], dtype="datetime64[s]")
    with pytest.raises(BatchError) as err:
        clock.next_close(calendars, 0, start)
    assert err.value.field == "at" and err.value.position == 1
    assert "2150-01-01" in str(err.value) and "horizon" in str(err.value)


def test_unknown_calendar_index_names_position(calendars: CalendarSet) -> None:
    with pytest.raises(BatchError, match=r"calendar\[2\]: 7 is not a calendar of the set"):
        clock.is_open(
            calendars, np.array([0, 1, 7]), np.full(3, MONDAY_0800_UTC.timestamp(), np.int64)
        )
    with pytest.raises(effigate_engine.CalendarError, match="not in the set"):
        clock.is_open(calendars, "nowhere", MONDAY_0800_UTC)


def test_negative_duration_and_deadline_past_horizon(calendars: CalendarSet) -> None:
    with pytest.raises(BatchError, match=r"seconds\[0\]: -1 is negative"):
        clock.deadline(calendars, 0, MONDAY_0800_UTC, -1)
    late = datetime(2099, 12, 31, 20, tzinfo=UTC)
    with pytest.raises(BatchError, match="runs past the calendars' horizon"):
        clock.deadline(calendars, 1, late, 5 * H)


def test_custom_horizon_bounds() -> None:
    short = CalendarSet([Calendar.always_open()], Horizon.of(date(2030, 1, 1), date(2031, 1, 1)))
    end = datetime(2031, 1, 1, tzinfo=UTC)
    assert clock.elapsed(short, 0, datetime(2030, 1, 1, tzinfo=UTC), end) == 365 * 86_400
    with pytest.raises(BatchError, match="outside the calendars' horizon"):
        clock.is_open(short, 0, end + timedelta(seconds=1))


def test_threads_give_the_same_answers(calendars: CalendarSet) -> None:
    rng = np.random.default_rng(7)
    n = 300_000
    lo, hi = calendars.horizon.start, calendars.horizon.end - 400 * 86_400
    a = rng.integers(lo, hi, n)
    cal = rng.integers(0, 2, n)
    d = rng.integers(0, 40 * H, n)
    one = clock.deadline(calendars, cal, a, d, threads=1)
    two = clock.deadline(calendars, cal, a, d, threads=2)
    assert np.array_equal(one, two)
    assert np.array_equal(clock.elapsed(calendars, cal, a, one.astype(np.int64), threads=3), d)


def test_error_in_second_chunk_reports_global_position(calendars: CalendarSet) -> None:
    n = 200_000
    a = np.full(n, int(MONDAY_0800_UTC.timestamp()), np.int64)
    a[150_001] = 0
    with pytest.raises(BatchError) as err:
        clock.is_open(calendars, 0, a, threads=2)
    assert err.value.position == 150_001


def test_fixed_offset_datetimes_are_accepted(calendars: CalendarSet) -> None:
    plus_two = datetime(2025, 6, 2, 10, tzinfo=timezone(timedelta(hours=2)))
    assert clock.is_open(calendars, 0, plus_two)
