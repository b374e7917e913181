"""The CloudEvents JSON of an event parses with the ``cloudevents`` package and carries the
outbox row's id, tenant source, type, subject, time and evidence."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1.http import from_json

from effigate_engine.events.cloudevent import cloudevent_json
from effigate_engine.events.types import (
    EVENT_TYPES,
    bucket_key,
    cloudevent_type,
    invoice_key,
    sla_key,
)

TENANT = uuid.UUID("5f0c6c3e-8a4b-4d3e-9a59-0b7f2f3c9d11")


def test_cloudevent_json_parses_with_the_cloudevents_package() -> None:
    event_id = uuid.uuid4()
    occurred = datetime(2026, 3, 2, 14, 23, 0, tzinfo=timezone(timedelta(hours=1)))
    data = {"ticket_id": "INC-100000", "deadline": "2026-03-02T13:23:00Z", "elapsed_seconds": 3600}
    text = cloudevent_json(
        tenant_id=TENANT,
        event_id=event_id,
        event_type="SLA_BREACHED",
        subject="INC-100000",
        occurred_at=occurred,
        data=data,
    )
    parsed = from_json(text)
    assert parsed["specversion"] == "1.0"
    assert parsed["id"] == str(event_id)
    assert parsed["source"] == f"effigate://tenants/{TENANT}"
    assert parsed["type"] == "com.effigate.sla.breached"
    assert parsed["subject"] == "INC-100000"
    assert parsed["datacontenttype"] == "application/json"
    assert parsed.data == data
    core = JSONFormat().read(None, text)
    assert core.get_time() == occurred
    assert core.get_data() == data
    assert json.loads(text)["time"] == "2026-03-02T13:23:00Z"


def test_every_type_has_a_cloudevents_type() -> None:
    assert {t: cloudevent_type(t) for t in EVENT_TYPES} == {
        "SLA_WARNING": "com.effigate.sla.warning",
        "SLA_ESCALATION": "com.effigate.sla.escalation",
        "SLA_BREACHED": "com.effigate.sla.breached",
        "SLA_MET": "com.effigate.sla.met",
        "BUCKET_LOW_BALANCE": "com.effigate.bucket.low_balance",
        "BUCKET_EXHAUSTED": "com.effigate.bucket.exhausted",
        "INVOICE_ISSUED": "com.effigate.invoice.issued",
        "INVOICE_PAID": "com.effigate.invoice.paid",
        "INVOICE_OVERDUE": "com.effigate.invoice.overdue",
    }
    with pytest.raises(ValueError, match="SLA_EXPLODED"):
        cloudevent_type("SLA_EXPLODED")


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        cloudevent_json(
            tenant_id=TENANT,
            event_id=uuid.uuid4(),
            event_type="INVOICE_PAID",
            subject="7",
            occurred_at=datetime(2026, 3, 2),
            data={},
        )


def test_dedupe_keys() -> None:
    assert sla_key("INC-1", "FIRST_RESPONSE", "SLA_WARNING") == "sla:INC-1:FIRST_RESPONSE:WARNING"
    assert (
        sla_key("INC-1", "RESOLUTION", "SLA_ESCALATION", 2) == "sla:INC-1:RESOLUTION:ESCALATION:2"
    )
    assert sla_key("INC-1", "RESOLUTION", "SLA_MET") == "sla:INC-1:RESOLUTION:MET"
    assert invoice_key(42, "INVOICE_OVERDUE") == "invoice:42:OVERDUE"
    assert bucket_key(7, "BUCKET_EXHAUSTED", "ledger:99") == "bucket:7:EXHAUSTED:ledger:99"
    with pytest.raises(ValueError, match="step"):
        sla_key("INC-1", "RESOLUTION", "SLA_ESCALATION")
    with pytest.raises(ValueError, match="step"):
        sla_key("INC-1", "RESOLUTION", "SLA_BREACHED", 1)
    with pytest.raises(ValueError):
        invoice_key(1, "SLA_MET")
    with pytest.raises(ValueError):
        bucket_key(1, "INVOICE_PAID", "ledger:1")
