"""Routing and assignment throughput: tickets/s through ``routing.route`` and ``routing.assign``
(Arrow in, Arrow out, single-threaded), side by side with the pure-Python reference of the
tests measured in the same run.

100,000 tickets (subjects, requesters at 2,000 domains, tags) through a 12-rule set with
subject and domain patterns; then assigned, in (assign instant, id) order, to 60 agents over
six queues with four calendars, capacities and escalation chains.

    python bench/bench_routing.py [--tickets 100000] [--repeats 5] [--sample 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from effigate_engine import Calendar, CalendarSet, Horizon, WeeklyEntry, routing  # noqa: E402
from effigate_engine.routing import Agent, Queue  # noqa: E402

H = 3600
DAY = 86_400
START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())
HORIZON = Horizon.of(date(2026, 1, 1), date(2026, 3, 1))
QUEUES = ["oncall", "network", "tier1", "tier2", "triage", "vip"]
RULES = {
    "fallback_queue": "triage",
    "rules": [
        {"name": "p1", "match": {"priority": "P1"}, "queue": "oncall"},
        {
            "match": {
                "requester_domain": ["legal-firm-a.com", "bank-b.com"],
                "subject_contains": "outage",
            },
            "queue": "vip",
            "set_priority": "P1",
            "tags": ["vip"],
        },
        {"match": {"job_type": "network", "support_level": ["L2", "L3"]}, "queue": "network"},
        {"match": {"job_type": ["endpoint", "email"], "priority": ["P3", "P4"]}, "queue": "tier1"},
        {"match": {"channel": ["PHONE", "CHAT"], "after_hours": True}, "queue": "oncall"},
        {"match": {"client": ["7", "8", "9"]}, "queue": "vip", "tags": ["key-account"]},
        {"match": {"subject_contains": ["password", "locked out"]}, "queue": "tier1"},
        {"match": {"requester_domain": "example.com"}, "queue": "tier2"},
        {"match": {"job_type": "server", "support_level": "SA"}, "queue": "tier2"},
        {"match": {"channel": "MONITORING"}, "queue": "network", "set_support_level": "L2"},
        {"match": {"support_level": "L3"}, "queue": "tier2"},
        {"match": {"job_type": "printing"}, "queue": "tier1"},
    ],
}
WORDS = np.array(
    [
        "printer",
        "VPN",
        "outage",
        "password",
        "slow",
        "email",
        "laptop",
        "Locked out",
        "server",
        "disk",
        "backup",
        "Outage",
        "licence",
        "wifi",
        "phone",
    ]
)


def calendars() -> list[Calendar]:
    return [
        Calendar(
            "Europe/London", tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)), name="office"
        ),
        Calendar(
            "America/New_York",
            tuple(WeeklyEntry(d, 22 * H, 6 * H) for d in range(5)),
            name="overnight",
        ),
        Calendar(
            "Australia/Sydney",
            tuple(
                WeeklyEntry(d, s, e)
                for d in range(5)
                for s, e in ((9 * H, 12 * H), (13 * H, 17 * H))
            ),
            name="lunch",
        ),
        Calendar.always_open("UTC", name="24x7"),
    ]


def roster(seed: int = 3) -> tuple[list[Queue], list[Agent]]:
    rng = np.random.default_rng(seed)
    queues = [
        Queue("oncall", calendar="24x7"),
        Queue("network", calendar="office", escalation_queue="tier2"),
        Queue("tier1", calendar="lunch", escalation_queue="tier2"),
        Queue("tier2", calendar="overnight", escalation_queue="network"),
        Queue("triage", escalation_queue="tier1"),
        Queue("vip", calendar="office", escalation_queue="oncall"),
    ]
    levels = ["L1", "L2", "L3", "SA"]
    skills = ["network", "endpoint", "email", "server", "printing"]
    agents = []
    for k in range(60):
        agents.append(
            Agent(
                id=f"agent-{k:03d}",
                support_levels=frozenset(rng.choice(levels, rng.integers(1, 5), replace=False)),
                skills=None
                if rng.random() < 0.5
                else frozenset(rng.choice(skills, rng.integers(1, 4), replace=False)),
                queues=frozenset(rng.choice(QUEUES, rng.integers(1, 4), replace=False)),
                capacity=int(rng.integers(500, 4000)),
                calendar=[None, None, "office", "overnight", "24x7"][k % 5],
            )
        )
    return queues, agents


def tickets(n: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)

    def pick(values: list, p: list[float] | None = None) -> np.ndarray:
        return np.array(values, dtype=object)[rng.choice(len(values), n, p=p)]

    domains = np.array(
        [f"client{k}.com" for k in range(2000)]
        + ["legal-firm-a.com", "bank-b.com", "it.example.com"]
    )
    local = np.char.add("user", rng.integers(0, 50, n).astype(str))
    requester = np.char.add(np.char.add(local, "@"), domains[rng.integers(0, domains.size, n)])
    subject = np.char.add(
        np.char.add(WORDS[rng.integers(0, WORDS.size, n)], " issue in "),
        np.char.add("site ", rng.integers(0, 500, n).astype(str)),
    )
    tag_pool = [None, [], ["billing"], ["vip"], ["a", "b"]]
    status = pick([None, "ON_TRACK", "WARNING", "PAUSED", "BREACHED"], [0.3, 0.4, 0.15, 0.05, 0.1])
    remaining = rng.integers(-3600, 40_000, n)
    return pa.table(
        {
            "ticket_id": pa.array(np.char.add("T", np.arange(n).astype(str))),
            "client_id": pa.array(rng.integers(0, 200, n).astype(str)),
            "priority": pa.array(
                pick(["P1", "P2", "P3", "P4"], [0.05, 0.2, 0.45, 0.3]), pa.string()
            ),
            "support_level": pa.array(pick(["L1", "L2", "L3", "SA", None]), pa.string()),
            "job_type": pa.array(
                pick(["network", "endpoint", "email", "server", "printing", None]), pa.string()
            ),
            "after_hours": pa.array(rng.random(n) < 0.2),
            "channel": pa.array(
                pick(["EMAIL", "PORTAL", "PHONE", "CHAT", "MONITORING", "API"]), pa.string()
            ),
            "subject": pa.array(subject),
            "requester": pa.array(requester),
            "tags": pa.array(list(pick(tag_pool)), pa.list_(pa.string())),
            "assign_at": pa.array(
                START + rng.integers(0, 14 * DAY, n), pa.timestamp("s", tz="UTC")
            ),
            "sla_status": pa.array(status, pa.string()),
            "remaining_seconds": pa.array(remaining, mask=rng.random(n) < 0.2),
        }
    )


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sample", type=int, default=10_000, help="tickets the reference runs")
    args = parser.parse_args()

    from tests.reference_clock import ReferenceClock
    from tests.routing import reference

    cals = calendars()
    cs = CalendarSet(cals, HORIZON)
    rules = routing.RoutingRules.from_json(RULES)
    queues, agents = roster()
    table = tickets(args.tickets)
    routes = routing.route(table, rules)
    routed = routing.routed(table, routes)
    assigned, _ = routing.assign(routed, queues, agents, cs)
    reasons = assigned.column("reason").to_pandas().value_counts().to_dict()
    print(
        f"{table.num_rows:,} tickets, {len(rules.rules)} rules, {len(agents)} agents, "
        f"{len(queues)} queues, {len(cs)} calendars"
    )
    print(f"rules matched: {np.bincount(routes.column('rule').to_numpy() + 1).tolist()}")
    print(f"assignment reasons: {reasons}")

    # The reference on a sample (its rate is per ticket; both run single-threaded).
    sample = table.slice(0, args.sample).to_pylist()
    clocks = {c.name: ReferenceClock(c, HORIZON.start, HORIZON.end - 1) for c in cals}

    def on_shift(name: str, t: int) -> bool:
        return clocks[name].is_open(t)

    ref_route = best(lambda: reference.route(sample, rules), 1)
    routed_sample = routed.slice(0, args.sample).to_pylist()
    for row in routed_sample:
        row["assign_at"] = int(row["assign_at"].timestamp())
    ref_assign = best(lambda: reference.assign(routed_sample, queues, agents, on_shift), 1)

    route_times, assign_times = [], []
    for _ in range(args.repeats):  # interleaved, so a shared machine's drift affects both alike
        route_times.append(best(lambda: routing.route(table, rules), 1))
        assign_times.append(best(lambda: routing.assign(routed, queues, agents, cs), 1))
    n = table.num_rows
    route_rate, assign_rate = n / min(route_times), n / min(assign_times)
    ref_route_rate, ref_assign_rate = len(sample) / ref_route, len(sample) / ref_assign
    print(f"\n{'':8}{'kernel tickets/s':>18}{'reference tickets/s':>22}{'ratio':>10}")
    print(
        f"{'route':8}{route_rate:>18,.0f}{ref_route_rate:>22,.0f}"
        f"{route_rate / ref_route_rate:>9,.0f}×"
    )
    print(
        f"{'assign':8}{assign_rate:>18,.0f}{ref_assign_rate:>22,.0f}"
        f"{assign_rate / ref_assign_rate:>9,.0f}×"
    )
    print(
        f"\ngoals: route >= 1,000,000 tickets/s ({'met' if route_rate >= 1e6 else 'NOT met'}), "
        f"assign >= 200,000 tickets/s ({'met' if assign_rate >= 2e5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
