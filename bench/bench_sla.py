"""SLA evaluation throughput: tickets/s through ``sla.evaluate`` (Arrow in, Arrow out).

One million tickets (on average two pauses each, three metrics each) over fifty calendars and
three policies, evaluated at a fixed instant: single-threaded and with two threads, side by
side with the pure-Python reference evaluator of the tests on a 10k sample.

Then the cost of a policy's size: 200,000 tickets (2 metrics, no pauses, 1 thread) under
policies of 10, 100, 1,000 and 10,000 rules (a rule per client × priority, then a catch-all),
matched through the policy's decision table and, for comparison, by the first-match scan
(``--no-scan`` skips it), best of ``--rule-repeats`` interleaved runs, with each rule set's
compile time (flattening, and of that the decision table).

    python bench/bench_sla.py [--tickets 1000000] [--repeats 3] [--rules-only] [--no-scan]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from effigate_engine import (  # noqa: E402
    Calendar,
    CalendarSet,
    HolidayRegion,
    Horizon,
    WeeklyEntry,
    sla,
)
from effigate_engine.sla import rule_index, rule_tables  # noqa: E402
from effigate_engine.sla.policy import METRICS, STOP_FIELDS  # noqa: E402
from effigate_engine.sla.schemas import PAUSE  # noqa: E402

H = 3600
DAY = 86_400
ZONES = [
    ("Europe/London", ("GB", "ENG")),
    ("America/New_York", ("US", "NY")),
    ("America/Chicago", ("US", None)),
    ("America/Los_Angeles", ("US", "CA")),
    ("Europe/Berlin", ("DE", "BE")),
    ("Australia/Sydney", ("AU", "NSW")),
    ("Asia/Kolkata", ("IN", None)),
    ("America/Sao_Paulo", ("BR", "SP")),
    ("Asia/Tokyo", ("JP", None)),
    ("Africa/Johannesburg", ("ZA", None)),
]
SCHEDULES = {
    "office": [(d, 9 * H, 17 * H) for d in range(5)],
    "extended": [(d, 7 * H, 19 * H) for d in range(5)] + [(5, 9 * H, 13 * H)],
    "lunch": [(d, s, e) for d in range(5) for s, e in ((8 * H, 12 * H), (13 * H, 17 * H))],
    "overnight": [(d, 22 * H, 6 * H) for d in range(5)],
    "24x7": [(d, 0, 24 * H) for d in range(7)],
}
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def calendars() -> list[Calendar]:
    out = []
    for zone, region in ZONES:
        for kind, entries in SCHEDULES.items():
            regions = (HolidayRegion(*region),) if kind != "24x7" else ()
            out.append(
                Calendar(
                    zone,
                    tuple(WeeklyEntry(*e) for e in entries),
                    holiday_regions=regions,
                    name=f"{zone}/{kind}",
                )
            )
    return out


def policies() -> dict[str, sla.Policy]:
    out = {}
    ladder = [
        {"at_fraction": "0.5", "notify": "queue:desk"},
        {"at_fraction": "0.75", "notify": "role:lead"},
        {"after_deadline": "30m", "notify": "role:manager"},
    ]
    for p, (zone, _) in enumerate(ZONES[:3]):
        rules = [
            {
                "match": {"priority": "CRITICAL", "after_hours": True},
                "metrics": {
                    m: {"target": t, "calendar": f"{zone}/24x7", "escalation": ladder}
                    for m, t in zip(METRICS, ["1h", "4h", "8h"], strict=True)
                },
            }
        ]
        for prio, targets in (
            ("CRITICAL", ["4h", "8h", "16h"]),
            ("HIGH", ["8h", "16h", "24h"]),
            ("MEDIUM", ["24h", "36h", "48h"]),
            ("LOW", ["36h", "48h", "72h"]),
        ):
            rules.append(
                {
                    "match": {"priority": prio},
                    "metrics": {
                        m: {
                            "target": t,
                            "calendar": f"{zone}/{'extended' if p else 'office'}",
                            "escalation": ladder if prio != "LOW" else [],
                        }
                        for m, t in zip(METRICS, targets, strict=True)
                    },
                }
            )
        out[f"policy-{p}"] = sla.Policy.from_json({"name": f"policy-{p}", "rules": rules})
    return out


def tickets(n: int, start: int, span: int, seed: int = 11) -> pa.Table:
    """Random tickets created in [start, start + span), on average two pauses each."""
    rng = np.random.default_rng(seed)
    created = start + rng.integers(0, span, n)
    columns: dict[str, pa.Array] = {
        "ticket_id": pa.array(np.char.add("T", np.arange(n).astype(str))),
        "client_id": pa.array(np.char.add("client-", rng.integers(0, 500, n).astype(str))),
        "policy": pa.array(np.array(["policy-0", "policy-1", "policy-2"])[rng.integers(0, 3, n)]),
        "priority": pa.array(np.array(["P1", "P2", "P3", "P4"])[rng.integers(0, 4, n)]),
        "after_hours": pa.array(rng.random(n) < 0.3),
        "created_at": pa.array(created, pa.timestamp("s", tz="UTC")),
    }
    for k, metric in enumerate(METRICS):
        stop = created + rng.integers(0, [12 * H, 2 * DAY, 4 * DAY][k], n)
        done = rng.random(n) < [0.8, 0.6, 0.5][k]
        columns[STOP_FIELDS[metric]] = pa.array(stop, pa.timestamp("s", tz="UTC"), mask=~done)
    counts = rng.integers(0, 5, n)  # 0..4, mean 2
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    owner = np.repeat(np.arange(n), counts)
    p_start = created[owner] + rng.integers(0, 4 * DAY, total)
    p_len = rng.integers(60, DAY, total)
    p_open = rng.random(total) < 0.05
    status = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 3, total).astype(np.int8)),
        pa.array(["WAITING_ON_CLIENT", "RESOLVED", "ON_HOLD_VENDOR"]),
    ).cast(pa.string())
    pauses = pa.StructArray.from_arrays(
        [
            pa.array(p_start, pa.timestamp("s", tz="UTC")),
            pa.array(p_start + p_len, pa.timestamp("s", tz="UTC"), mask=p_open),
            status,
        ],
        fields=list(PAUSE),
    )
    columns["pauses"] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pauses)
    return pa.table(columns)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def reference_rate(
    table: pa.Table, pols: dict[str, sla.Policy], cals: list[Calendar], window: Horizon, now: int
) -> float:
    from tests.reference_clock import ReferenceClock
    from tests.sla.reference_sla import PrefixClock, evaluate_metric

    rows = table.to_pylist()
    used = {
        pols[r["policy"]].rules[i].metrics[m].calendar
        for r in rows
        if (i := pols[r["policy"]].rule_for(r["priority"], after_hours=r["after_hours"]))
        is not None
        for m in METRICS
    }
    clocks = {
        c.name: PrefixClock(ReferenceClock(c, window.start, window.end))
        for c in cals
        if c.name in used
    }

    def run() -> None:
        for r in rows:
            policy = pols[r["policy"]]
            rule = policy.rule_for(r["priority"], after_hours=r["after_hours"])
            if rule is None:
                continue
            pauses = [
                (
                    int(p["start"].timestamp()),
                    None if p["end"] is None else int(p["end"].timestamp()),
                    p["status"],
                )
                for p in r["pauses"]
            ]
            for metric, spec in policy.rules[rule].metrics.items():
                stop = r[STOP_FIELDS[metric]]
                evaluate_metric(
                    clocks[spec.calendar],
                    spec,
                    int(r["created_at"].timestamp()),
                    None if stop is None else int(stop.timestamp()),
                    pauses,
                    now,
                )

    return len(rows) / best(run, 1)


RULE_SETS = (10, 100, 1_000, 10_000)
RULE_CLIENTS = 2_500  # clients the tickets come from: the largest rule set names them all
PRIORITY_TARGETS = {
    "P1": ("1h", "4h"),
    "P2": ("2h", "8h"),
    "P3": ("4h", "24h"),
    "P4": ("8h", "48h"),
}


def rule_policy(rules: int) -> sla.Policy:
    """``rules`` rules: ``rules - 1`` per client × priority (client k has rules 4k .. 4k + 3),
    then a catch-all; each promises first response and resolution on the office calendar."""

    def metrics(targets: tuple[str, str]) -> dict:
        return {
            m: {"target": t, "calendar": "office"}
            for m, t in zip(("FIRST_RESPONSE", "RESOLUTION"), targets, strict=True)
        }

    prios = list(PRIORITY_TARGETS)
    out = [
        {
            "match": {"client": f"client-{i // 4}", "priority": prios[i % 4]},
            "metrics": metrics(PRIORITY_TARGETS[prios[i % 4]]),
        }
        for i in range(rules - 1)
    ]
    out.append({"match": {}, "metrics": metrics(("4h", "72h"))})
    return sla.Policy.from_json({"name": f"rules-{rules}", "rules": out})


def rule_tickets(n: int, now: int, seed: int = 23) -> pa.Table:
    """Tickets from ``RULE_CLIENTS`` clients, created in the 30 days before ``now``; first
    response and resolution stopped for some, no pauses."""
    rng = np.random.default_rng(seed)
    created = now - rng.integers(0, 30 * DAY, n)
    columns: dict[str, pa.Array] = {
        "ticket_id": pa.array(np.char.add("T", np.arange(n).astype(str))),
        "client_id": pa.array(np.char.add("client-", rng.integers(0, RULE_CLIENTS, n).astype(str))),
        "priority": pa.array(np.array(list(PRIORITY_TARGETS))[rng.integers(0, 4, n)]),
        "after_hours": pa.array(rng.random(n) < 0.3),
        "created_at": pa.array(created, pa.timestamp("s", tz="UTC")),
    }
    for metric, span, share in (("FIRST_RESPONSE", 12 * H, 0.8), ("RESOLUTION", 4 * DAY, 0.5)):
        stop = created + rng.integers(0, span, n)
        columns[STOP_FIELDS[metric]] = pa.array(
            np.minimum(stop, now), pa.timestamp("s", tz="UTC"), mask=rng.random(n) >= share
        )
    return pa.table(columns)


def rule_calendars() -> CalendarSet:
    office = Calendar(
        "Europe/London", tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)), name="office"
    )
    return CalendarSet([office], Horizon.of(date(2026, 1, 1), date(2027, 6, 30)))


def rule_sets(n_tickets: int, repeats: int, scan: bool) -> None:
    """Throughput and compile time per rule set, through decision tables and by the scan."""
    table = rule_tickets(n_tickets, int(NOW.timestamp()))
    indexed_cs, scan_cs = rule_calendars(), rule_calendars()
    modes = {"table": indexed_cs} | ({"scan": scan_cs} if scan else {})
    pols = {r: rule_policy(r) for r in RULE_SETS}
    compile_s, tables_s, cells = {}, {}, {}
    for r, policy in pols.items():
        started = time.perf_counter()
        specs = rule_tables.flattened([policy], indexed_cs)
        compile_s[r] = time.perf_counter() - started
        assert specs.rule_index.indexed.all(), r
        cells[r] = len(specs.rule_index.decision)
        fields = [specs.match_tables[name] for name, _, _ in rule_tables.MATCH_FIELDS]
        fields.append(rule_index.after_hours_table(specs.after_required))
        started = time.perf_counter()
        rule_index.rule_index(specs.rule_first, specs.rule_count, fields)
        tables_s[r] = time.perf_counter() - started
        if scan:  # compiled with no decision table: every ticket scans the rules
            bound, rule_index.MAX_CELLS = rule_index.MAX_CELLS, 0
            try:
                assert not rule_tables.flattened([policy], scan_cs).rule_index.indexed.any()
            finally:
                rule_index.MAX_CELLS = bound
    for r, policy in pols.items():  # warm up, and the same rules either way
        rules = {
            mode: sla.evaluate(table, policy, cs, NOW, threads=1).results.column("rule")
            for mode, cs in modes.items()
        }
        assert all(rule.equals(rules["table"]) for rule in rules.values()), r
    times: dict[tuple[int, str], list[float]] = {(r, m): [] for r in RULE_SETS for m in modes}
    for _ in range(repeats):
        for r, policy in pols.items():
            for mode, cs in modes.items():
                started = time.perf_counter()
                sla.evaluate(table, policy, cs, NOW, threads=1)
                times[r, mode].append(time.perf_counter() - started)
    rate = {key: n_tickets / min(t) for key, t in times.items()}
    print(
        f"\nrule sets: {n_tickets:,} tickets from {RULE_CLIENTS:,} clients, 2 metrics, no pauses, "
        f"1 thread, best of {repeats} interleaved; a rule per client x priority, then a catch-all"
    )
    print(
        f"{'rules':>8} {'compile ms':>11} {'tables ms':>10} {'cells':>7} "
        f"{'tickets/s (table)':>18}" + (f" {'tickets/s (scan)':>17}" if scan else "")
    )
    for r in RULE_SETS:
        line = (
            f"{r:>8,} {compile_s[r] * 1e3:>11.1f} {tables_s[r] * 1e3:>10.1f} {cells[r]:>7,} "
            f"{rate[r, 'table']:>18,.0f}"
        )
        print(line + (f" {rate[r, 'scan']:>17,.0f}" if scan else ""))
    lo, hi = RULE_SETS[0], RULE_SETS[-1]
    ratio = rate[hi, "table"] / rate[lo, "table"]
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(
        f"{hi:,} rules / {lo:,} rules: {ratio:.2f}x through decision tables "
        f"(target >= 0.8: {verdict})"
    )
    if scan:
        print(
            f"{hi:,} rules / {lo:,} rules: {rate[hi, 'scan'] / rate[lo, 'scan']:.2f}x by the scan"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rule-tickets", type=int, default=200_000)
    parser.add_argument("--rule-repeats", type=int, default=5)
    parser.add_argument("--rules-only", action="store_true", help="only the rule-set section")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan's figures")
    args = parser.parse_args()

    if not args.rules_only:
        evaluation_bench(args.tickets, args.repeats)
    rule_sets(args.rule_tickets, args.rule_repeats, not args.no_scan)


def evaluation_bench(n_tickets: int, repeats: int) -> None:
    cals = calendars()
    started = time.perf_counter()
    cs = CalendarSet(cals)
    print(f"{len(cs)} calendars compiled (2000-2100) in {time.perf_counter() - started:.1f} s")
    pols = policies()
    now = int(NOW.timestamp())
    table = tickets(n_tickets, now - 60 * DAY, 60 * DAY)
    pauses = sum(len(x) for x in table.column("pauses").to_pylist()[:10_000]) / 10_000
    print(
        f"{table.num_rows:,} tickets, {pauses:.2f} pauses per ticket, 3 policies, "
        f"{len(METRICS)} metrics"
    )
    evaluation = sla.evaluate(table, pols, cs, NOW, threads=1)
    rows = evaluation.results.num_rows
    statuses = evaluation.results.column("status").to_pandas().value_counts().to_dict()
    print(f"{rows:,} ticket-metric results; statuses {statuses}")

    # Interleaved, so a shared machine's drift affects both alike.
    # Per-ticket instants: each ticket as known at its own instant (its creation plus up to
    # two days), in the same kernel pass.
    created = table.column("created_at").cast(pa.int64()).to_numpy()
    spread = np.random.default_rng(5).integers(0, 2 * DAY, table.num_rows)
    per_ticket = np.minimum(created + spread, now).astype(np.int64)
    times: dict[object, list[float]] = {1: [], 2: [], "rows": []}
    for _ in range(repeats):
        for threads in (1, 2):
            started = time.perf_counter()
            sla.evaluate(table, pols, cs, NOW, threads=threads)
            times[threads].append(time.perf_counter() - started)
        started = time.perf_counter()
        sla.evaluate(table, pols, cs, per_ticket, threads=1)
        times["rows"].append(time.perf_counter() - started)
    one, two, rows_now = min(times[1]), min(times[2]), min(times["rows"])
    print(f"\nload average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"\nevaluate, 1 thread:  {table.num_rows / one:>12,.0f} tickets/s "
        f"({rows / one:,.0f} ticket-metrics/s)"
    )
    print(
        f"evaluate, 2 threads: {table.num_rows / two:>12,.0f} tickets/s (speed-up {one / two:.2f}x)"
    )

    print(
        f"evaluate, 1 thread, one instant per ticket: {table.num_rows / rows_now:>12,.0f} "
        f"tickets/s ({one / rows_now:.2f}x the single instant)"
    )

    window = Horizon.of(date(2026, 9, 1), date(2026, 12, 31))
    sample = table.slice(0, 10_000)
    ref = reference_rate(sample, pols, cals, window, now)
    print(
        f"reference (pure Python, 10k sample): {ref:>8,.0f} tickets/s; "
        f"evaluate is {table.num_rows / one / ref:,.0f}x faster single-threaded"
    )


if __name__ == "__main__":
    main()
