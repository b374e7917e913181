"""One priority vocabulary: tickets, SLA policies, rate cards and contract terms read a
priority with the same function and refuse the same values with the same sentence."""

from __future__ import annotations

import pytest

from effigate_engine.errors import EffigateError
from effigate_engine.priority import ACCEPTED, PriorityError, normalise_priority, priority_name
from effigate_engine.ratecard.model import RateCard
from effigate_engine.sla.policy import Policy

SPELLINGS = {
    "p1": "CRITICAL",
    " Critical ": "CRITICAL",
    "P2": "HIGH",
    "medium": "MEDIUM",
    "p4": "LOW",
}


def policy_matching(priority: str) -> Policy:
    return Policy.from_json(
        {
            "name": "p",
            "rules": [
                {
                    "match": {"priority": [priority]},
                    "metrics": {"FIRST_RESPONSE": {"target": "1h", "calendar": "c"}},
                }
            ],
        }
    )


@pytest.mark.parametrize(("spelling", "name"), SPELLINGS.items())
def test_every_reader_gives_the_same_name(spelling: str, name: str) -> None:
    assert normalise_priority(spelling) == name
    assert priority_name(spelling) == name
    assert RateCard("USD", {("*", "*"): 1}, high_priorities=(spelling,)).high_priorities == {name}
    assert policy_matching(spelling).rules[0].match.priorities == frozenset({name})


@pytest.mark.parametrize("value", ["URGENT", "P5", "", None])
def test_every_strict_reader_refuses_with_the_same_sentence(value: object) -> None:
    with pytest.raises(PriorityError) as direct:
        normalise_priority(value, "tickets[0].priority")
    assert direct.value.field == "tickets[0].priority"
    assert str(direct.value) == f"tickets[0].priority: {value!r} {ACCEPTED}"
    with pytest.raises(EffigateError) as card:
        RateCard("USD", {("*", "*"): 1}, high_priorities=(value,))
    assert str(card.value) == f"priority: {value!r} {ACCEPTED}"


def test_screening_keeps_an_unknown_spelling_to_name_it() -> None:
    assert priority_name(" urgent ") == "URGENT"
