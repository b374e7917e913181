"""The product's promise, end to end in the engine: "the ticket routes to the correct agent
queue based on job type category and support level; agent workload is balanced
automatically". Network L2 work goes to the network queue, endpoint P3/P4 work to tier 1 and
is shared round the tier-1 agents, P1 to on-call, and an outage reported by a VIP client's
staff goes to on-call as P1, tagged."""

from __future__ import annotations

from collections import Counter

from effigate_engine import routing
from effigate_engine.routing import Agent, Queue
from tests.routing import reference
from tests.routing.cases import WINDOW_START, H, calendar_set, on_shift, rows_of, rules, table

RULES = rules(
    {
        "fallback_queue": "triage",
        "rules": [
            {"name": "p1 on call", "match": {"priority": "CRITICAL"}, "queue": "oncall"},
            {
                "match": {"requester_domain": "legal-firm-a.com", "subject_contains": "outage"},
                "queue": "oncall",
                "set_priority": "CRITICAL",
                "tags": ["vip"],
            },
            {"match": {"job_type": ["network"], "support_level": ["L2", "L3"]}, "queue": "network"},
            {"match": {"job_type": "endpoint", "priority": ["P3", "P4"]}, "queue": "tier1"},
        ],
    }
)
QUEUES = [
    Queue("oncall", calendar="24x7"),
    Queue("network", calendar="london-office", escalation_queue="oncall"),
    Queue("tier1", calendar="london-office", escalation_queue="network"),
    Queue("triage"),
]
AGENTS = [
    Agent("oncall-1", queues=frozenset({"oncall"}), capacity=10),
    Agent(
        "net-1", support_levels=frozenset({"L2", "L3"}), queues=frozenset({"network"}), capacity=10
    ),
    Agent("t1-a", support_levels=frozenset({"L1", "L2"}), queues=frozenset({"tier1"}), capacity=10),
    Agent("t1-b", support_levels=frozenset({"L1", "L2"}), queues=frozenset({"tier1"}), capacity=10),
    Agent("t1-c", support_levels=frozenset({"L1", "L2"}), queues=frozenset({"tier1"}), capacity=10),
    Agent("triage-1", queues=frozenset({"triage"}), capacity=10),
]
MONDAY_10 = WINDOW_START + 10 * H


def _ticket(i: int, priority: str, **fields: object) -> dict[str, object]:
    return {"ticket_id": f"T{i:02d}", "priority": priority, "assign_at": MONDAY_10 + i, **fields}


def test_tickets_route_by_job_type_and_support_level_and_workload_is_balanced() -> None:
    tickets = [
        _ticket(0, "P2", job_type="network", support_level="L2"),
        _ticket(1, "P1", job_type="endpoint", support_level="L1"),
        _ticket(
            2,
            "P3",
            subject="Email outage at our Leeds office",
            requester="paralegal@legal-firm-a.com",
        ),
        _ticket(
            3, "P2", job_type="network", support_level="L1"
        ),  # L1 network: not the network queue
    ] + [_ticket(10 + k, "P3", job_type="endpoint", support_level="L1") for k in range(9)]
    routes = routing.route(table(tickets), RULES)
    assert rows_of(routes) == reference.route(tickets, RULES)
    by_id = {r["ticket_id"]: r for r in rows_of(routes)}
    assert by_id["T00"]["queue"] == "network"
    assert by_id["T01"]["queue"] == "oncall"
    assert (by_id["T02"]["queue"], by_id["T02"]["priority"], by_id["T02"]["tags"]) == (
        "oncall",
        "CRITICAL",
        ["vip"],
    )
    assert by_id["T03"]["queue"] == "triage"
    assert {by_id[f"T{10 + k}"]["queue"] for k in range(9)} == {"tier1"}

    routed = routing.routed(table(tickets), routes)
    assigned, workload = routing.assign(routed, QUEUES, AGENTS, calendar_set())
    for t, r in zip(tickets, rows_of(routes), strict=True):
        t.update(queue=r["queue"], priority=r["priority"], support_level=r["support_level"])
    want, _, _ = reference.assign(tickets, QUEUES, AGENTS, on_shift)
    rows = rows_of(assigned)
    assert rows == want
    who = {r["ticket_id"]: r["assignee"] for r in rows}
    assert (who["T00"], who["T01"], who["T02"], who["T03"]) == (
        "net-1",
        "oncall-1",
        "oncall-1",
        "triage-1",
    )
    # Nine equal endpoint tickets: round robin over tier 1, three each, equal loads.
    tier1 = [who[f"T{10 + k}"] for k in range(9)]
    assert tier1 == ["t1-a", "t1-b", "t1-c"] * 3
    assert Counter(tier1) == {"t1-a": 3, "t1-b": 3, "t1-c": 3}
    assert {workload.of(a).load for a in ("t1-a", "t1-b", "t1-c")} == {6}
