"""A ticket's SLA timeline: every instant at which a metric's status, deadline or escalation
level changed, with the state after it — computed from the history, not logged.

Between two events of a ticket nothing is learnt, so a metric's state changes only at an event
or at an instant the evaluation itself names: its deadline (the breach), its next escalation
step, and the instant its elapsed time reaches the warning threshold (found by bisection: a
metric on track stays on track or reaches warning once before the next event). Each candidate
instant is evaluated as known then (:func:`~effigate_engine.sla.evaluation.evaluate`), so the
state at a returned instant is what evaluating the ticket there gives, and one second before it
the previous state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.instants import to_column
from effigate_engine.sla.evaluation import evaluate
from effigate_engine.sla.policy import Policy

#: One row per (instant, metric) whose state changed.
TIMELINE = pa.schema(
    [
        pa.field("ticket_id", pa.string(), nullable=False),
        pa.field("at", pa.timestamp("s", tz="UTC"), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("deadline", pa.timestamp("s", tz="UTC")),
        pa.field("escalation_level", pa.int32(), nullable=False),
        pa.field("elapsed_seconds", pa.int64(), nullable=False),
    ]
)
_STOPPED = ("MET", "BREACHED")


def ticket_timeline(
    segments: pa.Table,
    starts: object,
    policies: Policy | Mapping[str, Policy],
    calendars: CalendarSet,
    until: datetime | int,
) -> pa.Table:
    """The timeline of one ticket from its creation to ``until`` (or its metrics' final stops).

    ``segments`` holds the ticket's history as known from each of ``starts`` (rows of
    :data:`~effigate_engine.sla.schemas.TICKETS`, one per segment, same ``ticket_id``; row *i*
    holds from ``starts[i]`` until the next start): a service folds the ticket's events up to
    each event instant; a plain history with no priority change is one segment from
    ``created_at``. Returns :data:`TIMELINE` rows in time order."""
    n = segments.num_rows
    if n == 0:
        raise EffigateError("segments: at least one is required")
    bounds = np.asarray(to_column(starts, "starts").values, np.int64)
    if bounds.size != n:
        raise EffigateError(f"starts: {bounds.size} instants for {n} segments")
    if (np.diff(bounds) < 0).any():
        raise EffigateError("starts: must rise")
    end = int(to_column(until, "until").values[0])
    ticket_id = str(segments.column("ticket_id")[0].as_py())
    created = int(to_column(segments.column("created_at"), "created_at").values[0])

    def state_at(t: int) -> dict[str, tuple]:
        i = max(int(np.searchsorted(bounds, t, side="right")) - 1, 0)
        rows = evaluate(segments.slice(i, 1), policies, calendars, t).results.to_pylist()
        return {
            r["metric"]: (
                r["status"],
                None if r["deadline"] is None else int(r["deadline"].timestamp()),
                r["escalation_level"],
                r["elapsed_seconds"],
                None
                if r["next_escalation_at"] is None
                else int(r["next_escalation_at"].timestamp()),
            )
            for r in rows
        }

    events = sorted({int(x) for x in bounds.tolist()} | instant_column(segments))
    out: list[tuple[int, str, tuple]] = []
    t = max(created, int(bounds[0]))
    previous: dict[str, tuple] = {}
    while t <= end:
        state = state_at(t)
        for metric, now_state in sorted(state.items()):
            if previous.get(metric, (None,) * 3)[:3] != now_state[:3]:
                out.append((t, metric, now_state))
        previous = state
        upcoming = [e for e in events if e > t]
        horizon = min(upcoming[0] if upcoming else end + 1, end + 1)
        candidates = [horizon]
        for s in state.values():
            status, deadline, _, _, step = s
            if deadline is not None and t < deadline < horizon and status not in _STOPPED:
                candidates.append(deadline)
            if step is not None and t < step < horizon:
                candidates.append(step)
        nearest = min(candidates)
        # A metric on track may reach its warning threshold before the nearest candidate.
        if any(s[0] == "ON_TRACK" for s in state.values()) and nearest - t > 1:
            warned = _first_change(state_at, state, t, nearest)
            if warned is not None:
                nearest = warned
        if nearest > end:
            break
        t = nearest
    return pa.Table.from_pylist(
        [
            {
                "ticket_id": ticket_id,
                "at": datetime.fromtimestamp(at, UTC),
                "metric": metric,
                "status": s[0],
                "deadline": None if s[1] is None else datetime.fromtimestamp(s[1], UTC),
                "escalation_level": s[2],
                "elapsed_seconds": s[3],
            }
            for at, metric, s in out
        ],
        schema=TIMELINE,
    )


def _first_change(
    state_at: Callable[[int], dict[str, tuple]], state: dict[str, tuple], lo: int, hi: int
) -> int | None:
    """The first second in ``(lo, hi)`` at which any metric's (status, deadline, level)
    differs from ``state`` (states change monotonically between events), or ``None``."""
    key = {m: s[:3] for m, s in state.items()}

    def changed(t: int) -> bool:
        return {m: s[:3] for m, s in state_at(t).items()} != key

    if not changed(hi - 1):
        return None
    a, b = lo, hi - 1  # unchanged at a, changed at b
    while b - a > 1:
        mid = (a + b) // 2
        if changed(mid):
            b = mid
        else:
            a = mid
    return b


def instant_column(segments: pa.Table) -> set[int]:
    """Every instant a segment's history names: stops, pause starts and ends."""
    out: set[int] = set()
    for row in segments.to_pylist():
        for field in ("created_at", "first_response_at", "resolution_plan_at", "resolved_at"):
            if row.get(field) is not None:
                out.add(int(row[field].timestamp()))
        for p in row.get("pauses") or []:
            for key in ("start", "end"):
                if p.get(key) is not None:
                    out.add(int(p[key].timestamp()))
    return out


__all__ = ["TIMELINE", "ticket_timeline"]
