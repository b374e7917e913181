"""The validated boundary, through a real server: out-of-range instants, unknown references,
text and size limits, page limits, the wording of refusals — each refused with the status
docs/service.md lists and a sentence naming the field path and the value, writing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import grpc
import pyarrow as pa
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from effigate_client import Client, billing_pb2, catalog_pb2, common_pb2, sla_pb2, tickets_pb2
from effigate_engine.store.errors import StoreError
from effigate_server import errors
from tests.e2e.support import Setup, refused, standard_setup

INVALID = grpc.StatusCode.INVALID_ARGUMENT
#: 2026-11-21T00:00:00Z
OK_SECONDS = 1_795_219_200

#: (seconds, nanos) the boundary refuses, and what the message says of them
BAD_INSTANTS = [
    (OK_SECONDS, 2_000_000_000, "nanos: 2000000000 is outside 0..999999999"),
    (OK_SECONDS, -1, "nanos: -1 is outside 0..999999999"),
    (253_402_300_800, 0, "253402300800 seconds since 1970"),  # past year 9999
    (-62_135_596_801, 0, "seconds since 1970"),  # before year 1
    (10**17, 0, "100000000000000000 seconds since 1970 is outside 2000-01-01..2100-01-01"),
    (5_680_281_600, 0, "2150-01-01T00:00:00Z is outside 2000-01-01..2100-01-01"),
    (-2_208_988_800, 0, "1900-01-01T00:00:00Z is outside 2000-01-01..2100-01-01"),
    # the horizon's end is inside; a microsecond past it is not
    (4_102_444_800, 1_000, "2100-01-01T00:00:00Z is outside 2000-01-01..2100-01-01"),
]
#: 2100-01-01T00:00:00Z, the horizon's last instant
HORIZON_END = 4_102_444_800


def ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


@pytest.fixture
def setup(client: Client) -> Setup:
    return standard_setup(client)


@pytest.fixture
def counts(tenant) -> Iterator[object]:
    """Row counts of the tenant's tables (through the owner's DSN): ``counts()``."""

    async def read() -> dict[str, int]:
        conn = await asyncpg.connect(tenant.admin)
        try:
            out = {}
            for table in ("tickets", "ticket_events", "clients", "time_logs", "contracts"):
                out[table] = await conn.fetchval(
                    f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant.id
                )
            return out
        finally:
            await conn.close()

    yield lambda: asyncio.run(read())


@pytest.mark.parametrize(("seconds", "nanos", "said"), BAD_INSTANTS)
def test_out_of_range_instants_are_invalid_argument_naming_the_field(
    client: Client, setup: Setup, counts, seconds: int, nanos: int, said: str
) -> None:
    before = counts()
    bad = ts(seconds, nanos)
    create = tickets_pb2.CreateTicketRequest(
        id="T-range", client_id=setup.acme, priority="P1", created_at=bad
    )
    message = refused(INVALID, client.tickets.CreateTicket, create)
    assert message.startswith("created_at") and said in message
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id="T-ok", client_id=setup.acme, priority="P1", created_at=ts(OK_SECONDS)
        )
    )
    before = counts()
    event = tickets_pb2.RecordEventRequest(
        event_id="E-range", ticket_id="T-ok", kind=tickets_pb2.RESPONDED, occurred_at=bad
    )
    assert said in refused(INVALID, client.tickets.RecordEvent, event)
    status = tickets_pb2.GetTicketStatusRequest(ticket_id="T-ok", at=bad)
    assert refused(INVALID, client.tickets.GetTicketStatus, status).startswith("at")
    deadline = catalog_pb2.ComputeDeadlineRequest(
        calendar_id=setup.sydney, start=bad, business_seconds=3600
    )
    assert said in refused(INVALID, client.catalog.ComputeDeadline, deadline)
    evaluate = sla_pb2.EvaluateRequest(
        policy_id=setup.policy,
        now=ts(OK_SECONDS),
        tickets=[
            sla_pb2.TicketInput(ticket_id=f"X{i}", priority="P2", created_at=ts(OK_SECONDS))
            for i in range(3)
        ]
        + [sla_pb2.TicketInput(ticket_id="X3", priority="P2", created_at=bad)],
    )
    message = refused(INVALID, client.sla.Evaluate, evaluate)
    assert message.startswith("tickets[3].created_at") and said in message
    log = billing_pb2.TimeLog(
        id="L-range", contract_id=1, agent="a", started_at=bad, ended_at=ts(OK_SECONDS)
    )
    message = refused(
        INVALID, client.time_logs.IngestTimeLogs, billing_pb2.IngestTimeLogsRequest(logs=[log])
    )
    assert message.startswith("logs[0].started_at")
    assert counts() == before


def test_unknown_client_or_contract_on_create_ticket_is_not_found(
    client: Client, setup: Setup, counts
) -> None:
    before = counts()
    request = tickets_pb2.CreateTicketRequest(
        id="T-nf", client_id=987654, priority="P1", created_at=ts(OK_SECONDS)
    )
    message = refused(grpc.StatusCode.NOT_FOUND, client.tickets.CreateTicket, request)
    assert message.startswith("client_id: 987654")
    request = tickets_pb2.CreateTicketRequest(
        id="T-nf", client_id=setup.acme, contract_id=987654, priority="P1",
        created_at=ts(OK_SECONDS),
    )
    message = refused(grpc.StatusCode.NOT_FOUND, client.tickets.CreateTicket, request)
    assert message.startswith("contract_id: 987654")
    assert counts() == before


def test_unauthenticated_message_does_not_show_none(service) -> None:
    with grpc.insecure_channel(service.address) as channel:
        stub = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
        call = channel.unary_unary(
            f"/{stub.full_name}/ListClients",
            request_serializer=catalog_pb2.ListClientsRequest.SerializeToString,
            response_deserializer=catalog_pb2.ListClientsResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(catalog_pb2.ListClientsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "None" not in caught.value.details()
    assert caught.value.details().startswith("authorization: is missing")


@pytest.mark.parametrize(
    ("ticket_id", "said"),
    [
        ("T\x00nul", "control character (U+0000"),
        ("T\nline", "control character (U+000A"),
        ("T" * 201, "is longer than 200 characters"),
    ],
)
def test_bad_text_in_ids_is_blamed_on_the_field(
    client: Client, setup: Setup, counts, ticket_id: str, said: str
) -> None:
    before = counts()
    request = tickets_pb2.CreateTicketRequest(
        id=ticket_id, client_id=setup.acme, priority="P1", created_at=ts(OK_SECONDS)
    )
    message = refused(INVALID, client.tickets.CreateTicket, request)
    assert message.startswith("id: ") and said in message
    message = refused(
        INVALID, client.tickets.GetTicket, tickets_pb2.GetTicketRequest(ticket_id=ticket_id)
    )
    assert message.startswith("ticket_id: ")
    assert counts() == before


@pytest.mark.parametrize("limit", [-1, 10_001, 100_000])
def test_list_limits_out_of_range_are_refused(client: Client, setup: Setup, limit: int) -> None:
    message = refused(
        INVALID, client.tickets.ListTickets, tickets_pb2.ListTicketsRequest(limit=limit)
    )
    assert message == f"limit: {limit} is not within 0..10000"


def test_list_limit_zero_is_the_default_page(client: Client, setup: Setup) -> None:
    for i in range(3):
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=f"T{i}", client_id=setup.acme, priority="P3", created_at=ts(OK_SECONDS)
            )
        )
    assert len(client.tickets.ListTickets(tickets_pb2.ListTicketsRequest()).tickets) == 3
    assert len(client.tickets.ListTickets(tickets_pb2.ListTicketsRequest(limit=2)).tickets) == 2


def test_huge_names_are_refused_and_not_stored(client: Client, counts) -> None:
    before = counts()
    message = refused(
        INVALID,
        client.catalog.CreateClient,
        catalog_pb2.CreateClientRequest(name="x" * (8 * 1024 * 1024)),
    )
    assert message.startswith("name: 'xxxx") and "8,388,608 characters" in message
    assert "longer than 200" in message
    assert counts() == before


def test_unary_requests_over_the_limit_are_resource_exhausted(client: Client) -> None:
    body = "{" + " " * (33 * 1024 * 1024) + "}"
    message = refused(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        client.catalog.CreateCalendar,
        catalog_pb2.CreateCalendarRequest(name="big", body_json=body),
    )
    assert "a unary call accepts" in message


def test_unknown_enum_numbers_are_refused(client: Client, setup: Setup) -> None:
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id="T-enum", client_id=setup.acme, priority="P1", created_at=ts(OK_SECONDS)
        )
    )
    request = tickets_pb2.RecordEventRequest(
        event_id="E-enum", ticket_id="T-enum", kind=99, occurred_at=ts(OK_SECONDS + 60)
    )
    assert refused(INVALID, client.tickets.RecordEvent, request) == "kind: 99 is not a EventKind"


def test_bytes_that_are_not_a_message_are_invalid_argument(service, tenant) -> None:
    with grpc.insecure_channel(service.address) as channel:
        call = channel.unary_unary(
            "/effigate.v1.TicketService/GetTicket",
            request_serializer=lambda raw: raw,
            response_deserializer=tickets_pb2.Ticket.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\x0a\xff\xff\xff", metadata=[("authorization", f"Bearer {tenant.token}")])
    assert caught.value.code() == INVALID
    assert "are not a valid message" in caught.value.details()


def test_negative_ids_and_bad_dates_are_invalid_argument(client: Client) -> None:
    assert refused(
        INVALID, client.catalog.GetCalendar, catalog_pb2.GetCalendarRequest(calendar_id=-5)
    ) == "calendar_id: -5 is not an id (ids are positive)"
    message = refused(
        INVALID,
        client.billing.GenerateInvoice,
        billing_pb2.PeriodRequest(contract_id=1, period_start="2150-01-01"),
    )
    assert message == "period_start: 2150-01-01 is outside 2000-01-01..2100-01-01"


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_classify_refuses_tables_that_are_not_time_logs(client: Client) -> None:
    from tests.e2e.test_billing_api import billing_setup, new_contract

    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    message = refused(
        INVALID,
        client.billing.Classify,
        billing_pb2.ClassifyRequest(contract_id=contract.id, arrow_ipc=_ipc(pa.table({"x": [1]}))),
    )
    assert message == "logs.log_id: is a required time-log column"


def test_ingest_chunks_that_disagree_are_invalid_argument(client: Client, counts) -> None:
    before = counts()
    chunks = [
        common_pb2.ArrowChunk(arrow_ipc=_ipc(pa.table({"id": ["E-1"], "ticket_id": ["T"]}))),
        common_pb2.ArrowChunk(arrow_ipc=_ipc(pa.table({"id": [1.5], "ticket_id": ["T"]}))),
    ]
    message = refused(INVALID, client.tickets.IngestTicketEvents, iter(chunks))
    assert message.startswith("chunk[1..1].arrow_ipc: the chunks' columns do not agree")
    assert counts() == before


def test_status_for_keeps_internal_for_bugs_with_a_request_id(caplog) -> None:
    code, message = errors.reported(RuntimeError("boom"), "GetTicket")
    assert code == grpc.StatusCode.INTERNAL
    request = message.removeprefix("internal error (request ").removesuffix(")")
    assert len(request) == 16 and request in caplog.text
    # a value the driver cannot encode is the caller's, not an outage
    code, _ = errors.status_for(asyncpg.DataError("invalid input for query argument $1"))
    assert code == INVALID
    # a statement the database finds wrong is our bug, not an outage
    code, _ = errors.status_for(StoreError("tickets.id", None, "syntax error", "42601"))
    assert code == grpc.StatusCode.INTERNAL
    code, _ = errors.status_for(StoreError("database", None, "shutting down", "57P01"))
    assert code == grpc.StatusCode.UNAVAILABLE



def test_report_with_an_unknown_period_is_invalid_argument(client: Client, setup: Setup) -> None:
    request = sla_pb2.ReportRequest(policy_id=setup.policy, period=" ", client_id=setup.acme)
    assert refused(INVALID, client.reports.Compliance, request).startswith("period: ' '")



def test_approving_a_period_of_more_than_ten_thousand_logs_is_not_refused_for_size(
    client: Client,
) -> None:
    """A month of time logs is approved in one call (the demo approves ~10,500)."""
    ids = [f"UNKNOWN-{i}" for i in range(20_000)]
    message = refused(
        grpc.StatusCode.NOT_FOUND,
        client.time_logs.ApproveTimeLogs,
        billing_pb2.ApproveTimeLogsRequest(log_ids=ids),
    )
    assert "log_ids[0]" in message and "UNKNOWN-0" in message


def test_the_horizons_last_instant_is_accepted(client: Client, setup: Setup) -> None:
    """Both ends of the horizon are inside (docs/clock.md): a deadline of nothing from the
    last instant is that instant."""
    deadline = client.catalog.ComputeDeadline(
        catalog_pb2.ComputeDeadlineRequest(
            calendar_id=setup.sydney, start=ts(HORIZON_END), business_seconds=0
        )
    )
    assert deadline.deadline.seconds == HORIZON_END
