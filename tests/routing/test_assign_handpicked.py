"""Assignment, rule by rule of docs/routing.md: least load, ties by least recently assigned
then agent id, capacity, levels and skills, shifts, escalation only for tickets at risk and
never round a cycle, the reasons, the order tickets are taken in, work weights and the
workload carried between batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from effigate_engine import routing
from effigate_engine.errors import BatchError
from effigate_engine.routing import Agent, AgentLoad, Queue, RoutingError, Workload
from tests.routing import reference
from tests.routing.cases import WINDOW_START, H, calendar_set, on_shift, rows_of, table

MONDAY_10_UTC = WINDOW_START + 10 * H  # London office open (winter: UTC+0)
MONDAY_20_UTC = WINDOW_START + 20 * H  # London office closed
HOLIDAY_10_UTC = WINDOW_START + 7 * 86_400 + 10 * H  # Monday 12 January: a holiday in London


def _agent(agent_id: str, *queues: str, capacity: int = 10, **fields: Any) -> Agent:
    return Agent(agent_id, queues=frozenset(queues), capacity=capacity, **fields)


def _t(i: int, queue: str | None = "q", at: int = MONDAY_10_UTC, **fields: Any) -> dict:
    return {"ticket_id": f"T{i:03d}", "priority": "P3", "queue": queue, "assign_at": at, **fields}


def _assign(
    tickets: list[dict[str, Any]],
    queues: list[Queue],
    agents: list[Agent],
    state: Workload | None = None,
) -> tuple[list[dict[str, Any]], Workload]:
    result, after = routing.assign(table(tickets), queues, agents, calendar_set(), state)
    plain = {
        a: (x.open_count, x.load, x.last_assigned) for a, x in (state or Workload()).agents.items()
    }
    want, _, _ = reference.assign(
        tickets, queues, agents, on_shift, plain, (state or Workload()).sequence
    )
    rows = rows_of(result)
    assert rows == want
    return rows, after


def _who(rows: list[dict[str, Any]]) -> list[str | None]:
    return [r["assignee"] for r in rows]


def test_equal_tickets_go_round_robin_among_the_queue_agents() -> None:
    agents = [_agent("carol", "q"), _agent("bob", "q"), _agent("alice", "q")]
    rows, after = _assign([_t(i) for i in range(6)], [Queue("q")], agents)
    # all loads equal: never-assigned first (by id), then the least recently assigned
    assert _who(rows) == ["alice", "bob", "carol", "alice", "bob", "carol"]
    assert after.of("alice") == AgentLoad(open_count=2, load=4, last_assigned=3)
    assert after.sequence == 6


def test_the_least_loaded_agent_wins_whatever_its_recency() -> None:
    state = Workload(
        {"alice": AgentLoad(3, 9, 0), "bob": AgentLoad(1, 2, 5), "carol": AgentLoad(2, 4, -1)}, 6
    )
    rows, after = _assign(
        [_t(0)], [Queue("q")], [_agent(a, "q") for a in ("alice", "bob", "carol")], state
    )
    assert _who(rows) == ["bob"]
    assert rows[0]["sequence"] == 6
    assert after.of("bob") == AgentLoad(2, 4, 6)


def test_ties_in_load_go_to_the_least_recently_assigned_then_the_lower_id_bytewise() -> None:
    state = Workload({"alice": AgentLoad(1, 2, 7), "bob": AgentLoad(1, 2, 3)}, 8)
    agents = [_agent("alice", "q"), _agent("bob", "q")]
    assert _who(_assign([_t(0)], [Queue("q")], agents, state)[0]) == ["bob"]
    # never assigned (-1) comes before any sequence number; then bytes: "B" < "a" < "é"
    agents = [_agent("é", "q"), _agent("a", "q"), _agent("B", "q")]
    assert _who(_assign([_t(0), _t(1), _t(2)], [Queue("q")], agents)[0]) == ["B", "a", "é"]


def test_an_agent_at_capacity_is_passed_over_and_a_full_queue_says_so() -> None:
    state = Workload({"alice": AgentLoad(2, 0, 0)}, 1)
    agents = [_agent("alice", "q", capacity=2), _agent("bob", "q", capacity=1)]
    rows, after = _assign([_t(0), _t(1)], [Queue("q")], agents, state)
    assert _who(rows) == ["bob", None]
    assert rows[1]["reason"] == "ALL_AT_CAPACITY"
    assert after.of("alice").open_count == 2 and after.of("bob").open_count == 1
    zero = _assign([_t(0)], [Queue("q")], [_agent("zed", "q", capacity=0)])[0]
    assert zero[0]["reason"] == "ALL_AT_CAPACITY"


def test_support_levels_and_skills_decide_who_may_take_a_ticket() -> None:
    agents = [
        _agent("l1", "q", support_levels=frozenset({"L1"})),
        _agent("net", "q", support_levels=frozenset({"L2", "L3"}), skills=frozenset({"network"})),
        _agent("any", "q", support_levels=frozenset({"L2"})),  # skills None: any job type
    ]
    tickets = [
        _t(0, support_level="L3", job_type="network"),
        _t(1, support_level="L2", job_type="endpoint"),
        _t(2, support_level="SA"),
        _t(3, job_type="printing"),  # no level: anyone with the skill
    ]
    rows, _ = _assign(tickets, [Queue("q")], agents)
    assert _who(rows) == ["net", "any", None, "l1"]
    assert rows[2]["reason"] == "NO_ELIGIBLE_AGENT"


def test_shifts_follow_the_agents_calendar_else_the_queues_else_always() -> None:
    queues = [Queue("q", calendar="london-office")]
    agents = [
        _agent("office", "q"),  # the queue's calendar
        _agent("night", "q", calendar="ny-overnight"),  # its own: 22:00–06:00 New York
    ]
    rows, _ = _assign(
        [_t(0, at=MONDAY_10_UTC), _t(1, at=MONDAY_20_UTC), _t(2, at=HOLIDAY_10_UTC)],
        queues,
        agents,
    )
    assert _who(rows) == ["office", None, None]
    assert rows[1]["reason"] == "NO_ELIGIBLE_AGENT"
    late = WINDOW_START + 4 * H  # Monday 04:00 UTC = Sunday 23:00 in New York: no entry
    night = WINDOW_START + 28 * H  # Tuesday 04:00 UTC = Monday 23:00 in New York
    rows, _ = _assign([_t(0, at=late), _t(1, at=night)], queues, agents)
    assert _who(rows) == [None, "night"]
    always = _assign([_t(0, at=MONDAY_20_UTC)], [Queue("q")], [_agent("anytime", "q")])[0]
    assert _who(always) == ["anytime"]


def test_only_tickets_at_risk_escalate_and_they_follow_the_chain() -> None:
    queues = [
        Queue("tier1", escalation_queue="tier2"),
        Queue("tier2", escalation_queue="tier3"),
        Queue("tier3"),
    ]
    agents = [_agent("t3", "tier3")]
    statuses = [None, "ON_TRACK", "PAUSED", "MET", "WARNING", "BREACHED"]
    tickets = [_t(i, "tier1", sla_status=s) for i, s in enumerate(statuses)]
    rows, _ = _assign(tickets, queues, agents)
    assert [(r["queue"], r["assignee"], r["escalated"], r["reason"]) for r in rows] == [
        ("tier1", None, False, "NO_AGENT_IN_QUEUE")
    ] * 4 + [("tier3", "t3", True, "ESCALATED_AND_ASSIGNED")] * 2


def test_an_escalation_cycle_visits_each_queue_once_and_stays_in_the_last() -> None:
    queues = [Queue("a", escalation_queue="b"), Queue("b", escalation_queue="a"), Queue("c")]
    agents = [_agent("full", "a", "b", capacity=0)]
    rows, _ = _assign([_t(0, "a", sla_status="BREACHED")], queues, agents)
    assert (rows[0]["queue"], rows[0]["escalated"], rows[0]["reason"]) == (
        "b",
        True,
        "ALL_AT_CAPACITY",
    )
    self_loop = [Queue("s", escalation_queue="s")]
    rows, _ = _assign([_t(0, "s", sla_status="WARNING")], self_loop, [])
    assert (rows[0]["queue"], rows[0]["escalated"]) == ("s", False)


def test_no_queue_and_no_agent_in_queue_are_told_apart() -> None:
    agents = [_agent("gone", "q", active=False), _agent("other", "r")]
    rows, _ = _assign([_t(0, None), _t(1, "q"), _t(2, "unknown")], [Queue("q"), Queue("r")], agents)
    assert [(r["queue"], r["reason"]) for r in rows] == [
        (None, "NO_QUEUE"),
        ("q", "NO_AGENT_IN_QUEUE"),  # an inactive agent works no queue
        ("unknown", "NO_AGENT_IN_QUEUE"),
    ]


def test_tickets_are_taken_by_assign_instant_then_id_not_row_order() -> None:
    agents = [_agent("alice", "q"), _agent("bob", "q")]
    tickets = [_t(3, at=MONDAY_10_UTC + 60), _t(2, at=MONDAY_10_UTC), _t(1, at=MONDAY_10_UTC + 60)]
    rows, _ = _assign(tickets, [Queue("q")], agents)
    # T002 first (alice), then T001 (bob), then T003 (alice)
    assert [(r["ticket_id"], r["assignee"], r["sequence"]) for r in rows] == [
        ("T003", "alice", 2),
        ("T002", "alice", 0),
        ("T001", "bob", 1),
    ]


@pytest.mark.parametrize(
    ("priority", "remaining", "weight"),
    [
        ("CRITICAL", None, 8),
        ("P1", -1, 32),
        ("HIGH", 0, 16),
        ("HIGH", 1, 12),
        ("MEDIUM", 3_600, 6),
        ("MEDIUM", 3_601, 4),
        ("LOW", 14_400, 2),
        ("LOW", 14_401, 1),
    ],
)
def test_work_weight_is_priority_weight_times_urgency(
    priority: str, remaining: int | None, weight: int
) -> None:
    rows, after = _assign(
        [_t(0, priority=priority, remaining_seconds=remaining)], [Queue("q")], [_agent("a", "q")]
    )
    assert rows[0]["weight"] == weight
    assert after.of("a").load == weight


def test_a_heavier_ticket_load_steers_the_next_ones_elsewhere() -> None:
    agents = [_agent("alice", "q"), _agent("bob", "q")]
    tickets = [_t(0, priority="P1", remaining_seconds=0)]  # weight 32 to alice
    tickets += [_t(i, priority="P4") for i in range(1, 5)]  # weight 1 each: all to bob
    rows, after = _assign(tickets, [Queue("q")], agents)
    assert _who(rows) == ["alice", "bob", "bob", "bob", "bob"]
    assert (after.of("alice").load, after.of("bob").load) == (32, 4)


def test_the_workload_carried_between_batches_equals_one_batch() -> None:
    agents = [_agent(a, "q", capacity=4) for a in ("a", "b", "c")]
    tickets = [_t(i, priority=("P1", "P2", "P3", "P4")[i % 4]) for i in range(10)]
    whole, whole_after = _assign(tickets, [Queue("q")], agents)
    first, mid = _assign(tickets[:4], [Queue("q")], agents)
    second, after = _assign(tickets[4:], [Queue("q")], agents, mid)
    assert _who(first + second) == _who(whole)
    assert after == whole_after


def test_the_workload_of_open_tickets_counts_them_and_weighs_them() -> None:
    open_tickets = pa.table(
        {
            "assignee": ["a", "b", "a", None],
            "priority": ["P1", "P4", "P3", "P1"],
            "remaining_seconds": [0, None, 20_000, 5],
            "sequence": [4, 9, 2, None],
        }
    )
    held = routing.workload(open_tickets)
    assert held.agents == {"a": AgentLoad(2, 34, 4), "b": AgentLoad(1, 1, 9)}
    assert held.sequence == 10
    by_time = routing.workload(
        pa.table(
            {
                "assignee": ["a", "b", "a"],
                "priority": ["P1", "P4", "P3"],
                "assigned_at": pa.array(
                    [datetime(2026, 1, d, tzinfo=UTC) for d in (3, 2, 1)],
                    pa.timestamp("s", tz="UTC"),
                ),
            }
        )
    )
    assert (by_time.of("b").last_assigned, by_time.of("a").last_assigned) == (0, 1)
    assert by_time.sequence == 2
    assert held.to_table().schema == routing.AGENT_WORKLOAD


def test_bad_assignment_input_is_refused_naming_the_field() -> None:
    queues, agents = [Queue("q")], [_agent("a", "q")]
    with pytest.raises(BatchError, match=r"^assign_at\[1\]: None is required"):
        routing.assign(table([_t(0), _t(1, at=None)]), queues, agents, calendar_set())
    with pytest.raises(BatchError, match=r"^sla_status\[0\]: 'LATE' is not one of"):
        routing.assign(table([_t(0, sla_status="LATE")]), queues, agents, calendar_set())
    with pytest.raises(BatchError, match=r"^assign_at\[0\]: '2027-.*' is outside the calendars"):
        far = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
        routing.assign(table([_t(0, at=far)]), queues, agents, calendar_set())
    with pytest.raises(RoutingError, match=r"^agents\[0\].calendar: 'mars' is not a calendar"):
        routing.assign(table([_t(0)]), queues, [_agent("a", "q", calendar="mars")], calendar_set())
    with pytest.raises(RoutingError, match=r"^queues\[0\].calendar: 'office' is not a calendar"):
        routing.assign(table([_t(0)]), [Queue("q", calendar="office")], agents, None)
