"""No row poisons a tenant: stored tickets the engine cannot evaluate, and bad rows of the Arrow
streams, are reported by ticket, field and value while every other row is evaluated or stored."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import grpc

from effigate_client import Client, sla_pb2, tickets_pb2, to_timestamp
from tests.e2e.support import at, refused, standard_setup

NOW = at("2026-11-21T00:00+00:00")


def _sql(admin: str, statement: str, *args: object) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def _poison(tenant, ticket_id: str, client_id: int, created: str) -> None:
    """Store a ticket the service would refuse, as the owner, past every check of the API."""
    _sql(
        tenant.admin,
        "INSERT INTO tickets (tenant_id, id, client_id, priority, status, created_at)"
        " VALUES ($1, $2, $3, 'HIGH', 'OPEN', $4)",
        tenant.id,
        ticket_id,
        client_id,
        at(created),
    )


def _tickets(client: Client, client_id: int, count: int) -> None:
    for i in range(count):
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=f"OK-{i}",
                client_id=client_id,
                priority=["CRITICAL", "HIGH", "MEDIUM", "LOW"][i % 4],
                created_at=to_timestamp(at("2026-11-02T22:00+00:00") + timedelta(hours=7 * i)),
            )
        )


def test_recompute_evaluates_the_rest_and_names_a_stored_ticket_it_cannot(
    client: Client, tenant
) -> None:
    ids = standard_setup(client)
    _tickets(client, ids.acme, 8)
    _poison(tenant, "OLD-1", ids.acme, "1900-03-01T00:00+00:00")
    outcome = client.sla.Recompute(
        sla_pb2.RecomputeRequest(policy_id=ids.policy, now=to_timestamp(NOW))
    )
    assert outcome.tickets == 8
    assert outcome.failed_count == 1
    (failure,) = outcome.failed
    assert failure.ticket_id == "OLD-1" and failure.field == "created_at"
    assert "1900-03-01" in failure.message


def test_ticket_status_of_a_stored_ticket_it_cannot_evaluate_names_it(
    client: Client, tenant
) -> None:
    ids = standard_setup(client)
    _poison(tenant, "FAR-1", ids.acme, "2150-01-01T00:00+00:00")
    _poison(tenant, "OLD-1", ids.acme, "1900-01-01T00:00+00:00")
    for ticket in ("FAR-1", "OLD-1"):
        request = tickets_pb2.GetTicketStatusRequest(
            ticket_id=ticket, policy_id=ids.policy, at=to_timestamp(NOW)
        )
        details = refused(
            grpc.StatusCode.FAILED_PRECONDITION, client.tickets.GetTicketStatus, request
        )
        assert ticket in details and "created_at" in details
    # a timeline up to an instant before the ticket was created is empty, not an error
    timeline = tickets_pb2.GetTicketTimelineRequest(
        ticket_id="OLD-1", policy_id=ids.policy, until=to_timestamp(NOW)
    )
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION, client.tickets.GetTicketTimeline, timeline
    )
    assert "OLD-1" in details and "created_at" in details and "1900-01-01" in details
    # an instant asked for outside the horizon is the request's fault
    request = tickets_pb2.GetTicketStatusRequest(
        ticket_id="OK-0", policy_id=ids.policy, at=to_timestamp(at("2150-06-01T00:00+00:00"))
    )
    _tickets(client, ids.acme, 1)
    details = refused(grpc.StatusCode.INVALID_ARGUMENT, client.tickets.GetTicketStatus, request)
    assert details.startswith("at:") and "2150-06-01" in details


def test_reports_over_stored_tickets_leave_out_and_name_what_they_cannot_evaluate(
    client: Client, tenant
) -> None:
    ids = standard_setup(client)
    _tickets(client, ids.acme, 6)
    _poison(tenant, "OLD-1", ids.acme, "1900-03-01T00:00+00:00")
    request = sla_pb2.ReportRequest(policy_id=ids.policy, now=to_timestamp(NOW))
    for call in (client.reports.Compliance, client.reports.Percentiles):
        report = call(request)
        assert report.failed_count == 1 and report.failed[0].ticket_id == "OLD-1"
    compliance = client.report(client.reports.Compliance(request))
    assert sum(compliance.column("tickets").to_pylist()) > 0
    replay = client.reports.Replay(
        sla_pb2.ReplayRequest(
            current_policy_id=ids.policy, proposed_policy_id=ids.policy, now=to_timestamp(NOW)
        )
    )
    assert [f.ticket_id for f in replay.failed] == ["OLD-1"]
    assert sum(client.report(replay).column("tickets_current").to_pylist()) > 0
