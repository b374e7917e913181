"""Every read call of every service answers the same over Connect (HTTP/JSON and binary
protobuf, from any HTTP client, curl included) as over gRPC, on the demo MSP's data."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from effigate.v1 import (
    billing_pb2,
    catalog_pb2,
    common_pb2,
    events_pb2,
    routing_pb2,
    sla_pb2,
    tickets_pb2,
    webhooks_pb2,
)
from effigate_client import Client
from effigate_client.client import evaluate_requests, ingest_chunks, ipc_bytes, ipc_table
from effigate_engine.store.events import NewEvent, append_events
from effigate_engine.store.tenant import TenantKey, tenant_transaction
from effigate_server.app import SERVICES
from effigate_server.demo import NOW, PERIOD
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant
from tests.store.helpers import Database
from tests.web.conftest import Demo
from tests.web.connect_http import call_json, envelope, frames, headers, path

ROOT = Path(__file__).resolve().parents[2]
#: How long a webhook delivery to an unreachable host may take to be given up, in seconds.
DELIVERY_WAIT_S = 60.0

#: The calls that change nothing, by service: each must answer alike over both protocols.
READ_METHODS = {
    "CatalogService": [
        "ListClients",
        "GetCalendar",
        "ListCalendars",
        "ComputeDeadline",
        "GetPolicy",
        "ListPolicies",
    ],
    "TicketService": ["GetTicket", "GetTicketStatus", "GetTicketTimeline", "ListTickets"],
    "SlaService": ["Evaluate"],
    "ReportService": ["Compliance", "Percentiles", "RecommendedTargets", "Replay"],
    "ContractService": ["GetContract", "ListContracts"],
    "BillingService": [
        "Classify",
        "PreviewInvoice",
        "GetInvoice",
        "ListInvoices",
        "GetBucketBalance",
        "ReplayBilling",
    ],
    "RoutingService": [
        "ListQueues",
        "ListAgents",
        "GetRoutingRules",
        "QueueDepth",
        "AgentWorkload",
        "OldestUnassigned",
        "ReplayRouting",
    ],
    "WebhookService": ["ListWebhookEndpoints", "ListWebhookDeliveries"],
}
#: The unary calls that change state (tested over gRPC; over Connect they run the same code).
WRITE_METHODS = {
    "CatalogService": [
        "CreateClient",
        "CreateCalendar",
        "UpdateCalendar",
        "DeleteCalendar",
        "CreatePolicy",
        "UpdatePolicy",
        "DeletePolicy",
    ],
    "TicketService": ["CreateTicket", "RecordEvent"],
    "SlaService": ["Recompute"],
    "RateCardService": ["CreateRateCard", "PublishRateCard"],
    "ContractService": [
        "CreateContract",
        "ActivateContract",
        "AmendContract",
        "AddMilestone",
        "ApproveMilestone",
        "AddDeliverable",
        "SignOffDeliverable",
        "RecordUnitCount",
    ],
    "TimeLogService": ["IngestTimeLogs", "ApproveTimeLogs", "ClosePeriod"],
    "BillingService": [
        "GenerateInvoice",
        "ReviewInvoice",
        "IssueInvoice",
        "VoidInvoice",
        "RecordPayment",
        "CreateCreditNote",
        "MarkOverdue",
    ],
    "RoutingService": ["PutQueues", "PutAgents", "PutRoutingRules", "Route", "Assign"],
    "WebhookService": [
        "CreateWebhookEndpoint",
        "UpdateWebhookEndpoint",
        "DeleteWebhookEndpoint",
        "RotateWebhookSecret",
        "RedeliverWebhook",
    ],
}
#: Attribute of each service's stub on the Python client.
STUBS = {
    "CatalogService": "catalog",
    "TicketService": "tickets",
    "SlaService": "sla",
    "ReportService": "reports",
    "RateCardService": "rate_cards",
    "ContractService": "contracts",
    "TimeLogService": "time_logs",
    "BillingService": "billing",
    "RoutingService": "routing",
    "WebhookService": "webhooks",
    "EventService": "events",
}


def ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def unary_methods() -> set[tuple[str, str]]:
    """Every call with one request and one answer, from the proto descriptors."""
    return {
        (s.name, m.name)
        for s in SERVICES
        for m in s.methods
        if not m.client_streaming and not m.server_streaming
    }


def listed(methods: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {(service, name) for service, names in methods.items() for name in names}


def test_every_unary_call_is_classified_as_a_read_or_a_write() -> None:
    """A new call must be added to one of the lists (a read one then to the parity test)."""
    reads, writes = listed(READ_METHODS), listed(WRITE_METHODS)
    assert not reads & writes
    assert reads | writes == unary_methods()
    assert set(STUBS) == {s.name for s in SERVICES}


def read_requests(staff: Client, demo: Demo) -> dict[tuple[str, str], Message]:
    """A request of every read call, on the demo MSP's own ids, evaluated at the demo's
    fixed instant where a call would otherwise read the clock."""
    summary = demo.summary
    now = ts(NOW)
    calendars = staff.catalog.ListCalendars(catalog_pb2.ListCalendarsRequest()).calendars
    calendar = calendars[0].id
    policy = summary.policy_id
    ticket = staff.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id=summary.sample_ticket))
    invoices = staff.billing.ListInvoices(billing_pb2.ListInvoicesRequest()).invoices
    rules = staff.routing.GetRoutingRules(routing_pb2.GetRoutingRulesRequest())
    hourly, bucket = summary.contracts["HOURLY"], summary.contracts["BUCKET"]
    start = datetime(2026, 10, 6, 9, tzinfo=UTC)
    logs = pa.table(
        {
            "log_id": ["A", "B"],
            "support_level": pa.array(["L2", "L1"]).dictionary_encode(),
            "job_type": pa.array(["support", "support"]).dictionary_encode(),
            "priority": pa.array(["MEDIUM", "HIGH"]).dictionary_encode(),
            "start": pa.array([start, start + timedelta(hours=9)], pa.timestamp("s", tz="UTC")),
            "end": pa.array(
                [start + timedelta(minutes=50), start + timedelta(hours=11)],
                pa.timestamp("s", tz="UTC"),
            ),
            "billable_type": pa.array(["BILLABLE", "BILLABLE"]).dictionary_encode(),
            "approved": [True, True],
        }
    )
    inputs = [
        sla_pb2.TicketInput(
            ticket_id=f"X-{i}",
            priority=ticket.priority,
            created_at=ts(NOW - timedelta(hours=4 * i + 1)),
            client_id=str(ticket.client_id),
        )
        for i in range(3)
    ]
    report = sla_pb2.ReportRequest(policy_id=policy, now=now, group_by=["priority"])
    return {
        ("CatalogService", "ListClients"): catalog_pb2.ListClientsRequest(),
        ("CatalogService", "GetCalendar"): catalog_pb2.GetCalendarRequest(calendar_id=calendar),
        ("CatalogService", "ListCalendars"): catalog_pb2.ListCalendarsRequest(),
        ("CatalogService", "ComputeDeadline"): catalog_pb2.ComputeDeadlineRequest(
            calendar_id=calendar, start=now, business_seconds=4 * 3600
        ),
        ("CatalogService", "GetPolicy"): catalog_pb2.GetPolicyRequest(policy_id=policy),
        ("CatalogService", "ListPolicies"): catalog_pb2.ListPoliciesRequest(),
        ("TicketService", "GetTicket"): tickets_pb2.GetTicketRequest(ticket_id=ticket.id),
        ("TicketService", "GetTicketStatus"): tickets_pb2.GetTicketStatusRequest(
            ticket_id=ticket.id, at=now
        ),
        ("TicketService", "GetTicketTimeline"): tickets_pb2.GetTicketTimelineRequest(
            ticket_id=ticket.id, until=now
        ),
        ("TicketService", "ListTickets"): tickets_pb2.ListTicketsRequest(limit=500),
        ("SlaService", "Evaluate"): sla_pb2.EvaluateRequest(
            policy_id=policy, now=now, tickets=inputs
        ),
        ("ReportService", "Compliance"): report,
        ("ReportService", "Percentiles"): report,
        ("ReportService", "RecommendedTargets"): sla_pb2.ReportRequest(
            policy_id=policy, now=now, days=60
        ),
        ("ReportService", "Replay"): sla_pb2.ReplayRequest(
            current_policy_id=policy, proposed_policy_id=policy, now=now, group_by=["priority"]
        ),
        ("ContractService", "GetContract"): billing_pb2.GetContractRequest(contract_id=hourly),
        ("ContractService", "ListContracts"): billing_pb2.ListContractsRequest(),
        ("BillingService", "Classify"): billing_pb2.ClassifyRequest(
            contract_id=hourly, arrow_ipc=ipc_bytes(logs)
        ),
        ("BillingService", "PreviewInvoice"): billing_pb2.PeriodRequest(
            contract_id=hourly, period_start=PERIOD
        ),
        ("BillingService", "GetInvoice"): billing_pb2.InvoiceRequest(invoice_id=invoices[0].id),
        ("BillingService", "ListInvoices"): billing_pb2.ListInvoicesRequest(),
        ("BillingService", "GetBucketBalance"): billing_pb2.BucketBalanceRequest(
            contract_id=bucket, at=now
        ),
        ("BillingService", "ReplayBilling"): billing_pb2.ReplayBillingRequest(
            contract_ids=[hourly],
            period_from=PERIOD,
            period_to=PERIOD,
            proposed_terms_json=json.dumps({"sla_credits": None}),
        ),
        ("RoutingService", "ListQueues"): routing_pb2.ListQueuesRequest(),
        ("RoutingService", "ListAgents"): routing_pb2.ListAgentsRequest(),
        ("RoutingService", "GetRoutingRules"): routing_pb2.GetRoutingRulesRequest(),
        ("RoutingService", "QueueDepth"): routing_pb2.QueueDepthRequest(),
        ("RoutingService", "AgentWorkload"): routing_pb2.AgentWorkloadRequest(now=now),
        ("RoutingService", "OldestUnassigned"): routing_pb2.OldestUnassignedRequest(now=now),
        ("RoutingService", "ReplayRouting"): routing_pb2.ReplayRoutingRequest(
            proposed_version=rules.version
        ),
    }


def webhook_requests(
    tenant_client: Client, tenant: Tenant, db: Database
) -> dict[tuple[str, str], Message]:
    """The webhook reads, on a tenant of their own (the demo has no endpoint, and one there
    would be sent the demo's events): an endpoint that cannot be reached, given one attempt,
    and an event, whose delivery is then dead, so the lists no longer change."""
    created = tenant_client.webhooks.CreateWebhookEndpoint(
        webhooks_pb2.CreateWebhookEndpointRequest(
            url="https://hooks.invalid/effigate", description="parity", max_attempts=1
        )
    )
    deliveries = webhooks_pb2.ListWebhookDeliveriesRequest(endpoint_id=created.endpoint.id)

    async def append() -> None:
        conn = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(conn, TenantKey(tenant.id, tenant.token)):
                await append_events(
                    conn,
                    [
                        NewEvent(
                            type="SLA_BREACHED",
                            dedupe_key=f"parity:{uuid.uuid4()}",
                            subject="INC-1",
                            occurred_at=NOW,
                            data={"ticket_id": "INC-1", "metric": "RESOLUTION"},
                        )
                    ],
                )
        finally:
            await conn.close()

    asyncio.run(append())
    deadline = time.monotonic() + DELIVERY_WAIT_S
    dead = webhooks_pb2.WEBHOOK_DELIVERY_STATE_DEAD
    while True:
        listed = tenant_client.webhooks.ListWebhookDeliveries(deliveries).deliveries
        if listed and all(d.state == dead for d in listed):
            break
        assert time.monotonic() < deadline, f"the delivery did not fail: {listed}"
        time.sleep(0.2)
    return {
        ("WebhookService", "ListWebhookEndpoints"): webhooks_pb2.ListWebhookEndpointsRequest(),
        ("WebhookService", "ListWebhookDeliveries"): deliveries,
    }


def test_every_read_call_answers_the_same_over_connect_json_as_over_grpc(
    service: ServiceProcess, demo: Demo, tenant: Tenant, client: Client, db: Database
) -> None:
    assert service.http_url is not None
    with Client(service.address, demo.token, timeout=120) as staff:
        requests = {
            key: (staff, demo.token, request) for key, request in read_requests(staff, demo).items()
        }
        requests |= {
            key: (client, tenant.token, request)
            for key, request in webhook_requests(client, tenant, db).items()
        }
        assert set(requests) == listed(READ_METHODS)
        empty = []
        for (name, method), (caller, token, request) in sorted(requests.items()):
            expected = getattr(getattr(caller, STUBS[name]), method)(request)
            answered = call_json(service.http_url, token, name, method, request)
            assert answered == expected, f"{name}/{method}"
            if answered == type(answered)():
                empty.append(method)
    # the demo's data makes each answer non-trivial (a default message would prove little)
    assert empty == []


def test_a_binary_protobuf_call_answers_the_same_bytes_as_grpc(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None
    request = tickets_pb2.GetTicketTimelineRequest(
        ticket_id=demo.summary.sample_ticket, until=ts(NOW)
    )
    with Client(service.address, demo.token, timeout=120) as staff:
        expected = staff.tickets.GetTicketTimeline(request)
    answer = httpx.post(
        service.http_url + path("TicketService", "GetTicketTimeline"),
        content=request.SerializeToString(),
        headers=headers(demo.token, "application/proto"),
        timeout=120,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/proto"
    assert tickets_pb2.TicketTimeline.FromString(answer.content) == expected
    assert answer.content == expected.SerializeToString(deterministic=True)


def readme_curl() -> str:
    """The curl example of the README's HTTP/JSON section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### HTTP/JSON") :]
    return re.findall(r"```sh\n(.*?)```", section, re.S)[0]


def test_the_readme_curl_example_answers_what_grpc_answers(
    service: ServiceProcess, demo: Demo
) -> None:
    """The README's curl command, as written but for the port, the token and the ticket id
    (the demo of ``make run`` is bigger), prints the JSON of the gRPC answer."""
    assert service.http_url is not None
    command = readme_curl()
    assert command.lstrip().startswith("curl ") and "$EFFIGATE_TOKEN" in command
    ticket = demo.summary.sample_ticket
    command = command.replace("http://127.0.0.1:8080", service.http_url)
    command = command.replace("INC-100000", ticket)
    done = subprocess.run(
        ["bash", "-ec", command],
        capture_output=True,
        text=True,
        env={**os.environ, "EFFIGATE_TOKEN": demo.token},
        timeout=60,
        check=True,
    )
    sent = json.loads(re.search(r"-d '(\{.*?\})'", command, re.S).group(1))  # type: ignore[union-attr]
    request = json_format.ParseDict(sent, tickets_pb2.GetTicketStatusRequest())
    assert request.ticket_id == ticket and request.HasField("at")
    with Client(service.address, demo.token, timeout=120) as staff:
        expected = staff.tickets.GetTicketStatus(request)
    answered = json_format.Parse(done.stdout, tickets_pb2.TicketStatus())
    assert answered == expected and answered.metrics


def test_the_literal_curl_command_of_a_status_call(service: ServiceProcess, demo: Demo) -> None:
    assert service.http_url is not None
    request = tickets_pb2.GetTicketStatusRequest(
        ticket_id=demo.summary.sample_ticket, at=ts(NOW + timedelta(days=1))
    )
    body = json_format.MessageToJson(request, indent=None)
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {demo.token}",
            f"{service.http_url}/effigate.v1.TicketService/GetTicketStatus",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    with Client(service.address, demo.token, timeout=120) as staff:
        expected = staff.tickets.GetTicketStatus(request)
    assert json_format.Parse(done.stdout, tickets_pb2.TicketStatus()) == expected


def watched(http_url: str, token: str, request: Message, count: int) -> list[events_pb2.Event]:
    """The first ``count`` events of a watch over Connect streaming JSON."""
    body = envelope(json_format.MessageToJson(request).encode())
    got: list[events_pb2.Event] = []
    with httpx.stream(
        "POST",
        http_url + path("EventService", "WatchEvents"),
        content=body,
        headers={**headers(token, "application/connect+json"), "Connect-Timeout-Ms": "20000"},
        timeout=60,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/connect+json"
        buffer = b""
        for chunk in answer.iter_bytes():
            buffer += chunk
            complete = _complete_frames(buffer)
            for flags, payload in frames(buffer[:complete]):
                assert flags == 0, payload  # an end-of-stream frame here would be an error
                got.append(json_format.Parse(payload, events_pb2.Event()))
            buffer = buffer[complete:]
            if len(got) >= count:
                break
    return got[:count]


def _complete_frames(buffer: bytes) -> int:
    """How many leading bytes of ``buffer`` are whole frames."""
    at = 0
    while len(buffer) - at >= 5:
        size = int.from_bytes(buffer[at + 1 : at + 5], "big")
        if len(buffer) - at - 5 < size:
            break
        at += 5 + size
    return at


def test_a_server_stream_over_connect_streams_the_same_events_as_grpc(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None
    request = events_pb2.WatchEventsRequest()
    count = 5
    with Client(service.address, demo.token, timeout=None) as staff:
        stream = staff.events.WatchEvents(request, timeout=20)
        expected = []
        for event in stream:
            expected.append(event)
            if len(expected) == count:
                stream.cancel()
                break
    assert len(expected) == count, "the demo raised events"
    assert watched(service.http_url, demo.token, request, count) == expected


def test_a_portal_watch_over_connect_streams_only_its_clients_events(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None
    (client_a, _), _ = demo.clients
    request = events_pb2.WatchEventsRequest()
    with Client(service.address, demo.portal_tokens[0], timeout=None) as portal:
        stream = portal.events.WatchEvents(request, timeout=20)
        expected = []
        for event in stream:
            expected.append(event)
            if len(expected) == 3:
                stream.cancel()
                break
    assert len(expected) == 3, "the demo raised events of its first client"
    got = watched(service.http_url, demo.portal_tokens[0], request, 3)
    assert got == expected and {e.client_id for e in got} == {client_a}


def test_a_finite_server_stream_ends_with_its_status_in_the_last_frame(
    service: ServiceProcess, tenant: Tenant
) -> None:
    """A watch cut by its deadline: the end-of-stream frame carries the Connect error."""
    assert service.http_url is not None
    body = envelope(b"{}")
    answer = httpx.post(
        service.http_url + path("EventService", "WatchEvents"),
        content=body,
        headers={**headers(tenant.token, "application/connect+json"), "Connect-Timeout-Ms": "300"},
        timeout=30,
    )
    assert answer.status_code == 200
    (flags, payload), *_ = frames(answer.content)
    assert flags == 2  # end of stream
    assert json.loads(payload)["error"]["code"] == "deadline_exceeded"


def test_a_client_stream_over_connect_ingests_like_grpc(
    service: ServiceProcess, tenant: Tenant, client: Client
) -> None:
    """Over HTTP/1.1 a Connect client stream sends its enveloped messages in one request
    body; the answer is one message frame and the end-of-stream frame."""
    assert service.http_url is not None
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    created = datetime(2026, 11, 20, 9, tzinfo=UTC)
    table = pa.table(
        {
            "id": ["S-1", "S-2", "S-3"],
            "client_id": [acme] * 3,
            "contract_id": pa.nulls(3, pa.int64()),
            "priority": ["HIGH", "LOW", "LOW"],
            "status": ["OPEN"] * 3,
            "created_at": pa.array(
                [created, created, datetime(2150, 1, 1, tzinfo=UTC)],
                pa.timestamp("us", tz="UTC"),
            ),
            "first_response_at": pa.nulls(3, pa.timestamp("us", tz="UTC")),
            "resolved_at": pa.nulls(3, pa.timestamp("us", tz="UTC")),
        }
    )
    chunks = list(ingest_chunks(table, 2, skip_invalid_rows=True))
    body = b"".join(envelope(chunk.SerializeToString()) for chunk in chunks)
    answer = httpx.post(
        service.http_url + path("TicketService", "IngestTickets"),
        content=body,
        headers=headers(tenant.token, "application/connect+proto"),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (flags, payload), (end_flags, end) = frames(answer.content)
    assert (flags, end_flags) == (0, 2) and "error" not in json.loads(end)
    summary = common_pb2.IngestSummary.FromString(payload)
    assert (summary.received, summary.inserted, summary.rejected) == (3, 2, 1)
    assert [r.id for r in summary.rejected_rows] == ["S-3"]
    again = client.ingest_tickets(table, chunk_rows=2, skip_invalid_rows=True)
    assert (again.received, again.unchanged, again.rejected) == (3, 2, 1)
    assert again.rejected_rows == summary.rejected_rows
    stored = client.tickets.ListTickets(tickets_pb2.ListTicketsRequest()).tickets
    assert [t.id for t in stored] == ["S-1", "S-2"]


def test_a_bidirectional_stream_over_connect_works_half_duplex(
    service: ServiceProcess, demo: Demo
) -> None:
    """Over HTTP/1.1 a bidirectional call is half-duplex: every request, then every answer
    (full duplex needs gRPC, or Connect over HTTP/2)."""
    assert service.http_url is not None
    created = [NOW - timedelta(hours=h) for h in (1, 5, 30, 200)]
    table = pa.table(
        {
            "ticket_id": [f"E-{i}" for i in range(4)],
            "priority": ["HIGH", "MEDIUM", "LOW", "HIGH"],
            "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
        }
    )
    policy = demo.summary.policy_id
    with Client(service.address, demo.token, timeout=120) as staff:
        expected = staff.evaluate_arrow(policy, table, now=NOW, chunk_rows=2)
    requests = list(evaluate_requests(table, policy, NOW, 2, None, []))
    answer = httpx.post(
        service.http_url + path("SlaService", "EvaluateStream"),
        content=b"".join(envelope(r.SerializeToString()) for r in requests),
        headers=headers(demo.token, "application/connect+proto"),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    *messages, (end_flags, end) = frames(answer.content)
    assert end_flags == 2 and "error" not in json.loads(end)
    replies = [sla_pb2.EvaluateChunk.FromString(payload) for _, payload in messages]
    assert [r.sequence for r in replies] == [0, 1]
    answered = pa.concat_tables(ipc_table(r.arrow_ipc) for r in replies)
    assert answered.equals(expected) and answered.num_rows > 0
