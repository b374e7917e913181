"""No row poisons a tenant: stored tickets the engine cannot evaluate, and bad rows of the Arrow
streams, are reported by ticket, field and value while every other row is evaluated or stored."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import grpc
import pyarrow as pa

from effigate_client import Client, sla_pb2, tickets_pb2, to_timestamp
from effigate_engine import sla
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


def _stream_tickets() -> pa.Table:
    created = [at("2026-11-02T22:00+00:00") + timedelta(hours=5 * i) for i in range(10)]
    rows = [
        {"ticket_id": f"S-{i}", "priority": "HIGH", "created_at": created[i]} for i in range(10)
    ]
    rows[2]["created_at"] = at("2150-01-01T00:00+00:00")
    rows[5]["priority"] = "URGENT"
    rows[7]["created_at"] = None
    return pa.Table.from_pylist(rows, schema=sla.TICKETS)


def test_stream_evaluates_the_good_rows_and_reports_the_bad_ones(client: Client) -> None:
    ids = standard_setup(client)
    tickets = _stream_tickets()
    rejected: list = []
    results = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=4, rejected=rejected)
    assert results.schema.equals(sla.SLA_RESULTS)
    assert sorted(set(results.column("ticket_id").to_pylist())) == [
        f"S-{i}" for i in (0, 1, 3, 4, 6, 8, 9)
    ]
    assert [(r.row, r.id, r.field) for r in rejected] == [
        (2, "S-2", "created_at"),
        (5, "S-5", "priority"),
        (7, "S-7", "created_at"),
    ]
    assert "2150-01-01" in rejected[0].message and "URGENT" in rejected[1].message


def _ticket_rows(client_id: int) -> pa.Table:
    created = [at("2026-11-02T22:00+00:00") + timedelta(hours=i) for i in range(6)]
    table = pa.table(
        {
            "id": [f"I-{i}" for i in range(6)],
            "client_id": [client_id] * 6,
            "contract_id": pa.nulls(6, pa.int64()),
            "priority": ["HIGH"] * 6,
            "status": ["OPEN"] * 6,
            "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
            "first_response_at": pa.nulls(6, pa.timestamp("us", tz="UTC")),
            "resolved_at": pa.nulls(6, pa.timestamp("us", tz="UTC")),
        }
    )
    bad = table.column("created_at").to_pylist()
    bad[1] = at("2150-01-01T00:00+00:00")
    bad[4] = at("1900-01-01T00:00+00:00")
    table = table.set_column(5, "created_at", pa.array(bad, pa.timestamp("us", tz="UTC")))
    responded = [None] * 6
    responded[3] = at("2101-01-01T00:00+00:00")
    return table.set_column(
        6, "first_response_at", pa.array(responded, pa.timestamp("us", tz="UTC"))
    )


def _stored_ids(tenant, table: str) -> list[str]:
    async def run() -> list[str]:
        conn = await asyncpg.connect(tenant.admin)
        try:
            rows = await conn.fetch(
                f"SELECT id FROM {table} WHERE tenant_id = $1 ORDER BY id", tenant.id
            )
        finally:
            await conn.close()
        return [r["id"] for r in rows]

    return asyncio.run(run())


def test_ingest_refuses_a_batch_naming_every_bad_row_and_stores_nothing(
    client: Client, tenant
) -> None:
    ids = standard_setup(client)
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT, client.ingest_tickets, _ticket_rows(ids.acme)
    )
    assert "3 rows cannot be stored" in details
    for name in ("created_at[1] (id 'I-1')", "first_response_at[3]", "created_at[4]"):
        assert name in details
    assert "2150-01-01" in details and "1900-01-01" in details and "2101-01-01" in details
    assert _stored_ids(tenant, "tickets") == []


def test_ingest_skipping_invalid_rows_stores_the_rest_once(client: Client, tenant) -> None:
    ids = standard_setup(client)
    batch = _ticket_rows(ids.acme)
    first = client.ingest_tickets(batch, chunk_rows=2, skip_invalid_rows=True)
    assert (first.received, first.inserted, first.rejected) == (6, 3, 3)
    assert [(r.row, r.id, r.field) for r in first.rejected_rows] == [
        (1, "I-1", "tickets.created_at"),
        (3, "I-3", "tickets.first_response_at"),
        (4, "I-4", "tickets.created_at"),
    ]
    assert _stored_ids(tenant, "tickets") == ["I-0", "I-2", "I-5"]
    again = client.ingest_tickets(batch, chunk_rows=2, skip_invalid_rows=True)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 3, 3)
    assert _stored_ids(tenant, "tickets") == ["I-0", "I-2", "I-5"]
    # the stored rows evaluate: no ticket of the batch poisons the tenant
    assert client.recompute(ids.policy, NOW).failed_count == 0
    events = pa.table(
        {
            "id": ["E-0", "E-1"],
            "ticket_id": ["I-0", "I-2"],
            "kind": ["RESPONDED", "RESPONDED"],
            "occurred_at": pa.array(
                [at("2026-11-03T01:00+00:00"), at("2100-01-02T00:00+00:00")],
                pa.timestamp("us", tz="UTC"),
            ),
            "actor": pa.nulls(2, pa.string()),
            "detail": pa.nulls(2, pa.string()),
        }
    )
    details = refused(grpc.StatusCode.INVALID_ARGUMENT, client.ingest_ticket_events, events)
    assert "ticket_events.occurred_at[1]" in details and "E-1" in details
    assert _stored_ids(tenant, "ticket_events") == []
    summary = client.ingest_ticket_events(events, skip_invalid_rows=True)
    assert (summary.inserted, summary.rejected) == (1, 1)
    assert _stored_ids(tenant, "ticket_events") == ["E-0"]
