"""What endpoints of each format receive: CloudEvents JSON, Slack and Teams messages."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from effigate_engine.webhooks.bodies import OutboundEvent, render, summary

TENANT = uuid.UUID("6f1d6c2e-51a3-4b7e-9f3e-2f1a4a3b5c6d")
BREACH = OutboundEvent(
    tenant_id=TENANT,
    event_id=uuid.UUID("0b7c1a52-7d0c-4d7a-8c55-5d2f8a4b9e01"),
    type="SLA_BREACHED",
    subject="INC-100000",
    occurred_at=datetime(2026, 12, 7, 14, 23, tzinfo=UTC),
    client_id=7,
    data={
        "ticket_id": "INC-100000",
        "client_id": 7,
        "metric": "RESOLUTION",
        "deadline": "2026-12-07T14:23:00Z",
        "elapsed_seconds": 14400,
        "target_seconds": 14400,
        "policy": {"id": 3, "version": 2},
        "notify": ["team-lead@acme.example", "<script>"],
        "paused": False,
    },
)
ESCALATION = OutboundEvent(
    tenant_id=TENANT,
    event_id=uuid.uuid4(),
    type="SLA_ESCALATION",
    subject="INC-7",
    occurred_at=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
    data={"metric": "FIRST_RESPONSE", "step": 2, **{f"k{i}": i for i in range(30)}},
)


def test_the_summary_names_what_happened_to_which_subject() -> None:
    assert summary(BREACH) == "SLA breached: INC-100000 (resolution)"
    assert summary(ESCALATION) == "SLA escalation: INC-7 (first_response, step 2)"


def test_a_standard_body_is_the_events_cloudevent() -> None:
    body = json.loads(render("STANDARD", BREACH))
    assert body["specversion"] == "1.0"
    assert body["id"] == str(BREACH.event_id)
    assert body["type"] == "com.effigate.sla.breached"
    assert body["source"] == f"effigate://tenants/{TENANT}"
    assert body["subject"] == "INC-100000"
    assert body["data"]["elapsed_seconds"] == 14400
    assert body["data"]["policy"] == {"id": 3, "version": 2}


def test_a_slack_body_is_text_and_blocks_with_the_evidence_as_fields() -> None:
    body = json.loads(render("SLACK", BREACH))
    assert set(body) == {"text", "blocks"}
    assert body["text"] == ":rotating_light: SLA breached: INC-100000 (resolution)"
    header, section, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "SLA breached: INC-100000 (resolution)",
            "emoji": True,
        },
    }
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in section["fields"]}
    assert all(f["type"] == "mrkdwn" for f in section["fields"])
    assert fields["*Deadline*"] == "2026-12-07T14:23:00Z"
    assert fields["*Elapsed seconds*"] == "14400"
    assert fields["*Paused*"] == "no"
    # Slack's control characters are escaped; nested objects stay in the CloudEvent
    assert fields["*Notify*"] == "team-lead@acme.example, &lt;script&gt;"
    assert "*Policy*" not in fields
    assert context["type"] == "context"
    assert str(BREACH.event_id) in context["elements"][0]["text"]
    assert "2026-12-07T14:23:00Z" in context["elements"][0]["text"]


def test_slack_limits_hold_for_long_evidence() -> None:
    body = json.loads(render("SLACK", ESCALATION))
    section = body["blocks"][1]
    assert len(section["fields"]) == 10
    assert len(body["blocks"][0]["text"]["text"]) <= 150


def test_a_teams_body_is_a_message_with_one_adaptive_card() -> None:
    body = json.loads(render("TEAMS", BREACH))
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title = card["body"][0]
    assert title["type"] == "TextBlock" and title["text"] == summary(BREACH)
    assert title["color"] == "Attention"
    (fact_set,) = [b for b in card["body"] if b["type"] == "FactSet"]
    facts = {f["title"]: f["value"] for f in fact_set["facts"]}
    assert facts["Ticket id"] == "INC-100000"
    assert facts["Target seconds"] == "14400"
    assert all(isinstance(v, str) for v in facts.values())
    assert (
        len(
            json.loads(render("TEAMS", ESCALATION))["attachments"][0]["content"]["body"][2]["facts"]
        )
        == 20
    )


@pytest.mark.parametrize("fmt", ["STANDARD", "SLACK", "TEAMS"])
def test_every_attempt_sends_the_same_bytes(fmt: str) -> None:
    assert render(fmt, BREACH) == render(fmt, BREACH)


def test_an_unknown_format_or_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        render("XML", BREACH)
    naive = OutboundEvent(TENANT, uuid.uuid4(), "SLA_MET", "INC-1", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="time zone"):
        render("SLACK", naive)
