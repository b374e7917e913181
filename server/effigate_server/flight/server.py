"""The Flight server: ``DoExchange`` (SLA evaluation), ``DoPut`` (ingest), ``DoGet`` (exports).

Flight runs its own gRPC server (C++) on its own port, with its own threads. A handler runs in
one of those threads: it calls the service layer's coroutines on the server's event loop
(:meth:`FlightService.run`) and runs the SLA kernels directly in its own thread (they release
the GIL), with the policy and calendars of the process's :class:`RulesetCache`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

from effigate_engine import sla
from effigate_engine.errors import EffigateError
from effigate_engine.service import Store, evaluations, exports, tickets, timelogs
from effigate_engine.service.evaluations import RulesetCache, StoredReport
from effigate_engine.service.tokens import TokenResolver
from effigate_engine.sla.screening import evaluate_rows, unmatched_rows
from effigate_server.flight.auth import AUTH, BearerAuth, caller
from effigate_server.flight.commands import Command, parse
from effigate_server.flight.errors import translated
from effigate_server.interceptors import Calls
from effigate_server.metrics import TICKETS_EVALUATED, TIME_LOGS_INGESTED
from effigate_server.streams import MAX_LISTED_ROWS

T = TypeVar("T")
log = logging.getLogger("effigate.server")

#: Schema metadata keys of a report or results export: how many stored tickets it left out,
#: and the first :data:`MAX_LISTED_ROWS` of them (JSON list of ``{row, id, field, message}``).
FAILED_COUNT_KEY = b"effigate.failed_count"
FAILED_KEY = b"effigate.failed"
#: Batches of one exchange being evaluated at once while earlier results are written.
EXCHANGE_PIPELINE = 2
#: The ``DoPut`` ingest kinds of the service layer, by command op.
_INGEST_KINDS = {"tickets": "tickets", "ticket_events": "events"}


def _rows(rejected: pa.Table, offset: int = 0, key: str = "ticket_id") -> list[dict[str, Any]]:
    return [
        {"row": offset + r["row"], "id": r[key] or "", "field": r["field"], "message": r["message"]}
        for r in rejected.slice(0, MAX_LISTED_ROWS).to_pylist()
    ]


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (reports are small and read by any Arrow reader)."""
    columns = [
        pc.cast(c, pa.string()) if pa.types.is_dictionary(c.type) else c for c in table.columns
    ]
    return pa.table(columns, names=table.column_names).replace_schema_metadata(
        table.schema.metadata
    )


def _with_failures(report: StoredReport, table: pa.Table) -> pa.Table:
    failures = report.failures
    metadata = {
        **(table.schema.metadata or {}),
        FAILED_COUNT_KEY: str(failures.num_rows).encode(),
        FAILED_KEY: json.dumps(_rows(failures)).encode(),
    }
    return table.replace_schema_metadata(metadata)


class FlightService(flight.FlightServerBase):
    """The Flight endpoints over ``store`` (see docs/service.md, *Arrow Flight*)."""

    def __init__(
        self,
        location: str,
        store: Store,
        cache: RulesetCache,
        resolver: TokenResolver,
        calls: Calls,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(location, middleware={AUTH: BearerAuth(resolver, calls, loop)})
        self.store = store
        self.cache = cache
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a service-layer coroutine on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    # DoExchange -------------------------------------------------------------------------------

    def do_exchange(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        try:
            command = parse("descriptor.command", _command(descriptor), "exchange")
            self._evaluate(context, command, reader, writer)
        except Exception as exc:
            raise translated(exc, "DoExchange") from None

    def _evaluate(
        self,
        context: flight.ServerCallContext,
        command: Command,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        """Evaluate each batch of tickets as it arrives and write its results back at once,
        followed by a metadata message naming the batch's rejected rows."""
        principal = caller(context)
        principal.require_staff("evaluate tickets it does not store")
        rules = self.run(
            evaluations.ruleset_for(self.store, self.cache, principal, command.get("policy_id"))
        )
        now = command.get("now") or datetime.now(UTC).replace(microsecond=0)

        def screen(batch: pa.RecordBatch) -> tuple[pa.Table, pa.Table, int]:
            screened = evaluate_rows(
                batch, rules.policy, rules.calendars, now, check_priority=True, threads=1
            )
            TICKETS_EVALUATED.inc(screened.evaluation.tickets.num_rows)
            rejected = pa.concat_tables([screened.rejected, unmatched_rows(screened)])
            results = rules.stamp(screened.evaluation).results
            return results, rejected.sort_by("row"), batch.num_rows

        schema: pa.Schema | None = None
        position = 0
        answered_rows = 0
        pending: deque[Future[tuple[pa.Table, pa.Table, int]]] = deque()

        def answer() -> None:
            nonlocal schema, position, answered_rows
            results, rejected, rows = pending.popleft().result()
            if schema is None:
                schema = results.schema
                writer.begin(schema)
            writer.write_table(results)
            note = {
                "batch": position,
                "rows": rows,
                "first_row": answered_rows,
                "rejected": _rows(rejected, answered_rows),
            }
            writer.write_metadata(pa.py_buffer(json.dumps(note).encode()))
            position += 1
            answered_rows += rows

        # batch k is evaluated in a worker (one kernel thread; the kernels release the GIL)
        # while batch k+1 is read and the results of batch k-1 are written
        with ThreadPoolExecutor(EXCHANGE_PIPELINE, thread_name_prefix="flight-eval") as pool:
            try:
                for chunk in reader:
                    if chunk.data is None:
                        continue
                    pending.append(pool.submit(screen, chunk.data))
                    while len(pending) > EXCHANGE_PIPELINE or (pending and pending[0].done()):
                        answer()
                while pending:
                    answer()
            finally:
                for future in pending:
                    future.cancel()
        if schema is None:  # no batch came: an empty results stream of the right columns
            empty = evaluate_rows(
                sla.TICKETS.empty_table(), rules.policy, rules.calendars, now
            ).evaluation
            writer.begin(rules.stamp(empty).results.schema)

    # DoPut ------------------------------------------------------------------------------------

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        try:
            command = parse("descriptor.command", _command(descriptor), "put")
            principal = caller(context)
            table = reader.read_all()
            skip = bool(command.get("skip_invalid_rows", False))
            if command.op == "time_logs":
                TIME_LOGS_INGESTED.inc(table.num_rows)
                result = self.run(timelogs.ingest_time_logs(self.store, principal, table, skip))
            else:
                kind = _INGEST_KINDS[command.op]
                result = self.run(tickets.ingest_rows(self.store, principal, kind, table, skip))
            rejected = result.rejected
            summary = {
                "received": result.received,
                "inserted": result.inserted,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "rejected": rejected.num_rows,
                "rejected_rows": _rows(rejected, key="id"),
            }
            writer.write(pa.py_buffer(json.dumps(summary).encode()))
        except Exception as exc:
            raise translated(exc, "DoPut") from None

    # DoGet ------------------------------------------------------------------------------------

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.RecordBatchStream:
        try:
            command = parse("ticket", ticket.ticket, "get")
            return flight.RecordBatchStream(self._export(caller(context), command))
        except Exception as exc:
            raise translated(exc, "DoGet") from None

    def _export(self, principal: Any, command: Command) -> pa.Table:
        store, cache = self.store, self.cache
        op = command.op
        if op == "invoice_lines":
            return self.run(exports.invoice_lines(store, principal, command.get("invoice_id")))
        policy_id = command.get("policy_id")
        now = command.get("now")
        client_id = command.get("client_id")
        group_by = command.get("group_by") or ["priority"]
        if op == "sla_results":
            report = self.run(
                exports.stored_results(store, cache, principal, policy_id, now, client_id)
            )
            return _with_failures(report, report.table)
        if op == "compliance":
            report = self.run(
                evaluations.compliance(
                    store,
                    cache,
                    principal,
                    policy_id,
                    group_by,
                    command.get("period"),
                    now,
                    client_id,
                )
            )
        elif op == "percentiles":
            report = self.run(
                evaluations.percentiles(
                    store, cache, principal, policy_id, group_by, now, client_id
                )
            )
        else:  # recommended_targets
            report = self.run(
                evaluations.recommended_targets(
                    store, cache, principal, policy_id, command.get("days", 90), now, client_id
                )
            )
        return _with_failures(report, _plain(report.table))


def _command(descriptor: flight.FlightDescriptor) -> bytes:
    """The command bytes of a command descriptor (a path descriptor is refused)."""
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        raise EffigateError(
            "descriptor: is a path descriptor; send a command descriptor with a JSON command"
            " (FlightDescriptor.for_command(b'{\"op\": ...}'))"
        )
    return descriptor.command


class FlightHost:
    """The Flight server of a running service: started on ``address`` (``host:port``, port 0:
    a free port), its port and URL, and its shutdown."""

    def __init__(
        self,
        address: str,
        store: Store,
        cache: RulesetCache,
        resolver: TokenResolver,
        calls: Calls,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        text = address.removeprefix("grpc://").removeprefix("grpc+tcp://")
        host = text.rpartition(":")[0] or "127.0.0.1"
        try:
            self.server = FlightService(f"grpc://{text}", store, cache, resolver, calls, loop)
        except (pa.ArrowException, OSError) as exc:
            raise OSError(f"cannot serve Flight on {address}: {exc}") from None
        self.port = self.server.port
        self.url = f"grpc://{host}:{self.port}"

    async def stop(self, grace: float) -> None:
        """Stop serving: new calls are refused, the calls in flight get ``grace`` seconds to
        finish (Flight's shutdown has no deadline of its own: it runs in a daemon thread,
        which the process does not wait for once ``grace`` has passed)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def shutdown() -> None:
            self.server.shutdown()
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=shutdown, name="effigate-flight-stop", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), grace)
        except TimeoutError:
            log.warning("Flight calls still running after %.0f s; not waited for", grace)
