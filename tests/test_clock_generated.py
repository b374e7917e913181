"""The compiled kernels against the minute-walk reference on hypothesis-generated calendars.

Per zone, every example is a fresh random calendar (weekly entries including overnight ones and
24:00 ends, holidays, closures, extra openings) compiled over a one-year window around the
zone's awkward transitions, and a batch of queries of every operation, compared one by one.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, CalendarSet, Horizon, LocalRange, WeeklyEntry, clock
from effigate_engine.errors import BatchError
from effigate_engine.zone import zone as bundled_zone
from tests.reference_clock import ReferenceClock, local_minutes

#: Generated calendars per zone (each with QUERIES queries of every operation).
EXAMPLES = int(os.environ.get("EFFIGATE_CLOCK_EXAMPLES", "5000"))
QUERIES = 2

ZONE_WINDOWS = {
    "UTC": (date(2024, 1, 1), date(2025, 1, 1)),
    "Europe/London": (date(2024, 1, 1), date(2025, 1, 1)),
    "America/New_York": (date(2024, 1, 1), date(2025, 1, 1)),
    # Brazil's last DST: clocks jumped at midnight on 2018-11-04 and fell back on 2019-02-17.
    "America/Sao_Paulo": (date(2018, 7, 1), date(2019, 7, 1)),
    # 30-minute DST.
    "Australia/Lord_Howe": (date(2024, 1, 1), date(2025, 1, 1)),
    # +05:45, no DST.
    "Asia/Kathmandu": (date(2024, 1, 1), date(2025, 1, 1)),
    # Samoa skipped 2011-12-30 entirely (UTC-10 -> UTC+14), and had DST then.
    "Pacific/Apia": (date(2011, 7, 1), date(2012, 7, 1)),
}

DAY = 86_400
MINUTES_PER_DAY = 1_440
_AWKWARD_MINUTES = [0, 30, 60, 90, 120, 150, 180, 210, 1380, 1410, 1425, 1439]


def _window(zone: str) -> tuple[int, int]:
    start, end = ZONE_WINDOWS[zone]
    return Horizon.of(start, end).start, Horizon.of(start, end).end


def _transitions(zone: str) -> list[int]:
    start, end = _window(zone)
    offsets = local_minutes(zone, start, end).offset
    cells = np.flatnonzero(np.diff(offsets)) + 1
    return [start + 60 * int(c) for c in cells]


minute_of_day = st.one_of(st.integers(0, MINUTES_PER_DAY - 1), st.sampled_from(_AWKWARD_MINUTES))


def _entry(raw: tuple[int, int, int]) -> WeeklyEntry:
    weekday, start, end = raw
    return WeeklyEntry(
        weekday, start * 60, (end or MINUTES_PER_DAY) * 60 if start == 0 else end * 60
    )


def calendars(
    zone: str, near: list[int], minutes: tuple[int, ...] = ()
) -> st.SearchStrategy[Calendar]:
    """Random calendars whose dates cluster around the given instants (the zone's offset
    changes), and whose entries often start or end at the given local minutes of the day."""
    start, end = ZONE_WINDOWS[zone]
    minute = minute_of_day if not minutes else st.one_of(minute_of_day, st.sampled_from(minutes))
    ends = st.one_of(minute, st.just(MINUTES_PER_DAY))
    days = (end - start).days
    focus = sorted({(datetime.fromtimestamp(t, UTC).date() - start).days for t in near})
    day_index = st.integers(0, days - 1)
    if focus:
        day_index = st.one_of(
            day_index,
            st.builds(
                lambda f, k: min(max(f + k, 0), days - 1),
                st.sampled_from(focus),
                st.integers(-2, 2),
            ),
        )
    a_date = day_index.map(lambda k: start + timedelta(days=k))
    a_range = st.builds(
        lambda d, m, length: LocalRange(
            datetime.combine(d, datetime.min.time()) + timedelta(minutes=m),
            datetime.combine(d, datetime.min.time()) + timedelta(minutes=m + length),
        ),
        a_date,
        minute,
        st.integers(1, 3 * MINUTES_PER_DAY),
    )
    return st.builds(
        lambda weekly, holidays, closures, openings: Calendar(
            zone,
            tuple(map(_entry, weekly)),
            frozenset(holidays),
            (),
            tuple(closures),
            tuple(openings),
        ),
        st.lists(st.tuples(st.integers(0, 6), minute, ends), max_size=8),
        st.lists(a_date, max_size=4),
        st.lists(a_range, max_size=2),
        st.lists(a_range, max_size=2),
    )


def queries(zone: str, near: list[int]) -> st.SearchStrategy[tuple[int, int, int]]:
    """(a, b, d): an instant (often near an offset change, often on a whole minute), a second
    instant up to 3 days before or 10 days after it, and a duration."""
    start, end = _window(zone)
    minute = st.integers(0, (end - start) // 60 - 1).map(lambda m: start + 60 * m)
    if near:
        minute = st.one_of(
            minute,
            st.builds(
                lambda t, k: t + 60 * k,
                st.sampled_from(near),
                st.integers(-3 * MINUTES_PER_DAY, 3 * MINUTES_PER_DAY),
            ),
        )
    second = st.one_of(st.just(0), st.integers(0, 59))
    duration = st.one_of(st.integers(0, 5 * DAY), st.sampled_from([0, 1, 60, 3600]))
    return st.builds(
        lambda m, s, span, d: (
            min(max(m + s, start), end - 1),
            min(max(m + s + span, start), end),
            d,
        ),
        minute,
        second,
        st.integers(-3 * DAY, 10 * DAY),
        duration,
    )


def _compare(
    zone: str,
    calendar: Calendar,
    a: list[int],
    b: list[int],
    d: list[int],
    window: tuple[int, int] | None = None,
) -> None:
    start, end = window or _window(zone)
    cs = CalendarSet([calendar], Horizon(start, end))
    ref = ReferenceClock(calendar, start, end)
    a_arr, b_arr = np.array(a, np.int64), np.array(b, np.int64)

    got_elapsed = clock.elapsed(cs, 0, a_arr, b_arr)
    got_open = clock.is_open(cs, 0, a_arr)
    got_next_open = clock.next_open(cs, 0, a_arr).astype(np.int64)
    got_next_close = clock.next_close(cs, 0, a_arr).astype(np.int64)
    nat = np.iinfo(np.int64).min
    for k in range(len(a)):
        ctx = f"{calendar.to_json()} a={a[k]} b={b[k]} d={d[k]}"
        assert got_elapsed[k] == ref.elapsed(a[k], b[k]), ctx
        assert got_open[k] == ref.is_open(a[k]), ctx
        want_open = ref.next_open(a[k])
        assert got_next_open[k] == (nat if want_open is None else want_open), ctx
        want_close = ref.next_close(a[k])
        assert got_next_close[k] == (nat if want_close is None else want_close), ctx
        want = ref.deadline(a[k], d[k])
        if want is None:
            with pytest.raises(BatchError, match="past the calendars' horizon"):
                clock.deadline(cs, 0, a[k], d[k])
        else:
            got = clock.deadline(cs, 0, np.array([a[k]]), np.array([d[k]]))
            assert int(got.astype(np.int64)[0]) == want, ctx


@pytest.mark.parametrize("zone", list(ZONE_WINDOWS))
def test_kernel_matches_minute_walk(zone: str) -> None:
    near = _transitions(zone)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        calendar=calendars(zone, near),
        batch=st.lists(queries(zone, near), min_size=QUERIES, max_size=QUERIES),
    )
    def check(calendar: Calendar, batch: list[tuple[int, int, int]]) -> None:
        a, b, d = (list(x) for x in zip(*batch, strict=True))
        _compare(zone, calendar, a, b, d)

    check()


#: Days of the short horizons of the edge test, and how close to an end its queries fall.
EDGE_HORIZON_DAYS = 12
EDGE_REACH = 3 * DAY


def _edge_window(zone: str) -> tuple[int, int]:
    start = ZONE_WINDOWS[zone][0] + timedelta(days=40)
    horizon = Horizon.of(start, start + timedelta(days=EDGE_HORIZON_DAYS))
    return horizon.start, horizon.end


def edge_queries(zone: str) -> st.SearchStrategy[tuple[int, int, int]]:
    """(a, b, d) with both instants within EDGE_REACH of an end of the horizon, the ends
    themselves often."""
    start, end = _edge_window(zone)
    near_end = st.one_of(
        st.just(start),
        st.just(end),
        st.integers(start, start + EDGE_REACH),
        st.integers(end - EDGE_REACH, end),
        st.integers(0, EDGE_REACH // 60).map(lambda m: end - 60 * m),
        st.integers(0, EDGE_REACH // 60).map(lambda m: start + 60 * m),
    )
    duration = st.one_of(st.integers(0, 2 * DAY), st.sampled_from([0, 1, 60, 3600]))
    return st.tuples(near_end, near_end, duration)


@pytest.mark.parametrize("zone", list(ZONE_WINDOWS))
def test_kernel_matches_minute_walk_at_the_horizon_ends(zone: str) -> None:
    """Short horizons (their ends at a different local time in each zone), calendars whose
    entries often open or close exactly there: every operation at and next to either end, the
    ends included, agrees with the reference over the same closed span."""
    window = _edge_window(zone)
    near = [window[0], window[1]]
    tz = bundled_zone(zone)
    minutes = tuple(
        (lambda t: t.hour * 60 + t.minute)(datetime.fromtimestamp(w, UTC).astimezone(tz))
        for w in window
    )

    @settings(
        max_examples=max(50, EXAMPLES // 10),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        calendar=calendars(zone, near, minutes),
        batch=st.lists(edge_queries(zone), min_size=QUERIES, max_size=QUERIES),
    )
    def check(calendar: Calendar, batch: list[tuple[int, int, int]]) -> None:
        a, b, d = (list(x) for x in zip(*batch, strict=True))
        _compare(zone, calendar, a, b, d, window)

    check()
