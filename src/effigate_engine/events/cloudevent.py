"""The CloudEvents JSON of an event (structured mode, specversion 1.0).

One function builds it, from the outbox row: ``id`` is the event id (also the webhook-id of
its deliveries), ``source`` ``effigate://tenants/<tenant>``, ``type``
``com.effigate.<domain>.<transition>``, ``subject`` the ticket, contract or invoice id,
``time`` the instant the transition happened, ``data`` its evidence (JSON object).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from effigate_engine.events.types import cloudevent_type

SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"


def source_of(tenant_id: UUID | str) -> str:
    """The CloudEvents ``source`` of a tenant's events."""
    return f"effigate://tenants/{UUID(str(tenant_id))}"


def build_cloudevent(
    *,
    tenant_id: UUID | str,
    event_id: UUID | str,
    event_type: str,
    subject: str,
    occurred_at: datetime,
    data: Mapping[str, Any],
) -> CloudEvent:
    """The CloudEvent of one outbox event (``occurred_at`` timezone-aware, written in UTC;
    ``event_type`` one of ``EVENT_TYPES``)."""
    if occurred_at.tzinfo is None:
        raise ValueError(f"occurred_at {occurred_at!r} has no time zone")
    attributes = {
        "specversion": SPECVERSION,
        "id": str(UUID(str(event_id))),
        "source": source_of(tenant_id),
        "type": cloudevent_type(event_type),
        "subject": subject,
        "time": occurred_at.astimezone(UTC),
        "datacontenttype": DATACONTENTTYPE,
    }
    return CloudEvent(attributes, dict(data))


def cloudevent_json(
    *,
    tenant_id: UUID | str,
    event_id: UUID | str,
    event_type: str,
    subject: str,
    occurred_at: datetime,
    data: Mapping[str, Any],
) -> str:
    """The CloudEvents JSON (structured mode) of one outbox event, as text."""
    event = build_cloudevent(
        tenant_id=tenant_id,
        event_id=event_id,
        event_type=event_type,
        subject=subject,
        occurred_at=occurred_at,
        data=data,
    )
    return JSONFormat().write(event).decode("utf-8")
