"""The compiled SLA kernel against the by-definition reference on generated tickets.

Each example draws a policy (one rule per priority, random targets, calendars, warning
fractions, pausing statuses and escalation ladders), a batch of tickets (events before, inside
and after business hours; overlapping, open and pre-creation pauses; reopen pauses; stops
before and after `now`) and an evaluation instant, and compares every result row.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from fractions import Fraction

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, CalendarSet, Horizon, WeeklyEntry
from effigate_engine.sla.evaluation import evaluate
from effigate_engine.sla.policy import (
    METRICS,
    PRIORITIES,
    STOP_FIELDS,
    EscalationStep,
    Match,
    MetricTarget,
    Policy,
    Rule,
)
from effigate_engine.sla.schemas import TICKETS
from tests.reference_clock import ReferenceClock
from tests.sla.reference_sla import PrefixClock, evaluate_metric, known_at

EXAMPLES = int(os.environ.get("EFFIGATE_SLA_EXAMPLES", "500"))
TICKETS_PER_EXAMPLE = 40
H = 3600
DAY = 86_400
WINDOW = Horizon.of(date(2024, 2, 1), date(2024, 7, 1))
STATUS_NAMES = ("WAITING_ON_CLIENT", "RESOLVED", "ON_HOLD_VENDOR")


def _calendars() -> list[Calendar]:
    office = Calendar(
        "Europe/London",
        tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)),
        holidays=frozenset({date(2024, 3, 29), date(2024, 5, 6)}),
        name="office",
    )
    noc = Calendar(
        "America/New_York", tuple(WeeklyEntry(d, 22 * H, 6 * H) for d in range(5)), name="overnight"
    )
    lunch = Calendar(
        "Australia/Sydney",
        tuple(
            WeeklyEntry(d, s, e) for d in range(5) for s, e in ((9 * H, 12 * H), (13 * H, 17 * H))
        ),
        name="lunch-break",
    )
    return [office, noc, lunch, Calendar.always_open(name="24x7")]


@pytest.fixture(scope="module")
def world() -> tuple[CalendarSet, dict[str, PrefixClock]]:
    calendars = _calendars()
    cs = CalendarSet(calendars, WINDOW)
    refs = {c.name: PrefixClock(ReferenceClock(c, WINDOW.start, WINDOW.end)) for c in calendars}
    return cs, refs


fractions = st.sampled_from(
    [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(9, 10), Fraction(1), Fraction(3, 2)]
)


@st.composite
def metric_targets(draw: st.DrawFn, metric: str) -> MetricTarget:
    target = draw(
        st.one_of(st.sampled_from([0, 60, H, 4 * H, 8 * H, 16 * H]), st.integers(0, 3 * DAY))
    )
    ladder = sorted(set(draw(st.lists(fractions, max_size=3))))
    offsets = sorted(set(draw(st.lists(st.sampled_from([0, 1800, 2 * H]), max_size=2))))
    steps = tuple(
        [EscalationStep(f"step-{f}", fraction=f) for f in ladder]
        + [EscalationStep(f"after-{o}", offset=o) for o in offsets]
    )
    pausing = frozenset(draw(st.sets(st.sampled_from(STATUS_NAMES[:2]), max_size=2)))
    return MetricTarget(
        target=target,
        calendar=draw(st.sampled_from(["office", "overnight", "lunch-break", "24x7"])),
        warning=draw(
            st.sampled_from([Fraction(1, 2), Fraction(3, 4), Fraction(9, 10), Fraction(1)])
        ),
        pausing_statuses=pausing
        if metric != "FIRST_RESPONSE" or draw(st.booleans())
        else frozenset(),
        escalation=steps,
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules = []
    for priority in PRIORITIES[:3]:  # LOW tickets stay unmatched
        metrics = {m: draw(metric_targets(m)) for m in METRICS if draw(st.integers(0, 4))}
        if not metrics:
            metrics = {"RESOLUTION": draw(metric_targets("RESOLUTION"))}
        rules.append(Rule(Match(priorities=frozenset({priority})), metrics))
    return Policy("generated", tuple(rules))


def _minute(draw: st.DrawFn, lo: int, hi: int) -> int:
    t = lo + 60 * draw(st.integers(0, (hi - lo) // 60))
    return t + (draw(st.integers(0, 59)) if draw(st.integers(0, 3)) == 0 else 0)


@st.composite
def tickets(draw: st.DrawFn) -> dict:
    created = _minute(draw, WINDOW.start, WINDOW.start + 90 * DAY)
    row: dict = {
        "ticket_id": "",
        "priority": draw(st.sampled_from(["P1", "P2", "P3", "P4", "HIGH", "medium"])),
        "created_at": created,
    }
    for metric in METRICS:
        if draw(st.booleans()):
            row[STOP_FIELDS[metric]] = created + draw(
                st.one_of(st.integers(0, 20 * DAY), st.sampled_from([0, H, 8 * H]))
            )
    pauses = []
    for _ in range(draw(st.integers(0, 4))):
        start = created + draw(st.integers(-DAY, 15 * DAY))
        length = draw(st.one_of(st.none(), st.integers(0, 5 * DAY)))
        pauses.append(
            {
                "start": start,
                "end": None if length is None else start + length,
                "status": draw(st.sampled_from(STATUS_NAMES)),
            }
        )
    row["pauses"] = pauses
    return row


def _to_arrow(rows: list[dict]) -> pa.Table:
    def ts(t: int | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp(t, UTC)

    out = []
    for i, r in enumerate(rows):
        item = {k: (ts(v) if k.endswith("_at") else v) for k, v in r.items() if k != "pauses"}
        item["ticket_id"] = f"T{i}"
        item["pauses"] = [
            {"start": ts(p["start"]), "end": ts(p["end"]), "status": p["status"]}
            for p in r["pauses"]
        ]
        out.append(item)
    return pa.Table.from_pylist(out, schema=TICKETS)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    policy=policies(),
    batch=st.lists(tickets(), min_size=TICKETS_PER_EXAMPLE, max_size=TICKETS_PER_EXAMPLE),
    now_offset=st.integers(0, 110 * DAY),
)
def test_kernel_matches_reference(
    world: tuple[CalendarSet, dict[str, PrefixClock]],
    policy: Policy,
    batch: list[dict],
    now_offset: int,
) -> None:
    cs, refs = world
    now = WINDOW.start + now_offset
    table = _to_arrow(batch)
    evaluation = evaluate(table, policy, cs, now)
    results = evaluation.results.to_pylist()
    expected_rows = 0
    by_key = {(r["ticket_id"], r["metric"]): r for r in results}
    for i, t in enumerate(batch):
        rule = policy.rule_for(t["priority"])
        if rule is None:
            continue
        t = known_at(t, now)
        for metric, spec in policy.rules[rule].metrics.items():
            expected_rows += 1
            got = by_key[(f"T{i}", metric)]
            pauses = [(p["start"], p["end"], p["status"]) for p in t["pauses"]]
            want = evaluate_metric(
                refs[spec.calendar], spec, t["created_at"], t.get(STOP_FIELDS[metric]), pauses, now
            )
            ctx = f"ticket {t} metric {metric} spec {spec} now {now}"
            deadline = got["deadline"]
            assert (None if deadline is None else int(deadline.timestamp())) == want.deadline, ctx
            assert got["elapsed_seconds"] == want.elapsed, ctx
            assert got["status"] == want.status, ctx
            assert got["breach_seconds"] == want.breach_seconds, ctx
            assert got["escalation_level"] == want.level, ctx
            nxt = got["next_escalation_at"]
            assert (None if nxt is None else int(nxt.timestamp())) == want.next_escalation, ctx
            warn = got["warning_at"]
            assert (None if warn is None else int(warn.timestamp())) == want.warning_at, ctx
    assert len(results) == expected_rows
    assert evaluation.unmatched.num_rows == sum(
        policy.rule_for(t["priority"]) is None for t in batch
    )
