"""Blocking and asyncio clients: stubs with the token attached, retries, Arrow conveniences."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
from google.protobuf.timestamp_pb2 import Timestamp

from effigate.v1 import (
    billing_pb2,
    billing_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    routing_pb2_grpc,
    sla_pb2,
    sla_pb2_grpc,
    tickets_pb2_grpc,
    webhooks_pb2_grpc,
)

#: Arrow streams carry large messages: 256 MiB each way (the server's limit too).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Rows per Arrow chunk sent on a stream.
CHUNK_ROWS = 65_536
#: Arrow IPC buffer compression of streamed chunks: none by default (on a fast link LZ4 costs
#: more time than the bytes it saves); pass ``compression="lz4"`` or ``"zstd"`` for slow links.
STREAM_COMPRESSION = None

#: Calls that are safe to repeat: reads, and writes idempotent by a caller-chosen key
#: (ticket, event and time-log ids; one invoice per contract and period). ``WatchEvents`` is
#: not among them: a watch that ends ``UNAVAILABLE`` is resumed from its last cursor by
#: ``watch_events``, and a watch ended by a server shutting down must end at once. gRPC retries a
#: streaming call only while what was sent fits its retry buffer (256 KiB) and no answer has
#: arrived; a larger ingest stream that fails with UNAVAILABLE is the caller's to resend
#: (resending never duplicates a row).
IDEMPOTENT = {
    "effigate.v1.CatalogService": [
        "GetCalendar",
        "ListCalendars",
        "ListClients",
        "ComputeDeadline",
        "GetPolicy",
        "ListPolicies",
        # an update equal to the current version stores nothing
        "UpdateCalendar",
        "UpdatePolicy",
    ],
    "effigate.v1.TicketService": [
        "CreateTicket",
        "RecordEvent",
        "GetTicket",
        "GetTicketStatus",
        "GetTicketTimeline",
        "ListTickets",
        "IngestTickets",
        "IngestTicketEvents",
    ],
    "effigate.v1.SlaService": ["Evaluate", "EvaluateStream", "Recompute"],
    "effigate.v1.ReportService": ["Compliance", "Percentiles", "RecommendedTargets", "Replay"],
    "effigate.v1.ContractService": ["GetContract", "ListContracts"],
    "effigate.v1.TimeLogService": ["IngestTimeLogs", "IngestTimeLogStream", "ApproveTimeLogs"],
    # puts replace by name or id (the rules: a body equal to the current version stores
    # nothing); Route and Assign record nothing for a ticket already where they would put it
    "effigate.v1.RoutingService": [
        "PutQueues",
        "ListQueues",
        "PutAgents",
        "ListAgents",
        "PutRoutingRules",
        "GetRoutingRules",
        "Route",
        "RouteBatch",
        "Assign",
        "QueueDepth",
        "AgentWorkload",
        "OldestUnassigned",
        "ReplayRouting",
    ],
    # an update sets the same fields to the same values again
    "effigate.v1.WebhookService": [
        "ListWebhookEndpoints",
        "UpdateWebhookEndpoint",
        "ListWebhookDeliveries",
    ],
    "effigate.v1.BillingService": [
        "Classify",
        "PreviewInvoice",
        "GenerateInvoice",
        "GetInvoice",
        "ListInvoices",
        "GetBucketBalance",
        "MarkOverdue",
        "ReplayBilling",
    ],
}


#: Tries of an idempotent call in all (gRPC allows at most 5).
ATTEMPTS = 5


def service_config(attempts: int = ATTEMPTS) -> str:
    """gRPC service config retrying the idempotent calls on UNAVAILABLE with exponential
    backoff: before each retry gRPC waits a random time up to 0.5 s, 1 s, 2 s, then 4 s;
    ``attempts`` tries in all (at most 5: 7.5 s of waiting at most, 3.75 s on average). A
    database restart of up to a second is ridden through 99 times in 100. No other status is
    retried, and calls outside :data:`IDEMPOTENT` never."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [
                        {"service": service, "method": method}
                        for service, methods in IDEMPOTENT.items()
                        for method in methods
                    ],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.5s",
                        "maxBackoff": "5s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def _options(attempts: int) -> list[tuple[str, Any]]:
    """Channel options: message limits, and retries of idempotent calls unless ``attempts``
    is 1."""
    if attempts < 1:
        raise ValueError(f"attempts: {attempts} is not at least 1")
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if attempts == 1:
        return [*options, ("grpc.enable_retries", 0)]
    return [
        *options,
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(min(attempts, 5))),
    ]


def to_timestamp(value: datetime) -> Timestamp:
    """A Timestamp of an aware datetime (naive datetimes are refused: they name no instant)."""
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone")
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    """An aware UTC datetime of a Timestamp."""
    return ts.ToDatetime(tzinfo=UTC)


def ipc_bytes(table: pa.Table | pa.RecordBatch, compression: str | None = None) -> bytes:
    """Arrow IPC stream bytes of a table or batch, buffers compressed with ``compression``
    (``"lz4"`` or ``"zstd"``; readers decompress transparently) if given."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return sink.getvalue().to_pybytes()


def ipc_table(data: bytes) -> pa.Table:
    """The table of Arrow IPC stream bytes."""
    with pa.ipc.open_stream(data) as reader:
        return reader.read_all()


def _table(source: pa.Table | str | Path) -> pa.Table:
    return source if isinstance(source, pa.Table) else pq.read_table(source)


def _chunks(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, max(table.num_rows, 1), rows):
        yield table.slice(start, rows)


def ingest_chunks(
    table: pa.Table, chunk_rows: int, skip_invalid_rows: bool = False
) -> Iterator[common_pb2.ArrowChunk]:
    """The chunks of an ingest stream of ``table`` (one batch); the first carries
    ``skip_invalid_rows``."""
    for i, chunk in enumerate(_chunks(table, chunk_rows)):
        message = common_pb2.ArrowChunk(arrow_ipc=ipc_bytes(chunk))
        if i == 0:
            message.skip_invalid_rows = skip_invalid_rows
        yield message


STUBS = (
    "catalog",
    "tickets",
    "sla",
    "reports",
    "rate_cards",
    "contracts",
    "time_logs",
    "billing",
    "routing",
    "webhooks",
    "events",
)

#: Seconds :meth:`Client.watch_events` waits before reconnecting after ``UNAVAILABLE``: the
#: first wait, doubled up to the last.
RECONNECT_FIRST_SECONDS = 0.25
RECONNECT_LONGEST_SECONDS = 5.0
#: Seconds of failed reconnections after which a watch gives up (raises ``UNAVAILABLE``).
RECONNECT_GIVE_UP_SECONDS = 120.0
#: How a server that shuts down ends a watch (the start of its ``UNAVAILABLE`` message).
SHUTTING_DOWN = "the server is shutting down"


class _Reconnect:
    """When a watch answered ``UNAVAILABLE`` reconnects: only a watch that was served (an
    event arrived, or the server said it shuts down) and for at most
    :data:`RECONNECT_GIVE_UP_SECONDS` of failures in a row, waiting 0.25 s doubling to 5 s.
    A watch that never reached a server fails at once (the address is wrong, or it is
    down)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.served = False
        self.wait = RECONNECT_FIRST_SECONDS
        self.failing_since: float | None = None

    def event(self) -> None:
        self.served = True
        self.wait = RECONNECT_FIRST_SECONDS
        self.failing_since = None

    def after(self, exc: grpc.RpcError) -> float:
        """Seconds to wait before reconnecting after ``exc``; raises it when not to."""
        if not self.enabled or exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise exc
        if (exc.details() or "").startswith(SHUTTING_DOWN):
            self.served = True
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        if not self.served or now - self.failing_since > RECONNECT_GIVE_UP_SECONDS:
            raise exc
        wait, self.wait = self.wait, min(self.wait * 2, RECONNECT_LONGEST_SECONDS)
        return wait


def watch_request(
    after_cursor: str,
    types: Iterable[str | int],
    client_id: int | None,
    from_now: bool,
) -> events_pb2.WatchEventsRequest:
    """A ``WatchEventsRequest``; ``types`` by name (``"SLA_BREACHED"``) or number."""
    request = events_pb2.WatchEventsRequest(
        after_cursor=after_cursor,
        types=[t if isinstance(t, int) else events_pb2.EventType.Value(t.upper()) for t in types],
        from_now=from_now and not after_cursor,
    )
    if client_id is not None:
        request.client_id = client_id
    return request


def evaluate_requests(
    table: pa.Table,
    policy_id: int,
    now: datetime | None,
    chunk_rows: int,
    compression: str | None,
    sizes: list[int],
) -> Iterator[sla_pb2.EvaluateChunk]:
    """The ``EvaluateStream`` requests of ``table``: chunks of ``chunk_rows`` tickets, the first
    naming the policy and ``now``; each chunk's size is appended to ``sizes``."""
    for i, chunk in enumerate(_chunks(table, chunk_rows)):
        sizes.append(chunk.num_rows)
        message = sla_pb2.EvaluateChunk(arrow_ipc=ipc_bytes(chunk, compression), sequence=i)
        if i == 0:
            message.policy_id = policy_id
            if now is not None:
                message.now.CopyFrom(to_timestamp(now))
        yield message


class _Stubs:
    """Every service stub of one channel, each adding the token and a default deadline."""

    def __init__(
        self, channel: grpc.Channel | grpc.aio.Channel, token: str, timeout: float | None
    ) -> None:
        self.channel = channel
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        self.tickets = tickets_pb2_grpc.TicketServiceStub(channel)
        self.sla = sla_pb2_grpc.SlaServiceStub(channel)
        self.reports = sla_pb2_grpc.ReportServiceStub(channel)
        self.rate_cards = billing_pb2_grpc.RateCardServiceStub(channel)
        self.contracts = billing_pb2_grpc.ContractServiceStub(channel)
        self.time_logs = billing_pb2_grpc.TimeLogServiceStub(channel)
        self.billing = billing_pb2_grpc.BillingServiceStub(channel)
        self.routing = routing_pb2_grpc.RoutingServiceStub(channel)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(channel)
        self.events = events_pb2_grpc.EventServiceStub(channel)
        for name in STUBS:
            setattr(self, name, _Authed(getattr(self, name), token, timeout))


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class _Authed:
    """A stub wrapper adding the bearer token (and a default deadline) to every call."""

    def __init__(self, stub: Any, token: str, timeout: float | None) -> None:
        self._stub = stub
        self._metadata = _metadata(token)
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        """The stub's method with the token and deadline added; a blocking stub's unary-answer
        methods keep their ``future`` (cancellable) and ``with_call`` forms."""
        method = getattr(self._stub, name)
        call = self._defaults(method)
        for form in ("future", "with_call"):
            if hasattr(method, form):
                setattr(call, form, self._defaults(getattr(method, form)))
        return call

    def _defaults(self, method: Callable[..., Any]) -> Callable[..., Any]:
        metadata, timeout = self._metadata, self._timeout

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", metadata)
            kwargs.setdefault("timeout", timeout)
            return method(request, **kwargs)

        return call


class Client(_Stubs):
    """A blocking client. ``Client("127.0.0.1:50051", token)``; use as a context manager or
    call :meth:`close`. ``timeout`` (seconds) is the default deadline of every call;
    ``attempts`` the tries of an idempotent call answered UNAVAILABLE (1: no retries)."""

    def __init__(
        self, address: str, token: str, timeout: float | None = 60.0, attempts: int = ATTEMPTS
    ) -> None:
        channel = grpc.insecure_channel(address, options=_options(attempts))
        super().__init__(channel, token, timeout)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate_arrow(
        self,
        policy_id: int,
        tickets: pa.Table | str | Path,
        now: datetime | None = None,
        chunk_rows: int = CHUNK_ROWS,
        compression: str | None = STREAM_COMPRESSION,
        progress: Callable[[int], object] | None = None,
        rejected: list[common_pb2.RowError] | None = None,
    ) -> pa.Table:
        """Evaluate a table (or Parquet file) of tickets (``sla.TICKETS`` columns) through the
        Arrow stream; returns the SLA results table, in input order. ``compression``
        (``"lz4"``/``"zstd"``) compresses the chunks sent; ``progress`` is called with the
        number of tickets of each chunk answered. Tickets the service could not evaluate are
        not in the results; each is appended to ``rejected`` when given (``RowError``: its
        row in ``tickets``, ticket id, field and message)."""
        sizes: list[int] = []
        requests = evaluate_requests(
            _table(tickets), policy_id, now, chunk_rows, compression, sizes
        )
        parts = []
        for reply in self.sla.EvaluateStream(requests, timeout=None):
            parts.append(ipc_table(reply.arrow_ipc))
            if rejected is not None:
                rejected.extend(reply.rejected)
            if progress is not None:
                progress(sizes[reply.sequence])
        return pa.concat_tables(parts) if parts else pa.table({})

    def ingest_time_logs(
        self,
        logs: pa.Table | str | Path,
        chunk_rows: int = CHUNK_ROWS,
        skip_invalid_rows: bool = False,
    ) -> common_pb2.IngestSummary:
        """Stream a table (or Parquet file) of time logs as one all-or-nothing, idempotent
        batch; returns the ingest summary. With ``skip_invalid_rows`` the valid rows are
        stored and the others listed in the summary's ``rejected_rows`` instead of the whole
        batch being refused."""
        chunks = ingest_chunks(_table(logs), chunk_rows, skip_invalid_rows)
        return self.time_logs.IngestTimeLogStream(chunks, timeout=None)

    def ingest_tickets(
        self,
        tickets: pa.Table | str | Path,
        chunk_rows: int = CHUNK_ROWS,
        skip_invalid_rows: bool = False,
    ) -> common_pb2.IngestSummary:
        """Stream tickets (the columns of the store's ``tickets`` table) as one batch, like
        :meth:`ingest_time_logs`."""
        chunks = ingest_chunks(_table(tickets), chunk_rows, skip_invalid_rows)
        return self.tickets.IngestTickets(chunks, timeout=None)

    def ingest_ticket_events(
        self,
        events: pa.Table | str | Path,
        chunk_rows: int = CHUNK_ROWS,
        skip_invalid_rows: bool = False,
    ) -> common_pb2.IngestSummary:
        """Stream ticket events as one batch, like :meth:`ingest_time_logs`."""
        chunks = ingest_chunks(_table(events), chunk_rows, skip_invalid_rows)
        return self.tickets.IngestTicketEvents(chunks, timeout=None)

    def recompute(
        self, policy_id: int, now: datetime | None = None, client_id: int | None = None
    ) -> sla_pb2.RecomputeResponse:
        """Recompute the stored tickets (of ``client_id``) under ``policy_id``; stored tickets
        the engine cannot evaluate are left out and named in ``failed`` (``failed_count`` of
        them in all)."""
        request = sla_pb2.RecomputeRequest(policy_id=policy_id)
        if now is not None:
            request.now.CopyFrom(to_timestamp(now))
        if client_id is not None:
            request.client_id = client_id
        return self.sla.Recompute(request)

    def invoice(self, contract_id: int, period_start: str) -> billing_pb2.Invoice:
        """Generate (idempotently) the invoice of a contract's period and return it."""
        return self.billing.GenerateInvoice(
            billing_pb2.PeriodRequest(contract_id=contract_id, period_start=period_start)
        )

    def route_arrow(self, tickets: pa.Table | str | Path, chunk_rows: int = CHUNK_ROWS) -> pa.Table:
        """Route a table (or Parquet file) of tickets (``routing.ROUTING_TICKETS`` columns)
        with the tenant's current routing rules through the ``RouteBatch`` stream; nothing is
        stored. The ``routing.ROUTES`` table, in input order."""
        chunks = (
            common_pb2.ArrowChunk(arrow_ipc=ipc_bytes(chunk))
            for chunk in _chunks(_table(tickets), chunk_rows)
        )
        parts = [ipc_table(reply.arrow_ipc) for reply in self.routing.RouteBatch(chunks)]
        return pa.concat_tables(parts) if parts else pa.table({})

    def watch_events(
        self,
        after_cursor: str = "",
        types: Iterable[str | int] = (),
        client_id: int | None = None,
        from_now: bool = False,
        reconnect: bool = True,
    ) -> Iterator[events_pb2.Event]:
        """The caller's events after ``after_cursor`` (or only new ones: ``from_now``), then
        each new one live, without end: stop iterating to stop (the call is cancelled).
        ``types`` by name; ``client_id`` filters (a portal token sees its client only). When
        a watch that was served is answered ``UNAVAILABLE`` (the server shuts down, or cannot
        reach its database) it reconnects from the last cursor received (``reconnect``, see
        :class:`_Reconnect`), so no event is lost or repeated; a ``from_now`` watch that
        received nothing yet reconnects ``from_now`` again (events of the gap are missed)."""
        cursor = after_cursor
        again = _Reconnect(reconnect)
        while True:
            call = self.events.WatchEvents(
                watch_request(cursor, types, client_id, from_now), timeout=None
            )
            try:
                for event in call:
                    cursor = event.cursor
                    again.event()
                    yield event
                return
            except grpc.RpcError as exc:
                wait = again.after(exc)
            finally:
                call.cancel()
            time.sleep(wait)

    def report(self, response: common_pb2.ReportTable) -> pa.Table:
        """The Arrow table of a report response."""
        return ipc_table(response.arrow_ipc)

    def save_calendar(self, name: str, body_json: str) -> catalog_pb2.CalendarInfo:
        """Create the calendar ``name``, or, when the tenant already has it, store ``body_json``
        as its next version (nothing new when unchanged). Returns the current version."""
        try:
            return self.catalog.CreateCalendar(
                catalog_pb2.CreateCalendarRequest(name=name, body_json=body_json)
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return self.catalog.UpdateCalendar(
            catalog_pb2.UpdateCalendarRequest(name=name, body_json=body_json)
        )

    def save_policy(self, name: str, calendar_id: int, body_json: str) -> catalog_pb2.PolicyInfo:
        """Create the SLA policy ``name``, or store its next version (see
        :meth:`save_calendar`). Returns the current version."""
        try:
            return self.catalog.CreatePolicy(
                catalog_pb2.CreatePolicyRequest(
                    name=name, calendar_id=calendar_id, body_json=body_json
                )
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return self.catalog.UpdatePolicy(
            catalog_pb2.UpdatePolicyRequest(name=name, calendar_id=calendar_id, body_json=body_json)
        )


class AsyncClient(_Stubs):
    """An asyncio client (``grpc.aio``). ``async with AsyncClient(address, token) as c:``;
    ``timeout`` and ``attempts`` as for :class:`Client`."""

    def __init__(
        self, address: str, token: str, timeout: float | None = 60.0, attempts: int = ATTEMPTS
    ) -> None:
        channel = grpc.aio.insecure_channel(address, options=_options(attempts))
        super().__init__(channel, token, timeout)

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def evaluate_arrow(
        self,
        policy_id: int,
        tickets: pa.Table | str | Path,
        now: datetime | None = None,
        chunk_rows: int = CHUNK_ROWS,
        compression: str | None = STREAM_COMPRESSION,
        progress: Callable[[int], object] | None = None,
        rejected: list[common_pb2.RowError] | None = None,
    ) -> pa.Table:
        """Async :meth:`Client.evaluate_arrow`."""
        sizes: list[int] = []
        chunks = evaluate_requests(_table(tickets), policy_id, now, chunk_rows, compression, sizes)

        async def requests() -> AsyncIterator[sla_pb2.EvaluateChunk]:
            for message in chunks:
                yield message

        parts = []
        async for reply in self.sla.EvaluateStream(requests(), timeout=None):
            parts.append(ipc_table(reply.arrow_ipc))
            if rejected is not None:
                rejected.extend(reply.rejected)
            if progress is not None:
                progress(sizes[reply.sequence])
        return pa.concat_tables(parts) if parts else pa.table({})

    async def watch_events(
        self,
        after_cursor: str = "",
        types: Iterable[str | int] = (),
        client_id: int | None = None,
        from_now: bool = False,
        reconnect: bool = True,
    ) -> AsyncIterator[events_pb2.Event]:
        """Async :meth:`Client.watch_events`."""
        cursor = after_cursor
        again = _Reconnect(reconnect)
        while True:
            call = self.events.WatchEvents(
                watch_request(cursor, types, client_id, from_now), timeout=None
            )
            try:
                async for event in call:
                    cursor = event.cursor
                    again.event()
                    yield event
                return
            except grpc.RpcError as exc:
                wait = again.after(exc)
            finally:
                call.cancel()
            await asyncio.sleep(wait)

    async def save_calendar(self, name: str, body_json: str) -> catalog_pb2.CalendarInfo:
        """Async :meth:`Client.save_calendar`."""
        try:
            return await self.catalog.CreateCalendar(
                catalog_pb2.CreateCalendarRequest(name=name, body_json=body_json)
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return await self.catalog.UpdateCalendar(
            catalog_pb2.UpdateCalendarRequest(name=name, body_json=body_json)
        )

    async def save_policy(
        self, name: str, calendar_id: int, body_json: str
    ) -> catalog_pb2.PolicyInfo:
        """Async :meth:`Client.save_policy`."""
        try:
            return await self.catalog.CreatePolicy(
                catalog_pb2.CreatePolicyRequest(
                    name=name, calendar_id=calendar_id, body_json=body_json
                )
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return await self.catalog.UpdatePolicy(
            catalog_pb2.UpdatePolicyRequest(name=name, calendar_id=calendar_id, body_json=body_json)
        )
