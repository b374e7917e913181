"""Screening: evaluate every ticket of a batch that can be evaluated, and name the others.

:func:`~effigate_engine.sla.evaluation.evaluate` refuses a whole batch for its first bad ticket
(an instant outside the calendars' horizon, a missing ``created_at``, a stop before creation, a
deadline past the horizon). Bulk paths over many tickets (the Arrow stream, recomputing or
reporting over stored tickets) must not let one row stop the rest: :func:`evaluate_rows` sets
the unevaluable tickets aside, each as a row of :data:`REJECTED_ROWS` (its position in the batch,
its id, the field and a sentence naming the value), and evaluates the others exactly as
``evaluate`` would have.

The checks that can be made column-wise run first, vectorised; the few refusals only the kernel
can find (a deadline past the horizon) are then found block by block, so a batch with many bad
rows costs at most a block's re-evaluation per bad row, never the whole batch's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.instants import NO_INSTANT, to_column
from effigate_engine.priority import ACCEPTED, PRIORITIES, priority_name
from effigate_engine.sla.evaluation import Evaluation, TicketError, _now_rows, evaluate
from effigate_engine.sla.policy import (
    METRICS,
    STOP_FIELDS,
    Policy,
)
from effigate_engine.sla.ticket_columns import (
    dictionary_codes,
    instant_column,
    read_tickets,
    ticket_column,
)

#: One row per ticket set aside: ``row`` is its position in the batch given.
REJECTED_ROWS = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("ticket_id", pa.string()),
        pa.field("field", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)
#: Rows per block when the kernel's own refusals are looked for one at a time.
SEARCH_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class Screened:
    """The outcome of :func:`evaluate_rows`: the evaluation of the tickets kept (its
    ``tickets`` are the kept rows, in batch order), their positions in the batch (``kept``),
    and the rejected rows (:data:`REJECTED_ROWS`, by position)."""

    evaluation: Evaluation
    kept: np.ndarray
    rejected: pa.Table


def _iso(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return str(t)


class _Rejections:
    """Rejected rows in the making: the first problem of each row wins."""

    def __init__(self, ids: pa.Array) -> None:
        self.ids = ids
        self.rows: dict[int, tuple[str, str]] = {}

    def add(self, row: int, field: str, message: str) -> None:
        self.rows.setdefault(int(row), (field, message))

    def mask(self, mask: np.ndarray, field: str, problem: str, values: np.ndarray | None) -> None:
        for k in np.flatnonzero(mask):
            shown = "None" if values is None else repr(_iso(int(values[k])))
            ticket = self.ids[int(k)].as_py()
            self.add(int(k), field, f"ticket {ticket!r}: {field} {shown} {problem}")

    def table(self) -> pa.Table:
        order = sorted(self.rows)
        positions = pa.array(order, pa.int64())
        return pa.Table.from_arrays(
            [
                positions,
                pc.take(self.ids.cast(pa.string()), positions),
                pa.array([self.rows[k][0] for k in order], pa.string()),
                pa.array([self.rows[k][1] for k in order], pa.string()),
            ],
            schema=REJECTED_ROWS,
        )


def _screen(table: pa.Table, calendars: CalendarSet, now: np.ndarray, out: _Rejections) -> None:
    """Add the rows the column-wise checks refuse: ``created_at`` missing or outside the
    horizon, a stop known at ``now`` outside the horizon or before creation, a pause without
    a start or ending before it starts."""
    horizon = calendars.horizon
    created, created_nulls = instant_column(table, "created_at")
    if created_nulls is not None:
        out.mask(created_nulls, "created_at", "is required", None)
    outside = (created != NO_INSTANT) & ((created < horizon.start) | (created > horizon.end))
    out.mask(outside, "created_at", f"is outside the calendars' horizon {horizon}", created)
    for metric in METRICS:
        name = STOP_FIELDS[metric]
        if name not in table.column_names:
            continue
        stop, _ = instant_column(table, name)
        known = (stop != NO_INSTANT) & (stop <= now)
        beyond = known & ((stop < horizon.start) | (stop > horizon.end))
        out.mask(beyond, name, f"is outside the calendars' horizon {horizon}", stop)
        before = known & (created != NO_INSTANT) & (stop < created)
        out.mask(before, name, "is before created_at", stop)
    if "pauses" in table.column_names:
        _screen_pauses(ticket_column(table, "pauses"), out)


def _screen_priorities(table: pa.Table, out: _Rejections) -> None:
    """Add the rows whose priority is missing or not one of :data:`PRIORITIES` (or P1–P4)."""
    priorities = ticket_column(table, "priority").cast(pa.string())
    codes, values = dictionary_codes(priorities, priority_name)
    known = np.array([v in PRIORITIES for v in values] + [False], bool)
    raw = ticket_column(table, "priority").cast(pa.string())
    for k in np.flatnonzero(~known[codes]):
        ticket = out.ids[int(k)].as_py()
        value = raw[int(k)].as_py()
        problem = "is required" if value is None else ACCEPTED
        out.add(int(k), "priority", f"ticket {ticket!r}: priority {value!r} {problem}")


def _screen_pauses(lists: pa.Array, out: _Rejections) -> None:
    if lists.null_count:
        lists = pc.if_else(pc.is_valid(lists), lists, pa.scalar([], lists.type))
    flat = lists.flatten()
    if len(flat) == 0:
        return
    owner = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    starts = to_column(flat.field("start"), "pauses.start")
    ends = to_column(flat.field("end"), "pauses.end")
    if starts.nulls is not None:
        for k in np.flatnonzero(starts.nulls):
            ticket = out.ids[int(owner[k])].as_py()
            out.add(owner[k], "pauses.start", f"ticket {ticket!r}: pauses.start None is required")
    backwards = ends.values < starts.values
    if ends.nulls is not None:
        backwards &= ~ends.nulls
    if starts.nulls is not None:
        backwards &= ~starts.nulls
    for k in np.flatnonzero(backwards):
        ticket = out.ids[int(owner[k])].as_py()
        out.add(
            owner[k],
            "pauses.end",
            f"ticket {ticket!r}: pauses.end {_iso(int(ends.values[k]))!r} is before its start"
            f" {_iso(int(starts.values[k]))}",
        )


def evaluate_rows(
    tickets: pa.Table | pa.RecordBatch | str | Path,
    policies: Policy | Mapping[str, Policy],
    calendars: CalendarSet,
    now: datetime | int,
    *,
    check_priority: bool = False,
    threads: int | None = None,
) -> Screened:
    """:func:`~effigate_engine.sla.evaluation.evaluate` of every ticket that can be evaluated;
    the others are rejected rows, each named by position, ticket id, field and value.

    Errors of the call itself (a missing column, ``now`` outside the horizon, a bad policy)
    still raise: they are no row's fault. With ``check_priority``, a ticket whose priority is
    missing or not one of :data:`PRIORITIES` (or P1–P4) is rejected too, instead of being left
    to whichever rule matches any priority.
    """
    table = read_tickets(tickets)
    for required in ("ticket_id", "priority", "created_at"):
        if required not in table.column_names:
            raise EffigateError(f"tickets: column {required!r} is required")
    now_rows, per_ticket = _now_rows(now, table.num_rows)
    horizon = calendars.horizon
    ids = ticket_column(table, "ticket_id")
    rejections = _Rejections(ids)
    if not per_ticket:
        t = int(now_rows[0])
        if not horizon.start <= t <= horizon.end:
            raise EffigateError(f"now: {_iso(t)!r} is outside the calendars' horizon {horizon}")
        row_now = np.full(table.num_rows, t, np.int64)
    else:
        row_now = now_rows
        outside = (row_now < horizon.start) | (row_now > horizon.end)
        rejections.mask(outside, "now", f"is outside the calendars' horizon {horizon}", row_now)
    if check_priority:
        _screen_priorities(table, rejections)
    _screen(table, calendars, row_now, rejections)

    def run(rows: np.ndarray) -> Evaluation:
        whole = len(rows) == table.num_rows  # nothing set aside: no copy of the batch
        part = table if whole else table.take(pa.array(rows, pa.int64()))
        return evaluate(
            part, policies, calendars, row_now[rows] if per_ticket else now, threads=threads
        )

    # a mask, not np.setdiff1d: hashing every row's position cost more than the kernel
    keep = np.ones(table.num_rows, np.bool_)
    keep[np.fromiter(rejections.rows, np.int64)] = False
    kept = np.flatnonzero(keep)
    try:
        evaluation = run(kept)
    except TicketError as exc:
        if exc.row is None:
            raise
        kept = _search(kept, run, rejections)
        evaluation = run(kept)
    return Screened(evaluation, kept, rejections.table())


def _search(kept: np.ndarray, run: object, rejections: _Rejections) -> np.ndarray:
    """The rows of ``kept`` the kernel accepts, evaluated block by block; each refusal is
    rejected and its block evaluated again without it."""
    accepted = []
    for lo in range(0, len(kept), SEARCH_BLOCK_ROWS):
        block = kept[lo : lo + SEARCH_BLOCK_ROWS]
        while len(block):
            try:
                run(block)  # type: ignore[operator]
            except TicketError as exc:
                if exc.row is None:
                    raise
                rejections.add(int(block[exc.row]), exc.field, str(exc))
                block = np.delete(block, exc.row)
                continue
            break
        accepted.append(block)
    return np.concatenate(accepted) if accepted else kept[:0]


def screen_both(
    tickets: pa.Table,
    current: Policy | Mapping[str, Policy],
    proposed: Policy | Mapping[str, Policy],
    calendars: CalendarSet,
    now: datetime | int,
    threads: int | None = None,
) -> tuple[Screened, Screened, pa.Table]:
    """The tickets evaluated under a current and a proposed policy (a replay), each side
    without the tickets either policy cannot evaluate, and those rejected rows (positions in
    ``tickets``): the two evaluations cover the same tickets, so their reports compare."""
    before = evaluate_rows(tickets, current, calendars, now, threads=threads)
    after = evaluate_rows(before.evaluation.tickets, proposed, calendars, now, threads=threads)
    failures = before.rejected
    if after.rejected.num_rows:
        # rows the proposed policy refuses are left out of the current side too
        positions = pa.array(before.kept[after.rejected.column("row").to_numpy()])
        failures = pa.concat_tables(
            [failures, after.rejected.set_column(0, "row", positions)]
        ).sort_by("row")
        before = evaluate_rows(after.evaluation.tickets, current, calendars, now, threads=threads)
    return before, after, failures


def unmatched_rows(screened: Screened) -> pa.Table:
    """The kept tickets no rule matched (an unknown priority, a client no rule covers), as
    rejected rows (:data:`REJECTED_ROWS`, field ``rule``) with the evaluation's reason."""
    evaluation = screened.evaluation
    unmatched = evaluation.unmatched
    if unmatched.num_rows == 0:
        return REJECTED_ROWS.empty_table()
    n = evaluation.tickets.num_rows
    covered = np.zeros(n, bool)
    covered[evaluation.row_ticket] = True
    missing = np.flatnonzero(~covered)
    if len(missing) != unmatched.num_rows:  # a rule without metrics: find them by id
        ids = ticket_column(evaluation.tickets, "ticket_id").cast(pa.string())
        found = pc.index_in(unmatched.column("ticket_id").cast(pa.string()), value_set=ids)
        missing = found.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    messages = [
        f"ticket {t!r}: {reason}"
        for t, reason in zip(
            unmatched.column("ticket_id").to_pylist(),
            unmatched.column("reason").to_pylist(),
            strict=True,
        )
    ]
    return pa.Table.from_arrays(
        [
            pa.array(screened.kept[missing], pa.int64()),
            unmatched.column("ticket_id").cast(pa.string()),
            pa.array(["rule"] * len(missing), pa.string()),
            pa.array(messages, pa.string()),
        ],
        schema=REJECTED_ROWS,
    )


__all__ = [
    "PRIORITIES",
    "REJECTED_ROWS",
    "Screened",
    "evaluate_rows",
    "screen_both",
    "unmatched_rows",
]
