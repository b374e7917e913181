"""Webhook delivery: commit → receipt latency and throughput of one server process.

A throw-away database (created on ``--dsn``, a superuser DSN; default ``EFFIGATE_TEST_DSN``,
else 127.0.0.1:5432), one ``effigate serve`` over it (``EFFIGATE_WEBHOOK_ALLOW_PRIVATE=1``),
``--endpoints`` STANDARD endpoints of one tenant on a loopback receiver that verifies every
request with ``standardwebhooks``. Events are committed in transactions of ``--batch``
events, ``--events`` in all, as fast as the writer can; each event fans out to every endpoint.

Printed: deliveries, wall time from the first commit to the last receipt, deliveries/s, and
the p50/p99/max latency from an event's commit to its receipt (the worker's wake-up, claim,
signing, HTTP round trip). The machine may be shared: figures compare only between runs on
the same quiet machine.

    python bench/bench_webhooks.py [--events 2000] [--batch 20] [--endpoints 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--endpoints", type=int, default=2)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()

    import asyncpg

    from effigate_client import Client, webhooks_pb2
    from effigate_engine.store.events import NewEvent, append_events
    from effigate_engine.store.settings import resolve_test_dsn
    from effigate_engine.store.tenant import TenantKey, tenant_transaction
    from tests.e2e.test_webhooks import T0, fresh_database, new_tenant, start_server
    from tests.e2e.webhook_receiver import Receiver

    os.environ.setdefault("EFFIGATE_WEBHOOK_POLL_SECONDS", "5")
    receiver = Receiver()
    committed: dict[str, float] = {}
    with fresh_database(args.dsn or resolve_test_dsn()) as db:
        running = start_server(db, EFFIGATE_WEBHOOK_POLL_SECONDS="5")
        try:
            tenant = new_tenant(db)
            paths = [f"/bench-{i}" for i in range(args.endpoints)]
            with Client(running.address, tenant.token, timeout=30) as client:
                for path in paths:
                    created = client.webhooks.CreateWebhookEndpoint(
                        webhooks_pb2.CreateWebhookEndpointRequest(url=receiver.url(path))
                    )
                    receiver.expect(path, [created.secret])

            async def write() -> None:
                conn = await asyncpg.connect(db.app)
                try:
                    for start in range(0, args.events, args.batch):
                        rows = [
                            NewEvent(
                                type="SLA_BREACHED",
                                dedupe_key=f"bench:{uuid.uuid4()}",
                                subject=f"INC-{n}",
                                occurred_at=T0,
                                data={"ticket_id": f"INC-{n}", "metric": "RESOLUTION"},
                                event_id=uuid.uuid4(),
                            )
                            for n in range(start, min(args.events, start + args.batch))
                        ]
                        async with tenant_transaction(conn, TenantKey(tenant.id, tenant.token)):
                            await append_events(conn, rows)
                        now = time.monotonic()
                        for r in rows:
                            committed[str(r.event_id)] = now
                finally:
                    await conn.close()

            first = time.monotonic()
            asyncio.run(write())
            total = args.events * args.endpoints
            receiver.wait_for(
                lambda: sum(len(receiver.processed(p)) for p in paths) == total,
                timeout=600,
                what="every delivery",
            )
            wall = max(r.at for r in receiver.requests) - first
        finally:
            running.stop()
    receiver.close()
    assert all(r.verified for r in receiver.requests)
    latency = sorted(r.at - committed[r.webhook_id] for r in receiver.requests)
    q = statistics.quantiles(latency, n=100)
    print(
        f"webhooks: {len(latency)} deliveries of {args.events} events to {args.endpoints}"
        f" endpoints in {wall:.2f} s = {len(latency) / wall:,.0f}/s; commit→receipt"
        f" p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, max {latency[-1] * 1000:.0f} ms"
        f" (load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
