"""Routing rule sets, queues and agents read from JSON: what is accepted, how it is normalised,
the round trip, and refusals that name the field path and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from effigate_engine.routing import Agent, Queue, RoutingError, RoutingRules, check_roster

EXAMPLE = {
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


def test_the_example_rule_set_reads_and_round_trips(tmp_path: Path) -> None:
    rules = RoutingRules.from_json(EXAMPLE)
    assert rules.fallback_queue == "triage"
    assert [r.queue for r in rules.rules] == ["oncall", "oncall", "network", "tier1"]
    assert rules.rules[0].name == "p1 on call"
    assert rules.rules[3].match.priorities == {"MEDIUM", "LOW"}  # aliases read as names
    assert rules.rules[2].match.job_types == {"network"}
    assert rules.rules[1].set_priority == "CRITICAL" and rules.rules[1].tags == ("vip",)
    assert RoutingRules.from_json(rules.to_json()) == rules
    rules.save(tmp_path / "rules.json")
    assert RoutingRules.load(tmp_path / "rules.json") == rules
    assert rules.queues == {"triage", "oncall", "network", "tier1"}


def test_values_are_normalised_as_the_vocabularies_say() -> None:
    rules = RoutingRules.from_json(
        {
            "fallback_queue": "triage",
            "rules": [
                {
                    "match": {
                        "priority": ["p1", " high "],
                        "support_level": "l2",
                        "channel": ["email", "Chat"],
                        "client": [7, "8"],
                        "requester_domain": ["@Example.COM"],
                        "after_hours": True,
                    },
                    "queue": "q",
                    "set_priority": "p2",
                    "set_support_level": "sa",
                    "tags": ["b", "a", "b"],
                }
            ],
        }
    )
    rule = rules.rules[0]
    assert rule.match.priorities == {"CRITICAL", "HIGH"}
    assert rule.match.support_levels == {"L2"}
    assert rule.match.channels == {"EMAIL", "CHAT"}
    assert rule.match.clients == {"7", "8"}  # client ids as strings, integers accepted
    assert rule.match.requester_domains == ("example.com",)
    assert (rule.set_priority, rule.set_support_level, rule.tags) == ("HIGH", "SA", ("a", "b"))
    assert RoutingRules.from_json(rules.to_json()) == rules


def test_an_empty_rule_list_sends_everything_to_the_fallback() -> None:
    assert RoutingRules.from_json({"fallback_queue": "triage", "rules": []}).rules == ()
    assert RoutingRules.from_json({"fallback_queue": "triage"}).rules == ()


def _refusal(data: Any) -> RoutingError:
    with pytest.raises(RoutingError) as caught:
        RoutingRules.from_json(data)
    return caught.value


def _with_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {"fallback_queue": "triage", "rules": [{"queue": "a", "match": {}}, rule]}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"rules": []}, "fallback_queue", "fallback_queue: None is required"),
        ({"fallback_queue": ""}, "fallback_queue", "is required"),
        ({"fallback_queue": "t", "extra": 1}, "extra", "is not a routing field"),
        ({"fallback_queue": "t", "rules": {}}, "rules", "is not a list of rules"),
        (
            _with_rule({"match": {"priority": "P9"}, "queue": "x"}),
            "rules[1].match.priority",
            "rules[1].match.priority: 'P9' is not one of CRITICAL, HIGH, MEDIUM, LOW",
        ),
        (
            _with_rule({"match": {"priority": ["P1", "urgent"]}, "queue": "x"}),
            "rules[1].match.priority[1]",
            "rules[1].match.priority[1]: 'urgent' is not one of",
        ),
        (
            _with_rule({"match": {"support_level": "L4"}, "queue": "x"}),
            "rules[1].match.support_level",
            "'L4' is not one of L1, L2, L3, SA",
        ),
        (
            _with_rule({"match": {"channel": "FAX"}, "queue": "x"}),
            "rules[1].match.channel",
            "'FAX' is not one of EMAIL, PORTAL, PHONE, CHAT, MONITORING, API",
        ),
        (
            _with_rule({"match": {"job_type": []}, "queue": "x"}),
            "rules[1].match.job_type",
            "is an empty list",
        ),
        (
            _with_rule({"match": {"client": [True]}, "queue": "x"}),
            "rules[1].match.client[0]",
            "is not a string or an integer",
        ),
        (
            _with_rule({"match": {"after_hours": "yes"}, "queue": "x"}),
            "rules[1].match.after_hours",
            "is not true/false",
        ),
        (
            _with_rule({"match": {"subject_contains": ["outage", ""]}, "queue": "x"}),
            "rules[1].match.subject_contains[1]",
            "is empty",
        ),
        (
            _with_rule({"match": {"requester_domain": "bob@example.com"}, "queue": "x"}),
            "rules[1].match.requester_domain",
            "is not a domain",
        ),
        (
            _with_rule({"match": {"requester_domain": ".example.com"}, "queue": "x"}),
            "rules[1].match.requester_domain",
            "is not a domain",
        ),
        (
            _with_rule({"match": {"colour": "red"}, "queue": "x"}),
            "rules[1].match.colour",
            "is not a match field",
        ),
        (_with_rule({"match": {}}), "rules[1].queue", "rules[1].queue: None is required"),
        (_with_rule({"match": {}, "queue": " x"}), "rules[1].queue", "has surrounding spaces"),
        (
            _with_rule({"match": {}, "queue": "x", "set_priority": "P0"}),
            "rules[1].set_priority",
            "'P0' is not one of",
        ),
        (
            _with_rule({"match": {}, "queue": "x", "set_support_level": "L9"}),
            "rules[1].set_support_level",
            "'L9' is not one of",
        ),
        (
            _with_rule({"match": {}, "queue": "x", "tags": "vip"}),
            "rules[1].tags",
            "is not a list of tags",
        ),
        (
            _with_rule({"match": {}, "queue": "x", "tags": ["ok", "x" * 65]}),
            "rules[1].tags[1]",
            "is longer than 64 characters",
        ),
        (
            _with_rule({"match": {}, "queue": "x", "priority": "P1"}),
            "rules[1].priority",
            "is not a rule field",
        ),
        (_with_rule("oops"), "rules[1]", "is not an object"),
        (_with_rule({"match": [], "queue": "x"}), "rules[1].match", "is not an object"),
    ],
)
def test_a_bad_rule_set_is_refused_naming_the_field_path_and_value(
    data: Any, field: str, message: str
) -> None:
    error = _refusal(data)
    assert error.field == field
    assert message in str(error)
    assert str(error).startswith(f"{field}: ")


def test_queues_and_agents_read_and_round_trip() -> None:
    queue = Queue.from_json({"name": "network", "calendar": "office", "escalation_queue": "l3"})
    assert Queue.from_json(queue.to_json()) == queue
    agent = Agent.from_json(
        {
            "id": "ana",
            "name": "Ana",
            "support_levels": ["l1", "L2"],
            "skills": ["network"],
            "queues": ["network"],
            "capacity": 5,
            "calendar": "office",
        }
    )
    assert agent.support_levels == {"L1", "L2"} and agent.active
    assert Agent.from_json(agent.to_json()) == agent
    anyone = Agent.from_json({"id": "bo", "queues": [], "capacity": 0})
    assert anyone.skills is None and anyone.support_levels == {"L1", "L2", "L3", "SA"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "a", "queues": [], "capacity": -1}, "agent.capacity: -1 is not an integer >= 0"),
        ({"id": "a", "queues": [], "capacity": True}, "agent.capacity: True is not an integer"),
        ({"id": "a", "queues": [], "capacity": 1, "active": 1}, "agent.active: 1 is not true"),
        ({"id": "", "queues": [], "capacity": 1}, "agent.id: '' is required"),
        ({"id": "a", "queues": "q", "capacity": 1}, "agent.queues: 'q' is not a list"),
        (
            {"id": "a", "queues": [], "capacity": 1, "support_levels": ["L5"]},
            "agent.support_levels[0]: 'L5' is not one of L1, L2, L3, SA",
        ),
        ({"id": "a", "queues": [], "capacity": 1, "team": "x"}, "agent.team: 'x' is not a field"),
    ],
)
def test_a_bad_agent_is_refused_naming_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError) as caught:
        Agent.from_json(data)
    assert str(caught.value).startswith(message)


def test_a_roster_naming_unknown_queues_or_repeating_names_is_refused() -> None:
    network = Queue("network", escalation_queue="l3")
    with pytest.raises(RoutingError, match=r"^queues\[0\].escalation_queue: 'l3' is not a queue"):
        check_roster([network], [])
    with pytest.raises(RoutingError, match=r"^queues\[1\].name: 'a' is given twice"):
        check_roster([Queue("a"), Queue("a")], [])
    with pytest.raises(RoutingError, match=r"^agents\[1\].id: 'x' is given twice"):
        check_roster([Queue("a")], [Agent("x", queues=frozenset({"a"})), Agent("x")])
    with pytest.raises(RoutingError, match=r"^agents\[0\].queues: 'nope' is not a queue"):
        check_roster([Queue("a")], [Agent("x", queues=frozenset({"nope"}))])
