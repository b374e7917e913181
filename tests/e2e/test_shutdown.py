"""Graceful shutdown: SIGTERM while a client stream is in flight lets it finish, stores each of
its rows once, and the process exits cleanly — against a server process of its own."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import grpc
import pyarrow as pa

from effigate_client import Client, catalog_pb2, common_pb2
from effigate_client.client import ipc_bytes
from effigate_engine.store.batches import STORED_TIME_LOGS
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import _tenant
from tests.e2e.support import at, refused
from tests.e2e.test_billing_api import billing_setup, new_contract
from tests.store.helpers import Database

CHUNKS = 4
ROWS = 250


def log_chunk(contract_id: int, chunk: int) -> pa.Table:
    """``ROWS`` fifteen-minute time logs (store columns), ids ``SD-{chunk}-{i}``."""
    first = at("2026-03-02T14:00+00:00") + timedelta(days=chunk)
    starts = [first + timedelta(minutes=i) for i in range(ROWS)]
    return pa.table(
        {
            "id": [f"SD-{chunk}-{i}" for i in range(ROWS)],
            "contract_id": [contract_id] * ROWS,
            "ticket_id": [f"TKT-{i % 7}" for i in range(ROWS)],
            "task_ref": [None] * ROWS,
            "agent": ["ana"] * ROWS,
            "support_level": ["L2"] * ROWS,
            "job_type": ["support"] * ROWS,
            "priority": ["MEDIUM"] * ROWS,
            "started_at": starts,
            "ended_at": [s + timedelta(minutes=15) for s in starts],
            "billable_type": ["BILLABLE"] * ROWS,
            "approval_state": ["PENDING"] * ROWS,
        },
        schema=STORED_TIME_LOGS.schema,
    )


async def stored_log_ids(admin: str, tenant: object, contract_id: int) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(admin)
    try:
        async with conn.transaction():
            await conn.execute("SELECT effigate_bind_tenant($1)", tenant)
            rows = await conn.fetch(
                "SELECT id, count(*) AS n FROM time_logs WHERE contract_id = $1"
                " GROUP BY id ORDER BY id",
                contract_id,
            )
    finally:
        await conn.close()
    return [(r["id"], r["n"]) for r in rows]


def refused_soon(address: str, token: str, within_s: float = 5.0) -> grpc.StatusCode:
    """The status of new calls, each on a new channel, once the signal has been handled (OK
    if every call until ``within_s`` passed was served)."""
    deadline = time.monotonic() + within_s
    while True:
        with Client(address, token, timeout=10) as other:
            try:
                other.catalog.ListClients(catalog_pb2.ListClientsRequest())
            except grpc.RpcError as exc:
                return exc.code()
        if time.monotonic() > deadline:
            return grpc.StatusCode.OK
        time.sleep(0.05)


def test_sigterm_lets_an_inflight_stream_finish(db: Database) -> None:
    service = ServiceProcess.start(db.app, admin_dsn=db.admin)
    try:
        tenant = asyncio.run(_tenant(db.admin))
        with Client(service.address, tenant.token, timeout=120) as client:
            book = billing_setup(client)
            contract = new_contract(client, book, book.nexus, terms={})
            chunks = [log_chunk(contract.id, c) for c in range(CHUNKS)]
            first_sent = threading.Event()

            terminated = threading.Event()
            while_draining: list[grpc.StatusCode] = []

            def requests() -> Iterator[common_pb2.ArrowChunk]:
                for position, chunk in enumerate(chunks):
                    if position:
                        time.sleep(0.6)
                    yield common_pb2.ArrowChunk(arrow_ipc=ipc_bytes(chunk))
                    if position == 0:
                        time.sleep(0.3)  # the first chunk is on its way to the server
                        first_sent.set()
                        assert terminated.wait(60)
                        while_draining.append(refused_soon(service.address, tenant.token))

            def terminate() -> None:
                assert first_sent.wait(60)
                service.process.send_signal(signal.SIGTERM)
                terminated.set()

            signaller = threading.Thread(target=terminate)
            signaller.start()
            summary = client.time_logs.IngestTimeLogStream(requests(), timeout=120)
            signaller.join()
            # while the stream drained, the server took no new call
            assert while_draining == [grpc.StatusCode.UNAVAILABLE]
            assert service.process.poll() is None or service.process.returncode == 0
            assert (summary.received, summary.inserted, summary.updated) == (
                CHUNKS * ROWS,
                CHUNKS * ROWS,
                0,
            )
        assert service.process.wait(60) == 0

        stored = asyncio.run(stored_log_ids(db.admin, tenant.id, contract.id))
        sent = sorted(i for chunk in chunks for i in chunk.column("id").to_pylist())
        assert [log_id for log_id, _ in stored] == sent
        assert {n for _, n in stored} == {1}

        with Client(service.address, tenant.token, timeout=10) as late:
            refused(
                grpc.StatusCode.UNAVAILABLE,
                late.catalog.CreateClient,
                catalog_pb2.CreateClientRequest(name="After hours"),
            )
    finally:
        service.stop()
