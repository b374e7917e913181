"""Prometheus metrics and structured logs of a running server."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import grpc

from effigate_client import Client, catalog_pb2
from effigate_server.process import ServiceProcess
from tests.e2e.support import refused


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_and_json_logs(db, tenant, tmp_path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    service = ServiceProcess.start(
        db.app,
        admin_dsn=db.admin,
        args=("--metrics-port", str(port), "--log-level", "INFO"),
        log=log,
    )
    try:
        with Client(service.address, tenant.token) as client:
            client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme"))
            refused(
                grpc.StatusCode.NOT_FOUND,
                client.catalog.GetCalendar,
                catalog_pb2.GetCalendarRequest(calendar_id=424242),
            )
        # a call is counted as it ends, which may be just after its caller had the answer
        wanted = 'effigate_requests_total{code="NOT_FOUND",method="GetCalendar"} 1.0'
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                metrics = reply.read().decode()
            if wanted in metrics or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        assert service.stop() == 0
    assert 'effigate_requests_total{code="OK",method="CreateClient"} 1.0' in metrics
    assert 'effigate_requests_total{code="NOT_FOUND",method="GetCalendar"} 1.0' in metrics
    assert 'effigate_request_seconds_count{method="CreateClient"} 1.0' in metrics
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    calls = {e["rpc"]: e for e in entries if e.get("msg") == "rpc"}
    assert calls["CreateClient"]["code"] == "OK"
    assert calls["GetCalendar"]["code"] == "NOT_FOUND"
    assert calls["CreateClient"]["tenant"] == str(tenant.id)
    assert {"serving", "shutting down", "stopped"} <= {e["msg"] for e in entries}
