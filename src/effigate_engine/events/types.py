"""The event types and their exactly-once (dedupe) keys.

A dedupe key names one transition: the outbox stores at most one event per key and tenant,
so re-sending, recomputing or re-evaluating a change never writes a second event for it.
"""

from __future__ import annotations

from typing import Final

SLA_WARNING: Final = "SLA_WARNING"
SLA_ESCALATION: Final = "SLA_ESCALATION"
SLA_BREACHED: Final = "SLA_BREACHED"
SLA_MET: Final = "SLA_MET"
BUCKET_LOW_BALANCE: Final = "BUCKET_LOW_BALANCE"
BUCKET_EXHAUSTED: Final = "BUCKET_EXHAUSTED"
INVOICE_ISSUED: Final = "INVOICE_ISSUED"
INVOICE_PAID: Final = "INVOICE_PAID"
INVOICE_OVERDUE: Final = "INVOICE_OVERDUE"

#: Every event type, in the order the documentation lists them.
EVENT_TYPES: Final[tuple[str, ...]] = (
    SLA_WARNING,
    SLA_ESCALATION,
    SLA_BREACHED,
    SLA_MET,
    BUCKET_LOW_BALANCE,
    BUCKET_EXHAUSTED,
    INVOICE_ISSUED,
    INVOICE_PAID,
    INVOICE_OVERDUE,
)

#: The SLA transition kinds as they appear in dedupe keys.
SLA_KINDS: Final[dict[str, str]] = {
    SLA_WARNING: "WARNING",
    SLA_ESCALATION: "ESCALATION",
    SLA_BREACHED: "BREACHED",
    SLA_MET: "MET",
}

#: The invoice states as they appear in dedupe keys.
INVOICE_STATES: Final[dict[str, str]] = {
    INVOICE_ISSUED: "ISSUED",
    INVOICE_PAID: "PAID",
    INVOICE_OVERDUE: "OVERDUE",
}


def cloudevent_type(event_type: str) -> str:
    """The CloudEvents ``type`` of an event type: ``SLA_BREACHED`` ->
    ``com.effigate.sla.breached``, ``BUCKET_LOW_BALANCE`` -> ``com.effigate.bucket.low_balance``
    (the first word is the domain, the rest the transition)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    domain, _, transition = event_type.lower().partition("_")
    return f"com.effigate.{domain}.{transition}"


def sla_key(ticket_id: str, metric: str, event_type: str, step: int | None = None) -> str:
    """``sla:<ticket>:<metric>:WARNING|BREACHED|MET`` or ``sla:<ticket>:<metric>:ESCALATION:<step>``
    (``step``: the escalation step, 1-based, for ``SLA_ESCALATION`` only)."""
    kind = SLA_KINDS.get(event_type)
    if kind is None:
        raise ValueError(f"event type {event_type!r} is not an SLA event type")
    if event_type == SLA_ESCALATION:
        if step is None or step < 1:
            raise ValueError(f"an escalation key needs a step >= 1, got {step!r}")
        return f"sla:{ticket_id}:{metric}:{kind}:{step}"
    if step is not None:
        raise ValueError(f"only escalations have a step; {event_type} got {step!r}")
    return f"sla:{ticket_id}:{metric}:{kind}"


def bucket_key(contract_id: int, event_type: str, crossing: str) -> str:
    """``bucket:<contract>:LOW_BALANCE|EXHAUSTED:<crossing>``: ``crossing`` names the ledger
    entry whose drawdown crossed the threshold (``ledger:<entry id>``), so each crossing is one
    event and a crossing after a top-up is a new one."""
    if event_type not in (BUCKET_LOW_BALANCE, BUCKET_EXHAUSTED):
        raise ValueError(f"event type {event_type!r} is not a bucket event type")
    return f"bucket:{contract_id}:{event_type.removeprefix('BUCKET_')}:{crossing}"


def invoice_key(invoice_id: int, event_type: str) -> str:
    """``invoice:<invoice>:ISSUED|PAID|OVERDUE``: one event per invoice and state."""
    state = INVOICE_STATES.get(event_type)
    if state is None:
        raise ValueError(f"event type {event_type!r} is not an invoice event type")
    return f"invoice:{invoice_id}:{state}"
