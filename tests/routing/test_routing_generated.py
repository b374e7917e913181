"""The compiled routing and assignment kernels against the by-definition reference, on
generated rule sets, rosters and tickets (hypothesis) and on one large seeded case: 20,000
tickets and 60 agents over six queues with calendars, capacities and escalation chains."""

from __future__ import annotations

import os
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import routing
from effigate_engine.routing import Agent, Queue, Workload
from effigate_engine.routing.workload import AgentLoad
from tests.routing import reference
from tests.routing.cases import (
    CALENDAR_NAMES,
    WINDOW_END,
    WINDOW_START,
    calendar_set,
    on_shift,
    rows_of,
    rules,
    table,
)

EXAMPLES = int(os.environ.get("EFFIGATE_ROUTING_EXAMPLES", "300"))

PRIORITIES = ["P1", "critical", "High", "MEDIUM", "p4", "LOW", "P3"]
LEVELS = [None, "L1", "l2", "L3", "SA"]
JOBS = [None, "network", "endpoint", "email", "Network"]
CLIENTS = [None, "1", "2", "3"]
CHANNELS = [None, "EMAIL", "phone", "CHAT", "MONITORING"]
SUBJECTS = [
    None,
    "",
    "Outage in NYC",
    "printer jam",
    "VPN OUTAGE",
    "Straße closed",
    "STRASSE flooded",
    "re: outage?",
    "ﬁle server down",
]
REQUESTERS = [
    None,
    "bob@legal-firm-a.com",
    "amy@IT.Legal-Firm-A.com",
    "x@notlegal-firm-a.com",
    "noatsign",
    "a@b@example.com",
    "c@example.com",
    "d@Example.COM",
    "e@",
    "f@sub.deep.example.com",
]
TAGS = [None, [], ["b"], ["a", "b"], ["vip"], ["zz", "a"]]
SUBJECT_PATTERNS = ["outage", "OUTAGE", "strasse", "ß", "file", "printer", "x"]
DOMAIN_PATTERNS = ["legal-firm-a.com", "example.com", "it.legal-firm-a.com", "EXAMPLE.com"]
RULE_TAGS = [["vip"], ["a"], ["net", "b"]]
STATUSES = [None, "ON_TRACK", "WARNING", "PAUSED", "MET", "BREACHED"]
REMAINING = [None, -5, 0, 1, 3600, 3601, 14_400, 14_401, 100_000]
QUEUES = ["q0", "q1", "q2", "q3"]


def _any_of(draw: Any, pool: list[Any]) -> Any:
    picked = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    return picked[0] if len(picked) == 1 and draw(st.booleans()) else picked


@st.composite
def rule_sets(draw: Any) -> routing.RoutingRules:
    raw_rules = []
    for _ in range(draw(st.integers(0, 6))):
        match: dict[str, Any] = {}
        for field, pool in (
            ("priority", PRIORITIES),
            ("support_level", [v for v in LEVELS if v]),
            ("job_type", [v for v in JOBS if v]),
            ("client", [v for v in CLIENTS if v] + [2]),
            ("channel", [v for v in CHANNELS if v]),
            ("subject_contains", SUBJECT_PATTERNS),
            ("requester_domain", DOMAIN_PATTERNS),
        ):
            if draw(st.integers(0, 3)) == 0:
                match[field] = _any_of(draw, pool)
        if draw(st.integers(0, 4)) == 0:
            match["after_hours"] = draw(st.booleans())
        rule: dict[str, Any] = {"match": match, "queue": draw(st.sampled_from(QUEUES))}
        if draw(st.booleans()):
            rule["set_priority"] = draw(st.sampled_from(PRIORITIES))
        if draw(st.integers(0, 2)) == 0:
            rule["set_support_level"] = draw(st.sampled_from([v for v in LEVELS if v]))
        if draw(st.booleans()):
            rule["tags"] = draw(st.sampled_from(RULE_TAGS))
        raw_rules.append(rule)
    return rules({"fallback_queue": draw(st.sampled_from(QUEUES)), "rules": raw_rules})


def _ticket(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "ticket_id": f"T{rng.randrange(10**6)}-{i}",
        "priority": rng.choice(PRIORITIES),
        "support_level": rng.choice(LEVELS),
        "job_type": rng.choice(JOBS),
        "client_id": rng.choice(CLIENTS),
        "channel": rng.choice(CHANNELS),
        "after_hours": rng.choice([None, True, False]),
        "subject": rng.choice(SUBJECTS),
        "requester": rng.choice(REQUESTERS),
        "tags": rng.choice(TAGS),
        "queue": rng.choice([*QUEUES, None, "elsewhere"]),
        # Ties in the assign instant are common, so the id decides the order often.
        "assign_at": rng.randrange(WINDOW_START, WINDOW_END, rng.choice([60, 3600, 7200])),
        "sla_status": rng.choice(STATUSES),
        "remaining_seconds": rng.choice(REMAINING),
    }


def _roster(rng: random.Random, n_agents: int, queues: list[str]) -> tuple[list, list]:
    queue_objs = [
        Queue(
            q,
            calendar=rng.choice([None, None, *CALENDAR_NAMES]),
            escalation_queue=rng.choice([None, *queues]),
        )
        for q in queues
    ]
    agents = []
    for k in range(n_agents):
        agents.append(
            Agent(
                id=rng.choice(["a", "B", "agent-", "é"]) + str(rng.randrange(1000)) + f".{k}",
                support_levels=frozenset(rng.sample(["L1", "L2", "L3", "SA"], rng.randint(0, 4))),
                skills=None
                if rng.random() < 0.4
                else frozenset(rng.sample(["network", "endpoint", "email"], rng.randint(0, 3))),
                queues=frozenset(rng.sample(queues, rng.randint(0, min(3, len(queues))))),
                capacity=rng.randint(0, 6),
                calendar=rng.choice([None, None, *CALENDAR_NAMES]),
                active=rng.random() < 0.9,
            )
        )
    return queue_objs, agents


def _state(rng: random.Random, agents: list[Agent]) -> tuple[Workload, dict, int]:
    loads = {}
    for a in agents:
        if rng.random() < 0.5:
            # Few distinct loads, so ties (broken by recency, then id) are common.
            loads[a.id] = AgentLoad(rng.randint(0, 3), rng.choice([0, 2, 4]), rng.randint(-1, 40))
    sequence = max([x.last_assigned for x in loads.values()], default=-1) + 1
    sequence += rng.randint(0, 3)
    plain = {k: (v.open_count, v.load, v.last_assigned) for k, v in loads.items()}
    return Workload(loads, sequence), plain, sequence


def _compare_route(tickets: list[dict[str, Any]], rule_set: routing.RoutingRules) -> list:
    got = rows_of(routing.route(table(tickets), rule_set))
    want = reference.route(tickets, rule_set)
    assert got == want
    return got


def _compare_assign(
    tickets: list[dict[str, Any]], queues: list[Queue], agents: list[Agent], rng: random.Random
) -> None:
    state, plain, sequence = _state(rng, agents)
    got, after = routing.assign(table(tickets), queues, agents, calendar_set(), state)
    want, want_after, want_sequence = reference.assign(
        tickets, queues, agents, on_shift, plain, sequence
    )
    assert rows_of(got) == want
    for a in agents:
        x = after.of(a.id)
        assert (x.open_count, x.load, x.last_assigned) == want_after[a.id], a.id
    assert after.sequence == want_sequence


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(rule_set=rule_sets(), seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40))
def test_route_equals_the_reference_on_generated_rules_and_tickets(
    rule_set: routing.RoutingRules, seed: int, n: int
) -> None:
    rng = random.Random(seed)
    _compare_route([_ticket(rng, i) for i in range(n)], rule_set)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 40),
    n_agents=st.integers(0, 8),
    n_queues=st.integers(1, 4),
)
def test_assign_equals_the_reference_on_generated_rosters_and_tickets(
    seed: int, n: int, n_agents: int, n_queues: int
) -> None:
    rng = random.Random(seed)
    queues, agents = _roster(rng, n_agents, QUEUES[:n_queues])
    _compare_assign([_ticket(rng, i) for i in range(n)], queues, agents, rng)


def test_a_large_seeded_case_routes_and_assigns_as_the_reference() -> None:
    """20,000 tickets routed by a rule set, then assigned to 60 agents over six queues with
    on- and off-shift calendars, capacity limits and escalation chains (one with a cycle)."""
    rng = random.Random(20_261_207)
    queue_names = ["oncall", "network", "tier1", "tier2", "triage", "vip"]
    rule_set = rules(
        {
            "fallback_queue": "triage",
            "rules": [
                {"match": {"priority": "P1"}, "queue": "oncall"},
                {
                    "match": {"requester_domain": "legal-firm-a.com", "subject_contains": "outage"},
                    "queue": "vip",
                    "set_priority": "P1",
                    "tags": ["vip"],
                },
                {
                    "match": {"job_type": "network", "support_level": ["L2", "L3"]},
                    "queue": "network",
                },
                {
                    "match": {"job_type": ["endpoint", "email"], "priority": ["P3", "P4"]},
                    "queue": "tier1",
                },
                {
                    "match": {"channel": ["PHONE", "CHAT"]},
                    "queue": "tier2",
                    "set_support_level": "L2",
                },
                {"match": {"subject_contains": ["strasse", "printer"]}, "queue": "tier1"},
            ],
        }
    )
    queues = [
        Queue("oncall", calendar="24x7", escalation_queue=None),
        Queue("network", calendar="london-office", escalation_queue="tier2"),
        Queue("tier1", calendar="sydney-lunch", escalation_queue="tier2"),
        Queue("tier2", calendar="ny-overnight", escalation_queue="network"),  # a cycle
        Queue("triage", calendar=None, escalation_queue="tier1"),
        Queue("vip", calendar="london-office", escalation_queue="oncall"),
    ]
    agents = []
    for k in range(60):
        agents.append(
            Agent(
                id=f"agent-{rng.randrange(10**4):04d}-{k}",
                support_levels=frozenset(rng.sample(["L1", "L2", "L3", "SA"], rng.randint(1, 4))),
                skills=None
                if rng.random() < 0.5
                else frozenset(rng.sample(["network", "endpoint", "email"], rng.randint(1, 3))),
                queues=frozenset(rng.sample(queue_names, rng.randint(1, 3))),
                capacity=rng.randint(20, 400),
                calendar=rng.choice([None, None, None, *CALENDAR_NAMES]),
                active=rng.random() < 0.95,
            )
        )
    tickets = [_ticket(rng, i) for i in range(20_000)]
    routed = _compare_route(tickets, rule_set)
    for t, r in zip(tickets, routed, strict=True):
        t.update(queue=r["queue"], priority=r["priority"], support_level=r["support_level"])
        t["tags"] = r["tags"]
    got, after = routing.assign(table(tickets), queues, agents, calendar_set())
    want, want_after, want_sequence = reference.assign(tickets, queues, agents, on_shift)
    got_rows = rows_of(got)
    assert got_rows == want
    assert after.sequence == want_sequence
    for a in agents:
        x = after.of(a.id)
        assert (x.open_count, x.load, x.last_assigned) == want_after[a.id]
    reasons = {r["reason"] for r in got_rows}
    # The case exercises every path: assigned, escalated, off shift or unskilled, full.
    assert {"ASSIGNED", "ESCALATED_AND_ASSIGNED", "NO_ELIGIBLE_AGENT", "ALL_AT_CAPACITY"} <= reasons
    assert sum(r["assignee"] is not None for r in got_rows) > 5_000
