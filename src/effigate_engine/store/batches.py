"""Batches for the bulk paths: the stored tables' columns (:class:`BulkTable`: the rows of
``time_logs``, ``ticket_events`` and ``tickets`` as the database stores them), and the checks a
batch passes before anything is sent (:func:`prepare_batch`, :func:`split_batch`).

Rows are checked before anything is sent: a required value missing, an instant outside the
accepted range (:data:`effigate_engine.clock.HORIZON`, so every stored row can be evaluated), a
time log ending before it starts. By default one bad row refuses the whole batch
(:class:`BatchRefused` names every bad row, the first :data:`MAX_NAMED_ROWS` in its message); a
caller that opts in stores the valid rows and gets the others back instead.

Instants are ``timestamp[us, UTC]`` in Arrow (:data:`STORED_INSTANT`) and ``timestamptz`` in
the database; ids of the caller are strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import ticket_fields
from effigate_engine.clock import HORIZON, outside_horizon
from effigate_engine.instants import ARROW_INPUT_ERRORS
from effigate_engine.store.errors import StoreError
from effigate_engine.store.tenant import tenant_text

STORED_INSTANT = pa.timestamp("us", tz="UTC")
#: Bad rows named in the message of a refused batch (:class:`BatchRefused` holds them all).
MAX_NAMED_ROWS = 20
#: One row per row of a batch that cannot be stored: its position in the batch, its id, the
#: column at fault (``table.column``) and a sentence naming the value.
REJECTED_ROWS = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("field", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)


class BatchRefused(StoreError):
    """Rows of a batch cannot be stored, so none is. ``rejected`` (:data:`REJECTED_ROWS`)
    names every bad row; ``field`` and ``value`` are the first one's (``time_logs.agent[3]``),
    and the message names the first :data:`MAX_NAMED_ROWS` and gives the count of all."""

    def __init__(self, table: str, rejected: pa.Table, first_value: object) -> None:
        self.rejected = rejected
        first = rejected.slice(0, 1).to_pylist()[0]
        messages = rejected.column("message").slice(0, MAX_NAMED_ROWS).to_pylist()
        super().__init__(f"{first['field']}[{first['row']}]", first_value, "")
        n = rejected.num_rows
        if n == 1:
            text = messages[0]
        else:
            more = f"; and {n - MAX_NAMED_ROWS} more" if n > MAX_NAMED_ROWS else ""
            text = f"{table}: {n} rows cannot be stored, so none was: {'; '.join(messages)}{more}"
        self.problem = text
        self.args = (text,)


@dataclass(frozen=True)
class Column:
    """One ingested column: Arrow type, SQL type and whether nulls are allowed."""

    name: str
    arrow_type: pa.DataType
    sql_type: str
    nullable: bool = False
    #: A batch may leave the column out: its rows are then stored with the column's default
    #: and an upsert leaves the stored value as it is.
    optional: bool = False
    #: The value a null in the batch stands for (``None``: a null is stored as null, or refused
    #: when the column is not nullable).
    null_means: Any = None


@dataclass(frozen=True)
class BulkTable:
    """A table ingested by id: its columns (the first is ``id``) and the staging table name."""

    name: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema a batch for this table must match (column order included)."""
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns]
        )

    @property
    def column_names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def required(self) -> BulkTable:
        """This table with only the columns every batch must carry."""
        return self.for_columns(())

    def for_columns(self, names: Sequence[str]) -> BulkTable:
        """This table restricted to the columns a batch with ``names`` carries: the optional
        columns it leaves out are not staged, inserted or updated (itself when it has them
        all)."""
        present = set(names)
        kept = tuple(c for c in self.columns if not c.optional or c.name in present)
        return self if len(kept) == len(self.columns) else BulkTable(self.name, kept)

    @property
    def staging(self) -> str:
        """Name of the temporary staging table."""
        return f"effigate_stage_{self.name}"

    def staging_ddl(self, tenant_id: UUID | str) -> str:
        """``CREATE TEMP TABLE`` for the staging table, dropped when the transaction ends.

        Its first column is ``tenant_id``, filled in by its default (the batch's tenant), then
        the batch's columns, so a staged row has the stored table's columns in its order and
        :meth:`insert_sql` passes rows through as they are: selecting a constant tenant
        instead made the server build every row anew (about a tenth of the insert's CPU).
        """
        tenant = tenant_text(tenant_id)
        cols = ", ".join(f"{c.name} {c.sql_type}" for c in self.columns)
        return (
            f"CREATE TEMP TABLE {self.staging} (tenant_id uuid NOT NULL DEFAULT"
            f" '{tenant}'::uuid, {cols}) ON COMMIT DROP"
        )

    def lock_sql(self, tenant_id: UUID | str) -> str:
        """Transaction-scoped advisory lock serialising ingests of this table for one tenant."""
        tenant = tenant_text(tenant_id)
        return (
            f"SELECT pg_advisory_xact_lock(hashtext('effigate.ingest.{self.name}'),"
            f" hashtext('{tenant}'))"
        )

    def merge_sql(self, tenant_id: UUID | str) -> str:
        """The upsert from staging; returns one row (inserted, updated).

        Changed rows are updated (unchanged ones are not touched, so no trigger fires for
        them) and new rows inserted with an anti-join. This is the effect of ``INSERT ... ON
        CONFLICT DO UPDATE ... WHERE changed`` at about half its cost on large batches (no
        speculative insertion per row); :meth:`lock_sql` taken first keeps two ingests of the
        same tenant from racing on a new id.
        """
        tenant = tenant_text(tenant_id)
        names = self.column_names
        payload = names[1:]
        assignments = ", ".join(f"{n} = s.{n}" for n in payload)
        old = ", ".join(f"t.{n}" for n in payload)
        new = ", ".join(f"s.{n}" for n in payload)
        select = ", ".join(f"s.{n}" for n in names)
        return (
            f"WITH updated AS ("
            f" UPDATE {self.name} AS t SET {assignments} FROM {self.staging} s"
            f" WHERE t.tenant_id = '{tenant}'::uuid AND t.id = s.id"
            f" AND ({old}) IS DISTINCT FROM ({new}) RETURNING 1),"
            f" inserted AS ("
            f" INSERT INTO {self.name} (tenant_id, {', '.join(names)})"
            f" SELECT s.tenant_id, {select} FROM {self.staging} s"
            f" WHERE NOT EXISTS (SELECT 1 FROM {self.name} x"
            f" WHERE x.tenant_id = '{tenant}'::uuid AND x.id = s.id) RETURNING 1)"
            f" SELECT (SELECT count(*) FROM inserted) AS inserted,"
            f" (SELECT count(*) FROM updated) AS updated"
        )

    def probe_sql(self, tenant_id: UUID | str) -> str:
        """Whether the tenant already has a row whose id lies between the staged ids' least and
        greatest (bytewise, like the primary key). ``false`` proves no staged id is stored yet,
        so the batch can be inserted as it is (:meth:`insert_sql`); one range probe of the
        primary key after one pass over staging, instead of the merge's update and anti-join.
        """
        tenant = tenant_text(tenant_id)
        return (
            f"SELECT EXISTS (SELECT 1 FROM {self.name} t,"
            f' (SELECT min(id COLLATE "C") AS lo, max(id COLLATE "C") AS hi'
            f" FROM {self.staging}) b"
            f" WHERE t.tenant_id = '{tenant}'::uuid AND t.id >= b.lo AND t.id <= b.hi)"
        )

    def insert_sql(self) -> str:
        """Insert every staged row (the batch is new: :meth:`probe_sql` found none stored)."""
        names = ", ".join(["tenant_id", *self.column_names])
        return f"INSERT INTO {self.name} ({names}) SELECT {names} FROM {self.staging}"

    def select_sql(
        self, contract_id: int | None = None, blocks: tuple[int, int | None] | None = None
    ) -> str:
        """``SELECT`` of the columns in order, optionally of one contract's rows only, and
        optionally of the rows stored in table blocks ``[first, end)`` only (``end`` ``None``:
        to the end of the table), which the server reads with a TID range scan.
        """
        conditions = []
        if contract_id is not None:
            if "contract_id" not in self.column_names:
                raise StoreError(f"{self.name}.contract_id", contract_id, "is not a column")
            conditions.append(f"contract_id = {int(contract_id)}")
        if blocks is not None:
            first, end = blocks
            conditions.append(f"ctid >= '({int(first)},0)'::tid")
            if end is not None:
                conditions.append(f"ctid < '({int(end)},0)'::tid")
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {', '.join(self.column_names)} FROM {self.name}{clause}"


def _text(name: str, nullable: bool = False) -> Column:
    return Column(name, pa.string(), "text", nullable)


def _instant(name: str, nullable: bool = False) -> Column:
    return Column(name, STORED_INSTANT, "timestamptz", nullable)


def _int(name: str, nullable: bool = False) -> Column:
    return Column(name, pa.int64(), "bigint", nullable)


def _optional_text(name: str) -> Column:
    return Column(name, pa.string(), "text", True, optional=True)


STORED_TIME_LOGS = BulkTable(
    "time_logs",
    (
        _text("id"),
        _int("contract_id"),
        _text("ticket_id", True),
        _text("task_ref", True),
        _text("agent"),
        _text("support_level"),
        _text("job_type"),
        _text("priority", True),
        _instant("started_at"),
        _instant("ended_at"),
        _text("billable_type"),
        _text("approval_state"),
    ),
)

STORED_TICKET_EVENTS = BulkTable(
    "ticket_events",
    (
        _text("id"),
        _text("ticket_id"),
        _text("kind"),
        _instant("occurred_at"),
        _text("actor", True),
        _text("detail", True),
    ),
)

STORED_TICKETS = BulkTable(
    "tickets",
    (
        _text("id"),
        _int("client_id"),
        _int("contract_id", True),
        _text("priority"),
        _text("status"),
        _instant("created_at"),
        _instant("first_response_at", True),
        _instant("resolved_at", True),
        _optional_text("support_level"),
        _optional_text("job_type"),
        Column("after_hours", pa.bool_(), "boolean", optional=True, null_means=False),
        _optional_text("channel"),
        _optional_text("subject"),
        _optional_text("requester"),
        _optional_text("queue"),
        _optional_text("assignee"),
        _optional_text("asset"),
        Column("tags", pa.list_(pa.string()), "text[]", optional=True, null_means=[]),
    ),
)

#: A batch row's own check beyond the columns' (the service's, e.g. contract scope): given the
#: prepared batch, ``{row position: (column, value, problem)}`` for the rows it refuses.
RowCheck = Callable[[pa.Table], dict[int, tuple[str, object, str]]]


@dataclass(frozen=True)
class IngestResult:
    """Counts of one ingested batch: rows received, newly inserted, changed, left unchanged."""

    received: int
    inserted: int
    updated: int
    #: Rows set aside (not stored) when the caller asked to skip invalid rows.
    rejected: pa.Table = field(default_factory=REJECTED_ROWS.empty_table)

    @property
    def unchanged(self) -> int:
        """Rows already stored with identical content."""
        return self.received - self.inserted - self.updated - self.rejected.num_rows


def prepare_batch(
    spec: BulkTable, batch: pa.Table | pa.RecordBatch, check: RowCheck | None = None
) -> pa.Table:
    """Check a batch against ``spec`` and return it in the schema's column order and types
    (``spec`` restricted to the columns the batch has, :meth:`BulkTable.for_columns`).

    Raises :class:`StoreError` naming ``table.column[position]`` and the value for: a missing
    column, a naive (zone-less) timestamp, a duplicate id; and :class:`BatchRefused` naming
    every bad row (:func:`split_batch`, ``check`` included) when any row cannot be stored.
    """
    prepared, rejected, first_value = _checked_rows(spec, batch, check)
    if rejected.num_rows:
        raise BatchRefused(spec.name, rejected, first_value)
    return prepared


def split_batch(
    spec: BulkTable, batch: pa.Table | pa.RecordBatch, check: RowCheck | None = None
) -> tuple[pa.Table, pa.Table]:
    """The rows of ``batch`` that can be stored (prepared, as :func:`prepare_batch` returns
    them) and the others (:data:`REJECTED_ROWS`, by position in ``batch``): a null in a
    required column, an instant outside :data:`effigate_engine.clock.HORIZON`, for time
    logs an end not after the start, for tickets a field that is not in its normal form
    (:mod:`effigate_engine.ticket_fields`), and the rows ``check`` refuses. Faults of the whole
    batch (a missing column, a naive timestamp, a duplicate id) still raise
    :class:`StoreError`."""
    prepared, rejected, _ = _checked_rows(spec, batch, check)
    if rejected.num_rows == 0:
        return prepared, rejected
    keep = np.ones(prepared.num_rows, bool)
    keep[rejected.column("row").to_numpy()] = False
    return prepared.filter(pa.array(keep)).cast(
        spec.for_columns(batch.schema.names).schema
    ), rejected


def _shown(value: object) -> str:
    if isinstance(value, datetime):
        return repr(value.isoformat())
    return repr(value)


def _checked_rows(
    spec: BulkTable, batch: pa.Table | pa.RecordBatch, check: RowCheck | None = None
) -> tuple[pa.Table, pa.Table, object]:
    """The batch in ``spec``'s schema (restricted to its columns), its bad rows
    (:data:`REJECTED_ROWS`, each named once, by its first fault in column order) and the first
    bad row's offending value."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    spec = spec.for_columns(table.column_names)
    arrays = []
    for col in spec.columns:
        name = f"{spec.name}.{col.name}"
        if col.name not in table.column_names:
            raise StoreError(name, None, "is missing from the batch")
        data = table.column(col.name)
        if pa.types.is_timestamp(data.type) and data.type.tz is None:
            raise StoreError(name, str(data.type), "has no time zone; send UTC instants")
        if data.type != col.arrow_type:
            try:
                data = data.cast(col.arrow_type)
            except ARROW_INPUT_ERRORS as exc:
                raise StoreError(
                    name, str(data.type), f"cannot be read as {col.arrow_type}"
                ) from exc
        if col.null_means is not None and data.null_count:
            data = pc.fill_null(data, pa.scalar(col.null_means, col.arrow_type))
        arrays.append(data)
    loose = pa.schema([pa.field(c.name, c.arrow_type) for c in spec.columns])
    prepared = pa.Table.from_arrays(arrays, schema=loose)
    ids = prepared.column("id")
    if not ids_ascending(ids) and len(pc.unique(ids)) != len(ids):
        counts = pc.value_counts(ids)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        positions = pc.indices_nonzero(pc.equal(ids, repeated)).to_pylist()
        raise StoreError(
            f"{spec.name}.id[{positions[1]}]",
            repeated,
            f"appears more than once in the batch (positions {positions[:5]})",
        )
    faults: dict[int, tuple[str, object, str]] = {}

    def fault(mask: np.ndarray, column: str, problem: Any) -> None:
        """Rows ``mask`` (booleans, or positions) refused for ``problem`` in ``column``."""
        values = prepared.column(column)
        rows = np.flatnonzero(mask) if mask.dtype == bool else mask
        for k in rows:
            if int(k) not in faults:
                value = values[int(k)].as_py()
                faults[int(k)] = (column, value, problem(int(k)) if callable(problem) else problem)

    for col in spec.columns:
        data = prepared.column(col.name)
        if not col.nullable and data.null_count:
            fault(pc.is_null(data).to_numpy(zero_copy_only=False), col.name, "is required but null")
        if col.arrow_type == STORED_INSTANT and len(data):
            fault(outside_horizon(data), col.name, f"is outside the accepted range {HORIZON}")
    if spec.name == STORED_TICKETS.name and len(prepared):
        prepared = _ticket_fields(prepared, fault)
    if spec.name == STORED_TIME_LOGS.name and len(prepared):
        started = prepared.column("started_at")
        bad = pc.fill_null(pc.less_equal(prepared.column("ended_at"), started), False)
        fault(
            bad.to_numpy(zero_copy_only=False),
            "ended_at",
            lambda k: f"is not after started_at {started[k].as_py()}",
        )
    if check is not None and len(prepared):
        for k, found in check(prepared).items():
            faults.setdefault(k, found)
    if not faults:
        return prepared.cast(spec.schema), REJECTED_ROWS.empty_table(), None
    order = sorted(faults)
    row_ids = ids.take(pa.array(order, pa.int64())).to_pylist()
    messages = []
    for k, row_id in zip(order, row_ids, strict=True):
        column, value, problem = faults[k]
        shown = "None" if value is None else _shown(value)
        messages.append(f"{spec.name}.{column}[{k}] (id {row_id!r}): {shown} {problem}")
    rejected = pa.Table.from_arrays(
        [
            pa.array(order, pa.int64()),
            pa.array(row_ids, pa.string()),
            pa.array([f"{spec.name}.{faults[k][0]}" for k in order], pa.string()),
            pa.array(messages, pa.string()),
        ],
        schema=REJECTED_ROWS,
    )
    return prepared, rejected, faults[order[0]][1]


#: The ticket columns normalised in bulk: name -> the normaliser of one value (which names the
#: problem of a value it refuses), the longest normal value and its vocabulary or pattern.
_TICKET_TEXT: dict[str, tuple[Callable[[str], object], int, tuple[str, ...] | str | None]] = {
    "support_level": (ticket_fields.support_level, 8, ticket_fields.SUPPORT_LEVELS),
    "job_type": (ticket_fields.job_type, ticket_fields.JOB_TYPE_CHARS, None),
    "channel": (ticket_fields.channel, 16, ticket_fields.CHANNELS),
    "subject": (ticket_fields.subject, ticket_fields.SUBJECT_CHARS, None),
    "requester": (
        ticket_fields.requester,
        ticket_fields.REQUESTER_CHARS,
        ticket_fields.REQUESTER_PATTERN,
    ),
    "queue": (lambda v: ticket_fields.name(v, "queue"), ticket_fields.NAME_CHARS, None),
    "assignee": (lambda v: ticket_fields.name(v, "assignee"), ticket_fields.NAME_CHARS, None),
    "asset": (ticket_fields.asset, ticket_fields.ASSET_CHARS, None),
}
_UPPER = frozenset({"support_level", "channel"})
_CONTROL_PATTERN = "[\\x00-\\x1f\\x7f]"


def _ticket_fields(prepared: pa.Table, fault: Callable[..., None]) -> pa.Table:
    """``prepared`` (tickets) with its descriptive columns in normal form
    (:mod:`effigate_engine.ticket_fields`: trimmed, vocabularies upper-cased, empty text null,
    tags sorted and distinct); a value that has none is a fault of its row, named by the
    one-value normaliser. Text is checked in vectorised passes; tags row by row, only where
    there are any."""
    for name, (normalise, limit, allowed) in _TICKET_TEXT.items():
        if name not in prepared.column_names:
            continue
        data = prepared.column(name)
        if data.null_count == len(data):
            continue
        normal = pc.utf8_trim_whitespace(data)
        if name in _UPPER:
            normal = pc.utf8_upper(normal)
        normal = pc.if_else(pc.equal(normal, ""), pa.scalar(None, pa.string()), normal)
        valid = pc.and_(
            pc.less_equal(pc.utf8_length(normal), limit),
            pc.invert(pc.match_substring_regex(normal, _CONTROL_PATTERN)),
        )
        if isinstance(allowed, tuple):
            valid = pc.and_(valid, pc.is_in(normal, value_set=pa.array(allowed, pa.string())))
        elif isinstance(allowed, str):
            valid = pc.and_(valid, pc.match_substring_regex(normal, allowed))
        bad = pc.invert(pc.fill_null(valid, True)).to_numpy(zero_copy_only=False)
        if bad.any():
            values = data.to_pylist()
            fixed = normal.to_pylist()
            for k in np.flatnonzero(bad):
                try:
                    fixed[int(k)] = normalise(values[int(k)])
                except ticket_fields.FieldError as exc:
                    fault(np.array([k]), name, exc.problem)
            normal = pa.array(fixed, pa.string())
        index = prepared.column_names.index(name)
        prepared = prepared.set_column(index, name, normal)
    if "tags" in prepared.column_names:
        tags = prepared.column("tags")
        if isinstance(tags, pa.ChunkedArray):
            tags = tags.combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(tags), 0).to_numpy(zero_copy_only=False)
        unsettled = _tags_not_normal(tags, lengths)
        if unsettled.any():
            rows = tags.to_pylist()
            for k in np.flatnonzero(unsettled):
                try:
                    rows[int(k)] = ticket_fields.tags(rows[int(k)])
                except ticket_fields.FieldError as exc:
                    fault(np.array([k]), "tags", f"{exc.field}: {exc.problem}")
            index = prepared.column_names.index("tags")
            prepared = prepared.set_column(index, "tags", pa.array(rows, pa.list_(pa.string())))
    return prepared


def _tags_not_normal(tags: pa.ListArray, lengths: np.ndarray) -> np.ndarray:
    """Rows whose tags are not already in normal form (each trimmed, 1..64 characters, no
    comma or control character, at most :data:`~effigate_engine.ticket_fields.MAX_TAGS`,
    strictly ascending bytewise, the order of code points), found in vectorised passes."""
    bad = lengths > ticket_fields.MAX_TAGS
    if not lengths.any():
        return bad
    flat = pc.list_flatten(tags)
    parents = pc.list_parent_indices(tags).to_numpy(zero_copy_only=False)
    ok = pc.and_(
        pc.and_(
            pc.equal(pc.utf8_trim_whitespace(flat), flat),
            pc.less_equal(pc.utf8_length(flat), ticket_fields.TAG_CHARS),
        ),
        pc.and_(
            pc.greater(pc.utf8_length(flat), 0),
            pc.invert(pc.match_substring_regex(flat, "[,\\x00-\\x1f\\x7f]")),
        ),
    )
    element_bad = ~pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
    if len(flat) > 1:
        same = parents[:-1] == parents[1:]
        ascending = pc.fill_null(
            pc.less(flat.slice(0, len(flat) - 1), flat.slice(1)), False
        ).to_numpy(zero_copy_only=False)
        unordered = same & ~ascending
        element_bad[1:] |= unordered
    bad[parents[element_bad]] = True
    return bad


def ids_ascending(ids: pa.ChunkedArray | pa.Array) -> bool:
    """Whether ``ids`` are strictly ascending (bytewise, the primary key's order), which also
    proves them distinct; one vectorised comparison of neighbours."""
    if len(ids) < 2:
        return True
    return bool(pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py())


def in_key_order(table: pa.Table) -> pa.Table:
    """``table`` (prepared) with its rows in primary-key order (by ``id``, bytewise).

    Inserting in key order appends to the primary key's B-tree instead of landing on a random
    leaf per row: for 1M shuffled ids the server's insert took about a quarter less time, for
    about half a second of sorting here (measured in ``docs/store.md``). A batch already in
    order is returned as it is.
    """
    if ids_ascending(table.column("id")):
        return table
    return table.take(pc.sort_indices(table.column("id")))


COPY_CHUNK_ROWS = 65_536
"""Rows per record batch streamed into COPY: the server parses one chunk while the driver
encodes the next, as far as the socket buffers allow (a single 1M-row batch is encoded whole
before the first byte is sent; chunks took about a quarter off the COPY's wall time, see
``docs/store.md``)."""


def copy_stream(table: pa.Table, chunk_rows: int = COPY_CHUNK_ROWS) -> pa.RecordBatchReader:
    """``table`` as a reader of record batches of at most ``chunk_rows`` rows (zero-copy)."""
    return pa.RecordBatchReader.from_batches(
        table.schema, table.to_batches(max_chunksize=chunk_rows)
    )


def table_to_records(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of an Arrow table as tuples (for asyncpg's COPY)."""
    columns = [col.to_pylist() for col in table.columns]
    return list(zip(*columns, strict=True))
