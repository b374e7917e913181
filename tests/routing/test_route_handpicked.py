"""Routing, rule by rule of docs/routing.md: first match wins, any-of lists, fields left out,
case-insensitive subjects, domains and subdomains, the fallback, the overrides and tags, and
bad ticket values named by field and row."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from effigate_engine import routing
from effigate_engine.errors import BatchError
from tests.routing import reference
from tests.routing.cases import rows_of, rules, table


def _routes(rule_list: list[dict[str, Any]], tickets: list[dict[str, Any]]) -> list[dict]:
    rule_set = rules({"fallback_queue": "triage", "rules": rule_list})
    got = rows_of(routing.route(table(tickets), rule_set))
    assert got == reference.route(tickets, rule_set)
    return got


def _queues(rule_list: list[dict[str, Any]], tickets: list[dict[str, Any]]) -> list[str]:
    return [r["queue"] for r in _routes(rule_list, tickets)]


def _t(i: int = 0, priority: str = "P3", **fields: Any) -> dict[str, Any]:
    return {"ticket_id": f"T{i}", "priority": priority, **fields}


def test_the_first_matching_rule_wins_even_when_a_later_one_matches_too() -> None:
    got = _routes(
        [
            {"match": {"priority": "P1"}, "queue": "oncall"},
            {"match": {"job_type": "network"}, "queue": "network"},
        ],
        [_t(0, "P1", job_type="network"), _t(1, "P2", job_type="network")],
    )
    assert [(r["rule"], r["queue"]) for r in got] == [(0, "oncall"), (1, "network")]


def test_a_list_is_any_of_and_a_field_left_out_matches_everything() -> None:
    rule = [{"match": {"support_level": ["L2", "L3"]}, "queue": "senior"}]
    tickets = [_t(0, support_level="L2"), _t(1, support_level="l3"), _t(2, support_level="L1")]
    tickets.append(_t(3))  # no support level: a rule that names levels does not match it
    assert _queues(rule, tickets) == ["senior", "senior", "triage", "triage"]
    assert _queues([{"match": {}, "queue": "all"}], tickets) == ["all"] * 4


def test_priority_aliases_and_spellings_match_the_same_priority() -> None:
    tickets = [_t(0, "P1"), _t(1, "critical"), _t(2, " Critical "), _t(3, "HIGH")]
    assert _queues([{"match": {"priority": "CRITICAL"}, "queue": "oncall"}], tickets) == [
        "oncall",
        "oncall",
        "oncall",
        "triage",
    ]


def test_a_requester_domain_matches_itself_and_its_subdomains_only() -> None:
    rule = [{"match": {"requester_domain": "example.com"}, "queue": "client"}]
    requesters = [
        "ann@example.com",
        "bob@it.example.com",
        "cy@EXAMPLE.COM",
        "dee@notexample.com",
        "eve@example.com.evil.org",
        "fay@example.co",
        "gus@host@example.com",  # the part after the last @
        "example.com",  # no @: no domain
        "hal@",
        None,
    ]
    tickets = [_t(i, requester=r) for i, r in enumerate(requesters)]
    assert _queues(rule, tickets) == ["client"] * 3 + ["triage"] * 3 + ["client"] + ["triage"] * 3


def test_subject_patterns_match_case_insensitively_by_unicode_casefold() -> None:
    rule = [{"match": {"subject_contains": ["outage", "Straße"]}, "queue": "hot"}]
    subjects = [
        "Total OUTAGE in Leeds",
        "outages everywhere",
        "Hauptstrasse flooded",  # ß casefolds to ss
        "STRASSE",
        "out age",
        "",
        None,
    ]
    tickets = [_t(i, subject=s) for i, s in enumerate(subjects)]
    assert _queues(rule, tickets) == ["hot"] * 4 + ["triage"] * 3


def test_a_rule_with_subject_and_domain_patterns_needs_both() -> None:
    rule = [
        {
            "match": {"requester_domain": "legal-firm-a.com", "subject_contains": "outage"},
            "queue": "oncall",
        }
    ]
    tickets = [
        _t(0, subject="Outage", requester="a@legal-firm-a.com"),
        _t(1, subject="Outage", requester="a@other.com"),
        _t(2, subject="Printer", requester="a@legal-firm-a.com"),
        _t(3, requester="a@legal-firm-a.com"),  # no subject: does not match a subject pattern
    ]
    assert _queues(rule, tickets) == ["oncall", "triage", "triage", "triage"]


def test_client_channel_job_type_and_after_hours_match() -> None:
    rule_list = [
        {"match": {"client": 42}, "queue": "client-42"},
        {"match": {"channel": "phone"}, "queue": "phones"},
        {"match": {"job_type": "network"}, "queue": "network"},
        {"match": {"after_hours": True}, "queue": "night"},
        {"match": {"after_hours": False}, "queue": "day"},
    ]
    tickets = [
        _t(0, client_id="42"),
        _t(1, channel="PHONE"),
        _t(2, job_type="network"),
        _t(3, job_type="Network"),  # job types compare exactly
        _t(4, after_hours=True),
        _t(5, after_hours=False),
        _t(6),  # after_hours unknown: matches only rules that leave it out
    ]
    assert _queues(rule_list, tickets) == [
        "client-42",
        "phones",
        "network",
        "triage",
        "night",
        "day",
        "triage",
    ]


def test_an_integer_client_column_matches_client_ids_given_as_strings() -> None:
    rule_set = rules({"fallback_queue": "t", "rules": [{"match": {"client": "7"}, "queue": "c"}]})
    batch = pa.table({"ticket_id": ["a", "b"], "priority": ["P1", "P1"], "client_id": [7, 8]})
    assert routing.route(batch, rule_set).column("queue").to_pylist() == ["c", "t"]


def test_an_unmatched_ticket_goes_to_the_fallback_queue_with_rule_minus_one_and_no_changes() -> (
    None
):
    got = _routes(
        [{"match": {"priority": "P1"}, "queue": "oncall", "tags": ["x"]}],
        [_t(0, "p2", support_level="l1", tags=["b", "a"])],
    )
    assert got == [
        {
            "ticket_id": "T0",
            "rule": -1,
            "queue": "triage",
            "priority": "HIGH",
            "support_level": "L1",
            "tags": ["a", "b"],
        }
    ]


def test_the_matched_rule_overrides_priority_and_level_and_adds_its_tags() -> None:
    got = _routes(
        [
            {
                "match": {"subject_contains": "outage"},
                "queue": "oncall",
                "set_priority": "P1",
                "set_support_level": "L3",
                "tags": ["vip", "outage"],
            }
        ],
        [_t(0, "P4", subject="outage", support_level="L1", tags=["vip", "billing"])],
    )
    assert got[0]["priority"] == "CRITICAL"
    assert got[0]["support_level"] == "L3"
    assert got[0]["tags"] == ["billing", "outage", "vip"]  # union, sorted


def test_an_empty_rule_set_sends_every_ticket_to_the_fallback() -> None:
    assert _queues([], [_t(0, "P1"), _t(1, "P4")]) == ["triage", "triage"]


def test_the_routes_follow_the_ticket_order_and_schema() -> None:
    rule_set = rules({"fallback_queue": "t", "rules": []})
    result = routing.route(table([_t(2), _t(1), _t(3)]), rule_set)
    assert result.schema == routing.ROUTES
    assert result.column("ticket_id").to_pylist() == ["T2", "T1", "T3"]


def test_dictionary_encoded_columns_route_as_plain_ones() -> None:
    rule_set = rules(
        {"fallback_queue": "t", "rules": [{"match": {"job_type": "network"}, "queue": "n"}]}
    )
    batch = pa.table(
        {
            "ticket_id": ["a", "b"],
            "priority": pa.array(["P1", "P2"]).dictionary_encode(),
            "job_type": pa.array(["network", "endpoint"]).dictionary_encode(),
        }
    )
    assert routing.route(batch, rule_set).column("queue").to_pylist() == ["n", "t"]


@pytest.mark.parametrize(
    ("tickets", "message"),
    [
        ([_t(0), _t(1, "P9")], "priority[1]: 'P9' is not CRITICAL/HIGH/MEDIUM/LOW or P1–P4"),
        ([_t(0), {"ticket_id": "T1", "priority": None}], "priority[1]: None is required"),
        ([_t(0, support_level="L7")], "support_level[0]: 'L7' is not one of L1, L2, L3, SA"),
        ([_t(0, channel="FAX")], "channel[0]: 'FAX' is not one of EMAIL"),
        ([_t(0), {"ticket_id": None, "priority": "P1"}], "ticket_id[1]: None is required"),
        ([_t(0, tags=["ok"]), _t(1, tags=["a", ""])], "tags[1]: '' is not a tag"),
    ],
)
def test_a_bad_ticket_value_is_refused_naming_field_and_row(
    tickets: list[dict[str, Any]], message: str
) -> None:
    rule_set = rules({"fallback_queue": "t", "rules": []})
    with pytest.raises(BatchError) as caught:
        routing.route(table(tickets), rule_set)
    assert str(caught.value).startswith(message)


def test_routed_tickets_carry_the_routes_into_assignment() -> None:
    rule_set = rules(
        {
            "fallback_queue": "t",
            "rules": [{"match": {"priority": "P4"}, "queue": "q", "set_priority": "P1"}],
        }
    )
    batch = table([_t(0, "P4", queue="old")])
    after = routing.routed(batch, routing.route(batch, rule_set))
    assert after.select(["queue", "priority", "tags"]).to_pylist() == [
        {"queue": "q", "priority": "CRITICAL", "tags": []}
    ]
