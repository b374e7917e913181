"""SLA through the API: tickets and events, typed and streamed evaluation, recompute, reports,
errors, portal isolation, health and reflection — against a real server process."""

from __future__ import annotations

import json
import random
from datetime import UTC, timedelta

import grpc
import pyarrow as pa
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from effigate_client import Client, catalog_pb2, sla_pb2, tickets_pb2, to_timestamp
from effigate_engine import Calendar, CalendarSet, sla
from tests.e2e.support import SAMPLES, at, refused, standard_setup

NOW = at("2026-11-21T00:00+00:00")


def local_engine() -> tuple[sla.Policy, CalendarSet]:
    """The same policy and calendars, evaluated in this process (the reference)."""
    calendars = CalendarSet(
        [
            Calendar.load(SAMPLES / "calendars" / "sydney-business-hours.json"),
            Calendar.load(SAMPLES / "calendars" / "london-24x7.json"),
        ]
    )
    return sla.Policy.load(SAMPLES / "policies" / "standard-msp.json"), calendars


def rows_by_metric(results: pa.Table) -> dict[tuple[str, str], dict]:
    keep = ("status", "deadline", "elapsed_seconds", "remaining_seconds", "breach_seconds")
    out = {}
    for row in results.to_pylist():
        out[(row["ticket_id"], str(row["metric"]))] = {k: row[k] for k in keep}
    return out


def status_rows(metrics: list) -> dict[tuple[str, str], dict]:
    out = {}
    for m in metrics:
        out[(m.ticket_id, m.metric)] = {
            "status": m.status,
            "deadline": m.deadline.ToDatetime(tzinfo=UTC) if m.HasField("deadline") else None,
            "elapsed_seconds": m.elapsed_seconds,
            "remaining_seconds": m.remaining_seconds,
            "breach_seconds": m.breach_seconds if m.HasField("breach_seconds") else None,
        }
    return out


def test_health_and_reflection(service) -> None:
    with grpc.insecure_channel(service.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="effigate.v1.SlaService"), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
        names = {s.name for s in response.list_services_response.service}
    assert {"effigate.v1.BillingService", "effigate.v1.TicketService"} <= names


def test_ticket_events_fold_into_the_status_the_engine_computes(client: Client) -> None:
    ids = standard_setup(client)
    created = at("2026-11-17T23:00+00:00")  # Wed 10:00 in Sydney
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id="INC-7", client_id=ids.acme, priority="MEDIUM", created_at=to_timestamp(created)
        )
    )
    K = tickets_pb2
    events = [  # sent out of order on purpose: the fold sorts by time
        ("e3", K.RESUMED, "2026-11-18T22:00+00:00", {}),
        ("e1", K.RESPONDED, "2026-11-18T01:00+00:00", {}),
        ("e2", K.PAUSED, "2026-11-18T03:00+00:00", {"status": "WAITING_ON_CLIENT"}),
        ("e4", K.PRIORITY_CHANGED, "2026-11-18T23:00+00:00", {"priority": "HIGH"}),
        ("e5", K.RESOLVED, "2026-11-19T02:00+00:00", {}),
        ("e6", K.REOPENED, "2026-11-19T05:00+00:00", {}),
    ]
    for event_id, kind, when, extra in events:
        ticket = client.tickets.RecordEvent(
            tickets_pb2.RecordEventRequest(
                event_id=event_id,
                ticket_id="INC-7",
                kind=kind,
                occurred_at=to_timestamp(at(when)),
                **extra,
            )
        )
    assert ticket.status == "OPEN" and ticket.priority == "HIGH"
    assert ticket.first_response_at.ToDatetime(tzinfo=UTC) == at("2026-11-18T01:00+00:00")
    # the same event again changes nothing; the same id with other content is refused
    again = client.tickets.RecordEvent(
        tickets_pb2.RecordEventRequest(
            event_id="e5",
            ticket_id="INC-7",
            kind=K.RESOLVED,
            occurred_at=to_timestamp(at("2026-11-19T02:00+00:00")),
        )
    )
    assert again == ticket
    refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.tickets.RecordEvent,
        tickets_pb2.RecordEventRequest(
            event_id="e5", ticket_id="INC-7", kind=K.RESOLVED, occurred_at=to_timestamp(NOW)
        ),
    )
    reply = client.tickets.GetTicketStatus(
        tickets_pb2.GetTicketStatusRequest(
            ticket_id="INC-7", policy_id=ids.policy, at=to_timestamp(NOW)
        )
    )
    policy, calendars = local_engine()
    expected = sla.evaluate(
        pa.Table.from_pylist(
            [
                {
                    "ticket_id": "INC-7",
                    "priority": "HIGH",
                    "client_id": str(ids.acme),
                    "created_at": created,
                    "first_response_at": at("2026-11-18T01:00+00:00"),
                    "pauses": [
                        {
                            "start": at("2026-11-18T03:00+00:00"),
                            "end": at("2026-11-18T22:00+00:00"),
                            "status": "WAITING_ON_CLIENT",
                        },
                        {
                            "start": at("2026-11-19T02:00+00:00"),
                            "end": at("2026-11-19T05:00+00:00"),
                            "status": "RESOLVED",
                        },
                    ],
                }
            ],
            schema=sla.TICKETS,
        ),
        policy,
        calendars,
        NOW,
    )
    assert status_rows(list(reply.metrics)) == rows_by_metric(expected.results)
    assert {m.metric for m in reply.metrics} == {"FIRST_RESPONSE", "RESOLUTION"}


def generated_tickets(n: int, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    rows = []
    base = at("2026-11-01T00:00+00:00")
    for i in range(n):
        created = base + timedelta(minutes=rng.randrange(0, 28_000))
        row = {
            "ticket_id": f"G-{i}",
            "priority": rng.choice(["P1", "HIGH", "MEDIUM", "LOW"]),
            "after_hours": rng.random() < 0.3,
            "created_at": created,
            "pauses": [],
        }
        if rng.random() < 0.7:
            row["first_response_at"] = created + timedelta(minutes=rng.randrange(1, 900))
        if rng.random() < 0.4:
            start = created + timedelta(minutes=rng.randrange(1, 2000))
            end = start + timedelta(minutes=rng.randrange(1, 2000))
            row["pauses"] = [{"start": start, "end": end, "status": "WAITING_ON_CLIENT"}]
        if rng.random() < 0.5:
            row["resolved_at"] = created + timedelta(minutes=rng.randrange(60, 9000))
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=sla.TICKETS)


def test_typed_and_streamed_evaluation_agree_with_the_engine(client: Client) -> None:
    ids = standard_setup(client)
    tickets = generated_tickets(3_000)
    policy, calendars = local_engine()
    expected = rows_by_metric(sla.evaluate(tickets, policy, calendars, NOW).results)
    streamed = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=700)
    assert rows_by_metric(streamed) == expected
    small = tickets.slice(0, 200).to_pylist()
    request = sla_pb2.EvaluateRequest(policy_id=ids.policy, now=to_timestamp(NOW))
    for row in small:
        t = request.tickets.add(
            ticket_id=row["ticket_id"],
            priority=row["priority"],
            after_hours=row["after_hours"],
            created_at=to_timestamp(row["created_at"]),
        )
        for name in ("first_response_at", "resolved_at"):
            if row[name] is not None:
                getattr(t, name).CopyFrom(to_timestamp(row[name]))
        for p in row["pauses"]:
            t.pauses.add(
                start=to_timestamp(p["start"]), end=to_timestamp(p["end"]), status=p["status"]
            )
    typed = status_rows(list(client.sla.Evaluate(request).results))
    wanted = {k: v for k, v in expected.items() if int(k[0][2:]) < 200}
    assert typed == wanted


def test_stream_refuses_bad_chunks_naming_them(client: Client) -> None:
    ids = standard_setup(client)

    def chunks():
        yield sla_pb2.EvaluateChunk(policy_id=ids.policy, arrow_ipc=b"not arrow", sequence=0)

    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT, lambda: list(client.sla.EvaluateStream(chunks()))
    )
    assert "chunk[0].arrow_ipc" in details


def test_recompute_records_each_breach_once_and_reports(client: Client) -> None:
    ids = standard_setup(client)
    for i in range(30):
        created = at("2026-11-02T22:00+00:00") + timedelta(hours=7 * i)
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=f"R-{i}",
                client_id=ids.acme if i % 2 else ids.globex,
                priority=["CRITICAL", "HIGH", "MEDIUM", "LOW"][i % 4],
                created_at=to_timestamp(created),
            )
        )
        if i % 3 == 0:
            client.tickets.RecordEvent(
                tickets_pb2.RecordEventRequest(
                    event_id=f"R-{i}:r",
                    ticket_id=f"R-{i}",
                    kind=tickets_pb2.RESPONDED,
                    occurred_at=to_timestamp(created + timedelta(hours=1)),
                )
            )
    first = client.sla.Recompute(
        sla_pb2.RecomputeRequest(policy_id=ids.policy, now=to_timestamp(NOW))
    )
    assert first.tickets == 30 and first.new_breaches > 0
    # two metrics per ticket, three for the 8 critical ones (resolution plan)
    assert sum(c.count for c in first.counts) == 30 * 2 + 8
    second = client.sla.Recompute(
        sla_pb2.RecomputeRequest(policy_id=ids.policy, now=to_timestamp(NOW))
    )
    assert second.new_breaches == 0
    report = client.report(
        client.reports.Compliance(
            sla_pb2.ReportRequest(
                policy_id=ids.policy, now=to_timestamp(NOW), group_by=["client_id"]
            )
        )
    )
    # one row per client and metric; Globex has the critical tickets (resolution plan)
    rows = {(r["client_id"], r["metric"]) for r in report.to_pylist()}
    assert {c for c, _ in rows} == {str(ids.acme), str(ids.globex)}
    assert len(rows) == 5
    proposed = json.loads((SAMPLES / "policies" / "standard-msp.json").read_text())
    for rule in proposed["rules"]:
        for metric in rule["metrics"].values():
            metric["target"] = "200h"
    replay = client.report(
        client.reports.Replay(
            sla_pb2.ReplayRequest(
                current_policy_id=ids.policy,
                proposed_policy_json=json.dumps(proposed),
                now=to_timestamp(NOW),
            )
        )
    )
    assert sum(replay.column("breached_proposed").to_pylist()) < sum(
        replay.column("breached_current").to_pylist()
    )


def test_error_mapping_names_field_and_value(service, client: Client, tenant) -> None:
    ids = standard_setup(client)
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.catalog.CreateCalendar,
        catalog_pb2.CreateCalendarRequest(name="x", body_json='{"timezone": "Mars/Olympus"}'),
    )
    assert "timezone" in details and "Mars/Olympus" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.tickets.CreateTicket,
        tickets_pb2.CreateTicketRequest(
            id="X-1", client_id=ids.acme, priority="URGENTISH", created_at=to_timestamp(NOW)
        ),
    )
    assert "priority" in details and "URGENTISH" in details
    details = refused(
        grpc.StatusCode.NOT_FOUND,
        client.catalog.GetPolicy,
        catalog_pb2.GetPolicyRequest(policy_id=987654),
    )
    assert "policy_id" in details and "987654" in details
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id="X-2", client_id=ids.acme, priority="LOW", created_at=to_timestamp(NOW)
        )
    )
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.tickets.CreateTicket,
        tickets_pb2.CreateTicketRequest(
            id="X-2",
            client_id=ids.acme,
            priority="LOW",
            created_at=to_timestamp(NOW + timedelta(hours=1)),
        ),
    )
    assert "X-2" in details
    with Client(service.address, "efg_not-a-token") as stranger:
        refused(
            grpc.StatusCode.UNAUTHENTICATED,
            stranger.catalog.ListClients,
            catalog_pb2.ListClientsRequest(),
        )
    with grpc.insecure_channel(service.address) as channel:
        from effigate.v1 import catalog_pb2_grpc

        bare = catalog_pb2_grpc.CatalogServiceStub(channel)
        details = refused(
            grpc.StatusCode.UNAUTHENTICATED, bare.ListClients, catalog_pb2.ListClientsRequest()
        )
        assert "authorization" in details
    with Client(service.address, tenant.portal_token(ids.acme)) as portal:
        details = refused(
            grpc.StatusCode.PERMISSION_DENIED,
            portal.catalog.CreateClient,
            catalog_pb2.CreateClientRequest(name="Sneaky"),
        )
        assert "portal" in details
    # a deadline the server cannot meet ends the call with DEADLINE_EXCEEDED
    tickets = generated_tickets(50_000, seed=3)
    with pytest.raises(grpc.RpcError) as caught:
        list(
            client.sla.EvaluateStream(
                iter(
                    [
                        sla_pb2.EvaluateChunk(
                            policy_id=ids.policy,
                            arrow_ipc=_ipc(tickets),
                            now=to_timestamp(NOW),
                        )
                    ]
                ),
                timeout=0.001,
            )
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def _ipc(table: pa.Table) -> bytes:
    from effigate_client.client import ipc_bytes

    return ipc_bytes(table)


def test_portal_token_sees_only_its_clients_tickets(service, client: Client, tenant) -> None:
    ids = standard_setup(client)
    for ticket, owner in (("A-1", ids.acme), ("G-1", ids.globex)):
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=ticket, client_id=owner, priority="HIGH", created_at=to_timestamp(NOW)
            )
        )
    with Client(service.address, tenant.portal_token(ids.acme)) as portal:
        listed = portal.tickets.ListTickets(tickets_pb2.ListTicketsRequest())
        assert [t.id for t in listed.tickets] == ["A-1"]
        assert portal.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id="A-1")).id == "A-1"
        refused(
            grpc.StatusCode.NOT_FOUND,
            portal.tickets.GetTicket,
            tickets_pb2.GetTicketRequest(ticket_id="G-1"),
        )
        refused(
            grpc.StatusCode.NOT_FOUND,
            portal.tickets.GetTicketStatus,
            tickets_pb2.GetTicketStatusRequest(ticket_id="G-1", policy_id=ids.policy),
        )
        # a portal raises tickets for its own client only
        portal.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id="A-2", client_id=ids.acme, priority="LOW", created_at=to_timestamp(NOW)
            )
        )
        refused(
            grpc.StatusCode.PERMISSION_DENIED,
            portal.tickets.CreateTicket,
            tickets_pb2.CreateTicketRequest(
                id="G-2", client_id=ids.globex, priority="LOW", created_at=to_timestamp(NOW)
            ),
        )
        refused(
            grpc.StatusCode.PERMISSION_DENIED,
            portal.sla.Recompute,
            sla_pb2.RecomputeRequest(policy_id=ids.policy),
        )
    # another tenant sees none of it, even by id
    other = _other_tenant_client(service, tenant)
    with other:
        refused(
            grpc.StatusCode.NOT_FOUND,
            other.tickets.GetTicket,
            tickets_pb2.GetTicketRequest(ticket_id="A-1"),
        )
        assert list(other.tickets.ListTickets(tickets_pb2.ListTicketsRequest()).tickets) == []


def _other_tenant_client(service, tenant) -> Client:
    import asyncio

    from tests.e2e.conftest import _tenant

    other = asyncio.run(_tenant(tenant.admin))
    return Client(service.address, other.token)


def test_typed_evaluation_refuses_bulk(client: Client) -> None:
    ids = standard_setup(client)
    request = sla_pb2.EvaluateRequest(policy_id=ids.policy)
    for i in range(10_001):
        request.tickets.add(ticket_id=f"B-{i}", priority="LOW", created_at=to_timestamp(NOW))
    details = refused(grpc.StatusCode.INVALID_ARGUMENT, client.sla.Evaluate, request)
    assert "EvaluateStream" in details


def test_stream_keeps_input_order(client: Client) -> None:
    ids = standard_setup(client)
    tickets = generated_tickets(1_500, seed=11)
    out = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=400)
    firsts = []
    for t in out.column("ticket_id").to_pylist():
        if not firsts or firsts[-1] != t:
            firsts.append(t)
    assert firsts == tickets.column("ticket_id").to_pylist()
