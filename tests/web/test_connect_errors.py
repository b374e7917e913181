"""The Connect API refuses what the gRPC port refuses, with the same code and sentence, and the
HTTP status Connect defines for it; a portal token sees only its client over HTTP too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from effigate.v1 import billing_pb2, catalog_pb2, tickets_pb2
from effigate_client import Client
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant
from tests.web.conftest import Demo
from tests.web.connect_http import call_json, error_of, headers, path, post_json

#: The HTTP status the Connect protocol gives each code (connectrpc.com/docs/protocol).
HTTP_STATUS = {
    "invalid_argument": 400,
    "failed_precondition": 400,
    "not_found": 404,
    "unauthenticated": 401,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "already_exists": 409,
    "unavailable": 503,
    "unimplemented": 501,
}


def ts(text: str) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(text).astimezone(UTC))
    return stamp


def grpc_refusal(
    call: Callable[..., object], request: Message, **kwargs: object
) -> tuple[str, str]:
    """The status name (lower case, as Connect spells it) and sentence of a refused call."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, **kwargs)
    return caught.value.code().name.lower(), str(caught.value.details())


def same_refusal(
    service: ServiceProcess,
    token: str | None,
    grpc_call: Callable[..., object],
    name: str,
    method: str,
    request: Message,
) -> tuple[str, str]:
    """Refuse ``request`` over gRPC and over Connect JSON; both say the same; returns it."""
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    code, message = grpc_refusal(grpc_call, request, metadata=metadata)
    assert service.http_url is not None
    status, connect_code, connect_message = error_of(
        post_json(service.http_url, token, name, method, request)
    )
    assert (connect_code, connect_message) == (code, message)
    assert status == HTTP_STATUS[code]
    return code, message


@pytest.fixture
def acme(client: Client) -> int:
    return client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id


def test_bad_input_and_unknown_ids_are_the_same_status_over_both_protocols(
    service: ServiceProcess, tenant: Tenant, client: Client, acme: int
) -> None:
    with grpc.insecure_channel(service.address) as channel:
        from effigate.v1 import tickets_pb2_grpc

        raw = tickets_pb2_grpc.TicketServiceStub(channel)
        bad_priority = tickets_pb2.CreateTicketRequest(
            id="T-1", client_id=acme, priority="URGENT", created_at=ts("2026-11-20T09:00Z")
        )
        code, message = same_refusal(
            service, tenant.token, raw.CreateTicket, "TicketService", "CreateTicket", bad_priority
        )
        assert code == "invalid_argument" and message.startswith("priority") and "URGENT" in message
        code, message = same_refusal(
            service,
            tenant.token,
            raw.GetTicket,
            "TicketService",
            "GetTicket",
            tickets_pb2.GetTicketRequest(ticket_id="NOPE-1"),
        )
        assert code == "not_found" and "NOPE-1" in message
        too_many = tickets_pb2.ListTicketsRequest(limit=10_001)
        code, message = same_refusal(
            service, tenant.token, raw.ListTickets, "TicketService", "ListTickets", too_many
        )
        assert code == "invalid_argument" and "limit" in message
    listed = client.tickets.ListTickets(tickets_pb2.ListTicketsRequest())
    assert list(listed.tickets) == []  # nothing was created by the refused calls


def test_missing_and_bad_tokens_are_unauthenticated(service: ServiceProcess) -> None:
    with grpc.insecure_channel(service.address) as channel:
        from effigate.v1 import catalog_pb2_grpc

        raw = catalog_pb2_grpc.CatalogServiceStub(channel)
        request = catalog_pb2.ListClientsRequest()
        for token in (None, "efg_not-a-token"):
            code, _ = same_refusal(
                service, token, raw.ListClients, "CatalogService", "ListClients", request
            )
            assert code == "unauthenticated"
    # a scheme other than Bearer is no token either
    assert service.http_url is not None
    answer = httpx.post(
        service.http_url + path("CatalogService", "ListClients"),
        content="{}",
        headers={"Content-Type": "application/json", "Authorization": "Basic YTpi"},
    )
    assert error_of(answer)[:2] == (401, "unauthenticated")


def test_a_portal_token_is_refused_staff_calls(
    service: ServiceProcess, tenant: Tenant, acme: int
) -> None:
    portal = tenant.portal_token(acme)
    with grpc.insecure_channel(service.address) as channel:
        from effigate.v1 import catalog_pb2_grpc

        raw = catalog_pb2_grpc.CatalogServiceStub(channel)
        code, message = same_refusal(
            service,
            portal,
            raw.CreateClient,
            "CatalogService",
            "CreateClient",
            catalog_pb2.CreateClientRequest(name="Other"),
        )
    assert code == "permission_denied" and "portal token" in message


def test_undecodable_bodies_are_invalid_argument_never_a_server_error(
    service: ServiceProcess, tenant: Tenant
) -> None:
    assert service.http_url is not None
    url = service.http_url + path("TicketService", "GetTicketStatus")
    bodies = {
        "application/json": [
            b'{"ticketId": ',  # cut short
            b'{"ticketId": 5, "at": "yesterday"}',  # wrong types
            b'{"ticket": "INC-1"}',  # no such field
            b'["INC-1"]',  # not an object
            b"5",
            b"\xff\xfe not text",
        ],
        "application/proto": [b"\xff\xff\xff\xff\xff"],
    }
    for content_type, samples in bodies.items():
        for body in samples:
            answer = httpx.post(url, content=body, headers=headers(tenant.token, content_type))
            status, code, message = error_of(answer)
            assert (status, code) == (400, "invalid_argument"), (body, answer.text)
            assert message
    # a misspelt field is named, not silently dropped
    answer = httpx.post(url, content=b'{"ticket": "INC-1"}', headers=headers(tenant.token))
    status, code, message = error_of(answer)
    assert (status, code) == (400, "invalid_argument") and '"ticket"' in message
    # the token is checked before the body is read, as on the gRPC port
    answer = httpx.post(url, content=b'{"ticketId": ', headers=headers(None))
    assert error_of(answer)[:2] == (401, "unauthenticated")
    # the wrong media type is refused before any decoding
    answer = httpx.post(url, content=b"x", headers=headers(tenant.token, "text/plain"))
    assert answer.status_code == 415
    # gRPC belongs on the gRPC port: a clear refusal, not a server error
    answer = httpx.post(url, content=b"", headers=headers(tenant.token, "application/grpc"))
    status, code, message = error_of(answer)
    assert (status, code) == (415, "unimplemented") and "gRPC port" in message
    # no such service or method
    for missing in ("/effigate.v1.NoService/Get", "/effigate.v1.TicketService/NoMethod"):
        answer = httpx.post(
            service.http_url + missing, content=b"{}", headers=headers(tenant.token)
        )
        assert answer.status_code == 404


def test_an_oversized_unary_request_is_resource_exhausted_over_both_protocols(
    service: ServiceProcess, tenant: Tenant, client: Client
) -> None:
    from effigate_server.fields import LIMITS

    big = billing_pb2.ClassifyRequest(
        contract_id=1, arrow_ipc=b"\0" * (LIMITS.unary_message_bytes + 1)
    )
    code, message = grpc_refusal(client.billing.Classify, big)
    assert code == "resource_exhausted"
    assert service.http_url is not None
    for content_type, body in (
        ("application/proto", big.SerializeToString()),
        ("application/json", json_format.MessageToJson(big).encode()),
    ):
        answer = httpx.post(
            service.http_url + path("BillingService", "Classify"),
            content=body,
            headers=headers(tenant.token, content_type),
            timeout=120,
        )
        status, connect_code, connect_message = error_of(answer)
        assert (status, connect_code) == (429, "resource_exhausted")
        # the same sentence, with the size of the body sent
        assert connect_message == message.replace(
            f"{len(big.SerializeToString()):,}", f"{len(body):,}"
        )
    # the same token still works: the connection was not left in a bad state
    assert call_json(
        service.http_url,
        tenant.token,
        "CatalogService",
        "ListClients",
        catalog_pb2.ListClientsRequest(),
    ) == client.catalog.ListClients(catalog_pb2.ListClientsRequest())


def test_a_portal_token_over_connect_sees_only_its_client(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None
    (a, _), (b, _) = demo.clients
    token_a = demo.portal_tokens[0]
    with Client(service.address, demo.token, timeout=120) as staff:
        b_tickets = staff.tickets.ListTickets(tickets_pb2.ListTicketsRequest(client_id=b))
        contracts = {
            k: {
                c.id
                for c in staff.contracts.ListContracts(
                    billing_pb2.ListContractsRequest(client_id=k)
                ).contracts
            }
            for k in (a, b)
        }
    assert b_tickets.tickets, "the demo's second client has tickets"
    other = b_tickets.tickets[0].id
    with Client(service.address, token_a, timeout=120) as portal:
        expected_code, expected_message = grpc_refusal(
            portal.tickets.GetTicket, tickets_pb2.GetTicketRequest(ticket_id=other)
        )
        mine = portal.tickets.ListTickets(tickets_pb2.ListTicketsRequest(limit=10_000))
        my_invoices = portal.billing.ListInvoices(billing_pb2.ListInvoicesRequest())
    assert expected_code in ("permission_denied", "not_found")
    answer = post_json(
        service.http_url,
        token_a,
        "TicketService",
        "GetTicket",
        tickets_pb2.GetTicketRequest(ticket_id=other),
    )
    status, code, message = error_of(answer)
    assert (code, message) == (expected_code, expected_message)
    assert status == HTTP_STATUS[code] and other not in answer.text.replace(message, "")

    listed = call_json(
        service.http_url,
        token_a,
        "TicketService",
        "ListTickets",
        tickets_pb2.ListTicketsRequest(limit=10_000),
    )
    assert listed == mine and listed.tickets
    assert {t.client_id for t in listed.tickets} == {a}
    invoices = call_json(
        service.http_url,
        token_a,
        "BillingService",
        "ListInvoices",
        billing_pb2.ListInvoicesRequest(),
    )
    assert invoices == my_invoices and invoices.invoices
    assert contracts[a] and contracts[b]
    assert {i.contract_id for i in invoices.invoices} <= contracts[a]
    # asking for client B's contract by id shows nothing of it either (as over gRPC)
    of_b = billing_pb2.ListInvoicesRequest(contract_id=min(contracts[b]))
    with Client(service.address, token_a, timeout=120) as portal:
        expected = portal.billing.ListInvoices(of_b)
    shown = call_json(service.http_url, token_a, "BillingService", "ListInvoices", of_b)
    assert shown == expected and not shown.invoices
