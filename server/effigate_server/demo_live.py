"""Live SLA tickets for the demo: warnings, escalations and breaches in the next minutes.

The demo's month (October 2026) is history; these tickets are not. Each run creates a few
tickets of the client "Litware (live SLA)" under the policy ``live-demo`` (London 24x7; first
response in 10 minutes, warning at half of it, the service desk told at 80 %, the service
manager 2 minutes past the deadline), created 0 to 4 minutes ago: while the server runs, the
firing loop announces their transitions one by one, and ``effigate events tail`` prints them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from effigate.v1 import billing_pb2, catalog_pb2, tickets_pb2
from effigate_client import AsyncClient, to_timestamp

POLICY_NAME = "live-demo"
CLIENT_NAME = "Litware (live SLA)"
CALENDAR = "london-24x7"
POLICY = {
    "rules": [
        {
            "match": {},
            "metrics": {
                "FIRST_RESPONSE": {
                    "target": "10m",
                    "calendar": CALENDAR,
                    "warning": "0.5",
                    "escalation": [
                        {"at_fraction": "0.8", "notify": "queue:service-desk"},
                        {"after_deadline": "2m", "notify": "role:service-manager"},
                    ],
                }
            },
        }
    ]
}
#: Minutes before now the live tickets were raised: warnings 1..5 minutes from now, breaches
#: 6..10, the manager's step 8..12.
RAISED_MINUTES_AGO = (4, 3, 2, 1, 0)


@dataclass(frozen=True)
class LiveTickets:
    """The live tickets created and when the first and last breach fall."""

    ids: list[str]
    first_breach: datetime
    last_breach: datetime

    def report(self) -> str:
        return (
            f"Live SLA: {len(self.ids)} tickets of {CLIENT_NAME!r} ({self.ids[0]} …"
            f" {self.ids[-1]}) warn, escalate and breach"
            f" between now and {self.last_breach:%H:%M} UTC"
            f" (first breach {self.first_breach:%H:%M}); watch them: effigate events tail"
        )


async def _policy_and_contract(c: AsyncClient) -> int:
    """The live policy's contract (created on first use)."""
    calendars = {
        k.name: k.id
        for k in (await c.catalog.ListCalendars(catalog_pb2.ListCalendarsRequest())).calendars
    }
    policies = {
        p.name: p.id
        for p in (await c.catalog.ListPolicies(catalog_pb2.ListPoliciesRequest())).policies
    }
    if POLICY_NAME not in policies:
        policies[POLICY_NAME] = (
            await c.catalog.CreatePolicy(
                catalog_pb2.CreatePolicyRequest(
                    name=POLICY_NAME, calendar_id=calendars[CALENDAR], body_json=json.dumps(POLICY)
                )
            )
        ).id
    listed = await c.contracts.ListContracts(billing_pb2.ListContractsRequest())
    for contract in listed.contracts:
        if contract.sla_policy_id == policies[POLICY_NAME]:
            return contract.id
    client_id = (await c.catalog.CreateClient(catalog_pb2.CreateClientRequest(name=CLIENT_NAME))).id
    contract = await c.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=client_id,
            contract_type="HOURLY",
            currency="USD",
            starts_on="2026-01-01",
            calendar_id=calendars[CALENDAR],
            sla_policy_id=policies[POLICY_NAME],
        )
    )
    # a draft is enough: tickets name it for its SLA policy; nothing of it is billed
    return contract.id


async def seed_live_tickets(c: AsyncClient, now: datetime | None = None) -> LiveTickets:
    """Create the live tickets (new ids each run) raised :data:`RAISED_MINUTES_AGO` ago."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    contract_id = await _policy_and_contract(c)
    contract = await c.contracts.GetContract(
        billing_pb2.GetContractRequest(contract_id=contract_id)
    )
    run = uuid.uuid4().hex[:6].upper()
    ids = []
    for n, minutes in enumerate(RAISED_MINUTES_AGO, start=1):
        ticket_id = f"LIVE-{run}-{n}"
        await c.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=ticket_id,
                client_id=contract.client_id,
                contract_id=contract_id,
                priority="HIGH",
                created_at=to_timestamp(now - timedelta(minutes=minutes)),
            )
        )
        ids.append(ticket_id)
    raised = [now - timedelta(minutes=m) for m in RAISED_MINUTES_AGO]
    return LiveTickets(
        ids, min(raised) + timedelta(minutes=10), max(raised) + timedelta(minutes=10)
    )
