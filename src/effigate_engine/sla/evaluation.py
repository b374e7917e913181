"""Evaluate a batch of tickets against SLA policies at one instant, in compiled code.

:func:`evaluate` takes the tickets as an Arrow table / record batch (schema
:data:`~effigate_engine.sla.schemas.TICKETS`) or a Parquet file, matches each ticket to the
first rule of its policy (vectorised over dictionary codes), expands ticket × metric rows,
runs the Cython kernel ``_evaluate.evaluate_tickets`` with the GIL released (split across threads
for large batches) and returns Arrow (:data:`~effigate_engine.sla.schemas.SLA_RESULTS`).
Re-evaluating the same tickets at the same ``now`` always gives the same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import parallel
from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.instants import NO_INSTANT, Form, to_column
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import (
    METRICS,
    STOP_FIELDS,
    Policy,
)
from effigate_engine.sla.results import results_table, unmatched_table
from effigate_engine.sla.rule_tables import MATCH_FIELDS, OTHER_STATUS, Specs, flattened
from effigate_engine.sla.ticket_columns import (
    dictionary_codes,
    epoch_seconds,
    instant_column,
    read_tickets,
    ticket_column,
    value_codes,
)
from effigate_engine.zone import TZDATA_VERSION

#: Batches with fewer tickets are evaluated on the calling thread.
SLICE_MIN_TICKETS = 1 << 14
_ERRORS = {
    1: ("calendar", "is not a calendar of the set"),
    2: ("created_at", "is outside the calendars' horizon"),
    3: ("stop", "is outside the calendars' horizon"),
    5: ("now", "is outside the calendars' horizon"),
    6: ("deadline", "falls past the calendars' horizon"),
    7: ("stop", "is before created_at"),
    8: ("memory", "could not be allocated for the pause buffer"),
}


class TicketError(EffigateError):
    """A ticket of the batch is invalid: names the ticket, the field and the value; ``row`` is
    the ticket's position in the batch evaluated (``None`` when not known)."""

    def __init__(
        self,
        ticket_id: object,
        field: str,
        value: object,
        problem: str,
        row: int | None = None,
    ) -> None:
        self.ticket_id = ticket_id
        self.field = field
        self.value = value
        self.problem = problem
        self.row = row
        super().__init__(f"ticket {ticket_id!r}: {field} {value!r} {problem}")


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`.

    ``results`` follows :data:`SLA_RESULTS`; ``unmatched`` lists tickets no rule matched (with
    the reason); ``row_ticket`` maps each result row to its position in ``tickets``.
    """

    results: pa.Table
    unmatched: pa.Table
    tickets: pa.Table
    row_ticket: np.ndarray
    now: datetime
    tzdata_version: str


def _tzdata_version() -> str:
    """The tzdata release the zones come from: every zone is read from the bundled ``tzdata``
    package (``effigate_engine.zone``), never the host's, so this is the data actually used."""
    return TZDATA_VERSION


def evaluate(
    tickets: pa.Table | pa.RecordBatch | str | Path,
    policies: Policy | Mapping[str, Policy],
    calendars: CalendarSet,
    now: datetime | int,
    *,
    threads: int | None = None,
) -> Evaluation:
    """Evaluate every ticket's SLA metrics as known at ``now``: an aware datetime or epoch
    seconds, or an array of one instant per ticket (NumPy, Arrow or a list of datetimes).

    As known at an instant *t*: stops, pauses and reopenings at or before *t* count (an event
    exactly at *t* is known at *t*), later ones are ignored, a pause running at *t* is open,
    and a ticket resolved before *t* and reopened after it is resolved (its RESOLUTION stops
    at the resolution). So evaluating a full history at *t* equals evaluating the history cut
    at *t*.

    ``policies`` is one policy (applied to every ticket) or policies by name (each ticket names
    its policy in the ``policy`` column; a null there means the first policy given). Large
    batches are cut into ``threads`` slices evaluated concurrently (the compiled kernels and
    Arrow compute release the GIL); results keep the input order.
    """
    table = read_tickets(tickets)
    for required in ("ticket_id", "priority", "created_at"):
        if required not in table.column_names:
            raise EffigateError(f"tickets: column {required!r} is required")
    by_name = {policies.name: policies} if isinstance(policies, Policy) else dict(policies)
    if not by_name:
        raise EffigateError("policies: at least one policy is required")
    now_rows, per_ticket = _now_rows(now, table.num_rows)
    specs = flattened(list(by_name.values()), calendars)
    named = "policy" in table.column_names and not isinstance(policies, Policy)
    parts = parallel.slices(table.num_rows, threads, SLICE_MIN_TICKETS)

    def work(lo: int, hi: int) -> tuple[pa.Table, pa.Table, np.ndarray]:
        rows = now_rows[lo:hi] if per_ticket else now_rows
        try:
            return _evaluate_slice(
                table.slice(lo, hi - lo), by_name, specs, calendars, rows, per_ticket, named
            )
        except TicketError as exc:
            if exc.row is not None:
                exc.row += lo  # the slice's position to the batch's
            raise

    outcomes = parallel.run(work, parts)
    results = pa.concat_tables([o[0] for o in outcomes])
    unmatched = pa.concat_tables([o[1] for o in outcomes])
    row_ticket = (
        outcomes[0][2]
        if len(outcomes) == 1
        else np.concatenate([o[2] + lo for o, (lo, _) in zip(outcomes, parts, strict=True)])
    )
    latest = int(now_rows.max()) if now_rows.size else 0
    instant = datetime.fromtimestamp(latest, UTC)
    return Evaluation(results, unmatched, table, row_ticket, instant, _tzdata_version())


def _now_rows(now: object, n: int) -> tuple[np.ndarray, bool]:
    """``now`` as int64 epoch seconds and whether it is per ticket: one element for a single
    instant (an aware datetime or epoch seconds), or one per ticket for an array (NumPy
    ``datetime64``/int64, Arrow timestamps, a list of aware datetimes), which must have ``n``
    elements and no nulls."""
    column = to_column(now, "now")
    values = np.ascontiguousarray(column.values, np.int64)
    if column.form is Form.SCALAR:
        return values, False
    if column.nulls is not None and column.nulls.any():
        raise EffigateError(f"now[{int(np.flatnonzero(column.nulls)[0])}]: is null")
    if values.size != n:
        raise EffigateError(
            f"now: {values.size} instants for {n} tickets; give one instant or one per ticket"
        )
    return values, True


def _evaluate_slice(
    table: pa.Table,
    by_name: dict[str, Policy],
    specs: Specs,
    calendars: CalendarSet,
    now_rows: np.ndarray,
    per_ticket: bool,
    named: bool,
) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """Evaluate one slice of the tickets on the calling thread, each as known at its instant
    (``now_rows``: one per ticket when ``per_ticket``, else one for all)."""
    policy_list = list(by_name.values())
    n = table.num_rows
    ticket_ids = ticket_column(table, "ticket_id")

    created, created_nulls = instant_column(table, "created_at")
    if created_nulls is not None:
        k = int(np.flatnonzero(created_nulls)[0])
        raise TicketError(ticket_ids[k].as_py(), "created_at", None, "is required", k)
    stops = [instant_column(table, STOP_FIELDS[metric], nulls=False)[0] for metric in METRICS]

    ticket_policy = _ticket_policies(table, by_name, named)
    rule_of, row_count = _evaluate.match_rules(
        _match_columns(table, specs, ticket_policy), specs.rule_table
    )
    row_offset = np.zeros(n + 1, np.int64)
    np.cumsum(row_count, out=row_offset[1:])
    rows = int(row_offset[-1])

    pause_offsets, p_start, p_end, p_status = _pauses(table, ticket_ids, specs.status_bit)
    columns = _evaluate.TicketColumns(
        created,
        stops[0],
        stops[1],
        stops[2],
        rule_of,
        row_offset[:n],
        pause_offsets,
        p_start,
        p_end,
        p_status,
    )
    if columns.first_backwards >= 0:
        _raise_backwards(columns.first_backwards, pause_offsets, p_start, p_end, ticket_ids)
    out = _evaluate.ResultBuffers(rows)
    bad, code = _evaluate.evaluate_tickets(
        calendars.packed, now_rows, per_ticket, columns, specs.spec_table, out, 0
    )
    if bad >= 0:
        now_t = int(now_rows[bad] if per_ticket else now_rows[0])
        _raise_for((bad, code), ticket_ids, created, stops, rule_of, specs, calendars, now_t)

    results = results_table(ticket_ids, policy_list, specs, calendars, out, now_rows, per_ticket)
    unmatched = unmatched_table(table, ticket_ids, policy_list, ticket_policy, rule_of, named)
    return results, unmatched, out.ticket


def _ticket_policies(table: pa.Table, by_name: dict[str, Policy], named: bool) -> np.ndarray:
    """Per ticket: the index of its policy among ``by_name`` (a null policy: the first one;
    -2: a policy not among them); all 0 when the tickets do not name policies."""
    if not named:
        return np.zeros(table.num_rows, np.int64)
    policy_col = ticket_column(table, "policy").cast(pa.string())
    ticket_policy = value_codes(policy_col, list(by_name))
    unknown = (ticket_policy < 0) & policy_col.is_valid().to_numpy(zero_copy_only=False)
    ticket_policy[ticket_policy < 0] = 0  # a null policy means the first one
    ticket_policy[unknown] = -2
    return ticket_policy


def _match_columns(
    table: pa.Table, specs: Specs, ticket_policy: np.ndarray
) -> _evaluate.MatchColumns:
    """The fields rule matching reads (compiled): per field, codes of the values rules mention
    (a table of which rule accepts which code is in ``specs``); a field no rule constrains
    costs nothing."""
    n = table.num_rows
    codes: dict[str, np.ndarray] = {}
    for name, _, normalize in MATCH_FIELDS:
        mentioned = specs.match_values[name]
        if not mentioned:
            codes[name] = np.full(n, -1, np.int64)
        elif normalize is None:
            codes[name] = value_codes(ticket_column(table, name).cast(pa.string()), mentioned)
        else:
            raw, values = dictionary_codes(ticket_column(table, name), normalize)
            lookup = np.array(
                [mentioned.index(v) if v in mentioned else -1 for v in values] + [-1], np.int64
            )
            codes[name] = np.ascontiguousarray(lookup[raw])
    after = ticket_column(table, "after_hours")
    after_hours = (
        np.full(n, -1, np.int8)
        if pa.types.is_null(after.type)
        else np.where(
            after.is_valid().to_numpy(zero_copy_only=False),
            after.fill_null(False).to_numpy(zero_copy_only=False),
            -1,
        ).astype(np.int8)
    )
    return _evaluate.MatchColumns(
        ticket_policy,
        codes["priority"],
        codes["support_level"],
        codes["job_type"],
        codes["client_id"],
        after_hours,
    )


def _raise_for(
    failure: tuple[int, int],
    ticket_ids: pa.Array,
    created: np.ndarray,
    stops: list[np.ndarray],
    rule_of: np.ndarray,
    specs: Specs,
    calendars: CalendarSet,
    now_s: int,
) -> None:
    """Turn a kernel's (ticket, code) into a TicketError naming the ticket, field and value."""
    t, code = failure
    field, problem = _ERRORS.get(code, ("ticket", "was refused"))
    value: object = None
    if field == "created_at":
        value = _iso(int(created[t]))
    elif field == "now":
        value = _iso(now_s)
    elif field == "stop":
        horizon = calendars.horizon
        for m, metric in enumerate(METRICS):
            stop = int(stops[m][t])
            if specs.grid[rule_of[t], m] < 0 or stop == NO_INSTANT or stop > now_s:
                continue
            if stop < int(created[t]) or not horizon.start <= stop <= horizon.end:
                field, value = STOP_FIELDS[metric], _iso(stop)
                break
    raise TicketError(ticket_ids[t].as_py(), field, value, problem, t)


def _iso(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return str(t)


def _pauses(
    table: pa.Table, ticket_ids: pa.Array, status_bit: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR of pauses per ticket (in input order; the kernel sorts each ticket's few): offsets,
    starts, ends (open = NO_INSTANT) and status bits."""
    n = table.num_rows
    empty = np.empty(0, np.int64)
    if "pauses" not in table.column_names:
        return np.zeros(n + 1, np.int64), empty, empty, empty
    lists = ticket_column(table, "pauses")
    if lists.null_count:
        lists = pc.if_else(pc.is_valid(lists), lists, pa.scalar([], lists.type))
    offsets = lists.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    flat = lists.flatten()
    if len(flat) == 0:
        return np.zeros(n + 1, np.int64), empty, empty, empty

    def row(k: int) -> int:
        return int(np.searchsorted(offsets, k, side="right") - 1)

    def owner(k: int) -> object:
        return ticket_ids[row(k)].as_py()

    starts = to_column(flat.field("start"), "pauses.start")
    if starts.nulls is not None:
        k = int(np.flatnonzero(starts.nulls)[0])
        raise TicketError(owner(k), "pauses.start", None, "is required", row(k))
    end = epoch_seconds(flat.field("end"))
    if end is None:
        ends = to_column(flat.field("end"), "pauses.end")
        end = ends.values.copy() if ends.nulls is not None else ends.values
        if ends.nulls is not None:
            end[ends.nulls] = NO_INSTANT
    start = starts.values
    # An end before its start is refused by TicketColumns' check (first_backwards).
    known = sorted(status_bit, key=status_bit.get)
    bits = (
        pc.index_in(flat.field("status").cast(pa.string()), value_set=pa.array(known, pa.string()))
        .fill_null(OTHER_STATUS)
        .to_numpy(zero_copy_only=False)
        if known
        else np.full(len(flat), OTHER_STATUS, np.int64)
    )
    return (
        offsets,
        np.ascontiguousarray(start, np.int64),
        np.ascontiguousarray(end, np.int64),
        np.ascontiguousarray(bits, np.int64),
    )


def _raise_backwards(
    k: int,
    offsets: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    ticket_ids: pa.Array,
) -> None:
    """Refuse pause ``k`` (a position among all pauses), which ends before it starts."""
    t = int(np.searchsorted(offsets, k, side="right") - 1)
    raise TicketError(
        ticket_ids[t].as_py(),
        "pauses.end",
        _iso(int(end[k])),
        f"is before its start {_iso(int(start[k]))}",
        t,
    )
