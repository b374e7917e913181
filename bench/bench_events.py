"""Timeliness of SLA events: due -> delivered through WatchEvents, with many metrics scheduled.

One server process (``effigate serve``, its SLA firing loop included) over a throw-away
database. Through the API:

1. ``--scheduled`` open tickets are bulk-ingested (``IngestTickets``) under a policy whose
   LOW-priority rule has an 8 h first-response target: each is one scheduled metric whose
   transitions are hours away (the background the loop must not be slowed by);
2. ``--probes`` HIGH tickets (1 h target, warning at 0.75, no ladder) are ingested created
   45 minutes minus 30..30+``--spread`` seconds ago, so their warnings come due one by one
   over the next ``--spread`` seconds;
3. a WatchEvents client (started before, ``from_now``) records when each SLA_WARNING
   arrives; latency = arrival (wall clock) - the event's due instant (``occurred_at``);
4. a ``Recompute`` of every ticket: events before and after, and the outbox's dedupe keys
   (no transition is announced twice).

Printed: scheduling time, p50/p99/max due -> delivered, events missing, the server's resident
memory (``VmRSS``, ``VmHWM`` of ``/proc/<pid>/status``) before the probes and at the end, the
Recompute's seconds and the events it added, and the load average (a shared machine makes
figures comparable only between runs on the same quiet machine).

    python bench/bench_events.py [--scheduled 1000000] [--probes 2000] [--spread 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import asyncpg
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
ALWAYS = {
    "timezone": "UTC",
    "weekly": [
        {"weekday": d, "start": "00:00", "end": "24:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ],
}
POLICY = {
    "rules": [
        {
            "match": {"priority": "HIGH"},
            "metrics": {"FIRST_RESPONSE": {"target": "1h", "calendar": "always"}},
        },
        {
            "match": {},
            "metrics": {
                "FIRST_RESPONSE": {
                    "target": "8h",
                    "calendar": "always",
                    "escalation": [{"at_fraction": "0.5", "notify": "queue:desk"}],
                }
            },
        },
    ]
}
STORED_INSTANT = pa.timestamp("us", tz="UTC")


def tickets(
    prefix: str, created: np.ndarray, priority: str, client: int, contract: int
) -> pa.Table:
    n = len(created)
    return pa.table(
        {
            "id": pa.array([f"{prefix}-{i:08d}" for i in range(n)]),
            "client_id": pa.array(np.full(n, client, dtype=np.int64)),
            "contract_id": pa.array(np.full(n, contract, dtype=np.int64)),
            "priority": pa.array([priority] * n),
            "status": pa.array(["OPEN"] * n),
            "created_at": pa.array(created, STORED_INSTANT),
            "first_response_at": pa.nulls(n, STORED_INSTANT),
            "resolved_at": pa.nulls(n, STORED_INSTANT),
        }
    )


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def watch(address: str, token: str, arrivals: dict[str, float], stop: threading.Event) -> None:
    """Record the arrival (wall clock) of every SLA event, by dedupe-free key (type, subject)."""
    import grpc

    from effigate_client import Client

    with Client(address, token, timeout=None) as client:
        try:
            for event in client.watch_events(types=["SLA_WARNING"], from_now=True):
                arrivals[event.subject] = time.time() - event.occurred_at.ToSeconds()
                if stop.is_set():
                    return
        except grpc.RpcError:  # the server stopped at the end of the run
            return


async def outbox_keys(admin: str) -> tuple[int, int]:
    conn = await asyncpg.connect(admin)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT dedupe_key) FROM events")
    finally:
        await conn.close()
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scheduled", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=2_000)
    parser.add_argument("--spread", type=float, default=120.0)
    parser.add_argument("--dsn", default=None, help="superuser DSN of the PostgreSQL to use")
    parser.add_argument("--no-recompute", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_store import drop_database, fresh_database, service_dsn

    from effigate_client import Client, catalog_pb2
    from effigate_engine.store.dsn import with_database
    from effigate_engine.store.settings import resolve_test_dsn
    from effigate_server.process import ServiceProcess

    server_dsn = args.dsn or resolve_test_dsn()
    name, tenant, client_id, contract_id = asyncio.run(fresh_database(server_dsn, "events"))
    admin = with_database(server_dsn, name)
    service = ServiceProcess.start(service_dsn(admin, name), admin_dsn=admin)
    pid = service.process.pid
    token = str(tenant.token)
    try:
        with Client(service.address, token, timeout=3600) as client:
            calendar = client.catalog.CreateCalendar(
                catalog_pb2.CreateCalendarRequest(name="always", body_json=json.dumps(ALWAYS))
            ).id
            policy = client.catalog.CreatePolicy(
                catalog_pb2.CreatePolicyRequest(
                    name="bench", calendar_id=calendar, body_json=json.dumps(POLICY)
                )
            ).id

            async def attach() -> None:
                conn = await asyncpg.connect(admin)
                try:
                    await conn.execute("UPDATE contracts SET sla_policy_id = $1", policy)
                finally:
                    await conn.close()

            asyncio.run(attach())
            now_us = int(time.time()) * 1_000_000
            rng = np.random.default_rng(3)
            background = now_us - rng.integers(0, 3_600, args.scheduled) * 1_000_000
            started = time.perf_counter()
            for start in range(0, args.scheduled, 200_000):
                part = background[start : start + 200_000]
                table = tickets(f"BG{start // 200_000:02d}", part, "LOW", client_id, contract_id)
                client.ingest_tickets(table)
            scheduling = time.perf_counter() - started
            idle = memory_kib(pid)

            arrivals: dict[str, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(
                target=watch, args=(service.address, token, arrivals, stop), daemon=True
            )
            watcher.start()
            time.sleep(2.0)
            base = int(time.time()) + 30
            due = base + np.sort(rng.integers(0, int(args.spread), args.probes))
            created = (due - 45 * 60) * 1_000_000
            client.ingest_tickets(tickets("PROBE", created, "HIGH", client_id, contract_id))
            deadline = base + args.spread + 30
            while len(arrivals) < args.probes and time.time() < deadline:
                time.sleep(0.5)
            stop.set()
            end = memory_kib(pid)
            before = asyncio.run(outbox_keys(admin))
            recompute_seconds = None
            after = before
            if not args.no_recompute:
                started = time.perf_counter()
                client.recompute(policy)
                recompute_seconds = time.perf_counter() - started
                time.sleep(2.0)
                after = asyncio.run(outbox_keys(admin))
    finally:
        service.stop()
        asyncio.run(drop_database(server_dsn, name))

    latencies = sorted(arrivals.values())
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"SLA events: {args.scheduled:,} metrics scheduled + {args.probes:,} warnings due over"
        f" {args.spread:.0f} s (load average {load})"
    )
    print(
        f"  scheduling by bulk ingest: {scheduling:.1f} s"
        f" ({args.scheduled / scheduling:,.0f} tickets/s)"
    )
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        print(
            f"  due -> delivered (WatchEvents): p50 {statistics.median(latencies):.3f} s,"
            f" p99 {p99:.3f} s, max {latencies[-1]:.3f} s;"
            f" {len(latencies):,} of {args.probes:,} delivered"
        )
    print(
        f"  server memory: {idle['VmRSS'] / 1024:.0f} MiB resident after scheduling,"
        f" {end['VmRSS'] / 1024:.0f} MiB at the end, peak {end['VmHWM'] / 1024:.0f} MiB"
    )
    if recompute_seconds is not None:
        print(
            f"  Recompute of all: {recompute_seconds:.1f} s; events {before[0]:,} -> {after[0]:,},"
            f" distinct dedupe keys {after[1]:,} (duplicates: {after[0] - after[1]})"
        )


if __name__ == "__main__":
    main()
