"""SLA events through real server processes, on the wall clock, read through WatchEvents.

A 24x7 policy with a 12-second first-response target (business seconds), warning at half of it
and a ladder of two steps (at 75 %; 4 s past the deadline): a ticket raised now warns at +6 s,
escalates at +9 s, breaches at +12 s and escalates again at +16 s. The server that scheduled
it is killed (SIGKILL, no goodbye) before any of that; a new server process started after all
of it was due announces each transition once, and a second restart adds nothing.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime

from effigate.v1 import billing_pb2, catalog_pb2, events_pb2, tickets_pb2
from effigate_client import Client, to_timestamp
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant
from tests.store.helpers import Database

ALWAYS = {
    "timezone": "UTC",
    "weekly": [
        {"weekday": d, "start": "00:00", "end": "24:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ],
}
POLICY = {
    "rules": [
        {
            "match": {},
            "metrics": {
                "FIRST_RESPONSE": {
                    "target": 12,
                    "calendar": "always",
                    "warning": "0.5",
                    "escalation": [
                        {"at_fraction": "0.75", "notify": "queue:desk"},
                        {"after_deadline": "4s", "notify": "role:manager"},
                    ],
                }
            },
        }
    ]
}


def _setup(client: Client) -> tuple[int, int]:
    calendar = client.catalog.CreateCalendar(
        catalog_pb2.CreateCalendarRequest(name="always", body_json=json.dumps(ALWAYS))
    ).id
    policy = client.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name="fast", calendar_id=calendar, body_json=json.dumps(POLICY)
        )
    ).id
    client_id = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Contoso")).id
    contract = client.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=client_id,
            contract_type="HOURLY",
            currency="USD",
            starts_on="2026-01-01",
            calendar_id=calendar,
            sla_policy_id=policy,
        )
    ).id
    return client_id, contract


def _collect(address: str, token: str, seen: list, stop: threading.Event) -> None:
    import grpc

    with Client(address, token, timeout=None) as client:
        try:
            for event in client.watch_events(
                types=["SLA_WARNING", "SLA_ESCALATION", "SLA_BREACHED"], reconnect=False
            ):
                data = json.loads(event.cloudevent_json)
                seen.append(
                    (
                        events_pb2.EventType.Name(event.type),
                        event.subject,
                        data["data"].get("escalation_step"),
                        event.occurred_at.ToSeconds(),
                        time.time(),
                    )
                )
                if stop.is_set():
                    return
        except grpc.RpcError:
            return


def test_a_killed_server_restarted_later_announces_each_transition_once(
    db: Database, tenant: Tenant
) -> None:
    first = ServiceProcess.start(db.app)
    try:
        with Client(first.address, tenant.token, timeout=60) as client:
            client_id, contract = _setup(client)
            raised = datetime.now(UTC).replace(microsecond=0)
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(
                    id="INC-K1",
                    client_id=client_id,
                    contract_id=contract,
                    priority="HIGH",
                    created_at=to_timestamp(raised),
                )
            )
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    # everything falls due while no server runs
    time.sleep(max(0.0, raised.timestamp() + 18 - time.time()))
    second = ServiceProcess.start(db.app)
    seen: list = []
    stop = threading.Event()
    try:
        reader = threading.Thread(
            target=_collect, args=(second.address, tenant.token, seen, stop), daemon=True
        )
        reader.start()
        deadline = time.time() + 20
        while len(seen) < 4 and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        second.stop()
    third = ServiceProcess.start(db.app)
    again: list = []
    try:
        stop = threading.Event()
        reader = threading.Thread(
            target=_collect, args=(third.address, tenant.token, again, stop), daemon=True
        )
        reader.start()
        time.sleep(3.0)
    finally:
        stop.set()
        third.stop()
    base = int(raised.timestamp())
    got = sorted((t, s, step, due - base) for t, s, step, due, _ in seen)
    assert got == [
        ("SLA_BREACHED", "INC-K1", None, 12),
        ("SLA_ESCALATION", "INC-K1", 1, 9),
        ("SLA_ESCALATION", "INC-K1", 2, 16),
        ("SLA_WARNING", "INC-K1", None, 6),
    ], seen
    assert len(again) == len(seen) == 4  # the stream from the start: the same four, no more


def test_transitions_arrive_within_a_second_of_their_instant(db: Database, tenant: Tenant) -> None:
    service = ServiceProcess.start(db.app)
    seen: list = []
    stop = threading.Event()
    try:
        with Client(service.address, tenant.token, timeout=60) as client:
            client_id, contract = _setup(client)
            reader = threading.Thread(
                target=_collect, args=(service.address, tenant.token, seen, stop), daemon=True
            )
            reader.start()
            raised = datetime.now(UTC).replace(microsecond=0)
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(
                    id="INC-L1",
                    client_id=client_id,
                    contract_id=contract,
                    priority="HIGH",
                    created_at=to_timestamp(raised),
                )
            )
            deadline = time.time() + 30
            while len(seen) < 4 and time.time() < deadline:
                time.sleep(0.2)
    finally:
        stop.set()
        service.stop()
    base = int(raised.timestamp())
    assert [(t, step, due - base) for t, _, step, due, _ in seen] == [
        ("SLA_WARNING", None, 6),
        ("SLA_ESCALATION", 1, 9),
        ("SLA_BREACHED", None, 12),
        ("SLA_ESCALATION", 2, 16),
    ]
    lateness = [arrived - due for _, _, _, due, arrived in seen]
    assert all(0 <= late < 1.0 for late in lateness), lateness
