"""Evaluate a batch of tickets against SLA policies at one instant, in compiled code.

:func:`evaluate` takes the tickets as an Arrow table / record batch (schema
:data:`~effigate_engine.sla.schemas.TICKETS`) or a Parquet file, matches each ticket to the
first rule of its policy (vectorised over dictionary codes), expands ticket × metric rows,
runs the Cython kernel ``_evaluate.evaluate_rows`` with the GIL released (split across threads
for large batches) and returns Arrow (:data:`~effigate_engine.sla.schemas.SLA_RESULTS`).
Re-evaluating the same tickets at the same ``now`` always gives the same answer.
"""

from __future__ import annotations

import importlib.metadata
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine import clock
from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.instants import NO_INSTANT, to_column
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import (
    METRICS,
    STOP_FIELDS,
    MetricTarget,
    Policy,
    normalize_priority,
)
from effigate_engine.sla.schemas import INSTANT, SLA_RESULTS, STATUSES, UNMATCHED

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
    """A ticket of the batch is invalid: names the ticket, the field and the value."""

    def __init__(self, ticket_id: object, field: str, value: object, problem: str) -> None:
        self.ticket_id = ticket_id
        self.field = field
        self.value = value
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
    try:
        return importlib.metadata.version("tzdata")
    except importlib.metadata.PackageNotFoundError:
        return "system"


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
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pa.nulls(table.num_rows, pa.string())


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


def _lookup(codes: np.ndarray, values: list[Any], allowed: frozenset | None) -> np.ndarray:
    """Boolean per row: the row's value is in ``allowed`` (everything when ``allowed`` is None)."""
    if allowed is None:
        return np.ones(codes.size, bool)
    table = np.array([v in allowed for v in values] + [False], bool)
    return table[codes]  # code -1 hits the trailing False


def _instants(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    col = to_column(
        _column(table, name).cast(INSTANT)
        if name in table.column_names
        else pa.nulls(table.num_rows, INSTANT),
        name,
    )
    values = col.values.copy() if col.nulls is not None else col.values
    if col.nulls is not None:
        values[col.nulls] = NO_INSTANT
    return np.ascontiguousarray(values, np.int64), col.nulls


def evaluate(
    tickets: pa.Table | pa.RecordBatch | str | Path,
    policies: Policy | Mapping[str, Policy],
    calendars: CalendarSet,
    now: datetime | int,
    *,
    threads: int | None = None,
) -> Evaluation:
    """Evaluate every ticket's SLA metrics at ``now`` (an aware datetime or epoch seconds).

    ``policies`` is one policy (applied to every ticket) or policies by name (each ticket names
    its policy in the ``policy`` column; a null there means the first policy given).
    """
    table = _read(tickets)
    for required in ("ticket_id", "priority", "created_at"):
        if required not in table.column_names:
            raise EffigateError(f"tickets: column {required!r} is required")
    by_name = {policies.name: policies} if isinstance(policies, Policy) else dict(policies)
    if not by_name:
        raise EffigateError("policies: at least one policy is required")
    policy_list = list(by_name.values())
    now_s = int(to_column(now, "now").values[0])
    n = table.num_rows
    ticket_ids = _column(table, "ticket_id")

    created, created_nulls = _instants(table, "created_at")
    if created_nulls is not None:
        k = int(np.flatnonzero(created_nulls)[0])
        raise TicketError(ticket_ids[k].as_py(), "created_at", None, "is required")

    # Rule matching: per policy, first rule whose every field matches.
    if "policy" in table.column_names and not isinstance(policies, Policy):
        pol_codes, pol_values = _codes(_column(table, "policy"))
        pol_map = np.array(
            [policy_list.index(by_name[v]) if v in by_name else -2 for v in pol_values] + [0],
            np.int64,
        )
        ticket_policy = pol_map[pol_codes]
    else:
        ticket_policy = np.zeros(n, np.int64)
    prio_codes, prio_values = _codes(_column(table, "priority"), normalize_priority)
    level_codes, level_values = _codes(_column(table, "support_level"), str.upper)
    job_codes, job_values = _codes(_column(table, "job_type"))
    client_codes, client_values = _codes(_column(table, "client_id"))
    after = _column(table, "after_hours")
    after_hours = (
        np.zeros(n, bool)
        if pa.types.is_null(after.type)
        else after.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    )
    after_known = (
        np.zeros(n, bool)
        if pa.types.is_null(after.type)
        else after.is_valid().to_numpy(zero_copy_only=False)
    )

    rule_of = np.full(n, -1, np.int64)
    for p, policy in enumerate(policy_list):
        pending = ticket_policy == p
        for i, rule in enumerate(policy.rules):
            m = rule.match
            hit = pending & _lookup(prio_codes, prio_values, m.priorities)
            hit &= _lookup(level_codes, level_values, m.support_levels)
            hit &= _lookup(job_codes, job_values, m.job_types)
            hit &= _lookup(client_codes, client_values, m.clients)
            if m.after_hours is not None:
                hit &= after_known & (after_hours == m.after_hours)
            rule_of[hit] = i
            pending &= ~hit

    # Specs: one per (policy, rule, metric) the policies define.
    specs: list[tuple[int, int, int, MetricTarget]] = []
    max_rules = max(len(p.rules) for p in policy_list)
    spec_of = np.full((len(policy_list), max_rules + 1, len(METRICS)), -1, np.int64)
    for p, policy in enumerate(policy_list):
        for i, rule in enumerate(policy.rules):
            for m, metric in enumerate(METRICS):
                if metric in rule.metrics:
                    spec_of[p, i, m] = len(specs)
                    specs.append((p, i, m, rule.metrics[metric]))
    statuses = sorted({s for *_, t in specs for s in t.pausing_statuses})
    if len(statuses) > _OTHER_STATUS:
        raise EffigateError(f"policies: {len(statuses)} pausing statuses; at most 63 are supported")
    status_bit = {s: i for i, s in enumerate(statuses)}
    spec_cal = np.empty(len(specs), np.int64)
    spec_target = np.empty(len(specs), np.int64)
    spec_warning = np.empty(len(specs), np.int64)
    spec_mask = np.zeros(len(specs), np.uint64)
    spec_ladder = np.full(len(specs), -1, np.int64)
    ladder_offsets = [0]
    step_num: list[int] = []
    step_den: list[int] = []
    step_off: list[int] = []
    notify: list[str] = []
    for k, (p, i, m, t) in enumerate(specs):
        if t.calendar not in calendars.names:
            raise EffigateError(
                f"policy {policy_list[p].name!r} rules[{i}].metrics.{METRICS[m]}.calendar: "
                f"{t.calendar!r} is not in the calendar set ({sorted(calendars.names)})"
            )
        spec_cal[k] = calendars.names[t.calendar]
        spec_target[k] = t.target
        spec_warning[k] = t.warning_threshold
        spec_mask[k] = sum(1 << status_bit[s] for s in t.pausing_statuses)
        if t.escalation:
            spec_ladder[k] = len(ladder_offsets) - 1
            for step in t.escalation:
                if step.fraction is not None:
                    step_num.append(step.fraction.numerator)
                    step_den.append(step.fraction.denominator)
                    step_off.append(-1)
                else:
                    step_num.append(0)
                    step_den.append(1)
                    step_off.append(int(step.offset or 0))
                notify.append(step.notify)
            ladder_offsets.append(len(step_num))

    # Rows, ticket-major: every metric the matched rule defines.
    stops = [_instants(table, STOP_FIELDS[metric])[0] for metric in METRICS]
    matched = rule_of >= 0
    row_parts = []
    for m in range(len(METRICS)):
        idx = np.flatnonzero(matched)
        spec = spec_of[ticket_policy[idx], rule_of[idx], m]
        keep = spec >= 0
        row_parts.append((idx[keep], spec[keep], np.full(int(keep.sum()), m, np.int64)))
    row_ticket = np.concatenate([r[0] for r in row_parts])
    row_spec = np.concatenate([r[1] for r in row_parts])
    row_metric = np.concatenate([r[2] for r in row_parts])
    order = np.lexsort((row_metric, row_ticket))
    row_ticket, row_spec, row_metric = row_ticket[order], row_spec[order], row_metric[order]
    row_stop = np.empty(row_ticket.size, np.int64)
    for m in range(len(METRICS)):
        sel = row_metric == m
        row_stop[sel] = stops[m][row_ticket[sel]]

    pause_offsets, p_start, p_end, p_status, max_pauses = _pauses(table, ticket_ids, status_bit)

    rows = row_ticket.size
    out_deadline = np.empty(rows, np.int64)
    out_elapsed = np.empty(rows, np.int64)
    out_status = np.empty(rows, np.int8)
    out_breach = np.empty(rows, np.int64)
    out_level = np.empty(rows, np.int32)
    out_next = np.empty(rows, np.int64)
    inputs = (
        np.ascontiguousarray(row_ticket),
        np.ascontiguousarray(spec_cal[row_spec]),
        np.ascontiguousarray(spec_target[row_spec]),
        np.ascontiguousarray(spec_warning[row_spec]),
        row_stop,
        np.ascontiguousarray(spec_mask[row_spec]),
        np.ascontiguousarray(spec_ladder[row_spec]),
    )
    shared = (
        created,
        pause_offsets,
        p_start,
        p_end,
        p_status,
        np.array(ladder_offsets, np.int64),
        np.array(step_num, np.int64),
        np.array(step_den, np.int64),
        np.array(step_off, np.int64),
        max_pauses,
    )
    outputs = (out_deadline, out_elapsed, out_status, out_breach, out_level, out_next)

    def chunk(lo: int, hi: int) -> tuple[int, int]:
        bad, code = _evaluate.evaluate_rows(
            calendars.packed,
            now_s,
            *(a[lo:hi] for a in inputs),
            *shared,
            *(o[lo:hi] for o in outputs),
        )
        return (-1 if bad < 0 else lo + bad), code

    threads = clock.DEFAULT_THREADS if threads is None else max(1, int(threads))
    if threads == 1 or rows < clock.PARALLEL_MIN_BATCH:
        failures = [chunk(0, rows)]
    else:
        bounds = np.linspace(0, rows, threads + 1).astype(np.int64)
        futures = [
            clock._executor().submit(chunk, int(lo), int(hi))
            for lo, hi in itertools.pairwise(bounds)
            if hi > lo
        ]
        failures = [f.result() for f in futures]
    failures = [f for f in failures if f[0] >= 0]
    if failures:
        bad, code = min(failures)
        field, problem = _ERRORS.get(code, ("row", "was refused"))
        ticket = ticket_ids[int(row_ticket[bad])].as_py()
        metric = METRICS[int(row_metric[bad])]
        value: object = None
        if field == "created_at":
            value = _iso(int(created[row_ticket[bad]]))
        elif field == "stop":
            field, value = STOP_FIELDS[metric], _iso(int(row_stop[bad]))
        elif field == "now":
            value = _iso(now_s)
        elif field == "deadline":
            field = f"{metric} deadline"
        raise TicketError(ticket, field, value, problem)

    results = _results(
        table,
        ticket_ids,
        policy_list,
        specs,
        calendars,
        row_ticket,
        row_spec,
        row_metric,
        spec_target[row_spec],
        row_stop,
        out_deadline,
        out_elapsed,
        out_status,
        out_breach,
        out_level,
        out_next,
        np.array(ladder_offsets, np.int64),
        notify,
        spec_ladder[row_spec],
        now_s,
    )
    unmatched = _unmatched(
        table, ticket_ids, policy_list, ticket_policy, rule_of, "policy" in table.column_names
    )
    return Evaluation(
        results, unmatched, table, row_ticket, datetime.fromtimestamp(now_s, UTC), _tzdata_version()
    )


def _iso(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return str(t)


def _pauses(
    table: pa.Table, ticket_ids: pa.Array, status_bit: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """CSR of pauses per ticket, sorted by start: offsets, starts, ends (open = NO_INSTANT),
    status bits, and the largest count on one ticket."""
    n = table.num_rows
    if "pauses" not in table.column_names:
        empty = np.empty(0, np.int64)
        return np.zeros(n + 1, np.int64), empty, empty, empty, 0
    lists = _column(table, "pauses")
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    if len(flat) == 0:
        empty = np.empty(0, np.int64)
        return np.zeros(n + 1, np.int64), empty, empty, empty, 0
    starts = to_column(flat.field("start"), "pauses.start")
    if starts.nulls is not None:
        k = int(parent[np.flatnonzero(starts.nulls)[0]])
        raise TicketError(ticket_ids[k].as_py(), "pauses.start", None, "is required")
    ends = to_column(flat.field("end"), "pauses.end")
    end = ends.values.copy()
    if ends.nulls is not None:
        end[ends.nulls] = NO_INSTANT
    start = starts.values
    backwards = (end != NO_INSTANT) & (end < start)
    if backwards.any():
        k = int(np.flatnonzero(backwards)[0])
        raise TicketError(
            ticket_ids[int(parent[k])].as_py(),
            "pauses.end",
            _iso(int(end[k])),
            f"is before its start {_iso(int(start[k]))}",
        )
    codes, values = _codes(flat.field("status"))
    bits = np.array([status_bit.get(v, _OTHER_STATUS) for v in values] + [_OTHER_STATUS], np.int64)[
        codes
    ]
    if parent.size > 1 and not (
        np.all(parent[1:] >= parent[:-1])
        and np.all((parent[1:] != parent[:-1]) | (start[1:] >= start[:-1]))
    ):
        order = np.lexsort((start, parent))
        parent, start, end, bits = parent[order], start[order], end[order], bits[order]
    counts = np.bincount(parent, minlength=n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return (
        offsets,
        np.ascontiguousarray(start, np.int64),
        np.ascontiguousarray(end, np.int64),
        np.ascontiguousarray(bits, np.int64),
        int(counts.max()),
    )


def _dictionary(indices: np.ndarray, values: list[str], index_type: pa.DataType) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, index_type), pa.array(values, pa.string())
    )


def _instant_array(values: np.ndarray) -> pa.Array:
    missing = values == NO_INSTANT
    return pa.array(values, INSTANT, mask=missing if missing.any() else None)


def _results(
    table: pa.Table,
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    specs: list[tuple[int, int, int, MetricTarget]],
    calendars: CalendarSet,
    row_ticket: np.ndarray,
    row_spec: np.ndarray,
    row_metric: np.ndarray,
    target: np.ndarray,
    row_stop: np.ndarray,
    deadline: np.ndarray,
    elapsed: np.ndarray,
    status: np.ndarray,
    breach: np.ndarray,
    level: np.ndarray,
    next_at: np.ndarray,
    ladder_offsets: np.ndarray,
    notify: list[str],
    row_ladder: np.ndarray,
    now_s: int,
) -> pa.Table:
    breached = status == STATUSES.index("BREACHED")
    spec_policy = np.array([p for p, *_ in specs], np.int32)
    spec_rule = np.array([i for _, i, *_ in specs], np.int32)
    cal_names = [c.name for c in calendars.calendars]
    spec_cal = np.array([calendars.names[t.calendar] for *_, t in specs], np.int32)
    notify_index = np.where(level > 0, ladder_offsets[np.maximum(row_ladder, 0)] + level - 1, -1)
    columns = [
        pc.take(ticket_ids, pa.array(row_ticket)),
        _dictionary(row_metric.astype(np.int8), list(METRICS), pa.int8()),
        _dictionary(spec_policy[row_spec], [p.name for p in policy_list], pa.int32()),
        pa.array(spec_rule[row_spec], pa.int32()),
        pa.array(target, pa.int64()),
        _dictionary(spec_cal[row_spec], cal_names, pa.int32()),
        _instant_array(deadline),
        pa.array(elapsed, pa.int64()),
        pa.array(target - elapsed, pa.int64()),
        _dictionary(status, list(STATUSES), pa.int8()),
        _instant_array(
            np.where((row_stop != NO_INSTANT) & (row_stop <= now_s), row_stop, NO_INSTANT)
        ),
        pa.array(deadline, INSTANT, mask=~breached),
        pa.array(breach, pa.int64(), mask=~breached),
        pa.array(level, pa.int32()),
        pa.DictionaryArray.from_arrays(
            pa.array(np.maximum(notify_index, 0).astype(np.int32), mask=notify_index < 0),
            pa.array(notify or [""], pa.string()),
        ),
        _instant_array(next_at),
    ]
    schema = SLA_RESULTS.with_metadata(
        {
            "effigate.now": datetime.fromtimestamp(now_s, UTC).isoformat(),
            "effigate.tzdata": _tzdata_version(),
        }
    )
    return pa.Table.from_arrays(columns, schema=schema)


def _unmatched(
    table: pa.Table,
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    ticket_policy: np.ndarray,
    rule_of: np.ndarray,
    named: bool,
) -> pa.Table:
    missing = np.flatnonzero(rule_of < 0)
    ids = pc.take(ticket_ids, pa.array(missing))
    policy_col = _column(table, "policy") if named else None
    names, reasons = [], []
    for k, p in zip(missing.tolist(), ticket_policy[missing].tolist(), strict=True):
        if p < 0:
            name = policy_col[k].as_py() if policy_col is not None else None
            names.append(name)
            reasons.append(f"policy {name!r} is not among the policies given")
        else:
            names.append(policy_list[p].name)
            row = table.slice(k, 1).to_pylist()[0]
            reasons.append(
                f"no rule of policy {policy_list[p].name!r} matches priority="
                f"{row.get('priority')!r}, support_level={row.get('support_level')!r}, "
                f"job_type={row.get('job_type')!r}, client_id={row.get('client_id')!r}, "
                f"after_hours={row.get('after_hours')!r}"
            )
    return pa.Table.from_arrays(
        [ids, pa.array(names, pa.string()), pa.array(reasons, pa.string())], schema=UNMATCHED
    )
