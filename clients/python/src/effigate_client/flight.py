"""Bulk calls over Arrow Flight: SLA evaluation (``DoExchange``), ingest (``DoPut``) and
exports (``DoGet``), with the bearer token in the ``authorization`` header of every call.

The service's Flight endpoints listen beside its gRPC API (``effigate serve`` prints
``Flight on grpc://host:port``). Record batches travel as Arrow's own messages, so tables go
from the caller's memory to the kernels and back without a copy into protobuf. Commands are
JSON (docs/service.md, *Arrow Flight*)::

    with FlightClient("grpc://127.0.0.1:8815", token) as flight:
        results = flight.evaluate(tickets, policy_id=3, now=datetime.now(UTC))
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

#: Tickets per record batch sent to ``DoExchange`` (each batch is answered as it arrives).
BATCH_ROWS = 131_072


def _table(source: pa.Table | str | Path) -> pa.Table:
    return source if isinstance(source, pa.Table) else pq.read_table(source)


def _command(op: str, **fields: Any) -> bytes:
    body = {"op": op}
    for name, value in fields.items():
        if value is None:
            continue
        body[name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(body).encode()


class FlightClient:
    """A client of the service's Flight endpoints at ``location`` (``grpc://host:port``)
    calling with ``token``."""

    def __init__(self, location: str, token: str, timeout: float | None = None) -> None:
        self._client = flight.FlightClient(location)
        self._options = flight.FlightCallOptions(
            headers=[(b"authorization", f"Bearer {token}".encode())], timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FlightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate(
        self,
        tickets: pa.Table | str | Path,
        policy_id: int,
        now: datetime | None = None,
        batch_rows: int = BATCH_ROWS,
        rejected: list[dict[str, Any]] | None = None,
    ) -> pa.Table:
        """Evaluate a table (or Parquet file) of tickets (``sla.TICKETS`` columns) under the
        stored policy ``policy_id`` at ``now`` (default: the server's now); returns the SLA
        results, in input order. Batches are sent while earlier results come back. Tickets
        the service could not evaluate are not in the results; each is appended to
        ``rejected`` when given (``{"row", "id", "field", "message"}``, ``row`` its position
        in ``tickets``)."""
        table = _table(tickets)
        descriptor = flight.FlightDescriptor.for_command(
            _command("evaluate", policy_id=policy_id, now=now)
        )
        writer, reader = self._client.do_exchange(descriptor, self._options)
        failure: list[BaseException] = []

        def send() -> None:
            try:
                writer.begin(table.schema)
                for batch in table.to_batches(max_chunksize=batch_rows):
                    writer.write_batch(batch)
                writer.done_writing()
            except BaseException as exc:  # the server refused: its error is read below
                failure.append(exc)

        sender = threading.Thread(target=send, name="effigate-flight-send", daemon=True)
        sender.start()
        parts: list[pa.RecordBatch] = []
        schema: pa.Schema | None = None
        try:
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                if chunk.data is not None:
                    parts.append(chunk.data)
                    schema = chunk.data.schema
                elif chunk.app_metadata is not None and rejected is not None:
                    rejected.extend(json.loads(chunk.app_metadata.to_pybytes())["rejected"])
            if schema is None:
                schema = reader.schema
        finally:
            sender.join()
            writer.close()
        if failure and not parts and table.num_rows:
            raise failure[0]
        return pa.Table.from_batches(parts, schema=schema)

    def _put(self, op: str, table: pa.Table | str | Path, skip_invalid_rows: bool) -> dict:
        data = _table(table)
        descriptor = flight.FlightDescriptor.for_command(
            _command(op, skip_invalid_rows=skip_invalid_rows or None)
        )
        writer, reader = self._client.do_put(descriptor, data.schema, self._options)
        with writer:
            writer.write_table(data)
            writer.done_writing()
            summary = reader.read()
        return json.loads(summary.to_pybytes()) if summary is not None else {}

    def ingest_tickets(
        self, tickets: pa.Table | str | Path, skip_invalid_rows: bool = False
    ) -> dict[str, Any]:
        """Store tickets (the columns of the store's ``tickets`` table) as one all-or-nothing,
        idempotent batch; returns the ingest summary (``received``, ``inserted``,
        ``updated``, ``unchanged``, ``rejected``, ``rejected_rows``). With
        ``skip_invalid_rows`` the valid rows are stored and the others listed."""
        return self._put("tickets", tickets, skip_invalid_rows)

    def ingest_ticket_events(
        self, events: pa.Table | str | Path, skip_invalid_rows: bool = False
    ) -> dict[str, Any]:
        """Store ticket events as one batch, like :meth:`ingest_tickets`."""
        return self._put("ticket_events", events, skip_invalid_rows)

    def ingest_time_logs(
        self, logs: pa.Table | str | Path, skip_invalid_rows: bool = False
    ) -> dict[str, Any]:
        """Store time logs as one batch, like :meth:`ingest_tickets`."""
        return self._put("time_logs", logs, skip_invalid_rows)

    def export(self, op: str, **fields: Any) -> pa.Table:
        """An export as a table: ``sla_results`` (``policy_id``, ``now``, ``client_id``),
        ``invoice_lines`` (``invoice_id``), ``compliance`` (``policy_id``, ``group_by``,
        ``period``, ``now``, ``client_id``), ``percentiles``, ``recommended_targets``
        (``days``). Datetimes are sent as ISO 8601; reports and results carry the number of
        stored tickets left out in the schema metadata ``effigate.failed_count``."""
        ticket = flight.Ticket(_command(op, **fields))
        return self._client.do_get(ticket, self._options).read_all()
