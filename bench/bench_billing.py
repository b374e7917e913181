"""Benchmark of billing classification: time logs classified and aggregated per second.

Mixed contracts (hourly, bucket with burn factors and top-ups, recurring with included hours,
fixed price), calendars (five zones, holidays from regions, an overnight shift) and conditions
(priorities, non-billable and warranty time, unapproved time, out-of-scope work, logs crossing
period boundaries). Prints:

* logs/s classified and aggregated, single-threaded: Arrow batch in; per-part results (NumPy)
  and the line aggregates (Arrow) out; then, separately, the time to build the per-part Arrow
  result batch from them (one and two threads), against the previous builder as the baseline;
* the first call's time in a fresh process with a cold Numba cache and again with a warm one;
* the ratio to the ``decimal`` reference of ``tests/billing`` on a 10,000-log sample.

    python bench/bench_billing.py [--logs 10000000] [--sample 10000] [--repeat 3]
                                  [--skip-reference]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effigate_engine import Calendar, HolidayRegion, Horizon, WeeklyEntry  # noqa: E402
from effigate_engine.ratecard.book import ContractBook  # noqa: E402
from effigate_engine.ratecard.classification import Classification  # noqa: E402
from effigate_engine.ratecard.classify import classify  # noqa: E402
from effigate_engine.ratecard.contracts import (  # noqa: E402
    Amendment,
    BucketTerms,
    Contract,
    ContractType,
    RecurringTerms,
    Scope,
    split_milestones,
)
from effigate_engine.ratecard.model import Condition, RateCard, Rule  # noqa: E402

HOUR = 3_600
YEAR_START = 1_767_225_600  # 2026-01-01T00:00Z
LEVELS = ("L1", "L2", "L3", "SA")
JOBS = ("support", "devops", "development", "consulting", "network")
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
BILLABLE = ("BILLABLE", "NON_BILLABLE", "WARRANTY")


def calendars() -> list[Calendar]:
    """Five business calendars in five zones, with generated holidays and an overnight shift."""
    weekdays = tuple(WeeklyEntry(d, 9 * HOUR, 17 * HOUR) for d in range(5))
    return [
        Calendar("America/New_York", weekdays, holiday_regions=(HolidayRegion("US", "NY"),)),
        Calendar("Europe/London", weekdays, holiday_regions=(HolidayRegion("GB"),)),
        Calendar("Australia/Sydney", weekdays, holiday_regions=(HolidayRegion("AU", "NSW"),)),
        Calendar(
            "America/Sao_Paulo",
            (*weekdays, WeeklyEntry(4, 22 * HOUR, 6 * HOUR)),
            holiday_regions=(HolidayRegion("BR"),),
        ),
        Calendar("Asia/Kolkata", tuple(WeeklyEntry(d, 10 * HOUR, 19 * HOUR) for d in range(6))),
    ]


def cards() -> list[RateCard]:
    """Rate cards with wildcard fallbacks, absolute and multiplier rules, both stackings."""
    base = {("*", "*"): 12_000, ("L3", "*"): 18_000, ("SA", "*"): 22_000, ("L1", "support"): 9_000}
    return [
        RateCard(
            "USD",
            base,
            {
                Condition.AFTER_HOURS: Rule(absolute=18_000),
                Condition.WEEKEND: Rule(absolute=20_000),
                Condition.HOLIDAY: Rule(multiplier=20_000),
                Condition.HIGH_PRIORITY: Rule(absolute=15_000),
                Condition.ADDITIONAL_HOURS: Rule(multiplier=12_500),
                Condition.OUT_OF_SCOPE: Rule(absolute=25_000),
            },
        ),
        RateCard(
            "USD",
            base,
            {
                Condition.AFTER_HOURS: Rule(multiplier=15_000),
                Condition.WEEKEND: Rule(absolute=18_000),
                Condition.HIGH_PRIORITY: Rule(multiplier=12_500),
                Condition.ADDITIONAL_HOURS: Rule(absolute=16_000),
            },
            stacking="compound",
            increment_seconds=360,
            minimum_seconds=900,
        ),
        RateCard(
            "USD",
            base,
            {Condition.AFTER_HOURS: Rule(absolute=17_500)},
            increment_seconds=900,
            increment_mode="nearest",
            weekend_days=(4, 5),
        ),
    ]


def contracts(count: int) -> list[Contract]:
    """``count`` active contracts cycling through the five types, calendars and cards."""
    cals, cds = calendars(), cards()
    out = []
    types = (
        ContractType.HOURLY,
        ContractType.BUCKET,
        ContractType.RECURRING,
        ContractType.FIXED_PRICE,
        ContractType.HOURLY,
    )
    for i in range(count):
        kind = types[i % len(types)]
        extra: dict = {}
        if kind == ContractType.BUCKET:
            extra["bucket"] = BucketTerms(
                size_seconds=(50 + 25 * (i % 3)) * HOUR * 20,
                burn_bp={Condition.AFTER_HOURS: 15_000, Condition.WEEKEND: 20_000},
                per_period=i % 2 == 0,
                rollover_periods=1,
            )
            extra["scope"] = Scope(job_types=frozenset(JOBS[:3]))
        elif kind == ContractType.RECURRING:
            extra["recurring"] = RecurringTerms(base_fee=100_000, included_seconds=200 * HOUR)
        elif kind == ContractType.FIXED_PRICE:
            extra["milestones"] = split_milestones(1_000_000, ["a", "b", "c"])
        c = Contract(
            f"C{i:05d}",
            f"CL{i % 97}",
            kind,
            cals[i % len(cals)],
            date(2026, 1, 1),
            cds[i % len(cds)],
            anchor_day=1 + i % 28,
            **extra,
        ).activate()
        if kind == ContractType.BUCKET and i % 4 == 1:
            c = c.amend(Amendment(f"A{i}", date(2026, 7, 1), add_seconds=100 * HOUR))
        if i % 7 == 0:
            c = c.amend(Amendment(f"R{i}", date(2026, 9, 1), rate_card=cds[(i + 1) % len(cds)]))
        out.append(c)
    return out


def logs(n: int, n_contracts: int, seed: int = 7) -> pa.Table:
    """``n`` time logs over 2026 with dictionary-encoded categorical columns."""
    rng = np.random.default_rng(seed)
    start = YEAR_START + 86_400 + rng.integers(0, 360 * 86_400, n) // 60 * 60
    length = rng.choice(
        np.array([5, 15, 35, 60, 90, 150, 240, 600]) * 60,
        n,
        p=[0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.08, 0.02],
    )
    length = length + rng.integers(0, 60, n) * 60

    def cat(values: tuple[str, ...], p=None) -> pa.DictionaryArray:
        idx = rng.choice(len(values), n, p=p).astype(np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(values))

    contract_idx = rng.integers(0, n_contracts, n).astype(np.int32)
    return pa.table(
        {
            "log_id": pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()),
            "contract_id": pa.DictionaryArray.from_arrays(
                pa.array(contract_idx), pa.array([f"C{i:05d}" for i in range(n_contracts)])
            ),
            "support_level": cat(LEVELS),
            "job_type": cat(JOBS),
            "priority": cat(PRIORITIES, [0.05, 0.15, 0.4, 0.4]),
            "start": pa.array(start, pa.timestamp("s", tz="UTC")),
            "end": pa.array(start + length, pa.timestamp("s", tz="UTC")),
            "billable_type": cat(BILLABLE, [0.85, 0.1, 0.05]),
            "approved": pa.array(rng.random(n) < 0.97),
        }
    )


HORIZON = Horizon.of(date(2025, 1, 1), date(2028, 1, 1))

_FIRST_CALL = """
import sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import bench_billing as b
book = b.ContractBook(b.contracts(20), b.HORIZON)
batch = b.logs(1000, 20)
t = time.perf_counter()
b.classify(book, batch)
print(time.perf_counter() - t)
"""


def first_call(cache_dir: str) -> float:
    """Seconds of the first ``classify`` call in a fresh process using ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    code = _FIRST_CALL.format(root=str(ROOT / "src"), bench=str(ROOT / "bench"))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def results_batch(result: Classification, repeat: int) -> None:
    """Time the per-part Arrow result batch: today's builder (one fused pass, zero-copy
    buffers) on one and two threads, and the previous one (NumPy column by column over the
    lazily built per-part arrays, kept in ``tests/billing/reference_results.py``) as the
    baseline, interleaved in this process. Each build's batch is dropped before the next, so
    the first build of each pays for fresh memory and later ones reuse it. Wall and CPU
    seconds (user + system, all threads: page faults are system time) per build."""
    from tests.billing.reference_results import reference_results

    builders = {
        "fused pass, 1 thread": lambda: result.build_results(threads=1),
        "fused pass, 2 threads": lambda: result.build_results(threads=2),
        "previous builder (baseline)": lambda: reference_results(result),
    }
    wall: dict[str, list[float]] = {name: [] for name in builders}
    cpu: dict[str, list[float]] = {name: [] for name in builders}
    rows = 0
    for _ in range(repeat):
        for name, build in builders.items():
            t, c = time.perf_counter(), time.process_time()
            table = build()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            rows = table.num_rows
            del table
    for name in builders:
        runs = ", ".join(
            f"{w:.3f} s ({c:.3f} s CPU)" for w, c in zip(wall[name], cpu[name], strict=True)
        )
        best = min(wall[name])
        print(
            f"per-part Arrow result batch ({rows:,} rows), {name}: {runs}; "
            f"best {best:.3f} s, {rows / best / 1e6:.1f} M rows/s"
        )
    one, two = min(wall["fused pass, 1 thread"]), min(wall["fused pass, 2 threads"])
    base = min(wall["previous builder (baseline)"])
    print(
        f"per-part Arrow result batch built in {one:.3f} s single-threaded, {two:.3f} s on "
        f"2 threads; the previous builder {base:.3f} s ({base / one:.1f}× slower)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=10_000_000)
    parser.add_argument("--contracts", type=int, default=500)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        cold = first_call(cache)
        warm = first_call(cache)
    print(f"first call, fresh process, cold Numba cache : {cold:8.3f} s")
    print(f"first call, fresh process, warm Numba cache : {warm:8.3f} s")

    t = time.perf_counter()
    book = ContractBook(contracts(args.contracts), HORIZON)
    print(
        f"contract book ({args.contracts} contracts, condition calendars compiled): "
        f"{time.perf_counter() - t:.3f} s"
    )
    batch = logs(args.logs, args.contracts)
    classify(book, logs(1000, args.contracts))  # compile / load the kernels, build tables
    runs: list[float] = []
    result = None
    for _ in range(max(1, args.repeat)):
        # The first run allocates fresh arrays; later runs recycle the previous run's arrays
        # (classify(..., reuse=...)), as a job streaming batches does.
        t = time.perf_counter()
        result = classify(book, batch, reuse=result)
        runs.append(time.perf_counter() - t)
    best = min(runs)
    assert result is not None
    parts = int(result.parts["part_log"].size)
    rate = args.logs / best
    print(
        f"runs: {', '.join(f'{r:.3f} s' for r in runs)} (first with fresh memory, then "
        f"recycled buffers); fresh-memory rate {args.logs / runs[0]:,.0f} logs/s"
    )
    print(
        f"classified and aggregated {args.logs:,} logs ({parts - args.logs:,} period splits, "
        f"{result.lines.num_rows:,} lines) in {best:.3f} s: {rate:,.0f} logs/s single-threaded"
    )

    results_batch(result, max(1, args.repeat))

    if not args.skip_reference:
        from tests.billing.reference import Conditions, price_reference

        sample = batch.slice(0, args.sample)
        starts = sample.column("start").cast(pa.int64()).to_numpy()
        ends = sample.column("end").cast(pa.int64()).to_numpy()
        t = time.perf_counter()
        conditions = Conditions(int(starts.min()), int(ends.max()))
        for c in book.contracts:
            for v in c.versions:
                conditions.cells(c, v.card)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        price_reference(book.contracts, sample, conditions)
        reference = time.perf_counter() - t
        print(
            f"decimal reference on {args.sample:,} logs: {reference:.2f} s "
            f"({args.sample / reference:,.0f} logs/s; minute tables built beforehand in "
            f"{setup:.1f} s); the kernel is {rate / (args.sample / reference):,.0f}× faster"
        )


if __name__ == "__main__":
    main()
