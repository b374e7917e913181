"""The service end to end: SLA evaluation through the Arrow stream and unary latency.

The server runs as its own process (``effigate serve`` on a loopback port, over a throw-away
database on ``EFFIGATE_TEST_DSN`` / 127.0.0.1:5432 / the embedded server); this process is the
client. Measured in the same run, side by side:

- the Arrow stream: tickets/s from an Arrow table in the client to the results table back in
  the client (serialisation, loopback, server evaluation, and back);
- Arrow Flight ``DoExchange``: the same tickets, client table to results table, through the
  Flight endpoints (record batches as Arrow's own messages, evaluated batch by batch);
- the in-process kernel on the same tickets (``sla.evaluate``, one and two threads): the
  ceiling the stream and Flight are compared with;
- ticket ingest: the ``IngestTickets`` Arrow-chunk stream and Flight ``DoPut`` storing the
  same number of new tickets (fresh ids each run), tickets/s;
- unary ``Evaluate`` of one ticket and ``GetTicketStatus`` of one stored ticket, called back to
  back: p50 / p99 / max latency.

    python bench/bench_service.py [--tickets 1000000] [--chunk 131072] [--calls 2000]
    python bench/bench_service.py --unary-only   # the two unary calls only: latency at one
        caller (Python client and raw stub), throughput at --callers concurrent callers
    python bench/bench_service.py --ingest-tickets 0   # no ingest comparison
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pyarrow as pa  # noqa: E402
from bench_sla import NOW, calendars, policies, tickets  # noqa: E402
from bench_store import drop_database, fresh_database, service_dsn  # noqa: E402

from effigate.v1 import sla_pb2_grpc, tickets_pb2_grpc  # noqa: E402
from effigate_client import (  # noqa: E402
    Client,
    catalog_pb2,
    sla_pb2,
    tickets_pb2,
    to_timestamp,
)
from effigate_client.flight import FlightClient  # noqa: E402
from effigate_engine import CalendarSet, sla  # noqa: E402
from effigate_engine.store.dsn import with_database  # noqa: E402
from effigate_engine.store.settings import resolve_test_dsn  # noqa: E402
from effigate_server.process import ServiceProcess  # noqa: E402

H = 3600


async def prepare(server_dsn: str) -> tuple[str, str, str, int]:
    """A migrated throw-away database with a tenant (``bench_store.fresh_database``): its admin
    DSN, its name, a token of the tenant and the id of its client."""
    name, tenant, client_id, _ = await fresh_database(server_dsn, "service")
    return with_database(server_dsn, name), name, str(tenant.token), client_id


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=131_072, help="tickets per stream message")
    parser.add_argument("--calls", type=int, default=2_000, help="unary calls for latency")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ingest-tickets", type=int, default=100_000, help="new tickets per ingest run"
    )
    parser.add_argument(
        "--unary-only", action="store_true", help="measure the unary latencies only"
    )
    parser.add_argument(
        "--callers", type=int, default=8, help="concurrent callers for unary throughput"
    )
    args = parser.parse_args()

    server_dsn = resolve_test_dsn()
    admin, name, token, client_id = asyncio.run(prepare(server_dsn))
    service = ServiceProcess.start(service_dsn(admin, name), admin_dsn=admin)
    try:
        cals = calendars()
        policy = policies()["policy-1"]
        with Client(service.address, token, timeout=600) as client:
            first = None
            for cal in cals:
                info = client.catalog.CreateCalendar(
                    catalog_pb2.CreateCalendarRequest(
                        name=cal.name, body_json=json.dumps(cal.to_json())
                    )
                )
                first = first or info.id
            stored = client.catalog.CreatePolicy(
                catalog_pb2.CreatePolicyRequest(
                    name=policy.name, calendar_id=first, body_json=json.dumps(policy.to_json())
                )
            )
            single = sla_pb2.EvaluateRequest(policy_id=stored.id, now=to_timestamp(NOW))
            single.tickets.add(
                ticket_id="T-1",
                priority="HIGH",
                created_at=to_timestamp(datetime(2026, 11, 19, 14, tzinfo=UTC)),
            )
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(
                    id="T-STATUS",
                    client_id=client_id,
                    priority="HIGH",
                    created_at=to_timestamp(datetime(2026, 11, 19, 14, tzinfo=UTC)),
                )
            )
            status = tickets_pb2.GetTicketStatusRequest(
                ticket_id="T-STATUS", policy_id=stored.id, at=to_timestamp(NOW)
            )
            # warm: the server compiles the tenant's calendars once (cached afterwards)
            client.sla.Evaluate(single)
            unary_calls = UnaryCalls(service.address, token, single, status)
            unary = unary_calls.measure(client, args.calls, args.repeats, args.callers)
            if args.unary_only:
                unary.report(args.calls, args.repeats, args.callers)
                return
            batch = tickets(
                args.tickets, int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()), 300 * 24 * H
            )
            batch = batch.drop_columns(["policy"])
            client.evaluate_arrow(stored.id, batch.slice(0, 1000), NOW)

            stream_s, out = best_of(
                lambda: client.evaluate_arrow(stored.id, batch, NOW, chunk_rows=args.chunk),
                args.repeats,
            )
            with FlightClient(service.flight_url, token, timeout=600) as flights:
                flights.evaluate(batch.slice(0, 1000), stored.id, NOW)
                # interleaved with the kernel, run for run: on a shared machine the load
                # moves between runs, and the ratio is taken of runs made side by side
                paired = CalendarSet(cals)
                flight_s = paired_s = float("inf")
                for _ in range(args.repeats):
                    kernel_s, _ = best_of(
                        lambda: sla.evaluate(batch, policy, paired, NOW, threads=1), 1
                    )
                    paired_s = min(paired_s, kernel_s)
                    seconds, exchanged = best_of(
                        lambda: flights.evaluate(batch, stored.id, NOW, batch_rows=args.chunk),
                        1,
                    )
                    flight_s = min(flight_s, seconds)
                ingest = measure_ingest(client, flights, client_id, args)
            compiled = CalendarSet(cals)
            one_s, local = best_of(
                lambda: sla.evaluate(batch, policy, compiled, NOW, threads=1), args.repeats
            )
            two_s, _ = best_of(
                lambda: sla.evaluate(batch, policy, compiled, NOW, threads=2), args.repeats
            )
            assert out.num_rows == local.results.num_rows == exchanged.num_rows
            after_bulk = unary_calls.latencies(client.sla.Evaluate, args.calls)

    finally:
        service.stop()
        asyncio.run(drop_database(server_dsn, name))

    n = args.tickets
    print(f"SLA evaluation end to end, {n:,} tickets, chunks of {args.chunk:,},", end=" ")
    print(f"best of {args.repeats}")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  load average: {load}")
    print(f"  {'path':<44} {'seconds':>8} {'tickets/s':>12} {'vs kernel':>10}")
    rows = [
        ("in-process kernel, 1 thread (ceiling)", one_s),
        ("in-process kernel, 2 threads", two_s),
        ("Arrow stream over loopback (client+server)", stream_s),
        ("Flight DoExchange over loopback", flight_s),
    ]
    for label, seconds in rows:
        print(f"  {label:<44} {seconds:>8.3f} {n / seconds:>12,.0f} {one_s / seconds:>9.2f}x")
    print(
        f"  Flight DoExchange vs the kernel run beside it (interleaved, best of"
        f" {args.repeats} each): {paired_s / flight_s:.2f}x"
        f" (kernel {n / paired_s:,.0f}, Flight {n / flight_s:,.0f} tickets/s)"
    )
    if ingest:
        m = args.ingest_tickets
        print(f"Ticket ingest, {m:,} new tickets per run, best of {args.repeats}")
        print(f"  {'path':<44} {'seconds':>8} {'tickets/s':>12} {'vs stream':>10}")
        for label, seconds in ingest:
            ratio = ingest[0][1] / seconds
            print(f"  {label:<44} {seconds:>8.3f} {m / seconds:>12,.0f} {ratio:>9.2f}x")
    unary.report(args.calls, args.repeats, args.callers)
    report_latency("unary Evaluate, 1 ticket, after the bulk runs", args.calls, after_bulk)


def ticket_rows(prefix: str, n: int, client_id: int) -> pa.Table:
    """``n`` new tickets of the store's ``tickets`` columns, ids ``{prefix}-{i}``."""
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
    stamp = pa.timestamp("us", tz="UTC")
    created = pa.array([start + i * 60_000_000 for i in range(n)], pa.int64()).cast(stamp)
    return pa.table(
        {
            "id": [f"{prefix}-{i}" for i in range(n)],
            "client_id": pa.array([client_id] * n, pa.int64()),
            "contract_id": pa.nulls(n, pa.int64()),
            "priority": [("CRITICAL", "HIGH", "MEDIUM", "LOW")[i % 4] for i in range(n)],
            "status": ["OPEN"] * n,
            "created_at": created,
            "first_response_at": pa.nulls(n, stamp),
            "resolved_at": pa.nulls(n, stamp),
        }
    )


def measure_ingest(
    client: Client, flights: FlightClient, client_id: int, args: argparse.Namespace
) -> list[tuple[str, float]]:
    """Best seconds to store ``--ingest-tickets`` new tickets through the IngestTickets stream
    and through Flight DoPut (alternating which goes first, fresh ids each run); empty when
    not asked."""
    n = args.ingest_tickets
    if n <= 0:
        return []
    stream_s = put_s = float("inf")
    for run in range(args.repeats):
        streamed = ticket_rows(f"S{run}", n, client_id)
        putting = ticket_rows(f"F{run}", n, client_id)
        for path in ("stream", "put") if run % 2 == 0 else ("put", "stream"):
            started = time.perf_counter()
            if path == "stream":
                summary = client.ingest_tickets(streamed, chunk_rows=args.chunk)
                stream_s = min(stream_s, time.perf_counter() - started)
                assert summary.inserted == n, summary
            else:
                put = flights.ingest_tickets(putting)
                put_s = min(put_s, time.perf_counter() - started)
                assert put["inserted"] == n, put
    return [("IngestTickets Arrow-chunk stream", stream_s), ("Flight DoPut", put_s)]


def report_latency(label: str, calls: int, lat: list[float]) -> None:
    """Print p50 / p99 / max of sorted latencies in milliseconds."""
    p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
    print(f"{label}, {calls:,} calls: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms")


#: Seconds each concurrent-callers throughput run lasts.
THROUGHPUT_SECONDS = 3.0


@dataclass
class UnaryFigures:
    """Sorted latencies (ms) of the best round per call form, and throughput (calls/s) at
    ``callers`` concurrent callers with their latencies."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    throughput: dict[str, tuple[float, list[float]]] = field(default_factory=dict)
    load: str = ""

    def report(self, calls: int, repeats: int, callers: int) -> None:
        print(f"unary calls, one caller, back to back, best round of {repeats} by p99")
        print(f"  load average: {self.load}")
        for label, lat in self.latencies.items():
            report_latency(f"  {label}", calls, lat)
        print(f"unary throughput, {callers} concurrent callers (own channel each, asyncio)")
        for label, (rate, lat) in self.throughput.items():
            p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
            print(
                f"  {label}: {rate:,.0f} calls/s (best of {repeats}),"
                f" p50 {p50:.2f} ms, p99 {p99:.2f} ms"
            )


class UnaryCalls:
    """Unary ``Evaluate`` of one inline ticket and ``GetTicketStatus`` of one stored ticket:
    through the Python client (:class:`Client`, what users call) and through a raw generated
    stub (the client library's own per-call cost left out), one caller back to back; then
    throughput at N concurrent callers, each with a channel of its own (``grpc.aio``)."""

    def __init__(
        self,
        address: str,
        token: str,
        single: sla_pb2.EvaluateRequest,
        status: tickets_pb2.GetTicketStatusRequest,
    ) -> None:
        self.address = address
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.single = single
        self.status = status

    def latencies(self, call: Callable[[Any], Any], calls: int, request: Any = None) -> list[float]:
        """Sorted milliseconds of ``calls`` back-to-back calls (after 200 warm-up calls)."""
        request = self.single if request is None else request
        for _ in range(200):
            call(request)
        out = []
        clock = time.perf_counter_ns
        for _ in range(calls):
            started = clock()
            call(request)
            out.append((clock() - started) / 1e6)
        return sorted(out)

    def measure(self, client: Client, calls: int, repeats: int, callers: int) -> UnaryFigures:
        figures = UnaryFigures()
        channel = grpc.insecure_channel(self.address)
        try:
            raw_sla = sla_pb2_grpc.SlaServiceStub(channel)
            raw_tickets = tickets_pb2_grpc.TicketServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            metadata = self.metadata
            forms = {
                "Evaluate, 1 ticket (Python client)": (client.sla.Evaluate, self.single),
                "Evaluate, 1 ticket (raw stub)": (
                    lambda r: raw_sla.Evaluate(r, metadata=metadata, timeout=60),
                    self.single,
                ),
                "GetTicketStatus (Python client)": (client.tickets.GetTicketStatus, self.status),
                "GetTicketStatus (raw stub)": (
                    lambda r: raw_tickets.GetTicketStatus(r, metadata=metadata, timeout=60),
                    self.status,
                ),
                # the floor: a unary call on the same server with no token, no interceptor
                # work and no servicer work (gRPC's own cost, client and server)
                "health Check (raw stub, the gRPC floor)": (
                    lambda r: health.Check(r, timeout=60),
                    health_pb2.HealthCheckRequest(),
                ),
            }
            for label, (call, request) in forms.items():
                rounds = [self.latencies(call, calls, request) for _ in range(repeats)]
                figures.latencies[label] = min(
                    rounds, key=lambda lat: lat[int(len(lat) * 0.99) - 1]
                )
        finally:
            channel.close()
        for label, method, request in (
            ("Evaluate, 1 ticket", "/effigate.v1.SlaService/Evaluate", self.single),
            ("GetTicketStatus", "/effigate.v1.TicketService/GetTicketStatus", self.status),
        ):
            runs = [asyncio.run(self._concurrent(method, request, callers)) for _ in range(repeats)]
            figures.throughput[label] = max(runs, key=lambda run: run[0])
        figures.load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        return figures

    async def _concurrent(
        self, method: str, request: Any, callers: int
    ) -> tuple[float, list[float]]:
        """Calls/s of ``callers`` tasks calling back to back for :data:`THROUGHPUT_SECONDS`,
        and their sorted latencies (ms)."""
        channels = [grpc.aio.insecure_channel(self.address) for _ in range(callers)]
        payload = request.SerializeToString()
        lat: list[float] = []
        clock = time.perf_counter_ns

        calls = [c.unary_unary(method, lambda b: b, lambda b: b) for c in channels]
        for call in calls:  # connected and warm before the clock starts
            for _ in range(20):
                await call(payload, metadata=self.metadata)

        async def caller(call: Any, until: float) -> int:
            done = 0
            while time.perf_counter() < until:
                started = clock()
                await call(payload, metadata=self.metadata)
                lat.append((clock() - started) / 1e6)
                done += 1
            return done

        try:
            started = time.perf_counter()
            until = started + THROUGHPUT_SECONDS
            counts = await asyncio.gather(*(caller(c, until) for c in calls))
            elapsed = time.perf_counter() - started
        finally:
            for channel in channels:
                await channel.close()
        return sum(counts) / elapsed, sorted(lat)


if __name__ == "__main__":
    main()
