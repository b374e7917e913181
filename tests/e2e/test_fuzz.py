"""Every RPC of a real server driven with generated requests, built from the proto descriptors.

Each method's input message is walked field by field: integers take boundary values (0, −1,
2^31, 2^63−1, …) and real ids of the tenant's rows, text takes empty, NUL, control characters,
unicode, over-long and plausible values, timestamps take out-of-range seconds and nanos,
enums unknown numbers, repeated fields several elements, nested messages the same treatment.
Client streams get a few chunks: random bytes, Arrow IPC of real-looking rows, Arrow IPC of
unrelated tables. After every call:

- the status is never ``INTERNAL`` or ``UNKNOWN`` (a bug, whatever the input);
- a refused call wrote nothing (row counts of every tenant table, read as the owner, are
  unchanged; accepted calls may write);

and after the run the server still answers its health check. The run makes at least
:data:`MIN_CALLS` calls and prints how many it made, per RPC and per status.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
import pyarrow as pa
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from effigate_client import Client, billing_pb2, tickets_pb2
from effigate_server.app import SERVICES
from tests.e2e.support import standard_setup
from tests.e2e.test_billing_api import MARCH, SEED_SPANS, at, billing_setup, new_contract, time_log

#: Generated calls per run (examples × calls per example) and the floor the test asserts.
EXAMPLES = 250
CALLS_PER_EXAMPLE = 42
MIN_CALLS = 10_000
#: Status codes no input may produce.
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

INT32 = [0, 1, -1, 2, 7, 2**31 - 1, -(2**31), 1000, 10_000, 10_001]
INT64 = [*INT32, 2**31, 2**32, 2**53 + 1, 2**63 - 1, -(2**63), 10**15, 10**17]
UINT = [0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]
HUGE = "y" * 300_000
TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\x01\x1f\x7f",
    "line\nbreak",
    " ",
    "é漢字🙂",
    "\u202e\ufeff",
    "P1",
    "HIGH",
    "MEDIUM",
    "APPROVED",
    "REJECTED",
    "USD",
    "HOURLY",
    "BUCKET",
    "TOP_UP",
    "NOTE",
    "RATE_CARD",
    "day",
    "month",
    "priority",
    "client_id",
    "UTC",
    "America/New_York",
    "Mars/Olympus",
    "L2",
    "2026-03-01",
    "2026-02-30",
    "2150-01-01",
    "1900-01-01",
    "0000-00-00",
    "{}",
    "[]",
    "null",
    '{"a": 1}',
    '{"currency": "USD", "base_rates": []}',
    "x" * 201,
    "z" * 2001,
]
#: In-range instants (2000..2100) and the edges of the range.
GOOD_SECONDS = [946_684_800, 1_772_323_200, 1_795_219_200, 4_102_444_799]
BAD_SECONDS = [4_102_444_800, 946_684_799, 0, -1, 253_402_300_800, -62_135_596_801, 10**17,
               -(10**17), 2**63 - 1, -(2**63)]
NANOS = [0, 1, 999_999_999, 1_000_000_000, 2_000_000_000, -1, 2**31 - 1, -(2**31)]


@dataclass
class Pools:
    """Real ids of the tenant's rows, so generated calls get past the first check."""

    ints: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    arrow: list[bytes] = field(default_factory=list)
    json_bodies: list[str] = field(default_factory=list)


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


#: Plausible text of a tame generator: values the domain accepts somewhere.
PLAUSIBLE = [t for t in TEXT if t and t.isprintable() and len(t) < 60 and "\x00" not in t]


class Generator:
    """Hypothesis strategies of request messages, derived from their descriptors. A ``tame``
    generator draws only in-range values (real ids, plausible text, instants in range, known
    enum numbers), so its calls get past the boundary into the domain operations."""

    def __init__(self, pools: Pools, tame: bool = False) -> None:
        self.pools = pools
        self.tame = tame
        self._messages: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def integer(self, f: FieldDescriptor) -> st.SearchStrategy[int]:
        bits32 = f.type in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32)
        unsigned = f.type in (f.TYPE_UINT32, f.TYPE_UINT64, f.TYPE_FIXED32, f.TYPE_FIXED64)
        if unsigned:
            small = f.type in (f.TYPE_UINT32, f.TYPE_FIXED32)
            lo, hi, edges = 0, 2**32 - 1 if small else 2**64 - 1, UINT
        elif bits32:
            lo, hi, edges = -(2**31), 2**31 - 1, INT32
        else:
            lo, hi, edges = -(2**63), 2**63 - 1, INT64
        edges = [v for v in edges if lo <= v <= hi]
        if self.tame:
            real = [v for v in self.pools.ints if lo <= v <= hi] or [1]
            return st.one_of(st.sampled_from(real), st.integers(0, 100))
        choices = [st.sampled_from(edges), st.integers(lo, hi), st.integers(0, 100)]
        if self.pools.ints:
            real = [v for v in self.pools.ints if lo <= v <= hi]
            choices += [st.sampled_from(real)] * 2
        return st.one_of(choices)

    def text(self, f: FieldDescriptor) -> st.SearchStrategy[str]:
        if self.tame:
            tame = [st.sampled_from(PLAUSIBLE)]
            if f.name.endswith("_json"):
                tame.append(st.sampled_from(self.pools.json_bodies))
            if f.name == "id" or f.name.endswith(("_id", "_ids")):
                tame.append(st.sampled_from(self.pools.texts))
            return st.one_of(tame)
        choices: list[st.SearchStrategy[str]] = [
            st.sampled_from(TEXT),
            st.text(max_size=12),
        ]
        if f.name.endswith("_json"):
            choices += [st.sampled_from(self.pools.json_bodies)] * 2
        if (f.name == "id" or f.name.endswith(("_id", "_ids"))) and self.pools.texts:
            choices += [st.sampled_from(self.pools.texts)] * 2
        # a rare huge value: draws from a one-in-thirty sampled choice
        choices.append(st.sampled_from([HUGE] + [""] * 29))
        return st.one_of(choices)

    def timestamp(self) -> st.SearchStrategy[Timestamp]:
        if self.tame:
            good = st.integers(GOOD_SECONDS[0], GOOD_SECONDS[-1])
            return st.builds(Timestamp, seconds=st.one_of(st.sampled_from(GOOD_SECONDS), good))
        seconds = st.one_of(
            st.sampled_from(GOOD_SECONDS),
            st.integers(GOOD_SECONDS[0], GOOD_SECONDS[-1]),
            st.sampled_from(BAD_SECONDS),
        )
        nanos = st.one_of(st.just(0), st.sampled_from(NANOS))
        return st.builds(Timestamp, seconds=seconds, nanos=nanos)

    def scalar(self, f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
        if f.type == f.TYPE_MESSAGE:
            return self.message(f.message_type, depth + 1)
        if f.type == f.TYPE_STRING:
            return self.text(f)
        if f.type == f.TYPE_BYTES:
            return st.one_of(
                st.binary(max_size=64),
                st.sampled_from(self.pools.arrow),
                st.sampled_from([b"", b"\xff" * 8, b"ARROW1\x00\x00"]),
            )
        if f.type == f.TYPE_BOOL:
            return st.booleans()
        if f.type == f.TYPE_ENUM:
            known = [v.number for v in f.enum_type.values]
            if self.tame:
                return st.sampled_from(known)
            return st.one_of(st.sampled_from(known), st.sampled_from([-1, 99, 2**31 - 1]))
        if f.type in (f.TYPE_DOUBLE, f.TYPE_FLOAT):
            return st.floats(allow_nan=True, width=32 if f.type == f.TYPE_FLOAT else 64)
        return self.integer(f)

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key in self._messages:
            return self._messages[key]
        cls = GetMessageClass(descriptor)
        if descriptor.full_name == "google.protobuf.Timestamp":
            strategy: st.SearchStrategy[Message] = self.timestamp()
            self._messages[key] = strategy
            return strategy
        parts: dict[str, st.SearchStrategy[Any]] = {}
        for f in descriptor.fields:
            if f.type == f.TYPE_MESSAGE and depth >= 2:
                continue
            value = self.scalar(f, depth)
            if f.is_repeated:
                parts[f.name] = st.lists(value, max_size=3)
            else:
                parts[f.name] = st.one_of(st.none(), value)

        def build(values: dict[str, Any]) -> Message:
            message = cls()
            for name, value in values.items():
                if value is None:
                    continue
                target = getattr(message, name)
                fd = descriptor.fields_by_name[name]
                if fd.is_repeated:
                    if fd.type == fd.TYPE_MESSAGE:
                        for item in value:
                            target.add().CopyFrom(item)
                    else:
                        target.extend(value)
                elif fd.type == fd.TYPE_MESSAGE:
                    target.CopyFrom(value)
                else:
                    setattr(message, name, value)
            return message

        strategy = st.fixed_dictionaries(parts).map(build)
        self._messages[key] = strategy
        return strategy


@dataclass
class Rpc:
    """One method of the API, callable on a channel."""

    name: str
    method: MethodDescriptor
    call: Callable[..., Any]
    streaming_in: bool
    streaming_out: bool


def rpcs(channel: grpc.Channel) -> list[Rpc]:
    out = []
    for service in SERVICES:
        for method in service.methods:
            request = GetMessageClass(method.input_type)
            response = GetMessageClass(method.output_type)
            path = f"/{service.full_name}/{method.name}"
            kind = {
                (False, False): channel.unary_unary,
                (True, False): channel.stream_unary,
                (False, True): channel.unary_stream,
                (True, True): channel.stream_stream,
            }[(method.client_streaming, method.server_streaming)]
            call = kind(
                path,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
            out.append(
                Rpc(
                    f"{service.name}.{method.name}",
                    method,
                    call,
                    method.client_streaming,
                    method.server_streaming,
                )
            )
    return out


def seed(client: Client, tenant: Any) -> Pools:
    """Rows of every kind for the generated calls to find: calendars, policies, clients, a
    rate card, an active contract, time logs, an invoice with lines, tickets and events."""
    setup = standard_setup(client)
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    logs = [time_log(f"LOG-{i}", contract.id, span) for i, span in enumerate(SEED_SPANS)]
    client.time_logs.IngestTimeLogs(billing_pb2.IngestTimeLogsRequest(logs=logs))
    client.time_logs.ApproveTimeLogs(
        billing_pb2.ApproveTimeLogsRequest(log_ids=[log.id for log in logs])
    )
    invoice = client.billing.GenerateInvoice(
        billing_pb2.PeriodRequest(contract_id=contract.id, period_start=MARCH)
    )
    tickets = []
    for i in range(3):
        ticket = client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=f"T-{i}",
                client_id=book.nexus,
                contract_id=contract.id,
                priority="HIGH",
                created_at=Timestamp(seconds=GOOD_SECONDS[1] + 3600 * i),
            )
        )
        tickets.append(ticket.id)
    ints = [
        setup.sydney, setup.london, setup.policy, setup.acme, setup.globex,
        book.calendar, book.policy, book.rate_card, book.nexus, book.globex,
        contract.id, invoice.id, *[line.id for line in invoice.lines],
    ]
    texts = [*tickets, "T-0:created", *[log.id for log in logs]]
    start = at("2026-03-02T09:00-05:00")
    tickets_table = pa.table(
        {
            "id": ["B-1", "B-2"],
            "client_id": pa.array([book.nexus, 987654], pa.int64()),
            "priority": ["P1", "bogus"],
            "status": ["OPEN", "OPEN"],
            "created_at": pa.array([start, start], pa.timestamp("us", "UTC")),
        }
    )
    sla_tickets = pa.table(
        {
            "ticket_id": ["S-1"],
            "priority": ["HIGH"],
            "created_at": pa.array([start], pa.timestamp("us", "UTC")),
        }
    )
    billing_logs = pa.table(
        {
            "log_id": ["C-1", "C-2"],
            "contract_id": [str(contract.id), str(contract.id)],
            "support_level": ["L2", "L2"],
            "job_type": ["REMOTE", "REMOTE"],
            "priority": ["MEDIUM", "P9"],
            "start": pa.array([start, at("2150-03-02T09:00Z")], pa.timestamp("s", "UTC")),
            "end": pa.array([start, at("2026-03-02T11:00Z")], pa.timestamp("s", "UTC")),
            "billable_type": ["BILLABLE", "WARRANTY"],
            "approved": [True, False],
        }
    )
    arrow = [
        _ipc(billing_logs),
        _ipc(billing_logs.slice(0, 1)),
        _ipc(tickets_table),
        _ipc(sla_tickets),
        _ipc(pa.table({"x": [1, 2, 3]})),
        _ipc(pa.table({"id": pa.array([None], pa.string())})),
        _ipc(pa.table({"ticket_id": [1.5], "created_at": ["yesterday"]})),
    ]
    bodies = [
        json.dumps({"timezone": "UTC", "weekly": []}),
        json.dumps({"timezone": "Nowhere/Zone", "weekly": [{"weekday": 9}]}),
        json.dumps({"currency": "USD", "base_rates": [], "increment_seconds": -1}),
        json.dumps({"name": "p", "rules": [{"metrics": {"X": {"target": "-1h"}}}]}),
        json.dumps({"sla_credits": {"per_breach": {"HIGH": "1e400"}}}),
        '{"a": "\\u0000"}',
        '{"deep": ' * 200 + "1" + "}" * 200,
    ]
    return Pools(ints, texts, arrow, bodies)


#: Tables the service's background loops write on their own between calls: SLA events fire
#: when a deadline or warning instant of a ticket created by an earlier call passes, and their
#: webhook deliveries follow. A refused call is not what wrote them, so they are not counted.
BACKGROUND_TABLES = frozenset({"events", "webhook_deliveries"})


class Rows:
    """Row counts of every table holding tenant rows (but :data:`BACKGROUND_TABLES`), read as
    the owner (RLS bypassed)."""

    def __init__(self, admin: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection = self.loop.run_until_complete(asyncpg.connect(admin))
        tables = self.loop.run_until_complete(
            self.conn.fetch(
                """SELECT table_name FROM information_schema.columns
                   WHERE table_schema = 'public' AND column_name = 'tenant_id'
                   ORDER BY table_name"""
            )
        )
        names = [r["table_name"] for r in tables if r["table_name"] not in BACKGROUND_TABLES]
        counts = ", ".join(f'(SELECT count(*) FROM "{n}")' for n in names)
        self.names = names
        self.sql = f"SELECT ARRAY[{counts}]"

    def __call__(self) -> tuple[int, ...]:
        return tuple(self.loop.run_until_complete(self.conn.fetchval(self.sql)))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


@dataclass
class Tally:
    calls: int = 0
    per_rpc: Counter = field(default_factory=Counter)
    per_code: Counter = field(default_factory=Counter)
    bugs: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)


@pytest.fixture
def world(service, tenant, client: Client) -> Iterator[tuple]:
    pools = seed(client, tenant)
    portal = tenant.portal_token(pools.ints[3])
    rows = Rows(tenant.admin)
    channel = grpc.insecure_channel(
        service.address,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )
    try:
        yield pools, rpcs(channel), rows, channel, (tenant.token, portal)
    finally:
        channel.close()
        rows.close()


def _invoke(rpc: Rpc, request: Any, token: str) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")]
    # a server stream with a unary request (WatchEvents) runs until cancelled: a valid one is
    # watched briefly, and its deadline passing is its success
    live = rpc.streaming_out and not rpc.streaming_in
    try:
        if live:
            try:
                for _ in rpc.call(request, metadata=metadata, timeout=0.5):
                    pass
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
        elif rpc.streaming_out:
            for _ in rpc.call(iter(request), metadata=metadata, timeout=60):
                pass
        elif rpc.streaming_in:
            rpc.call(iter(request), metadata=metadata, timeout=60)
        else:
            rpc.call(request, metadata=metadata, timeout=60)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _shown(request: Any) -> str:
    text = repr([str(m) for m in request] if isinstance(request, list) else str(request))
    return text if len(text) < 600 else text[:600] + "…"


def test_every_rpc_survives_generated_requests(world, service) -> None:
    pools, methods, rows, channel, tokens = world
    wild, tame = Generator(pools), Generator(pools, tame=True)
    requests = []
    for rpc in methods:
        message = st.one_of(
            wild.message(rpc.method.input_type), tame.message(rpc.method.input_type)
        )
        strategy = st.lists(message, min_size=1, max_size=3) if rpc.streaming_in else message
        requests.append(strategy)
    call_strategy = st.integers(0, len(methods) - 1).flatmap(
        lambda i: st.tuples(st.just(i), requests[i], st.sampled_from([0, 0, 0, 1]))
    )
    tally = Tally()
    started = time.perf_counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(call_strategy, min_size=CALLS_PER_EXAMPLE, max_size=CALLS_PER_EXAMPLE))
    def run(calls: list[tuple[int, Any, int]]) -> None:
        before = rows()
        for index, request, who in calls:
            rpc = methods[index]
            code = _invoke(rpc, request, tokens[who])
            tally.calls += 1
            tally.per_rpc[rpc.name] += 1
            tally.per_code[code.name] += 1
            if code == grpc.StatusCode.OK:
                tally.accepted.add(rpc.name)
            if code in BUGS:
                tally.bugs.append(f"{rpc.name} -> {code.name}: {_shown(request)}")
            after = rows()
            if code != grpc.StatusCode.OK and after != before:
                changed = [n for n, a, b in zip(rows.names, before, after, strict=True) if a != b]
                tally.writes.append(f"{rpc.name} -> {code.name} wrote {changed}")
            before = after

    run()
    elapsed = time.perf_counter() - started
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert service.process.poll() is None
    print(
        f"\nfuzz: {tally.calls} calls over {len(tally.per_rpc)} of {len(methods)} RPCs in"
        f" {elapsed:.1f} s; statuses {dict(tally.per_code.most_common())};"
        f" RPCs that accepted a call: {len(tally.accepted)}"
    )
    assert not tally.bugs, "\n".join(tally.bugs[:20])
    assert not tally.writes, "\n".join(tally.writes[:20])
    assert tally.calls >= MIN_CALLS
    assert set(tally.per_rpc) == {m.name for m in methods}
