"""Business-time kernels: throughput against baselines measured in the same run.

Prints ops/s of ``elapsed`` and ``deadline`` on 1M and 10M random operations over a mixed set
of calendars, side by side with
  (o) the same kernels over the same set without its day table (the interval records and their
      indexes alone: the previous design, which the kernels still use for a set without one),
  (a) the same queries answered by NumPy ``searchsorted`` on the compiled arrays of one calendar,
  (b) pandas ``CustomBusinessHour`` with holidays (deadlines only; pandas has no elapsed) on a
      10k sample,
  (c) the minute-walk reference of the tests on a 1k sample,
plus the one- vs two-thread speed-up and the compile time of 100-year calendars with holidays.
Machines are shared and noisy: every figure is the best of several repeats, and only ratios
measured in one run are compared; the load average is printed with the figures.

    python bench/bench_clock.py [--sizes 1000000 10000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from effigate_engine import (  # noqa: E402
    Calendar,
    CalendarSet,
    HolidayRegion,
    Horizon,
    WeeklyEntry,
    _clock,
    clock,
    compile_calendar,
)
from effigate_engine.calendar_set import CompiledCalendar  # noqa: E402

H = 3600
DAY = 86_400


def business_week(
    zone: str,
    start: str,
    end: str,
    region: tuple[str, str | None] | None,
    name: str,
    days: range = range(5),
) -> Calendar:
    s = int(start[:2]) * H + int(start[3:]) * 60
    e = int(end[:2]) * H + int(end[3:]) * 60
    regions = (HolidayRegion(*region),) if region else ()
    return Calendar(
        zone, tuple(WeeklyEntry(d, s, e) for d in days), holiday_regions=regions, name=name
    )


def calendar_mix() -> list[Calendar]:
    """Eleven calendars an MSP would run: office hours with public holidays in several zones,
    a lunch-break calendar, an overnight NOC, weekend cover and 24x7."""
    lunch = Calendar(
        "Europe/Berlin",
        tuple(
            WeeklyEntry(d, s, e) for d in range(5) for s, e in ((8 * H, 12 * H), (13 * H, 17 * H))
        ),
        holiday_regions=(HolidayRegion("DE", "BE"),),
        name="berlin-lunch-break",
    )
    noc = Calendar(
        "America/New_York",
        tuple(WeeklyEntry(d, 22 * H, 6 * H) for d in range(5)),
        holiday_regions=(HolidayRegion("US", "NY"),),
        name="nyc-overnight-noc",
    )
    samples = [Calendar.load(p) for p in sorted((ROOT / "samples" / "calendars").glob("*.json"))]
    return [
        *samples,
        business_week("America/Chicago", "08:00", "18:00", ("US", None), "chicago-office"),
        business_week("Europe/London", "09:00", "17:30", ("GB", "ENG"), "london-office"),
        business_week("America/Sao_Paulo", "09:00", "18:00", ("BR", "SP"), "sao-paulo-office"),
        business_week("Asia/Kolkata", "09:30", "18:30", ("IN", None), "bangalore-office"),
        business_week("Asia/Tokyo", "09:00", "17:00", ("JP", None), "tokyo-office"),
        business_week(
            "Australia/Perth", "08:00", "16:00", ("AU", "WA"), "perth-weekend", days=range(5, 7)
        ),
        lunch,
        noc,
    ]


def best_rate(fn: Callable[[], object], ops: int, repeats: int) -> float:
    """Operations per second of the fastest of ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return ops / min(times)


def paired_rates(
    fns: list[Callable[[], object]], ops: int, repeats: int, cpu: bool = False
) -> list[float]:
    """Operations per second of each function, best of ``repeats``, runs interleaved so that a
    shared machine's drift affects every function alike. With ``cpu``, per second of the
    calling thread's CPU time (per core: time spent waiting for a core on a busy machine does
    not count), for single-threaded functions only."""
    clock_of = time.thread_time if cpu else time.perf_counter
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            started = clock_of()
            fn()
            spent.append(clock_of() - started)
    return [ops / min(spent) for spent in times]


def intervals_only(cs: CalendarSet) -> _clock.PackedClock:
    """The set's packed clock without its day table: the kernels answer from the intervals."""
    return _clock.PackedClock(
        cs.intervals,
        cs.first,
        cs.last,
        cs.day_first,
        cs.by_open,
        cs.bucket_first,
        np.array([c.open_at_end for c in cs.compiled], np.uint8),
        cs.horizon.start,
        cs.horizon.end,
    )


def measure(
    cs: CalendarSet, one: CompiledCalendar, q: dict[str, np.ndarray], repeats: int
) -> tuple[list[float], list[float]]:
    """(kernel, NumPy, API 1 thread, API 2 threads, intervals-only kernel) ops/s for elapsed and
    for deadline."""
    n = q["a"].size
    out = np.empty(n, np.int64)
    cal, a, b, d = q["cal"], q["a"], q["b"], q["d"]
    previous = intervals_only(cs)
    # The kernels and NumPy per core (CPU time of this thread), the API by the wall clock.
    kernels = paired_rates(
        [
            lambda: _clock.elapsed(cs.packed, cal, a, b, out),
            lambda: numpy_elapsed(one, a, b),
            lambda: _clock.elapsed(previous, cal, a, b, out),
            lambda: _clock.deadline(cs.packed, cal, a, d, out),
            lambda: numpy_deadline(one, a, d),
            lambda: _clock.deadline(previous, cal, a, d, out),
        ],
        n,
        repeats,
        cpu=True,
    )
    api = paired_rates(
        [
            lambda: clock.elapsed(cs, cal, a, b, threads=1),
            lambda: clock.elapsed(cs, cal, a, b, threads=2),
            lambda: clock.deadline(cs, cal, a, d, threads=1),
            lambda: clock.deadline(cs, cal, a, d, threads=2),
        ],
        n,
        repeats,
    )
    elapsed_rates = [kernels[0], kernels[1], api[0], api[1], kernels[2]]
    deadline_rates = [kernels[3], kernels[4], api[2], api[3], kernels[5]]
    return elapsed_rates, deadline_rates


def numpy_elapsed(c: CompiledCalendar, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lengths = c.closes - c.opens

    def f(t: np.ndarray) -> np.ndarray:
        i = np.maximum(np.searchsorted(c.opens, t, side="right") - 1, 0)
        return c.cums[i] + np.clip(t - c.opens[i], 0, lengths[i])

    return f(b) - f(a)


def numpy_deadline(c: CompiledCalendar, a: np.ndarray, d: np.ndarray) -> np.ndarray:
    lengths = c.closes - c.opens
    ends = c.cums + lengths
    i = np.maximum(np.searchsorted(c.opens, a, side="right") - 1, 0)
    target = c.cums[i] + np.clip(a - c.opens[i], 0, lengths[i]) + d
    j = np.minimum(np.searchsorted(ends, target, side="left"), c.opens.size - 1)
    return np.where(d == 0, a, c.opens[j] + (target - c.cums[j]))


def queries(n: int, calendars: int, lo: int, hi: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Random instants in [lo, hi), calendars, spans up to 14 days and targets up to 40 h."""
    rng = np.random.default_rng(seed)
    a = rng.integers(lo, hi, n)
    return {
        "cal": rng.integers(0, calendars, n),
        "a": a,
        "b": a + rng.integers(0, 14 * DAY, n),
        "d": rng.integers(0, 40 * H, n),
    }


def pandas_deadline_rate(calendar: Calendar, a: np.ndarray, d: np.ndarray, repeats: int) -> float:
    import pandas as pd

    entry = calendar.weekly[0]
    holidays = sorted(calendar.holiday_dates(range(1999, 2101)))
    hours = np.maximum(d // H, 1)
    offsets = {
        int(k): pd.offsets.CustomBusinessHour(
            n=int(k),
            start=f"{entry.start // H:02d}:{entry.start % H // 60:02d}",
            end=f"{entry.end // H:02d}:{entry.end % H // 60:02d}",
            holidays=holidays,
        )
        for k in np.unique(hours)
    }
    stamps = [
        pd.Timestamp(int(t), unit="s", tz="UTC").tz_convert(calendar.timezone).tz_localize(None)
        for t in a
    ]

    def run() -> None:
        for ts, k in zip(stamps, hours, strict=True):
            ts + offsets[int(k)]

    return best_rate(run, len(stamps), max(1, repeats // 2))


def reference_rate(calendar: Calendar, n: int, repeats: int) -> tuple[float, float]:
    """(elapsed, deadline) ops/s of the minute-walk reference over the year 2026."""
    from tests.reference_clock import ReferenceClock

    window = Horizon.of(date(2026, 1, 1), date(2027, 1, 1))
    ref = ReferenceClock(calendar, window.start, window.end)
    q = queries(n, 1, window.start, window.end - 60 * DAY)

    def elapsed() -> None:
        for x, y in zip(q["a"].tolist(), q["b"].tolist(), strict=True):
            ref.elapsed(x, y)

    def deadline() -> None:
        for x, s in zip(q["a"].tolist(), q["d"].tolist(), strict=True):
            ref.deadline(x, s)

    return best_rate(elapsed, n, 1), best_rate(deadline, n, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print("== Compile")
    calendars = calendar_mix()
    sydney = calendars[[c.name for c in calendars].index("sydney-business-hours")]
    started = time.perf_counter()
    compile_calendar(sydney)
    first = time.perf_counter() - started
    started = time.perf_counter()
    compiled = compile_calendar(sydney)
    again = time.perf_counter() - started
    print(
        f"100-year calendar with AU-NSW holidays ({compiled.opens.size:,} intervals): "
        f"{first:.3f} s first, {again:.3f} s with the zone's offsets cached"
    )
    started = time.perf_counter()
    cs = CalendarSet(calendars)
    print(
        f"CalendarSet of {len(cs)} calendars (2000-2100): {time.perf_counter() - started:.2f} s, "
        f"{cs.intervals.nbytes / 1e6:.1f} MB of interval records, "
        f"{(cs.day_first.nbytes + cs.by_open.nbytes) / 1e6:.1f} MB of indexes, "
        f"{cs.day_rec.nbytes / 1e6:.1f} MB day table ({cs.day_shape.shape[0] - 1} day shapes)"
    )
    one = cs.compiled[[c.name for c in calendars].index("sydney-business-hours")]

    windows = {
        "recent (2020-2030)": (
            int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()),
            int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()),
        ),
        "whole horizon (2000-2099)": (cs.horizon.start, cs.horizon.end - 400 * DAY),
    }
    rows = []
    for label, (lo, hi) in windows.items():
        for n in args.sizes:
            elapsed_rates, deadline_rates = measure(
                cs, one, queries(n, len(cs), lo, hi), args.repeats
            )
            rows.append((label, n, "elapsed", *elapsed_rates))
            rows.append((label, n, "deadline", *deadline_rates))

    print(
        f"\n== Kernels over {len(cs)} mixed calendars vs the intervals alone (no day table) and "
        f"NumPy searchsorted on one calendar (best of {args.repeats}; kernel, no-table and "
        f"NumPy per core = per CPU-second of the thread, API by the wall clock; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + ")"
    )
    print(
        f"{'instants':<27}{'ops':>11} {'op':<9}{'kernel Mops/s':>14}{'no-table':>9}{'ratio':>7}"
        f"{'numpy Mops/s':>13}{'ratio':>7}{'API 1 thr':>11}{'API 2 thr':>11}{'speed-up':>9}"
    )
    for label, n, op, k, base, t1, t2, prev in rows:
        print(
            f"{label:<27}{n:>11,} {op:<9}{k / 1e6:>14.2f}{prev / 1e6:>9.2f}{k / prev:>6.2f}x"
            f"{base / 1e6:>13.2f}{k / base:>6.2f}x{t1 / 1e6:>11.2f}{t2 / 1e6:>11.2f}"
            f"{t2 / t1:>8.2f}x"
        )

    print("\n== Slow baselines (one calendar: sydney-business-hours)")
    lo, hi = windows["recent (2020-2030)"]
    sample = queries(10_000, 1, lo, hi)
    kernel_dl = next(r[3] for r in rows if r[0].startswith("recent") and r[2] == "deadline")
    kernel_el = next(r[3] for r in rows if r[0].startswith("recent") and r[2] == "elapsed")
    pandas_rate = pandas_deadline_rate(sydney, sample["a"], sample["d"], args.repeats)
    print(
        f"pandas CustomBusinessHour deadline (10k sample): {pandas_rate:>12,.0f} ops/s; "
        f"kernel {kernel_dl / pandas_rate:,.0f}x faster"
    )
    ref_el, ref_dl = reference_rate(sydney, 1_000, args.repeats)
    print(
        f"minute-walk reference elapsed (1k sample):      {ref_el:>12,.0f} ops/s; "
        f"kernel {kernel_el / ref_el:,.0f}x faster"
    )
    print(
        f"minute-walk reference deadline (1k sample):     {ref_dl:>12,.0f} ops/s; "
        f"kernel {kernel_dl / ref_dl:,.0f}x faster"
    )
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
