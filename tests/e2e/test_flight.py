"""Arrow Flight against the real server process: DoExchange evaluates as EvaluateStream and the
engine do, DoPut ingests all or nothing and idempotently, DoGet exports what the gRPC calls
answer; tokens, tenancy and malformed commands are refused with the field named."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from effigate_client import Client, billing_pb2, sla_pb2, tickets_pb2, to_timestamp
from effigate_client.flight import FlightClient
from effigate_engine import sla
from tests.e2e.support import at, refused, standard_setup
from tests.e2e.test_billing_api import (
    MARCH,
    billing_setup,
    ingest_and_approve,
    new_contract,
    seed_logs,
)
from tests.e2e.test_bulk_rows import _stored_ids, _stream_tickets, _ticket_rows
from tests.e2e.test_sla_api import generated_tickets, local_engine, rows_by_metric

NOW = at("2026-11-21T00:00+00:00")


@pytest.fixture
def flights(service, tenant) -> Iterator[FlightClient]:
    """A Flight client of the session's service with the tenant's staff token."""
    with FlightClient(service.flight_url, tenant.token, timeout=120) as f:
        yield f


def _options(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def _tickets_rows(client_id: int, count: int, prefix: str = "F") -> pa.Table:
    created = [at("2026-11-02T22:00+00:00") + timedelta(hours=3 * i) for i in range(count)]
    return pa.table(
        {
            "id": [f"{prefix}-{i}" for i in range(count)],
            "client_id": [client_id] * count,
            "contract_id": pa.nulls(count, pa.int64()),
            "priority": [["CRITICAL", "HIGH", "MEDIUM", "LOW"][i % 4] for i in range(count)],
            "status": ["OPEN"] * count,
            "created_at": pa.array(created, pa.timestamp("us", tz="UTC")),
            "first_response_at": pa.nulls(count, pa.timestamp("us", tz="UTC")),
            "resolved_at": pa.nulls(count, pa.timestamp("us", tz="UTC")),
        }
    )


def test_exchange_evaluates_as_the_stream_and_the_engine(service, client, flights) -> None:
    ids = standard_setup(client)
    tickets = generated_tickets(5_000, seed=3)
    policy, calendars = local_engine()
    expected = rows_by_metric(sla.evaluate(tickets, policy, calendars, NOW).results)
    streamed = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=700)
    exchanged = flights.evaluate(tickets, ids.policy, NOW, batch_rows=700)
    assert exchanged.num_rows == streamed.num_rows
    assert rows_by_metric(exchanged) == rows_by_metric(streamed) == expected
    # in input order, as the stream answers
    assert exchanged.column("ticket_id").to_pylist() == streamed.column("ticket_id").to_pylist()
    assert exchanged.schema.metadata == streamed.schema.metadata


def test_exchange_reports_bad_rows_as_the_stream_does(client, flights) -> None:
    ids = standard_setup(client)
    tickets = _stream_tickets()
    via_stream: list = []
    streamed = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=4, rejected=via_stream)
    rejected: list = []
    exchanged = flights.evaluate(tickets, ids.policy, NOW, batch_rows=4, rejected=rejected)
    assert rows_by_metric(exchanged) == rows_by_metric(streamed)
    assert [(r["row"], r["id"], r["field"], r["message"]) for r in rejected] == [
        (r.row, r.id, r.field, r.message) for r in via_stream
    ]
    assert [r["row"] for r in rejected] == [2, 5, 7]


def test_exchange_of_no_tickets_answers_no_results(client, flights) -> None:
    ids = standard_setup(client)
    empty = flights.evaluate(sla.TICKETS.empty_table(), ids.policy, NOW)
    assert empty.num_rows == 0 and "ticket_id" in empty.column_names


def test_put_ingest_is_all_or_nothing_and_idempotent(client, flights, tenant) -> None:
    ids = standard_setup(client)
    with pytest.raises(pa.ArrowInvalid) as caught:
        flights.ingest_tickets(_ticket_rows(ids.acme))
    details = str(caught.value)
    assert "3 rows cannot be stored" in details
    for name in ("created_at[1] (id 'I-1')", "first_response_at[3]", "created_at[4]"):
        assert name in details
    assert _stored_ids(tenant, "tickets") == []

    batch = _tickets_rows(ids.acme, 40)
    first = flights.ingest_tickets(batch)
    assert (first["received"], first["inserted"], first["rejected"]) == (40, 40, 0)
    again = flights.ingest_tickets(batch)
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 40)
    assert _stored_ids(tenant, "tickets") == sorted(f"F-{i}" for i in range(40))
    listed = client.tickets.ListTickets(tickets_pb2.ListTicketsRequest(limit=100))
    assert sorted(t.id for t in listed.tickets) == sorted(f"F-{i}" for i in range(40))

    skipped = flights.ingest_tickets(_ticket_rows(ids.acme), skip_invalid_rows=True)
    assert (skipped["inserted"], skipped["rejected"]) == (3, 3)
    assert [(r["row"], r["id"], r["field"]) for r in skipped["rejected_rows"]] == [
        (1, "I-1", "tickets.created_at"),
        (3, "I-3", "tickets.first_response_at"),
        (4, "I-4", "tickets.created_at"),
    ]

    events = pa.table(
        {
            "id": ["E-0", "E-1"],
            "ticket_id": ["F-0", "F-1"],
            "kind": ["RESPONDED", "RESPONDED"],
            "occurred_at": pa.array(
                [at("2026-11-03T01:00+00:00"), at("2100-01-02T00:00+00:00")],
                pa.timestamp("us", tz="UTC"),
            ),
            "actor": pa.nulls(2, pa.string()),
            "detail": pa.nulls(2, pa.string()),
        }
    )
    with pytest.raises(pa.ArrowInvalid, match=r"ticket_events\.occurred_at\[1\]"):
        flights.ingest_ticket_events(events)
    assert _stored_ids(tenant, "ticket_events") == []
    good = events.slice(0, 1)
    assert flights.ingest_ticket_events(good)["inserted"] == 1
    assert flights.ingest_ticket_events(good)["unchanged"] == 1
    assert _stored_ids(tenant, "ticket_events") == ["E-0"]


def _time_logs(contract_id: int, prefix: str) -> pa.Table:
    logs = seed_logs(contract_id, prefix)
    return pa.table(
        {
            "id": [log.id for log in logs],
            "contract_id": [log.contract_id for log in logs],
            "ticket_id": pa.nulls(len(logs), pa.string()),
            "task_ref": pa.nulls(len(logs), pa.string()),
            "agent": [log.agent for log in logs],
            "support_level": [log.support_level for log in logs],
            "job_type": [log.job_type for log in logs],
            "priority": [log.priority for log in logs],
            "started_at": pa.array(
                [log.started_at.ToDatetime() for log in logs], pa.timestamp("us", tz="UTC")
            ),
            "ended_at": pa.array(
                [log.ended_at.ToDatetime() for log in logs], pa.timestamp("us", tz="UTC")
            ),
            "billable_type": ["BILLABLE"] * len(logs),
        }
    )


def test_put_time_logs_is_all_or_nothing_and_idempotent(client, flights, tenant) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    logs = _time_logs(contract.id, "FL")
    ended = logs.column("ended_at").to_pylist()
    ended[2] = logs.column("started_at")[2].as_py() - timedelta(hours=1)
    backwards = logs.set_column(
        logs.schema.get_field_index("ended_at"),
        "ended_at",
        pa.array(ended, pa.timestamp("us", tz="UTC")),
    )
    with pytest.raises(pa.ArrowInvalid) as caught:
        flights.ingest_time_logs(backwards)
    assert "FL-2" in str(caught.value) and "ended_at" in str(caught.value)
    assert _stored_ids(tenant, "time_logs") == []
    first = flights.ingest_time_logs(logs)
    assert (first["received"], first["inserted"]) == (6, 6)
    again = flights.ingest_time_logs(logs)
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 6)
    assert _stored_ids(tenant, "time_logs") == [f"FL-{i}" for i in range(6)]


def test_get_exports_equal_the_grpc_answers(service, client, flights, tenant) -> None:
    ids = standard_setup(client)
    flights.ingest_tickets(_tickets_rows(ids.acme, 30, "A"))
    flights.ingest_tickets(_tickets_rows(ids.globex, 20, "G"))
    # sla_results: the evaluation Recompute makes of the stored tickets
    results = flights.export("sla_results", policy_id=ids.policy, now=NOW)
    recomputed = client.recompute(ids.policy, NOW)
    counts = {(c.metric, c.status): c.count for c in recomputed.counts}
    pairs = zip(
        [str(m) for m in results.column("metric").to_pylist()],
        [str(s) for s in results.column("status").to_pylist()],
        strict=True,
    )
    exported: dict[tuple[str, str], int] = {}
    for pair in pairs:
        exported[pair] = exported.get(pair, 0) + 1
    assert exported == counts
    assert len(set(results.column("ticket_id").to_pylist())) == recomputed.tickets == 50
    assert results.schema.metadata[b"effigate.failed_count"] == b"0"
    # the compliance report equals ReportService.Compliance's table
    request = sla_pb2.ReportRequest(
        policy_id=ids.policy, group_by=["priority"], now=to_timestamp(NOW)
    )
    typed = client.report(client.reports.Compliance(request))
    report = flights.export("compliance", policy_id=ids.policy, group_by=["priority"], now=NOW)
    assert report.to_pylist() == typed.to_pylist()
    by_client = flights.export("compliance", policy_id=ids.policy, now=NOW, client_id=ids.acme)
    request.client_id = ids.acme
    assert by_client.to_pylist() == client.report(client.reports.Compliance(request)).to_pylist()


def test_get_invoice_lines_equal_get_invoice(service, client, flights, tenant) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    ingest_and_approve(client, seed_logs(contract.id, "IV"))
    client.time_logs.ClosePeriod(
        billing_pb2.ClosePeriodRequest(contract_id=contract.id, period_start=MARCH)
    )
    invoice = client.invoice(contract.id, MARCH)
    lines = flights.export("invoice_lines", invoice_id=invoice.id)
    assert lines.num_rows == len(invoice.lines) > 0
    for row, line in zip(lines.to_pylist(), invoice.lines, strict=True):
        assert row["line_id"] == line.id and row["position"] == line.position
        assert (row["kind"], row["description"]) == (line.kind, line.description)
        assert row["amount_minor"] == line.amount_minor
        assert row["billed_seconds"] == line.billed_seconds
        assert row["time_log_ids"] == list(line.time_log_ids)
        assert json.loads(row["evidence_json"]) == json.loads(line.evidence_json)
    # a portal token of another client does not find the invoice; of its own client it does
    other = FlightClient(service.flight_url, tenant.portal_token(book.globex))
    with other, pytest.raises(pa.ArrowKeyError, match="invoice_id"):
        other.export("invoice_lines", invoice_id=invoice.id)
    with FlightClient(service.flight_url, tenant.portal_token(book.nexus)) as own:
        assert own.export("invoice_lines", invoice_id=invoice.id).equals(lines)


def test_portal_token_sees_only_its_client(service, client, flights, tenant) -> None:
    ids = standard_setup(client)
    flights.ingest_tickets(_tickets_rows(ids.acme, 12, "A"))
    flights.ingest_tickets(_tickets_rows(ids.globex, 8, "G"))
    with FlightClient(service.flight_url, tenant.portal_token(ids.acme)) as portal:
        mine = portal.export("sla_results", policy_id=ids.policy, now=NOW)
        assert {t.split("-")[0] for t in mine.column("ticket_id").to_pylist()} == {"A"}
        # asking for another client's tickets still gives only its own
        asked = portal.export("sla_results", policy_id=ids.policy, now=NOW, client_id=ids.globex)
        assert set(asked.column("ticket_id").to_pylist()) == set(
            mine.column("ticket_id").to_pylist()
        )
        staff = flights.export("compliance", policy_id=ids.policy, now=NOW, client_id=ids.acme)
        assert portal.export("compliance", policy_id=ids.policy, now=NOW).equals(staff)
        # evaluating and ingesting are staff operations, as in the gRPC API
        with pytest.raises(flight.FlightUnauthorizedError, match="portal"):
            portal.evaluate(generated_tickets(10), ids.policy, NOW)
        with pytest.raises(flight.FlightUnauthorizedError):
            portal.ingest_tickets(_tickets_rows(ids.globex, 2, "X"))
    grpc_refusal = refused(
        grpc.StatusCode.PERMISSION_DENIED,
        Client(service.address, tenant.portal_token(ids.acme)).sla.Recompute,
        sla_pb2.RecomputeRequest(policy_id=ids.policy),
    )
    assert grpc_refusal
    assert _stored_ids(tenant, "tickets") == sorted(
        [f"A-{i}" for i in range(12)] + [f"G-{i}" for i in range(8)]
    )


def test_missing_or_bad_token_is_refused_naming_authorization(service) -> None:
    client = flight.connect(service.flight_url)
    ticket = flight.Ticket(b'{"op": "sla_results", "policy_id": 1}')
    with pytest.raises(flight.FlightUnauthenticatedError, match="authorization"):
        client.do_get(ticket).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError, match="not a valid or active token"):
        client.do_get(ticket, _options("not-a-token")).read_all()
    basic = flight.FlightCallOptions(headers=[(b"authorization", b"Basic dXNlcjpwYXNz")])
    with pytest.raises(flight.FlightUnauthenticatedError, match="authorization"):
        client.do_get(ticket, basic).read_all()
    client.close()


@pytest.mark.parametrize(
    ("command", "named"),
    [
        (b"not json", "ticket: is not a UTF-8 JSON object"),
        (b"[1, 2]", "ticket: b'[1, 2]' is not a JSON object"),
        (b'{"op": "drop_tables"}', "ticket.op: 'drop_tables' is not one of"),
        (b'{"op": "sla_results"}', "ticket.policy_id: is required"),
        (b'{"op": "sla_results", "policy_id": "7"}', "ticket.policy_id: '7' is not a positive"),
        (b'{"op": "sla_results", "policy_id": 1, "now": "yesterday"}', "ticket.now: 'yesterday'"),
        (b'{"op": "sla_results", "policy_id": 1, "now": "2026-11-21T00:00"}', "no UTC offset"),
        (b'{"op": "invoice_lines", "invoice": 3}', "ticket.invoice: is not a field"),
        (b'{"op": "sla_results", "policy_id": 999999}', "policy_id"),
    ],
)
def test_a_bad_ticket_is_refused_naming_the_field(service, tenant, command, named) -> None:
    client = flight.connect(service.flight_url)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowKeyError)) as caught:
        client.do_get(flight.Ticket(command), _options(tenant.token)).read_all()
    assert named in str(caught.value)
    assert "internal error" not in str(caught.value)
    client.close()


def test_a_bad_descriptor_is_refused_naming_the_field(client, service, tenant) -> None:
    ids = standard_setup(client)
    raw = flight.connect(service.flight_url)
    options = _options(tenant.token)
    tickets = generated_tickets(5)

    def exchange(descriptor: flight.FlightDescriptor) -> str:
        writer, reader = raw.do_exchange(descriptor, options)
        with pytest.raises(pa.ArrowInvalid) as caught:
            try:
                writer.begin(tickets.schema)
                writer.write_table(tickets)
                writer.done_writing()
                reader.read_all()
            finally:
                writer.close()
        return str(caught.value)

    assert "descriptor.command.policy_id: is required" in exchange(
        flight.FlightDescriptor.for_command(b'{"op": "evaluate"}')
    )
    assert "descriptor.command.op: 'evaluate_all'" in exchange(
        flight.FlightDescriptor.for_command(b'{"op": "evaluate_all", "policy_id": 1}')
    )
    assert "descriptor: is a path descriptor" in exchange(
        flight.FlightDescriptor.for_path("tickets")
    )
    # tickets without a required column: the column is named
    writer, reader = raw.do_exchange(
        flight.FlightDescriptor.for_command(
            json.dumps({"op": "evaluate", "policy_id": ids.policy}).encode()
        ),
        options,
    )
    with pytest.raises(pa.ArrowInvalid, match="'created_at' is required"):
        try:
            partial = tickets.drop_columns(["created_at"])
            writer.begin(partial.schema)
            writer.write_table(partial)
            writer.done_writing()
            reader.read_all()
        finally:
            writer.close()
    # a put of an unknown kind
    writer, _ = raw.do_put(
        flight.FlightDescriptor.for_command(b'{"op": "invoices"}'), tickets.schema, options
    )
    with pytest.raises(pa.ArrowInvalid, match=r"descriptor\.command\.op: 'invoices'"):
        writer.write_table(tickets)
        writer.close()
    raw.close()


def test_serve_on_a_busy_flight_port_names_the_flight_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("effigate")),
                "serve",
                "--address",
                "127.0.0.1:0",
                "--http-address",
                "off",
                "--flight-address",
                f"127.0.0.1:{port}",
            ],
            env={**os.environ, "EFFIGATE_DSN": "postgresql://effigate_app@127.0.0.1:1/none"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode != 0 and done.stdout == ""
    assert f"port {port} is in use on 127.0.0.1" in done.stderr
    assert "--flight-address" in done.stderr and "EFFIGATE_FLIGHT_ADDRESS" in done.stderr
