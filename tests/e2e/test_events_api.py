"""Events through the API: WatchEvents streams invoice and bucket events written in the
transactions that cause them, resumable from a cursor, filtered by type and client, a portal
token held to its client and tenants to themselves; CloudEvents JSON that the ``cloudevents``
package parses; ``effigate events tail`` printing live; a waiting watch never holding up a
shutdown — against a real server process and database."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cloudevents.v1.http import from_json

from effigate_client import Client, billing_pb2, events_pb2, to_timestamp
from effigate_engine.service import bucket_events
from effigate_engine.service.context import Principal
from effigate_engine.store import events as outbox
from effigate_engine.store import timelogs as log_store
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant, _tenant
from tests.e2e.support import refused
from tests.e2e.test_billing_api import (
    HOUR,
    MARCH,
    billing_setup,
    ingest_and_approve,
    new_contract,
    seed_logs,
    time_log,
)
from tests.events.horizon import HorizonSampler
from tests.service.support import open_store
from tests.store.helpers import Database

EFFIGATE = str(Path(sys.executable).with_name("effigate"))
#: How long a test waits for an event it expects (the stream itself delivers within a second;
#: the margin covers a loaded machine and other tests' transactions on the same server).
WAIT_S = 30.0


class Watch:
    """A ``WatchEvents`` call consumed by a thread into a queue: ``take`` what arrived."""

    def __init__(self, client: Client, request: events_pb2.WatchEventsRequest) -> None:
        self.call = client.events.WatchEvents(request, timeout=None)
        self.events: queue.Queue[tuple[float, events_pb2.Event]] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.call:
                self.events.put((time.monotonic(), event))
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def take(self, n: int, timeout: float = WAIT_S) -> list[events_pb2.Event]:
        """The next ``n`` events (fails when they do not arrive within ``timeout``)."""
        return [e for _, e in self.take_timed(n, timeout)]

    def take_timed(self, n: int, timeout: float = WAIT_S) -> list[tuple[float, events_pb2.Event]]:
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < n:
            try:
                got.append(self.events.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {n} events within {timeout} s") from None
        return got

    def quiet(self, seconds: float = 1.0) -> list[events_pb2.Event]:
        """What else arrives within ``seconds`` (expected: nothing)."""
        time.sleep(seconds)
        extra = []
        while not self.events.empty():
            extra.append(self.events.get_nowait()[1])
        return extra

    def stop(self) -> None:
        self.call.cancel()
        self.thread.join(10)


def watch(client: Client, **fields: object) -> Watch:
    return Watch(client, events_pb2.WatchEventsRequest(**fields))


def issued_invoice(client: Client, contract_id: int) -> billing_pb2.Invoice:
    invoice = client.invoice(contract_id, MARCH)
    return client.billing.IssueInvoice(
        billing_pb2.IssueInvoiceRequest(invoice_id=invoice.id, due_days=10)
    )


def names(events: list[events_pb2.Event]) -> list[tuple[str, str]]:
    return [(events_pb2.EventType.Name(e.type), e.subject) for e in events]


def test_a_new_event_reaches_a_waiting_watch_within_a_second(client: Client, db: Database) -> None:
    """Measured from the later of the issue's answer and the moment the event became
    deliverable (a long transaction elsewhere on the server holds every event back: see
    docs/events.md), three times."""
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    ingest_and_approve(client, seed_logs(contract.id, "W"))
    live = watch(client, from_now=True)
    try:
        for n in range(3):
            day = f"2026-0{3 + n}-01"
            if n:
                ingest_and_approve(
                    client,
                    [
                        time_log(
                            f"WN-{n}", contract.id, (f"{day}T10:00-04:00", f"{day}T11:00-04:00")
                        )
                    ],
                )
            invoice = client.invoice(contract.id, day)
            time.sleep(0.3)  # the watch is waiting
            horizon = HorizonSampler(db.admin)
            try:
                issued = client.billing.IssueInvoice(
                    billing_pb2.IssueInvoiceRequest(invoice_id=invoice.id, due_days=10)
                )
                answered = time.monotonic()
                [(arrived, event)] = live.take_timed(1)
            finally:
                horizon.stop()
            assert names([event]) == [("INVOICE_ISSUED", str(invoice.id))]
            deliverable = horizon.deliverable_at(int(event.cursor.split(".")[0]))
            latency = arrived - max(answered, deliverable)
            assert latency < 1.0, f"{latency:.3f} s after it was committed and deliverable"
            assert event.client_id == book.nexus
            assert event.occurred_at == issued.issued_at
        assert live.quiet(0.5) == []
    finally:
        live.stop()


def test_a_rolled_back_drawdown_leaves_no_event(
    client: Client, tenant: Tenant, db: Database
) -> None:
    """The approval's bucket events are written in its transaction: when it rolls back after
    writing them, nothing is left (and nothing is ever streamed)."""
    book = billing_setup(client)
    terms = {"bucket": {"size_hours": 10, "low_balance_hours": ["2"]}}
    bucket = new_contract(client, book, book.nexus, "BUCKET", terms)
    logs = seed_logs(bucket.id, "RB")  # 31.5 h: crosses 2 h and exhausts the 10 h
    client.time_logs.IngestTimeLogs(billing_pb2.IngestTimeLogsRequest(logs=logs))
    principal = Principal(tenant.id, token=tenant.token)

    async def approve_then_fail() -> list[str]:
        async with open_store(db) as store:
            try:
                async with store.transaction(principal) as conn:
                    changed = await log_store.set_approval(conn, [g.id for g in logs], "APPROVED")
                    await bucket_events.announce_for_logs(conn, changed, datetime.now(UTC))
                    written = await outbox.events_by_key(
                        conn,
                        [
                            f"bucket:{bucket.id}:LOW_BALANCE:7200:1",
                            f"bucket:{bucket.id}:EXHAUSTED:1",
                        ],
                    )
                    raise RuntimeError([e.type for e in written])
            except RuntimeError as exc:
                return list(exc.args[0])
        raise AssertionError("the transaction did not fail")

    assert asyncio.run(approve_then_fail()) == ["BUCKET_LOW_BALANCE", "BUCKET_EXHAUSTED"]
    everything = watch(client)
    try:
        assert everything.quiet(1.5) == []
        # the same approval, committed, announces both once
        ingest_and_approve_again = client.time_logs.ApproveTimeLogs(
            billing_pb2.ApproveTimeLogsRequest(log_ids=[g.id for g in logs])
        )
        assert ingest_and_approve_again.changed == len(logs)
        assert names(everything.take(2)) == [
            ("BUCKET_LOW_BALANCE", str(bucket.id)),
            ("BUCKET_EXHAUSTED", str(bucket.id)),
        ]
        assert everything.quiet(1.0) == []
    finally:
        everything.stop()


def test_invoice_events_once_each_with_cloudevents_json(client: Client, tenant: Tenant) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    ingest_and_approve(client, seed_logs(contract.id, "I"))
    issued = issued_invoice(client, contract.id)
    due = issued.due_at.ToDatetime(tzinfo=UTC)
    for _ in range(2):  # a re-sent MarkOverdue moves nothing and announces nothing
        client.billing.MarkOverdue(
            billing_pb2.MarkOverdueRequest(as_of=to_timestamp(due + timedelta(seconds=1)))
        )
    half = issued.total_minor // 2
    received = datetime(2026, 4, 20, 12, tzinfo=UTC)
    for amount in (half, issued.total_minor - half):
        client.billing.RecordPayment(
            billing_pb2.RecordPaymentRequest(
                invoice_id=issued.id, amount_minor=amount, received_at=to_timestamp(received)
            )
        )
    everything = watch(client)
    try:
        events = everything.take(3)
        assert names(events) == [
            ("INVOICE_ISSUED", str(issued.id)),
            ("INVOICE_OVERDUE", str(issued.id)),
            ("INVOICE_PAID", str(issued.id)),
        ]
        assert everything.quiet(1.0) == []
    finally:
        everything.stop()
    overdue = events[1]
    assert overdue.occurred_at == issued.due_at
    assert events[2].occurred_at == to_timestamp(received)
    for event in events:
        parsed = from_json(event.cloudevent_json)
        assert parsed["id"] == event.id
        assert parsed["source"] == f"effigate://tenants/{tenant.id}"
        assert parsed["subject"] == str(issued.id)
        assert parsed["specversion"] == "1.0"
    issued_event = from_json(events[0].cloudevent_json)
    assert issued_event["type"] == "com.effigate.invoice.issued"
    assert issued_event.data["number"] == issued.number
    assert issued_event.data["total_minor"] == issued.total_minor
    assert issued_event.data["currency"] == "USD"
    assert issued_event.data["due_date"] == due.date().isoformat()
    paid = from_json(events[2].cloudevent_json).data
    assert (paid["status"], paid["paid_minor"], paid["balance_due_minor"]) == (
        "PAID",
        issued.total_minor,
        0,
    )


def test_resume_from_a_cursor_and_filter_by_type_and_client(client: Client) -> None:
    book = billing_setup(client)
    mine = new_contract(client, book, book.nexus, terms={})
    theirs = new_contract(client, book, book.globex, terms={})
    ingest_and_approve(client, seed_logs(mine.id, "RN") + seed_logs(theirs.id, "RG"))
    first = issued_invoice(client, mine.id)
    second = issued_invoice(client, theirs.id)
    client.billing.MarkOverdue(
        billing_pb2.MarkOverdueRequest(
            as_of=to_timestamp(second.due_at.ToDatetime(tzinfo=UTC) + timedelta(days=1))
        )
    )
    everything = watch(client)
    try:
        events = everything.take(4)
    finally:
        everything.stop()
    expected = [
        ("INVOICE_ISSUED", str(first.id)),
        ("INVOICE_ISSUED", str(second.id)),
        ("INVOICE_OVERDUE", str(first.id)),
        ("INVOICE_OVERDUE", str(second.id)),
    ]
    assert names(events) == expected
    # resuming after each cursor gives exactly the rest
    for i, event in enumerate(events):
        resumed = watch(client, after_cursor=event.cursor)
        try:
            rest = resumed.take(len(events) - i - 1)
            assert [e.id for e in rest] == [e.id for e in events[i + 1 :]]
            assert resumed.quiet(0.3) == []
        finally:
            resumed.stop()
    overdue = watch(client, types=[events_pb2.INVOICE_OVERDUE])
    nexus = watch(client, client_id=book.nexus)
    both = watch(client, client_id=book.globex, types=[events_pb2.INVOICE_ISSUED])
    try:
        assert names(overdue.take(2)) == expected[2:]
        assert names(nexus.take(2)) == [expected[0], expected[2]]
        assert names(both.take(1)) == [expected[1]]
        assert overdue.quiet(0.5) == nexus.quiet(0) == both.quiet(0) == []
    finally:
        for w in (overdue, nexus, both):
            w.stop()
    # the client's convenience resumes the same way
    seen = []
    for event in client.watch_events(after_cursor=events[0].cursor):
        seen.append(event.id)
        if len(seen) == 3:
            break
    assert seen == [e.id for e in events[1:]]


def test_portal_tokens_see_their_client_and_tenants_only_themselves(
    service: ServiceProcess, client: Client, tenant: Tenant, db: Database
) -> None:
    book = billing_setup(client)
    mine = new_contract(client, book, book.nexus, terms={})
    theirs = new_contract(client, book, book.globex, terms={})
    ingest_and_approve(client, seed_logs(mine.id, "PN") + seed_logs(theirs.id, "PG"))
    own = issued_invoice(client, mine.id)
    other = issued_invoice(client, theirs.id)
    staff = watch(client)
    try:
        assert {e.subject for e in staff.take(2)} == {str(own.id), str(other.id)}
    finally:
        staff.stop()
    with Client(service.address, tenant.portal_token(book.nexus)) as portal:
        own_events = watch(portal)
        try:
            assert names(own_events.take(1)) == [("INVOICE_ISSUED", str(own.id))]
            assert own_events.quiet(1.0) == []
        finally:
            own_events.stop()
        asked = watch(portal, client_id=book.globex)
        assert asked.ended.wait(WAIT_S) and asked.error is not None
        assert asked.error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert str(book.globex) in asked.error.details()
    stranger = _stranger(db)
    with Client(service.address, stranger.token) as elsewhere:
        nothing = watch(elsewhere)
        try:
            assert nothing.quiet(1.5) == []
        finally:
            nothing.stop()


def _stranger(db: Database) -> Tenant:
    return asyncio.run(_tenant(db.admin))


def test_bucket_crossings_are_announced_once_in_the_approving_transaction(
    client: Client,
) -> None:
    book = billing_setup(client)
    terms = {"bucket": {"size_hours": 40, "low_balance_hours": ["10", "5"]}}
    bucket = new_contract(client, book, book.nexus, "BUCKET", terms)
    # the seed's logs burn 31.5 h: 8.5 h left, below the 10 h threshold
    ingest_and_approve(client, seed_logs(bucket.id, "B"))
    events = watch(client, types=[events_pb2.BUCKET_LOW_BALANCE, events_pb2.BUCKET_EXHAUSTED])
    try:
        [low] = events.take(1)
        assert names([low]) == [("BUCKET_LOW_BALANCE", str(bucket.id))]
        data = from_json(low.cloudevent_json).data
        assert (data["threshold_seconds"], data["crossing"]) == (10 * HOUR, 1)
        assert data["balance_seconds"] <= 10 * HOUR
        assert data["contract_id"] == bucket.id and data["client_id"] == book.nexus
        # approving the same logs again changes nothing and announces nothing
        client.time_logs.ApproveTimeLogs(
            billing_pb2.ApproveTimeLogsRequest(log_ids=[f"B-{i}" for i in range(6)])
        )
        # 4 h more: below 5 h; then 8 h more: exhausted (and into overage)
        ingest_and_approve(
            client,
            [time_log("B-more-1", bucket.id, ("2026-03-09T09:00-04:00", "2026-03-09T13:00-04:00"))],
        )
        [five] = events.take(1)
        assert from_json(five.cloudevent_json).data["threshold_seconds"] == 5 * HOUR
        ingest_and_approve(
            client,
            [time_log("B-more-2", bucket.id, ("2026-03-10T09:00-04:00", "2026-03-10T17:00-04:00"))],
        )
        [empty] = events.take(1)
        assert names([empty]) == [("BUCKET_EXHAUSTED", str(bucket.id))]
        assert from_json(empty.cloudevent_json).data["balance_seconds"] == 0
        assert events.quiet(1.0) == []
    finally:
        events.stop()
    balance = client.billing.GetBucketBalance(
        billing_pb2.BucketBalanceRequest(
            contract_id=bucket.id, at=to_timestamp(datetime(2026, 3, 20, tzinfo=UTC))
        )
    )
    assert balance.remaining_seconds == 0


def test_bad_requests_name_the_field(client: Client) -> None:
    for request, field in (
        (events_pb2.WatchEventsRequest(after_cursor="yesterday"), "after_cursor"),
        (events_pb2.WatchEventsRequest(after_cursor="1.2", from_now=True), "from_now"),
        (events_pb2.WatchEventsRequest(types=[99]), "types"),
        (events_pb2.WatchEventsRequest(client_id=-3), "client_id"),
    ):
        details = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda r: list(client.events.WatchEvents(r, timeout=10)),
            request,
        )
        assert field in details, details


def tail(address: str, token: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EFFIGATE_ADDRESS": address, "EFFIGATE_TOKEN": token}
    return subprocess.Popen(
        [EFFIGATE, "events", "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    out: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            out.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return out


def test_cli_tail_prints_events_live(service: ServiceProcess, client: Client, tenant) -> None:
    """The tenant is fresh: ``--from-start`` prints the first invoice's event whenever the
    tail got going; the second invoice, issued once that line was printed, is printed live."""
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    ingest_and_approve(client, seed_logs(contract.id, "T"))
    april = ("2026-04-01T10:00-04:00", "2026-04-01T12:00-04:00")
    ingest_and_approve(client, [time_log("T-april", contract.id, april)])
    first = client.invoice(contract.id, MARCH)
    second = client.invoice(contract.id, "2026-04-01")
    running = tail(service.address, tenant.token, "--from-start")
    json_tail = tail(service.address, tenant.token, "--json", "--type", "invoice_issued")
    try:
        lines, json_lines = lines_of(running), lines_of(json_tail)
        client.billing.IssueInvoice(billing_pb2.IssueInvoiceRequest(invoice_id=first.id))
        line = lines.get(timeout=WAIT_S)
        assert "INVOICE_ISSUED" in line and f"  {first.id}  client {book.nexus}" in line
        cursor = line.rsplit("cursor ", 1)[1]
        time.sleep(1.0)  # the --json tail (from now on) is surely watching by now
        client.billing.IssueInvoice(billing_pb2.IssueInvoiceRequest(invoice_id=second.id))
        line = lines.get(timeout=WAIT_S)
        assert "INVOICE_ISSUED" in line and f"  {second.id}  client {book.nexus}" in line
        parsed = from_json(json_lines.get(timeout=WAIT_S))
        assert parsed["type"] == "com.effigate.invoice.issued"
        assert parsed["subject"] == str(second.id)
        assert running.poll() is None  # still tailing
    finally:
        for process in (running, json_tail):
            process.send_signal(signal.SIGINT)
            assert process.wait(20) == 130
    # resuming after the first event's cursor prints the second only
    after = tail(service.address, tenant.token, "--after", cursor)
    try:
        assert str(second.id) in lines_of(after).get(timeout=WAIT_S)
        time.sleep(1.0)
        assert after.poll() is None
    finally:
        after.send_signal(signal.SIGINT)
        out, _ = after.communicate(timeout=20)
    assert f"  {first.id}  " not in (out or "")


def test_cli_tail_reports_a_bad_cursor_in_one_line(service: ServiceProcess, tenant) -> None:
    done = tail(service.address, tenant.token, "--after", "nope")
    _, err = done.communicate(timeout=60)
    assert done.returncode == 1, err  # refused by the service
    assert err.strip().startswith("effigate: INVALID_ARGUMENT: after_cursor: 'nope'"), err
    assert len(err.strip().splitlines()) == 1


def test_a_waiting_watch_does_not_hold_up_shutdown(db: Database) -> None:
    service = ServiceProcess.start(db.app, admin_dsn=db.admin)
    try:
        tenant = asyncio.run(_tenant(db.admin))
        with Client(service.address, tenant.token, timeout=60) as client:
            waiting = watch(client, from_now=True)
            time.sleep(1.0)
            started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            assert waiting.ended.wait(20)
            assert waiting.error is not None
            assert waiting.error.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in waiting.error.details()
            assert service.process.wait(20) == 0
            assert time.monotonic() - started < 10  # not the 30 s grace
    finally:
        service.stop()
