"""A few tickets from plain values (``sla.few``) against the Arrow batch path (``evaluate``).

Each example draws a policy and tickets as the kernel's reference comparison does
(``test_sla_generated``), plus rules matching support level, job type, client and after-hours
cover; every ticket alone, and the whole batch, must give exactly the rows ``evaluate`` gives
(read back with ``rows_of``), or ``None`` exactly when ``evaluate`` reports an unmatched ticket
or refuses the batch.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import CalendarSet
from effigate_engine.sla import few
from effigate_engine.sla.evaluation import TicketError, evaluate
from effigate_engine.sla.policy import METRICS, STOP_FIELDS, Match, MetricTarget, Policy, Rule
from tests.sla.test_sla_generated import (
    DAY,
    WINDOW,
    _calendars,
    _to_arrow,
    policies,
    tickets,
)

EXAMPLES = int(os.environ.get("EFFIGATE_SLA_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def calendar_set() -> CalendarSet:
    return CalendarSet(_calendars(), WINDOW)


def _values(i: int, row: dict) -> few.TicketValues:
    return few.TicketValues(
        f"T{i}",
        row["priority"],
        row["created_at"],
        *(row.get(STOP_FIELDS[m]) for m in METRICS),
        [(p["start"], p["end"], p["status"]) for p in row["pauses"]],
        row.get("client_id"),
        row.get("support_level"),
        row.get("job_type"),
        row.get("after_hours"),
    )


def _by_arrow(batch: list[dict], policy: Policy, cs: CalendarSet, now: int) -> object:
    """The rows ``evaluate`` gives, ``"unmatched"`` when it leaves a ticket unmatched, or
    ``"refused"`` when it raises."""
    try:
        evaluation = evaluate(_to_arrow(batch), policy, cs, now)
    except TicketError:
        return "refused"
    if evaluation.unmatched.num_rows:
        return "unmatched"
    return few.rows_of(evaluation.results)


def _check(batch: list[dict], policy: Policy, cs: CalendarSet, now: int) -> None:
    # _to_arrow names tickets by position: the plain values must too
    values = [_values(i, row) for i, row in enumerate(batch)]
    got = few.evaluate_values(values, policy, cs, now)
    want = _by_arrow(batch, policy, cs, now)
    if isinstance(want, str):
        assert got is None, want
    else:
        assert got == want


def _matching(policy: Policy) -> Policy:
    """``policy`` with rules in front that match on support level, job type, client and
    after-hours cover (each with the first rule's targets)."""
    metrics = policy.rules[0].metrics
    extra = (
        Rule(Match(support_levels=frozenset({"L3"})), metrics),
        Rule(Match(job_types=frozenset({"onsite"}), after_hours=True), metrics),
        Rule(Match(clients=frozenset({"client-7"})), policy.rules[-1].metrics),
    )
    return Policy(policy.name, extra + policy.rules)


fields = st.fixed_dictionaries(
    {},
    optional={
        "support_level": st.sampled_from(["L1", "l3", "L3"]),
        "job_type": st.sampled_from(["onsite", "remote"]),
        "client_id": st.sampled_from(["client-7", "client-8"]),
        "after_hours": st.booleans(),
    },
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    policy=policies(),
    extra_rules=st.booleans(),
    batch=st.lists(st.tuples(tickets(), fields), min_size=1, max_size=6),
    now_offset=st.integers(0, 110 * DAY),
)
def test_few_matches_the_batch_path(
    calendar_set: CalendarSet,
    policy: Policy,
    extra_rules: bool,
    batch: list[tuple[dict, dict]],
    now_offset: int,
) -> None:
    if extra_rules:
        policy = _matching(policy)
    rows = [{**ticket, **more} for ticket, more in batch]
    now = WINDOW.start + now_offset
    for row in rows:
        _check([row], policy, calendar_set, now)
    _check(rows, policy, calendar_set, now)


def test_few_answers_the_ordinary_ticket(calendar_set: CalendarSet) -> None:
    """One matched ticket with a pause is answered from plain values (not left to Arrow)."""
    targets = {m: MetricTarget(target=4 * 3600, calendar="office") for m in METRICS}
    policy = Policy("p", (Rule(Match(priorities=frozenset({"HIGH"})), targets),))
    created = WINDOW.start + 10 * DAY + 9 * 3600
    row = {
        "ticket_id": "",
        "priority": "p2",
        "created_at": created,
        "first_response_at": created + 3600,
        "pauses": [{"start": created + 7200, "end": None, "status": "WAITING_ON_CLIENT"}],
    }
    got = few.evaluate_values([_values(0, row)], policy, calendar_set, created + DAY)
    assert got is not None and len(got) == len(METRICS)
    assert got == _by_arrow([row], policy, calendar_set, created + DAY)


def test_seconds_floor_like_an_arrow_column() -> None:
    assert few.seconds(datetime(2026, 1, 1, 0, 0, 1, 999_999, tzinfo=UTC)) == 1_767_225_601
    assert few.seconds(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)) == -1
    assert few.seconds(None) is None
