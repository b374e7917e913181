"""Faults: PostgreSQL restarted or crashed under writes, the server killed mid-ingest, clients
going away mid-stream, and the client's retry policy, each against a real server process over
a PostgreSQL cluster this module owns (see :mod:`tests.faults.cluster`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import grpc
import pyarrow as pa
import pytest

from effigate_client import Client, catalog_pb2, common_pb2, sla_pb2, tickets_pb2, to_timestamp
from effigate_client.client import ipc_bytes
from effigate_engine.store.batches import STORED_INSTANT, STORED_TICKETS, IngestResult
from effigate_engine.store.bulk import ingest_adbc, run_adbc
from effigate_engine.store.database import Store
from effigate_engine.store.dsn import APP_ROLE
from effigate_engine.store.migrate import migrate
from effigate_engine.store.tenant import TenantKey
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant, _tenant
from tests.e2e.support import at, standard_setup
from tests.e2e.test_sla_api import NOW, generated_tickets
from tests.faults.cluster import Cluster, wait_until
from tests.store.helpers import Database

T0 = at("2026-03-02T09:00+00:00")
#: Seconds the server gets to let go of the database after a client went away.
GRACE_S = 5.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this module's own: its tests stop, restart and crash it."""
    own = Cluster.create()
    try:
        yield own
    finally:
        own.destroy()


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Database:
    """The migrated ``effigate`` database of the cluster (superuser and service-role DSNs)."""

    async def create() -> None:
        conn = await asyncpg.connect(cluster.dsn())
        try:
            await conn.execute("CREATE DATABASE effigate")
        finally:
            await conn.close()
        await migrate(cluster.dsn("effigate"))

    asyncio.run(create())
    return Database("effigate", cluster.dsn("effigate"), cluster.dsn("effigate", APP_ROLE))


def start_service(database: Database, log: Path) -> ServiceProcess:
    """A server process over the cluster, logging every call (JSON lines) to ``log``."""
    return ServiceProcess.start(
        database.app, admin_dsn=database.admin, args=("--log-level", "INFO"), log=log
    )


@pytest.fixture(scope="module")
def service(database: Database, cluster: Cluster) -> Iterator[ServiceProcess]:
    """One server process for the module's tests (those that kill a server start their own)."""
    running = start_service(database, cluster.root / "service.log")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def tenant(database: Database) -> Tenant:
    """A fresh tenant with a staff token."""
    return asyncio.run(_tenant(database.admin))


def bare(address: str, token: str) -> Client:
    """A client that never retries: each call's status is what the server answered."""
    return Client(address, token, timeout=30, attempts=1)


def new_client(client: Client) -> int:
    return client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id


async def _admin_query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def query(database: Database, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of ``sql`` run by the superuser (row-level security does not apply to it)."""
    return asyncio.run(_admin_query(database.admin, sql, *args))


def server_backends(database: Database, states: tuple[str, ...]) -> list[asyncpg.Record]:
    """The service role's backends in one of ``states`` (``pg_stat_activity``)."""
    return query(
        database,
        "SELECT pid, state, left(query, 60) AS query FROM pg_stat_activity"
        " WHERE usename = $1 AND datname = $2 AND state = ANY($3::text[])",
        APP_ROLE,
        database.name,
        list(states),
    )


def busy(database: Database) -> list[asyncpg.Record]:
    """Backends of the service running a statement or holding a transaction open."""
    return server_backends(
        database, ("active", "idle in transaction", "idle in transaction (aborted)")
    )


def ticket_batch(client_id: int, n: int, prefix: str) -> pa.Table:
    """``n`` tickets (the ingest columns), ids ``{prefix}-000000`` … in key order."""
    created = [T0 + timedelta(seconds=i) for i in range(n)]
    return pa.table(
        {
            "id": [f"{prefix}-{i:06d}" for i in range(n)],
            "client_id": pa.array([client_id] * n, pa.int64()),
            "contract_id": pa.array([None] * n, pa.int64()),
            "priority": ["HIGH"] * n,
            "status": ["OPEN"] * n,
            "created_at": pa.array(created, STORED_INSTANT),
            "first_response_at": pa.array([None] * n, STORED_INSTANT),
            "resolved_at": pa.array([None] * n, STORED_INSTANT),
        },
        schema=STORED_TICKETS.required.schema,
    )


def chunks(table: pa.Table, rows: int) -> Iterator[common_pb2.ArrowChunk]:
    for start in range(0, table.num_rows, rows):
        yield common_pb2.ArrowChunk(arrow_ipc=ipc_bytes(table.slice(start, rows)))


def stored_ids(database: Database, tenant: Tenant, prefix: str) -> Counter[str]:
    """How many times each ticket id starting with ``prefix`` is stored for the tenant."""
    rows = query(
        database,
        "SELECT id, count(*) AS n FROM tickets WHERE tenant_id = $1 AND id LIKE $2 GROUP BY id",
        tenant.id,
        f"{prefix}%",
    )
    return Counter({r["id"]: r["n"] for r in rows})


# a. PostgreSQL restarted or crashed mid-run ------------------------------------------------


@dataclass
class Writes:
    """What a writer attempted and what the server answered."""

    created: dict[str, str] = field(default_factory=dict)  # ticket id -> status code name
    responded: dict[str, str] = field(default_factory=dict)  # event id -> status code name
    batches: dict[str, tuple[int, str]] = field(default_factory=dict)  # prefix -> (rows, code)
    details: dict[str, str] = field(default_factory=dict)  # code -> one message

    def codes(self) -> Counter[str]:
        every = [*self.created.values(), *self.responded.values()]
        return Counter(every + [code for _, code in self.batches.values()])


def _code(exc: grpc.RpcError, writes: Writes) -> str:
    name = exc.code().name
    writes.details.setdefault(name, str(exc.details()))
    return name


def write_until(stop: threading.Event, address: str, token: str, client_id: int, name: str,
                writes: Writes) -> None:
    """Create tickets and record a response on each, one call at a time, until ``stop``."""
    with bare(address, token) as client:
        i = 0
        while not stop.is_set():
            ticket = f"{name}-{i}"
            i += 1
            created = T0 + timedelta(minutes=i)
            try:
                client.tickets.CreateTicket(
                    tickets_pb2.CreateTicketRequest(
                        id=ticket, client_id=client_id, priority="HIGH",
                        created_at=to_timestamp(created),
                    )
                )
                writes.created[ticket] = "OK"
            except grpc.RpcError as exc:
                writes.created[ticket] = _code(exc, writes)
                continue
            event = f"{ticket}:responded"
            try:
                client.tickets.RecordEvent(
                    tickets_pb2.RecordEventRequest(
                        event_id=event, ticket_id=ticket, kind=tickets_pb2.RESPONDED,
                        occurred_at=to_timestamp(created + timedelta(minutes=5)),
                    )
                )
                writes.responded[event] = "OK"
            except grpc.RpcError as exc:
                writes.responded[event] = _code(exc, writes)


def ingest_until(stop: threading.Event, address: str, token: str, client_id: int,
                 writes: Writes) -> None:
    """Ingest batches of 300 new tickets (three chunks each) until ``stop``."""
    with bare(address, token) as client:
        i = 0
        while not stop.is_set():
            prefix = f"B{i:04d}"
            i += 1
            batch = ticket_batch(client_id, 300, prefix)
            try:
                client.tickets.IngestTickets(chunks(batch, 100))
                writes.batches[prefix] = (300, "OK")
            except grpc.RpcError as exc:
                writes.batches[prefix] = (300, _code(exc, writes))


def check_whole(database: Database, tenant: Tenant, writes: Writes) -> None:
    """Every acknowledged write is stored once; every stored write is whole: a ticket with its
    CREATED event, a response event with the ticket's first response folded in, a batch
    with all its rows."""
    tickets = {
        r["id"]: r
        for r in query(
            database,
            "SELECT id, first_response_at FROM tickets WHERE tenant_id = $1 AND id LIKE 'W%'",
            tenant.id,
        )
    }
    events = Counter(
        (r["ticket_id"], r["kind"])
        for r in query(
            database,
            "SELECT ticket_id, kind FROM ticket_events WHERE tenant_id = $1", tenant.id,
        )
    )
    assert set(tickets) <= set(writes.created), "a ticket nobody sent is stored"
    for ticket, code in writes.created.items():
        if code == "OK":
            assert ticket in tickets, f"acknowledged ticket {ticket} is missing"
        if ticket in tickets:
            assert events[(ticket, "CREATED")] == 1, f"ticket {ticket} without its CREATED event"
    for event, code in writes.responded.items():
        ticket = event.removesuffix(":responded")
        stored = events[(ticket, "RESPONDED")]
        assert stored <= 1
        if code == "OK":
            assert stored == 1, f"acknowledged event {event} is missing"
        folded = tickets[ticket]["first_response_at"] is not None
        assert folded == (stored == 1), f"event {event} stored without its fold, or vice versa"
    counts: Counter[str] = Counter()
    for ticket in query(
        database, "SELECT id FROM tickets WHERE tenant_id = $1 AND id LIKE 'B%'", tenant.id
    ):
        counts[ticket["id"].split("-")[0]] += 1
    for prefix, (rows, code) in writes.batches.items():
        assert counts[prefix] in ((rows,) if code == "OK" else (0, rows)), (prefix, code)


def run_writers(service: ServiceProcess, tenant: Tenant, client_id: int, writes: Writes,
                fault: object) -> None:
    """Two ticket writers and one ingester against ``service`` while ``fault()`` runs."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=write_until,
            args=(stop, service.address, tenant.token, client_id, f"W{n}", writes),
        )
        for n in range(2)
    ]
    threads.append(
        threading.Thread(
            target=ingest_until, args=(stop, service.address, tenant.token, client_id, writes)
        )
    )
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        fault()  # type: ignore[operator]
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def served(service: ServiceProcess, tenant: Tenant, client_id: int, tag: str) -> None:
    """Without retries: a write, a read and an ingest all succeed."""
    with bare(service.address, tenant.token) as client:
        ticket = client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=f"R-{tag}", client_id=client_id, priority="LOW",
                created_at=to_timestamp(T0),
            )
        )
        assert ticket.status == "OPEN"
        status = client.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id=f"R-{tag}"))
        assert status.id == f"R-{tag}"
        summary = client.tickets.IngestTickets(chunks(ticket_batch(client_id, 50, f"R{tag}"), 25))
        assert summary.received == 50


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_writes_across_a_postgres_restart_are_whole_and_the_server_recovers(
    service: ServiceProcess, cluster: Cluster, database: Database, tenant: Tenant, mode: str
) -> None:
    with bare(service.address, tenant.token) as client:
        client_id = new_client(client)
    writes = Writes()
    run_writers(service, tenant, client_id, writes, lambda: cluster.restart(mode))
    codes = writes.codes()
    assert codes["OK"] > 0
    # during the outage callers are told to retry, never INTERNAL or UNKNOWN
    assert set(codes) <= {"OK", "UNAVAILABLE"}, (codes, writes.details)
    if codes["UNAVAILABLE"]:
        assert "database" in writes.details["UNAVAILABLE"]
    check_whole(database, tenant, writes)
    # the same server process serves again, each call at its first try
    assert service.process.poll() is None
    served(service, tenant, client_id, mode)


def test_calls_while_postgres_is_down_are_unavailable_and_served_once_it_is_back(
    service: ServiceProcess, cluster: Cluster, database: Database, tenant: Tenant
) -> None:
    with bare(service.address, tenant.token) as client:
        client_id = new_client(client)
        client.tickets.IngestTickets(chunks(ticket_batch(client_id, 10, "D0"), 10))
    unused = tenant.portal_token(client_id)  # never resolved by the server yet
    cluster.stop("fast")
    try:
        with bare(service.address, tenant.token) as client, bare(service.address, unused) as portal:
            calls = {
                "CreateTicket": lambda: client.tickets.CreateTicket(
                    tickets_pb2.CreateTicketRequest(
                        id="D-1", client_id=client_id, priority="LOW",
                        created_at=to_timestamp(T0),
                    )
                ),
                "GetTicketStatus": lambda: client.tickets.GetTicketStatus(
                    tickets_pb2.GetTicketStatusRequest(ticket_id="D0-000000")
                ),
                "IngestTickets": lambda: client.tickets.IngestTickets(
                    chunks(ticket_batch(client_id, 10, "D1"), 5)
                ),
                "ListTickets (a token not resolved yet)": lambda: portal.tickets.ListTickets(
                    tickets_pb2.ListTicketsRequest()
                ),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (
                    name, caught.value.code(), caught.value.details()
                )
                assert "database is unreachable" in str(caught.value.details()), name
    finally:
        cluster.start()
    assert service.process.poll() is None
    served(service, tenant, client_id, "down")
    with bare(service.address, unused) as portal:
        listed = portal.tickets.ListTickets(tickets_pb2.ListTicketsRequest())
        assert "R-down" in {t.id for t in listed.tickets}
    assert stored_ids(database, tenant, "D1") == Counter()
    assert stored_ids(database, tenant, "D-") == Counter()
    # the outage is logged as JSON lines too, the pool's warnings included
    lines = (cluster.root / "service.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert any(e["logger"].startswith("asyncpg") for e in entries)


# b. The server killed mid-ingest ----------------------------------------------------------


def test_a_server_killed_mid_ingest_stores_nothing_and_the_retried_batch_once(
    database: Database, cluster: Cluster, tenant: Tenant
) -> None:
    rows = 200_000
    log = cluster.root / "killed.log"
    first = start_service(database, log)
    try:
        with bare(first.address, tenant.token) as client:
            client_id = new_client(client)
        batch = ticket_batch(client_id, rows, "K")
        outcome: list[object] = []

        def send() -> None:
            with bare(first.address, tenant.token) as client:
                try:
                    outcome.append(client.tickets.IngestTickets(chunks(batch, 20_000)))
                except grpc.RpcError as exc:
                    outcome.append(exc.code())

        sender = threading.Thread(target=send)
        sender.start()
        # the batch is in the database's hands: COPY into staging, or the insert from it
        wait_until(
            lambda: any(
                b["query"].lstrip().upper().startswith(("COPY", "INSERT INTO TICKETS"))
                for b in server_backends(database, ("active",))
            ),
            60,
            "the server's ingest reaching the database",
            step_s=0.005,
        )
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        sender.join(30)
        assert outcome and outcome[0] == grpc.StatusCode.UNAVAILABLE, outcome
    finally:
        first.stop()
    # the database notices the dead client and rolls its transaction back
    wait_until(lambda: not busy(database), 30, "the killed server's backends ending")
    assert sum(stored_ids(database, tenant, "K-").values()) in (0, rows)

    second = start_service(database, log)
    try:
        with bare(second.address, tenant.token) as client:
            summary = client.tickets.IngestTickets(chunks(batch, 20_000))
    finally:
        second.stop()
    assert summary.received == rows
    stored = stored_ids(database, tenant, "K-")
    assert len(stored) == rows and set(stored.values()) == {1}
    sample = query(
        database,
        "SELECT id, client_id, priority, created_at FROM tickets WHERE tenant_id = $1"
        " AND id IN ('K-000000', 'K-123456', 'K-199999') ORDER BY id",
        tenant.id,
    )
    assert [(r["id"], r["client_id"], r["priority"], r["created_at"]) for r in sample] == [
        (f"K-{i:06d}", client_id, "HIGH", T0 + timedelta(seconds=i)) for i in (0, 123456, 199999)
    ]


# c. Clients going away mid-stream ---------------------------------------------------------


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """A memory figure of process ``pid`` from ``/proc/<pid>/status`` (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for process {pid}")


def cpu_seconds(pid: int, over_s: float) -> float:
    """CPU seconds (user and system) process ``pid`` uses in the next ``over_s`` seconds."""

    def used() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = used()
    time.sleep(over_s)
    return used() - before


def test_an_ingest_cancelled_while_the_database_works_rolls_back_and_frees_it(
    service: ServiceProcess, database: Database, tenant: Tenant
) -> None:
    rows = 200_000
    with bare(service.address, tenant.token) as client:
        client_id = new_client(client)
        batch = ticket_batch(client_id, rows, "C")
        # cancelled while still sending: nothing reaches the database
        call = client.tickets.IngestTickets.future(
            _slow(chunks(batch, 10_000), after=3, pause_s=0.3)
        )
        time.sleep(0.2)
        call.cancel()
        # cancelled while the database does the work: the statement is cancelled
        call = client.tickets.IngestTickets.future(chunks(batch, 20_000))
        wait_until(
            lambda: any(
                b["query"].lstrip().upper().startswith(("COPY", "INSERT INTO TICKETS"))
                for b in server_backends(database, ("active",))
            ),
            60,
            "the server's ingest reaching the database",
            step_s=0.005,
        )
        assert call.cancel()
        wait_until(lambda: not busy(database), GRACE_S, "the server's backends going idle")
        assert stored_ids(database, tenant, "C-") == Counter()
        # both connections kinds serve the next calls
        served(service, tenant, client_id, "cancelled")
        again = client.tickets.IngestTickets(chunks(batch.slice(0, 1000), 500))
        assert again.inserted == 1000


def test_an_ingest_whose_caller_is_cancelled_before_its_commit_stores_nothing(
    service: ServiceProcess, database: Database, tenant: Tenant
) -> None:
    """Cancelled while no statement runs (the batch still being prepared): the ingest rolls
    back at its commit instead of committing for a caller that is gone."""
    with bare(service.address, tenant.token) as client:
        client_id = new_client(client)
    key = TenantKey(tenant.id, tenant.token)
    batch = ticket_batch(client_id, 1000, "P")

    def slow_ingest(conn: object) -> IngestResult:
        time.sleep(0.5)  # preparing (no statement on the server to cancel)
        return ingest_adbc(conn, STORED_TICKETS, key, batch)

    async def run() -> IngestResult:
        store = await Store.open(database.app, adbc_connections=1)
        try:
            async with store.adbc() as conn:
                work = asyncio.ensure_future(run_adbc(conn, slow_ingest))
                await asyncio.sleep(0.1)
                work.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await work
            async with store.adbc() as conn:  # the connection serves the next caller
                return await run_adbc(conn, ingest_adbc, STORED_TICKETS, key, batch.slice(0, 10))
        finally:
            await store.close()

    assert asyncio.run(run()).inserted == 10
    assert len(stored_ids(database, tenant, "P-")) == 10


def _slow(messages: Iterator[common_pb2.ArrowChunk], after: int, pause_s: float) -> Iterator[
    common_pb2.ArrowChunk
]:
    """``messages``, pausing ``pause_s`` seconds before each one after the first ``after``."""
    for i, message in enumerate(messages):
        if i >= after:
            time.sleep(pause_s)
        yield message


def test_evaluate_streams_dropped_half_way_free_their_work(
    database: Database, cluster: Cluster, tenant: Tenant
) -> None:
    tickets = generated_tickets(40_000, seed=5)
    # a server of its own: memory figures undisturbed by other tests' calls
    service = start_service(database, cluster.root / "dropped.log")
    try:
        with Client(service.address, tenant.token, timeout=120) as client:
            ids = standard_setup(client)
            requests = [
                sla_pb2.EvaluateChunk(arrow_ipc=ipc_bytes(tickets.slice(i, 1000)), sequence=n)
                for n, i in enumerate(range(0, tickets.num_rows, 1000))
            ]
            requests[0].policy_id = ids.policy
            requests[0].now.CopyFrom(to_timestamp(NOW))
            whole = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=1000)

            def dropped() -> None:
                replies = client.sla.EvaluateStream(iter(requests), timeout=None)
                assert next(replies).sequence == 0
                assert next(replies).sequence == 1
                replies.cancel()

            for _ in range(4):
                dropped()
            settled = rss_kib(service.process.pid)
            for _ in range(20):
                dropped()
            wait_until(lambda: not busy(database), GRACE_S, "the server's backends going idle")
            # the dropped streams' work stops: the server idles
            wait_until(
                lambda: cpu_seconds(service.process.pid, 1.0) < 0.3, 10, "the server idling"
            )
            # a dropped stream's data is not kept: twenty more grow the server by less than
            # what they sent (4 MB each; the allocator and the collector keep some, in steps
            # of up to 20 MB, which a run of twenty streams averages out)
            grown = rss_kib(service.process.pid) - settled
            sent = sum(len(r.arrow_ipc) for r in requests) // 1024
            assert grown < 20 * sent, f"the server grew {grown} KiB over twenty dropped streams"
            again = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=1000)
            assert again.equals(whole)
            one = client.sla.Evaluate(
                sla_pb2.EvaluateRequest(
                    policy_id=ids.policy,
                    tickets=[
                        sla_pb2.TicketInput(
                            ticket_id="one", priority="HIGH", created_at=to_timestamp(T0)
                        )
                    ],
                    now=to_timestamp(NOW),
                )
            )
            assert {r.ticket_id for r in one.results} == {"one"}
    finally:
        service.stop()


# d. The client's retry policy -------------------------------------------------------------


def attempts_logged(log: Path, method: str, code: str, since: int) -> int:
    """Calls of ``method`` answered ``code`` in the server's log after byte ``since``."""
    with open(log) as lines:
        lines.seek(since)
        return sum(
            1
            for line in lines
            if '"rpc"' in line
            and (entry := json.loads(line)).get("rpc") == method
            and entry.get("code") == code
        )


def test_the_client_retries_unavailable_idempotent_calls_only(
    service: ServiceProcess, cluster: Cluster, database: Database, tenant: Tenant
) -> None:
    log = cluster.root / "service.log"
    with Client(service.address, tenant.token, timeout=30) as client:
        client_id = new_client(client)
        # a refusal other than UNAVAILABLE is not retried
        mark = log.stat().st_size
        with pytest.raises(grpc.RpcError) as caught:
            client.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        wait_until(lambda: attempts_logged(log, "GetTicket", "NOT_FOUND", mark) == 1, 5, "log")
        cluster.stop("fast")
        try:
            mark = log.stat().st_size
            # an idempotent call: five tries in all, with backoff (7.5 s of waiting at most)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                client.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id="nope"))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 20
            # a call with an effect is tried once
            with pytest.raises(grpc.RpcError) as caught:
                client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Once"))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            wait_until(
                lambda: attempts_logged(log, "GetTicket", "UNAVAILABLE", mark) == 5, 5, "retries"
            )
            time.sleep(0.3)  # nothing more arrives
            assert attempts_logged(log, "GetTicket", "UNAVAILABLE", mark) == 5
            assert attempts_logged(log, "CreateClient", "UNAVAILABLE", mark) == 1
        finally:
            cluster.start()
        # an idempotent write ridden through a short restart by the retries
        restart = threading.Timer(0.05, cluster.restart, kwargs={"mode": "immediate"})
        restart.start()
        for i in range(40):
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(
                    id=f"RT-{i}", client_id=client_id, priority="LOW",
                    created_at=to_timestamp(T0),
                )
            )
        restart.join()
    assert len(stored_ids(database, tenant, "RT-")) == 40
    assert query(database, "SELECT count(*) AS n FROM clients WHERE name = 'Once'")[0]["n"] == 0
