"""The Connect API on a server of its own: CORS for the configured browser origins only, and
one set of metrics and ``rpc`` log lines for calls over either protocol."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from effigate.v1 import catalog_pb2, common_pb2, tickets_pb2
from effigate_client import Client
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import _tenant
from tests.store.helpers import Database
from tests.web.connect_http import envelope, error_of, headers, path, post_json

ALLOWED = "http://ui.example"
#: How long the server's log may take to show a call's line, in seconds.
LOG_WAIT_S = 10.0
#: A shutdown with no call in flight takes well under this, in seconds (the grace is 30).
SHUTDOWN_BOUND_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    process: ServiceProcess
    http_url: str
    metrics_url: str
    log: Path
    token: str


@pytest.fixture(scope="module")
def served(db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server allowing the origin ``ALLOWED``, with its metrics on a port and its INFO log
    (one ``rpc`` line per call) in a file; and a tenant's token."""
    import asyncio

    log = tmp_path_factory.mktemp("connect") / "serve.log"
    port = free_port()
    process = ServiceProcess.start(
        db.app,
        admin_dsn=db.admin,
        args=("--log-level", "INFO", "--cors-origin", ALLOWED, "--metrics-port", str(port)),
        log=log,
    )
    try:
        assert process.http_url is not None
        token = asyncio.run(_tenant(db.admin)).token
        yield Served(process, process.http_url, f"http://127.0.0.1:{port}/metrics", log, token)
    finally:
        process.stop()


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization,connect-protocol-version",
        },
    )


def cors_headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}


def test_a_preflight_from_the_allowed_origin_gets_the_cors_headers(served: Served) -> None:
    url = served.http_url + path("TicketService", "GetTicketStatus")
    answer = preflight(url, ALLOWED)
    assert answer.status_code == 200
    got = cors_headers(answer)
    assert got["access-control-allow-origin"] == ALLOWED
    assert {"POST", "GET"} <= {m.strip() for m in got["access-control-allow-methods"].split(",")}
    allowed = {h.strip().lower() for h in got["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization", "connect-protocol-version"} <= allowed
    assert {"connect-timeout-ms", "grpc-timeout", "x-grpc-web", "x-user-agent"} <= allowed
    # the call itself: its answer may be read by the page, status headers included
    answer = httpx.post(
        served.http_url + path("CatalogService", "ListClients"),
        content="{}",
        headers={**headers(served.token), "Origin": ALLOWED},
    )
    assert answer.status_code == 200
    got = cors_headers(answer)
    assert got["access-control-allow-origin"] == ALLOWED
    exposed = {h.strip().lower() for h in got["access-control-expose-headers"].split(",")}
    assert exposed == {"grpc-status", "grpc-message", "grpc-status-details-bin"}


def test_another_origin_gets_no_cors_header_at_all(served: Served) -> None:
    url = served.http_url + path("TicketService", "GetTicketStatus")
    answer = preflight(url, "http://evil.example")
    assert answer.status_code >= 400 and cors_headers(answer) == {}
    answer = httpx.post(
        served.http_url + path("CatalogService", "ListClients"),
        content="{}",
        headers={**headers(served.token), "Origin": "http://evil.example"},
    )
    assert answer.status_code == 200 and cors_headers(answer) == {}


def test_without_cors_origins_no_cors_header_at_all(service: ServiceProcess) -> None:
    assert service.http_url is not None
    answer = preflight(service.http_url + path("CatalogService", "ListClients"), ALLOWED)
    assert cors_headers(answer) == {}


def counter(metrics_url: str, method: str, code: str) -> float:
    """``effigate_requests_total{method, code}`` as the server exposes it now."""
    text = httpx.get(metrics_url).text
    pattern = (
        r'^effigate_requests_total\{(?=[^}]*method="'
        + method
        + r'")(?=[^}]*code="'
        + code
        + r'")[^}]*\} (\S+)$'
    )
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def rpc_lines(log: Path, method: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "rpc" and line.get("rpc") == method]


def wait_for_lines(log: Path, method: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + LOG_WAIT_S
    while len(found := rpc_lines(log, method)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_a_connect_call_counts_and_logs_like_a_grpc_call(served: Served) -> None:
    """The same counter label and the same ``rpc`` log line, whatever the protocol."""
    missing = tickets_pb2.GetTicketRequest(ticket_id="NOPE-9")
    for code, request, method, service in (
        ("OK", catalog_pb2.ListClientsRequest(), "ListClients", "CatalogService"),
        ("NOT_FOUND", missing, "GetTicket", "TicketService"),
    ):
        before = counter(served.metrics_url, method, code)
        logged = len(rpc_lines(served.log, method))
        with Client(served.process.address, served.token, timeout=30) as c:
            stub = c.catalog if service == "CatalogService" else c.tickets
            try:
                getattr(stub, method)(request)
            except grpc.RpcError as exc:
                assert exc.code().name == code
        after_grpc = counter(served.metrics_url, method, code)
        assert after_grpc == before + 1
        answer = post_json(served.http_url, served.token, service, method, request)
        assert answer.status_code == (200 if code == "OK" else 404)
        assert counter(served.metrics_url, method, code) == after_grpc + 1
        lines = wait_for_lines(served.log, method, logged + 2)[logged:]
        assert [line["code"] for line in lines] == [code, code]
        assert lines[0]["tenant"] == lines[1]["tenant"] and lines[0]["tenant"]
        assert all(isinstance(line["ms"], float | int) for line in lines)


def test_a_refused_token_is_counted_alike(served: Served) -> None:
    before = counter(served.metrics_url, "unauthenticated", "UNAUTHENTICATED")
    answer = post_json(
        served.http_url,
        "efg_nope",
        "CatalogService",
        "ListClients",
        catalog_pb2.ListClientsRequest(),
    )
    assert answer.status_code == 401
    assert counter(served.metrics_url, "unauthenticated", "UNAUTHENTICATED") == before + 1
    with (
        Client(served.process.address, "efg_nope", timeout=30, attempts=1) as c,
        pytest.raises(grpc.RpcError),
    ):
        c.catalog.ListClients(catalog_pb2.ListClientsRequest())
    assert counter(served.metrics_url, "unauthenticated", "UNAUTHENTICATED") == before + 2


def test_while_the_server_drains_connect_calls_are_unavailable(db: Database) -> None:
    """SIGTERM with a gRPC client stream in flight: until it ends, a new call over Connect is
    refused ``unavailable`` (HTTP 503) with the same sentence as over gRPC."""
    import asyncio

    from effigate_server.interceptors import DRAINING

    process = ServiceProcess.start(db.app, admin_dsn=db.admin)
    assert process.http_url is not None
    token = asyncio.run(_tenant(db.admin)).token
    release = threading.Event()

    def chunks() -> Iterator[common_pb2.ArrowChunk]:
        release.wait(30)
        yield from ()

    with Client(process.address, token, timeout=60) as c:
        in_flight = c.tickets.IngestTickets.future(chunks())
        time.sleep(0.5)  # the stream has reached the server
        process.process.send_signal(signal.SIGTERM)
        try:
            deadline = time.monotonic() + LOG_WAIT_S
            while True:
                answer = post_json(
                    process.http_url,
                    token,
                    "CatalogService",
                    "ListClients",
                    catalog_pb2.ListClientsRequest(),
                )
                if answer.status_code != 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert error_of(answer) == (503, "unavailable", DRAINING)
        finally:
            release.set()
        with contextlib.suppress(grpc.RpcError):
            in_flight.result()
    assert process.stop() == 0


def test_a_watch_the_caller_leaves_is_no_longer_counted_in_flight(
    db: Database, tmp_path: Path
) -> None:
    """A Connect watch whose caller goes away ends on the server (``CANCELLED`` in its log
    line), so the shutdown that follows has no call to wait for (a call left counted would
    hold it for the whole grace period)."""
    import asyncio

    log = tmp_path / "serve.log"
    process = ServiceProcess.start(
        db.app, admin_dsn=db.admin, args=("--log-level", "INFO"), log=log
    )
    assert process.http_url is not None
    token = asyncio.run(_tenant(db.admin)).token
    # a tenant without events: nothing comes, not even the headers; the caller gives up
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            process.http_url + path("EventService", "WatchEvents"),
            content=envelope(b"{}"),
            headers=headers(token, "application/connect+json"),
            timeout=httpx.Timeout(30, read=1.0),
        )
    assert [line["code"] for line in wait_for_lines(log, "WatchEvents", 1)] == ["CANCELLED"]
    started = time.monotonic()
    assert process.stop() == 0
    assert time.monotonic() - started < SHUTDOWN_BOUND_S
