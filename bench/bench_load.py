"""Load: concurrent Arrow streams and unary calls against one server process, for a bounded time.

Several client processes (``--processes``), each running one asyncio task per call kind:

- ``EvaluateStream``: 20,000 tickets in chunks of 5,000, results read back;
- ``IngestTickets``: a stream of 5,000 new tickets (two chunks), one all-or-nothing batch;
- ``Evaluate``: one ticket, typed;
- ``GetTicketStatus``: one stored ticket's SLA status;
- ``CreateTicket``: one new ticket.

Printed per call kind: calls, errors, p50 and p99 latency, calls/s (and rows/s for streams);
the overall error rate; the server's peak resident memory (``VmHWM`` of ``/proc/<pid>/status``)
and the load average (the machine may be shared: figures are comparable only between runs on
the same quiet machine).

The server runs as its own process (``effigate serve``) over a throw-away database created on
``--dsn`` (a superuser DSN; default ``EFFIGATE_TEST_DSN``, else 127.0.0.1:5432, else the
embedded server), dropped at the end.

    python bench/bench_load.py [--seconds 60] [--processes 2] [--dsn postgresql://...]
        [--kinds Evaluate,GetTicketStatus,CreateTicket]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
NOW = datetime(2026, 11, 21, tzinfo=UTC)
KINDS = ("EvaluateStream", "IngestTickets", "Evaluate", "GetTicketStatus", "CreateTicket")
STREAM_TICKETS = 20_000
STREAM_CHUNK = 5_000
INGEST_ROWS = 5_000


@dataclass(frozen=True)
class Target:
    """Where the load goes: the server's address, a staff token, and a policy, a client and a
    stored ticket of the token's tenant."""

    address: str
    token: str
    policy_id: int
    client_id: int
    ticket_id: str


@dataclass
class Kind:
    """Outcomes of one call kind: latencies of successful calls (ms), rows moved, errors by
    status code name."""

    latencies: list[float] = field(default_factory=list)
    rows: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # code -> the first message

    def add(self, other: Kind) -> None:
        self.latencies.extend(other.latencies)
        self.rows += other.rows
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        for code, message in other.messages.items():
            self.messages.setdefault(code, message)


@dataclass
class Report:
    """A load run: seconds, outcomes per call kind, and the server's peak RSS (KiB)."""

    seconds: float
    kinds: dict[str, Kind]
    peak_rss_kib: int | None = None

    @property
    def calls(self) -> int:
        return sum(len(k.latencies) + sum(k.errors.values()) for k in self.kinds.values())

    @property
    def errors(self) -> int:
        return sum(sum(k.errors.values()) for k in self.kinds.values())

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def lines(self) -> list[str]:
        """The report as printed lines."""
        out = [
            f"{'call':<16} {'calls':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}"
            f" {'calls/s':>8} {'rows/s':>10}"
        ]
        for name, kind in self.kinds.items():
            lat = sorted(kind.latencies)
            p50 = statistics.median(lat) if lat else float("nan")
            p99 = lat[max(int(len(lat) * 0.99) - 1, 0)] if lat else float("nan")
            calls = len(lat) + sum(kind.errors.values())
            rows = f"{kind.rows / self.seconds:>10,.0f}" if kind.rows else f"{'':>10}"
            out.append(
                f"{name:<16} {calls:>7} {sum(kind.errors.values()):>6} {p50:>8.2f} {p99:>8.2f}"
                f" {calls / self.seconds:>8.1f} {rows}"
            )
        out.append(
            f"all: {self.calls} calls in {self.seconds:.1f} s, {self.calls / self.seconds:.1f}/s,"
            f" error rate {self.error_rate:.4%}"
        )
        for name, kind in self.kinds.items():
            if kind.errors:
                out.append(f"  {name} errors: {kind.errors}")
                for code, message in kind.messages.items():
                    out.append(f"    {code}: {message}")
        if self.peak_rss_kib is not None:
            out.append(f"server peak RSS (VmHWM): {self.peak_rss_kib / 1024:.0f} MiB")
        return out


def sla_tickets(n: int, seed: int) -> pa.Table:
    """``n`` tickets in the ``sla.TICKETS`` schema: random priorities, responses, pauses and
    resolutions over November 2026."""
    from effigate_engine import sla

    rng = random.Random(seed)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        created = base + timedelta(minutes=rng.randrange(0, 28_000))
        row: dict[str, Any] = {
            "ticket_id": f"L-{i}",
            "priority": rng.choice(["P1", "HIGH", "MEDIUM", "LOW"]),
            "after_hours": rng.random() < 0.3,
            "created_at": created,
            "pauses": [],
        }
        if rng.random() < 0.7:
            row["first_response_at"] = created + timedelta(minutes=rng.randrange(1, 900))
        if rng.random() < 0.5:
            row["resolved_at"] = created + timedelta(minutes=rng.randrange(60, 9000))
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=sla.TICKETS)


def ticket_rows(client_id: int, prefix: str, n: int) -> pa.Table:
    """``n`` new stored-ticket rows (the ingest columns), ids ``{prefix}-{i}``."""
    from effigate_engine.store.batches import STORED_INSTANT, STORED_TICKETS

    created = datetime(2026, 11, 1, tzinfo=UTC)
    return pa.table(
        {
            "id": [f"{prefix}-{i:06d}" for i in range(n)],
            "client_id": pa.array([client_id] * n, pa.int64()),
            "contract_id": pa.array([None] * n, pa.int64()),
            "priority": ["MEDIUM"] * n,
            "status": ["OPEN"] * n,
            "created_at": pa.array(
                [created + timedelta(seconds=i) for i in range(n)], STORED_INSTANT
            ),
            "first_response_at": pa.array([None] * n, STORED_INSTANT),
            "resolved_at": pa.array([None] * n, STORED_INSTANT),
        },
        schema=STORED_TICKETS.required.schema,
    )


async def _loop(deadline: float, kind: Kind, call: Callable[[int], Any], rows: int = 0) -> None:
    """Call ``call(i)`` back to back until ``deadline`` (monotonic), recording each outcome."""
    i = 0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            await call(i)
        except grpc.aio.AioRpcError as exc:
            name = exc.code().name
            kind.errors[name] = kind.errors.get(name, 0) + 1
            kind.messages.setdefault(name, str(exc.details())[:300])
        else:
            kind.latencies.append((time.perf_counter() - started) * 1000)
            kind.rows += rows
        i += 1


async def _worker(
    target: Target, seconds: float, worker: int, only: tuple[str, ...] = KINDS
) -> dict[str, Kind]:
    from effigate_client import AsyncClient, common_pb2, sla_pb2, tickets_pb2, to_timestamp
    from effigate_client.client import ipc_bytes

    tickets = sla_tickets(STREAM_TICKETS, seed=worker)
    evaluate_chunks = [
        sla_pb2.EvaluateChunk(arrow_ipc=ipc_bytes(tickets.slice(start, STREAM_CHUNK)), sequence=n)
        for n, start in enumerate(range(0, STREAM_TICKETS, STREAM_CHUNK))
    ]
    evaluate_chunks[0].policy_id = target.policy_id
    evaluate_chunks[0].now.CopyFrom(to_timestamp(NOW))
    single = sla_pb2.EvaluateRequest(policy_id=target.policy_id, now=to_timestamp(NOW))
    single.tickets.add(
        ticket_id="T-1",
        priority="HIGH",
        created_at=to_timestamp(datetime(2026, 11, 19, 14, tzinfo=UTC)),
    )
    status = tickets_pb2.GetTicketStatusRequest(
        ticket_id=target.ticket_id, policy_id=target.policy_id, at=to_timestamp(NOW)
    )
    tag = f"{worker}-{time.time_ns() % 10**12}"
    kinds = {name: Kind() for name in only}

    async with AsyncClient(target.address, target.token, timeout=120) as client:

        async def evaluate_stream(_: int) -> None:
            async def requests() -> AsyncIterator[Any]:
                for message in evaluate_chunks:
                    yield message

            replies = 0
            async for _reply in client.sla.EvaluateStream(requests(), timeout=120):
                replies += 1
            assert replies == len(evaluate_chunks)

        async def ingest(i: int) -> None:
            table = ticket_rows(target.client_id, f"LI{tag}-{i}", INGEST_ROWS)
            half = INGEST_ROWS // 2

            async def requests() -> AsyncIterator[Any]:
                for part in (table.slice(0, half), table.slice(half)):
                    yield common_pb2.ArrowChunk(arrow_ipc=ipc_bytes(part))

            summary = await client.tickets.IngestTickets(requests(), timeout=120)
            assert summary.inserted == INGEST_ROWS

        async def evaluate(_: int) -> None:
            await client.sla.Evaluate(single)

        async def ticket_status(_: int) -> None:
            await client.tickets.GetTicketStatus(status)

        async def create(i: int) -> None:
            await client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(
                    id=f"LC{tag}-{i}",
                    client_id=target.client_id,
                    priority="LOW",
                    created_at=to_timestamp(datetime(2026, 11, 20, tzinfo=UTC)),
                )
            )

        calls: dict[str, tuple[Callable[[int], Any], int]] = {
            "EvaluateStream": (evaluate_stream, STREAM_TICKETS),
            "IngestTickets": (ingest, INGEST_ROWS),
            "Evaluate": (evaluate, 0),
            "GetTicketStatus": (ticket_status, 0),
            "CreateTicket": (create, 0),
        }
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_loop(deadline, kinds[name], *calls[name]) for name in only))
    return kinds


def _process(target: Target, seconds: float, worker: int, only: tuple[str, ...], out: Any) -> None:
    out.put(asyncio.run(_worker(target, seconds, worker, only)))


def peak_rss_kib(pid: int) -> int | None:
    """``VmHWM`` (peak resident set, KiB) of process ``pid``, when readable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_load(
    target: Target,
    seconds: float,
    processes: int,
    server_pid: int | None,
    only: tuple[str, ...] = KINDS,
) -> Report:
    """Run the load (the call kinds ``only``) from ``processes`` client processes for
    ``seconds``; the report."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [
        context.Process(target=_process, args=(target, seconds, n, only, out), daemon=True)
        for n in range(processes)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 300) for _ in workers]
    for worker in workers:
        worker.join(30)
    elapsed = time.monotonic() - started
    kinds = {name: Kind() for name in only}
    for result in results:
        for name, kind in result.items():
            kinds[name].add(kind)
    # the processes took a moment to start: rates are over the load's own duration
    return Report(
        min(elapsed, seconds), kinds, None if server_pid is None else peak_rss_kib(server_pid)
    )


def setup_target(address: str, token: str) -> Target:
    """The sample calendars and standard policy (the policy names its calendars), a client and
    one stored ticket, through the API, for the token's tenant (a fresh one: the calendar
    names are the samples')."""
    from effigate_client import Client, catalog_pb2, tickets_pb2, to_timestamp

    with Client(address, token, timeout=60) as client:
        calendars = {}
        for name in ("sydney-business-hours", "london-24x7"):
            body = (SAMPLES / "calendars" / f"{name}.json").read_text()
            calendars[name] = client.catalog.CreateCalendar(
                catalog_pb2.CreateCalendarRequest(name=name, body_json=body)
            ).id
        policy = client.catalog.CreatePolicy(
            catalog_pb2.CreatePolicyRequest(
                name="standard-msp",
                calendar_id=calendars["sydney-business-hours"],
                body_json=(SAMPLES / "policies" / "standard-msp.json").read_text(),
            )
        ).id
        client_id = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Load")).id
        ticket = f"LOAD-STATUS-{time.time_ns()}"
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=ticket,
                client_id=client_id,
                priority="HIGH",
                created_at=to_timestamp(datetime(2026, 11, 19, 14, tzinfo=UTC)),
            )
        )
    return Target(address, token, policy, client_id, ticket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--dsn", default=None, help="superuser DSN of the PostgreSQL to use")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"call kinds, comma-separated ({', '.join(KINDS)})"
    )
    args = parser.parse_args()
    only = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(only) - set(KINDS)
    if unknown:
        parser.error(f"--kinds: {', '.join(sorted(unknown))} not among {', '.join(KINDS)}")

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_store import drop_database, fresh_database, service_dsn

    from effigate_engine.store.dsn import with_database
    from effigate_engine.store.settings import resolve_test_dsn
    from effigate_server.process import ServiceProcess

    server_dsn = args.dsn or resolve_test_dsn()
    name, tenant, _, _ = asyncio.run(fresh_database(server_dsn, "load"))
    admin = with_database(server_dsn, name)
    service = ServiceProcess.start(service_dsn(admin, name), admin_dsn=admin)
    try:
        target = setup_target(service.address, str(tenant.token))
        report = run_load(target, args.seconds, args.processes, service.process.pid, only)
        alive = service.process.poll() is None
    finally:
        service.stop()
        asyncio.run(drop_database(server_dsn, name))
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Load: {args.processes} client processes x {len(only)} call kinds for"
        f" {args.seconds:.0f} s (load average {load})"
    )
    for line in report.lines():
        print(f"  {line}")
    print(f"  server alive after the load: {alive}")


if __name__ == "__main__":
    main()
