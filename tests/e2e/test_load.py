"""A short load: concurrent Arrow streams and unary calls from two client processes against the
session's server (``bench/bench_load.py`` for the measured, longer run). Asserts correctness
under load (no call fails, the server keeps serving), not speed."""

from __future__ import annotations

from bench.bench_load import KINDS, run_load, setup_target
from effigate_client import Client, tickets_pb2
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant

SECONDS = 12.0


def test_a_short_load_has_no_errors_and_leaves_the_server_serving(
    service: ServiceProcess, tenant: Tenant
) -> None:
    target = setup_target(service.address, tenant.token)
    report = run_load(target, SECONDS, processes=2, server_pid=service.process.pid)
    failures = {name: kind.messages for name, kind in report.kinds.items() if kind.errors}
    assert report.error_rate == 0, failures
    for name in KINDS:
        assert report.kinds[name].latencies, f"no {name} call completed"
    assert report.peak_rss_kib is not None and report.peak_rss_kib > 0
    assert service.process.poll() is None
    with Client(service.address, tenant.token, timeout=30, attempts=1) as client:
        status = client.tickets.GetTicketStatus(
            tickets_pb2.GetTicketStatusRequest(
                ticket_id=target.ticket_id, policy_id=target.policy_id
            )
        )
        assert status.ticket.id == target.ticket_id
        listed = client.tickets.ListTickets(tickets_pb2.ListTicketsRequest(limit=5))
        assert len(listed.tickets) == 5
