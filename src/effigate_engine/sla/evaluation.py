"""Evaluate a batch of tickets against SLA policies at one instant, in compiled code.

:func:`evaluate` takes the tickets as an Arrow table / record batch (schema
:data:`~effigate_engine.sla.schemas.TICKETS`) or a Parquet file, matches each ticket to the
first rule of its policy (vectorised over dictionary codes), expands ticket × metric rows,
runs the Cython kernel ``_evaluate.evaluate_tickets`` with the GIL released (split across threads
for large batches) and returns Arrow (:data:`~effigate_engine.sla.schemas.SLA_RESULTS`).
Re-evaluating the same tickets at the same ``now`` always gives the same answer.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine import parallel
from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.instants import NO_INSTANT, Form, to_column
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import (
    METRICS,
    RESOLVED,
    STOP_FIELDS,
    MetricTarget,
    Policy,
    normalize_priority,
)
from effigate_engine.sla.schemas import INSTANT, SLA_RESULTS, STATUSES, UNMATCHED
from effigate_engine.zone import TZDATA_VERSION

#: Batches with fewer tickets are evaluated on the calling thread.
SLICE_MIN_TICKETS = 1 << 14
#: Pause statuses get bit positions below this; any other status never pauses anything.
_OTHER_STATUS = 63
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


def _read(tickets: pa.Table | pa.RecordBatch | str | Path) -> pa.Table:
    if isinstance(tickets, (str, Path)):
        return pq.read_table(tickets)
    if isinstance(tickets, pa.RecordBatch):
        return pa.Table.from_batches([tickets])
    if isinstance(tickets, pa.Table):
        return tickets
    raise EffigateError(f"tickets: {type(tickets).__name__} is not an Arrow table, batch or path")


def _column(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        col = table.column(name)
        if isinstance(col, pa.ChunkedArray):
            return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        return col
    return pa.nulls(table.num_rows)


def _codes(array: pa.Array, normalize: Any = None) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the dictionary values (normalised)."""
    if pa.types.is_dictionary(array.type):
        encoded = array
    else:
        if pa.types.is_null(array.type):
            return np.full(len(array), -1, np.int64), []
        encoded = pc.dictionary_encode(array)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    values = encoded.dictionary.to_pylist()
    if normalize is not None:
        values = [None if v is None else normalize(v) for v in values]
    return codes, values


def _value_codes(array: pa.Array, values: list[str]) -> np.ndarray:
    """Position of each element in ``values`` (-1: null or not among them)."""
    found = pc.index_in(array, value_set=pa.array(values, pa.string()))
    return np.ascontiguousarray(found.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)


def _instants(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A timestamp column (any unit, with a zone; floored to the second) as epoch seconds,
    NO_INSTANT where null; a missing or all-null column is all NO_INSTANT."""
    array = _column(table, name) if name in table.column_names else None
    if array is None or pa.types.is_null(array.type):
        return np.full(table.num_rows, NO_INSTANT, np.int64), np.ones(table.num_rows, bool)
    col = to_column(array, name)
    values = col.values.copy() if col.nulls is not None else col.values
    if col.nulls is not None:
        values[col.nulls] = NO_INSTANT
    return np.ascontiguousarray(values, np.int64), col.nulls


@dataclass(frozen=True)
class _Specs:
    """Every (policy, rule, metric) promise flattened for the kernels."""

    rule_first: np.ndarray  # per policy: index of its first rule among all rules
    rule_count: np.ndarray
    rule_policy: np.ndarray  # per global rule
    rule_local: np.ndarray  # its index within its policy
    grid: np.ndarray  # (rules, metrics) -> spec index or -1
    targets: list[MetricTarget]
    cal: np.ndarray
    target: np.ndarray
    warning: np.ndarray
    mask: np.ndarray
    ladder: np.ndarray
    ladder_offsets: np.ndarray
    step_numerator: np.ndarray
    step_denominator: np.ndarray
    step_offset: np.ndarray
    notify: list[str]
    status_bit: dict[str, int]
    #: per matched field: the values rules mention (sorted) and which rule accepts which
    #: value (``_accepts``); an empty list when no rule constrains the field
    match_values: dict[str, list[str]]
    match_tables: dict[str, np.ndarray]
    after_required: np.ndarray  # per rule: -1 any, 0 / 1 the after-hours flag it requires
    spec_rule: np.ndarray  # per spec: its global rule
    #: the same, grouped for the kernels: rule matching and metric promises
    rule_table: _evaluate.RuleTable
    spec_table: _evaluate.SpecTable


#: The ticket fields rules match on: (field, the rule's accepted values, normalisation).
_MATCH_FIELDS = (
    ("priority", lambda m: m.priorities, normalize_priority),
    ("support_level", lambda m: m.support_levels, str.upper),
    ("job_type", lambda m: m.job_types, None),
    ("client_id", lambda m: m.clients, None),
)


_FLATTENED: weakref.WeakKeyDictionary[CalendarSet, list[tuple[list[Policy], _Specs]]] = (
    weakref.WeakKeyDictionary()
)


def _flattened(policy_list: list[Policy], calendars: CalendarSet) -> _Specs:
    """:func:`_flatten`, remembered per calendar set for the last few policy lists (a service
    evaluates the same policies over and over; flattening costs a quarter of a millisecond)."""
    entries = _FLATTENED.setdefault(calendars, [])
    for policies, specs in entries:
        if len(policies) == len(policy_list) and all(
            a is b for a, b in zip(policies, policy_list, strict=True)
        ):
            return specs
    specs = _flatten(policy_list, calendars)
    entries.append((list(policy_list), specs))
    del entries[:-8]
    return specs


def _flatten(policy_list: list[Policy], calendars: CalendarSet) -> _Specs:
    rules = [
        (p, i, rule) for p, policy in enumerate(policy_list) for i, rule in enumerate(policy.rules)
    ]
    counts = np.array([len(p.rules) for p in policy_list], np.int64)
    first = np.zeros(len(policy_list), np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    grid = np.full((len(rules), len(METRICS)), -1, np.int64)
    targets: list[MetricTarget] = []
    for g, (p, i, rule) in enumerate(rules):
        for m, metric in enumerate(METRICS):
            if metric in rule.metrics:
                t = rule.metrics[metric]
                if t.calendar not in calendars.names:
                    raise EffigateError(
                        f"policy {policy_list[p].name!r} rules[{i}].metrics.{metric}.calendar: "
                        f"{t.calendar!r} is not in the calendar set ({sorted(calendars.names)})"
                    )
                grid[g, m] = len(targets)
                targets.append(t)
    # RESOLVED always has a bit: a resolution reopened after ``now`` is a stop (as known then).
    statuses = sorted({s for t in targets for s in t.pausing_statuses} | {RESOLVED})
    if len(statuses) > _OTHER_STATUS:
        raise EffigateError(f"policies: {len(statuses)} pausing statuses; at most 63 are supported")
    bit = {s: i for i, s in enumerate(statuses)}
    ladder = np.full(len(targets), -1, np.int64)
    offsets, num, den, off, notify = [0], [], [], [], []
    for k, t in enumerate(targets):
        if not t.escalation:
            continue
        ladder[k] = len(offsets) - 1
        for step in t.escalation:
            fraction = step.fraction
            num.append(0 if fraction is None else fraction.numerator)
            den.append(1 if fraction is None else fraction.denominator)
            off.append(-1 if fraction is not None else int(step.offset or 0))
            notify.append(step.notify)
        offsets.append(len(num))
    match = _match_tables([rule for _, _, rule in rules])
    tables = match["match_tables"]
    cal = np.array([calendars.names[t.calendar] for t in targets], np.int64)
    target = np.array([t.target for t in targets], np.int64)
    warning = np.array([t.warning_threshold for t in targets], np.int64)
    mask = np.array([sum(1 << bit[s] for s in t.pausing_statuses) for t in targets], np.uint64)
    ladder_offsets = np.array(offsets, np.int64)
    step_numerator = np.array(num, np.int64)
    step_denominator = np.array(den, np.int64)
    step_offset = np.array(off, np.int64)
    return _Specs(
        rule_first=first,
        rule_count=counts,
        rule_policy=np.array([p for p, _, _ in rules], np.int32),
        rule_local=np.array([i for _, i, _ in rules], np.int32),
        grid=grid,
        targets=targets,
        cal=cal,
        target=target,
        warning=warning,
        mask=mask,
        ladder=ladder,
        ladder_offsets=ladder_offsets,
        step_numerator=step_numerator,
        step_denominator=step_denominator,
        step_offset=step_offset,
        notify=notify,
        status_bit=bit,
        **match,
        spec_rule=_spec_rules(grid, len(targets)),
        rule_table=_evaluate.RuleTable(
            first,
            counts,
            tables["priority"],
            tables["support_level"],
            tables["job_type"],
            tables["client_id"],
            match["after_required"],
            grid,
        ),
        spec_table=_evaluate.SpecTable(
            grid,
            cal,
            target,
            warning,
            mask,
            ladder,
            ladder_offsets,
            step_numerator,
            step_denominator,
            step_offset,
            bit[RESOLVED],
        ),
    )


def _spec_rules(grid: np.ndarray, n_specs: int) -> np.ndarray:
    spec_rule = np.zeros(n_specs, np.int64)
    for g in range(grid.shape[0]):
        for k in grid[g]:
            if k >= 0:
                spec_rule[k] = g
    return spec_rule


def _match_tables(all_rules: list[Any]) -> dict[str, Any]:
    values: dict[str, list[str]] = {}
    tables: dict[str, np.ndarray] = {}
    for name, pick, _ in _MATCH_FIELDS:
        mentioned = sorted(
            {v for r in all_rules if pick(r.match) is not None for v in pick(r.match)}
        )
        values[name] = mentioned
        tables[name] = (
            _accepts(all_rules, mentioned, pick)
            if mentioned
            else np.ones((len(all_rules), 1), np.uint8)
        )
    after_required = np.array(
        [-1 if r.match.after_hours is None else int(r.match.after_hours) for r in all_rules],
        np.int8,
    )
    return {"match_values": values, "match_tables": tables, "after_required": after_required}


def _accepts(rules: list[Any], values: list[Any], pick: Any) -> np.ndarray:
    """(rules, values + 1) table: does rule g accept value code c (column c + 1; 0 = null)?"""
    table = np.ones((len(rules), len(values) + 1), np.uint8)
    for g, rule in enumerate(rules):
        allowed = pick(rule.match)
        if allowed is not None:
            table[g, 0] = 0
            table[g, 1:] = [v in allowed for v in values]
    return table


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
    table = _read(tickets)
    for required in ("ticket_id", "priority", "created_at"):
        if required not in table.column_names:
            raise EffigateError(f"tickets: column {required!r} is required")
    by_name = {policies.name: policies} if isinstance(policies, Policy) else dict(policies)
    if not by_name:
        raise EffigateError("policies: at least one policy is required")
    now_rows, per_ticket = _now_rows(now, table.num_rows)
    specs = _flattened(list(by_name.values()), calendars)
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
    row_ticket = np.concatenate([o[2] + lo for o, (lo, _) in zip(outcomes, parts, strict=True)])
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
    specs: _Specs,
    calendars: CalendarSet,
    now_rows: np.ndarray,
    per_ticket: bool,
    named: bool,
) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """Evaluate one slice of the tickets on the calling thread, each as known at its instant
    (``now_rows``: one per ticket when ``per_ticket``, else one for all)."""
    policy_list = list(by_name.values())
    n = table.num_rows
    ticket_ids = _column(table, "ticket_id")

    created, created_nulls = _instants(table, "created_at")
    if created_nulls is not None:
        k = int(np.flatnonzero(created_nulls)[0])
        raise TicketError(ticket_ids[k].as_py(), "created_at", None, "is required", k)
    stops = [_instants(table, STOP_FIELDS[metric])[0] for metric in METRICS]

    # Rule matching (compiled): per field, codes of the values rules mention and a table of
    # which rule accepts which code (both per policy, in ``specs``); a field no rule
    # constrains costs nothing.
    if named:
        policy_col = _column(table, "policy").cast(pa.string())
        ticket_policy = _value_codes(policy_col, list(by_name))
        unknown = (ticket_policy < 0) & policy_col.is_valid().to_numpy(zero_copy_only=False)
        ticket_policy[ticket_policy < 0] = 0  # a null policy means the first one
        ticket_policy[unknown] = -2
    else:
        ticket_policy = np.zeros(n, np.int64)
    codes: dict[str, np.ndarray] = {}
    for name, _, normalize in _MATCH_FIELDS:
        mentioned = specs.match_values[name]
        if not mentioned:
            codes[name] = np.full(n, -1, np.int64)
        elif normalize is None:
            codes[name] = _value_codes(_column(table, name).cast(pa.string()), mentioned)
        else:
            raw, values = _codes(_column(table, name), normalize)
            lookup = np.array(
                [mentioned.index(v) if v in mentioned else -1 for v in values] + [-1], np.int64
            )
            codes[name] = np.ascontiguousarray(lookup[raw])
    after = _column(table, "after_hours")
    after_hours = (
        np.full(n, -1, np.int8)
        if pa.types.is_null(after.type)
        else np.where(
            after.is_valid().to_numpy(zero_copy_only=False),
            after.fill_null(False).to_numpy(zero_copy_only=False),
            -1,
        ).astype(np.int8)
    )
    rule_of, row_count = _evaluate.match_rules(
        _evaluate.MatchColumns(
            ticket_policy,
            codes["priority"],
            codes["support_level"],
            codes["job_type"],
            codes["client_id"],
            after_hours,
        ),
        specs.rule_table,
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
    out = _evaluate.ResultBuffers(rows)
    bad, code = _evaluate.evaluate_tickets(
        calendars.packed, now_rows, per_ticket, columns, specs.spec_table, out, 0
    )
    if bad >= 0:
        now_t = int(now_rows[bad] if per_ticket else now_rows[0])
        _raise_for((bad, code), ticket_ids, created, stops, rule_of, specs, calendars, now_t)

    results = _results(ticket_ids, policy_list, specs, calendars, out, now_rows, per_ticket)
    unmatched = _unmatched(table, ticket_ids, policy_list, ticket_policy, rule_of, named)
    return results, unmatched, out.ticket


def _raise_for(
    failure: tuple[int, int],
    ticket_ids: pa.Array,
    created: np.ndarray,
    stops: list[np.ndarray],
    rule_of: np.ndarray,
    specs: _Specs,
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
    lists = _column(table, "pauses")
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
    ends = to_column(flat.field("end"), "pauses.end")
    end = ends.values.copy() if ends.nulls is not None else ends.values
    if ends.nulls is not None:
        end[ends.nulls] = NO_INSTANT
    start = starts.values
    backwards = (end != NO_INSTANT) & (end < start)
    if backwards.any():
        k = int(np.flatnonzero(backwards)[0])
        raise TicketError(
            owner(k),
            "pauses.end",
            _iso(int(end[k])),
            f"is before its start {_iso(int(start[k]))}",
            row(k),
        )
    known = sorted(status_bit, key=status_bit.get)
    bits = (
        _value_codes(flat.field("status").cast(pa.string()), known)
        if known
        else np.full(len(flat), -1, np.int64)
    )
    bits[bits < 0] = _OTHER_STATUS
    return (
        offsets,
        np.ascontiguousarray(start, np.int64),
        np.ascontiguousarray(end, np.int64),
        np.ascontiguousarray(bits, np.int64),
    )


def _dictionary(indices: np.ndarray, values: list[str], index_type: pa.DataType) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, index_type), pa.array(values, pa.string())
    )


def _masked(values: np.ndarray, typ: pa.DataType, missing: np.ndarray | None = None) -> pa.Array:
    if missing is None:
        missing = values == NO_INSTANT
    return pa.array(values, typ, mask=missing if missing.any() else None)


def _results(
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    specs: _Specs,
    calendars: CalendarSet,
    out: _evaluate.ResultBuffers,
    now_rows: np.ndarray,
    per_ticket: bool,
) -> pa.Table:
    spec = out.spec
    rule_global = specs.spec_rule[spec]
    target = specs.target[spec]
    not_breached = out.status != STATUSES.index("BREACHED")
    cal_names = [c.name for c in calendars.calendars]
    columns = [
        pc.take(ticket_ids, pa.array(out.ticket)),
        _dictionary(out.metric, list(METRICS), pa.int8()),
        _dictionary(specs.rule_policy[rule_global], [p.name for p in policy_list], pa.int32()),
        pa.array(specs.rule_local[rule_global], pa.int32()),
        pa.array(target, pa.int64()),
        _dictionary(specs.cal[spec].astype(np.int32), cal_names, pa.int32()),
        _masked(out.deadline, INSTANT),
        pa.array(out.elapsed, pa.int64()),
        pa.array(target - out.elapsed, pa.int64()),
        _dictionary(out.status, list(STATUSES), pa.int8()),
        _masked(out.stopped, INSTANT),
        _masked(out.deadline, INSTANT, not_breached),
        _masked(out.breach, pa.int64(), not_breached),
        pa.array(out.level, pa.int32()),
        pa.DictionaryArray.from_arrays(
            _masked(out.notify, pa.int32(), out.notify < 0),
            pa.array(specs.notify or [""], pa.string()),
        ),
        _masked(out.next, INSTANT),
    ]
    schema = SLA_RESULTS.with_metadata(
        {
            # Per-ticket instants: the latest of them (each row was evaluated at its own).
            "effigate.now": datetime.fromtimestamp(
                int(now_rows.max()) if now_rows.size else 0, UTC
            ).isoformat(),
            **({"effigate.now_per_ticket": "true"} if per_ticket else {}),
            "effigate.tzdata": _tzdata_version(),
        }
    )
    return pa.Table.from_arrays(columns, schema=schema)


def _quoted(array: pa.Array) -> pa.Array:
    """Each value as Python would show it in a message: 'text', true/false as True/False, None."""
    if pa.types.is_boolean(array.type):
        text = pc.if_else(array, "True", "False")
    else:
        text = pc.binary_join_element_wise("'", array.cast(pa.string()), "'", "")
    return pc.fill_null(text, "None")


def _unmatched(
    table: pa.Table,
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    ticket_policy: np.ndarray,
    rule_of: np.ndarray,
    named: bool,
) -> pa.Table:
    """The tickets no rule matched, with the reason, built column-wise (no per-ticket Python)."""
    missing = np.flatnonzero(rule_of < 0)
    if missing.size == 0:
        return UNMATCHED.empty_table()
    take = pa.array(missing)
    policy_index = ticket_policy[missing]
    known = pc.take(pa.array([p.name for p in policy_list] + [None], pa.string()),
                    pa.array(np.where(policy_index >= 0, policy_index, len(policy_list))))
    given = (pc.take(_column(table, "policy").cast(pa.string()), take) if named
             else pa.nulls(len(missing), pa.string()))
    names = pc.if_else(pa.array(policy_index >= 0), known, given)
    parts: list[pa.Array | str] = ["no rule of policy ", _quoted(names), " matches "]
    for i, field in enumerate(("priority", "support_level", "job_type", "client_id",
                               "after_hours")):
        column = _column(table, field)
        values = (pa.nulls(len(missing), pa.string()) if pa.types.is_null(column.type)
                  else pc.take(column, take))
        parts += [("" if i == 0 else ", ") + f"{field}=", _quoted(values)]
    no_rule = pc.binary_join_element_wise(*parts, "")
    unknown = pc.binary_join_element_wise("policy ", _quoted(given),
                                          " is not among the policies given", "")
    reasons = pc.if_else(pa.array(policy_index >= 0), no_rule, unknown)
    return pa.Table.from_arrays([pc.take(ticket_ids, take), names, reasons], schema=UNMATCHED)
