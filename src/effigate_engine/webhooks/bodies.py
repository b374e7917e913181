"""What is POSTed for an event, per endpoint format.

- ``STANDARD``: the event's CloudEvents JSON (structured mode), as ``WatchEvents`` streams it.
- ``SLACK``: a Slack incoming-webhook message, ``{"text": ..., "blocks": [...]}``: the
  ``text`` is the one-line summary (notifications, clients without blocks), the blocks a
  header, the evidence as fields and the event's id and instant as context.
- ``TEAMS``: a Microsoft Teams incoming-webhook (Workflows) message carrying one Adaptive Card
  (``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": {...}}]}``) with the summary and the
  evidence as a fact set.

Pure: the body is a function of the event alone, so every attempt of a delivery sends the
same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from effigate_engine.events.cloudevent import cloudevent_json

FORMATS = ("STANDARD", "SLACK", "TEAMS")

TITLES = {
    "SLA_WARNING": "SLA warning",
    "SLA_ESCALATION": "SLA escalation",
    "SLA_BREACHED": "SLA breached",
    "SLA_MET": "SLA met",
    "BUCKET_LOW_BALANCE": "Prepaid bucket running low",
    "BUCKET_EXHAUSTED": "Prepaid bucket exhausted",
    "INVOICE_ISSUED": "Invoice issued",
    "INVOICE_PAID": "Invoice paid",
    "INVOICE_OVERDUE": "Invoice overdue",
}
SLACK_EMOJI = {
    "SLA_WARNING": ":warning:",
    "SLA_ESCALATION": ":arrow_double_up:",
    "SLA_BREACHED": ":rotating_light:",
    "SLA_MET": ":white_check_mark:",
    "BUCKET_LOW_BALANCE": ":hourglass_flowing_sand:",
    "BUCKET_EXHAUSTED": ":no_entry:",
    "INVOICE_ISSUED": ":page_facing_up:",
    "INVOICE_PAID": ":moneybag:",
    "INVOICE_OVERDUE": ":alarm_clock:",
}
#: Adaptive Card text colours of the header, by severity.
TEAMS_COLOR = {
    "SLA_WARNING": "Warning",
    "SLA_ESCALATION": "Warning",
    "SLA_BREACHED": "Attention",
    "SLA_MET": "Good",
    "BUCKET_LOW_BALANCE": "Warning",
    "BUCKET_EXHAUSTED": "Attention",
    "INVOICE_ISSUED": "Default",
    "INVOICE_PAID": "Good",
    "INVOICE_OVERDUE": "Attention",
}
#: Slack allows at most 10 fields in a section block and 2,000 characters in each.
SLACK_MAX_FIELDS = 10
SLACK_MAX_FIELD_CHARS = 2000
#: Evidence shown as facts (Teams) at most; the rest is in the CloudEvent.
MAX_FACTS = 20
ADAPTIVE_CARD_VERSION = "1.4"
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class OutboundEvent:
    """An outbox event as a delivery sends it (``occurred_at`` timezone-aware)."""

    tenant_id: UUID
    event_id: UUID
    type: str
    subject: str
    occurred_at: datetime
    client_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def render(fmt: str, event: OutboundEvent) -> bytes:
    """The body (UTF-8 JSON) POSTed for ``event`` to an endpoint of format ``fmt``."""
    if fmt == "STANDARD":
        return cloudevent_json(
            tenant_id=event.tenant_id,
            event_id=event.event_id,
            event_type=event.type,
            subject=event.subject,
            occurred_at=event.occurred_at,
            data=event.data,
        ).encode("utf-8")
    if fmt == "SLACK":
        return _json(slack_message(event))
    if fmt == "TEAMS":
        return _json(teams_message(event))
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def summary(event: OutboundEvent) -> str:
    """One line saying what happened: ``"SLA breached: INC-1 (resolution)"``, with the
    escalation step when there is one."""
    title = TITLES.get(event.type, event.type)
    detail = []
    metric = event.data.get("metric")
    if isinstance(metric, str) and metric:
        detail.append(metric.lower())
    step = event.data.get("step", event.data.get("escalation_step"))
    if event.type == "SLA_ESCALATION" and isinstance(step, int):
        detail.append(f"step {step}")
    tail = f" ({', '.join(detail)})" if detail else ""
    return f"{title}: {event.subject}{tail}"


def facts(event: OutboundEvent) -> list[tuple[str, str]]:
    """The evidence as (label, value) pairs, in the payload's order: scalars and lists of
    scalars (nested objects stay in the CloudEvent); the client first when known."""
    shown: list[tuple[str, str]] = []
    if event.client_id is not None and "client_id" not in event.data:
        shown.append(("Client", str(event.client_id)))
    for key, value in event.data.items():
        text = _scalar_text(value)
        if text is not None:
            shown.append((_label(key), text))
    return shown[:MAX_FACTS]


def slack_message(event: OutboundEvent) -> dict[str, Any]:
    """The Slack incoming-webhook message of ``event``."""
    line = summary(event)
    emoji = SLACK_EMOJI.get(event.type, ":bell:")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": line[:150], "emoji": True}},
    ]
    fields = [
        {"type": "mrkdwn", "text": _slack_escape(f"*{label}*\n{value}")[:SLACK_MAX_FIELD_CHARS]}
        for label, value in facts(event)[:SLACK_MAX_FIELDS]
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _slack_escape(
                        f"{event.type} at {_instant(event.occurred_at)} · event {event.event_id}"
                    ),
                }
            ],
        }
    )
    return {"text": f"{emoji} {_slack_escape(line)}", "blocks": blocks}


def teams_message(event: OutboundEvent) -> dict[str, Any]:
    """The Microsoft Teams incoming-webhook message (one Adaptive Card) of ``event``."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": summary(event),
            "weight": "Bolder",
            "size": "Medium",
            "color": TEAMS_COLOR.get(event.type, "Default"),
            "wrap": True,
        },
        {
            "type": "TextBlock",
            "text": f"{event.type} at {_instant(event.occurred_at)}",
            "isSubtle": True,
            "spacing": "None",
            "wrap": True,
        },
    ]
    shown = facts(event)
    if shown:
        body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in shown]})
    body.append(
        {"type": "TextBlock", "text": f"Event {event.event_id}", "isSubtle": True, "size": "Small"}
    )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "summary": summary(event),
        "body": body,
    }
    return {
        "type": "message",
        "summary": summary(event),
        "attachments": [
            {"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": None, "content": card}
        ],
    }


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _instant(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"occurred_at {at!r} has no time zone")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _label(key: str) -> str:
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float | str):
        return str(value) if value != "" else None
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float | str) and not isinstance(v, bool) for v in value)
    ):
        return ", ".join(str(v) for v in value)
    return None


def _slack_escape(text: str) -> str:
    """Slack's three control characters, escaped as its formatting rules ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
