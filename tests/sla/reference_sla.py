"""Slow reference SLA evaluator: docs/sla.md's *Semantics* by definition, on the minute-walk
reference clock.

Active elapsed time E(t) is computed from its definition (business time of [created, t) minus
business time of the union of the metric's pauses inside it); the deadline and every fraction
step are found by binary search for the earliest second at which E reaches the target. Nothing
is shared with the compiled kernel but the policy model.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from effigate_engine.sla.policy import STOP_FIELDS, MetricTarget
from tests.reference_clock import MINUTE, ReferenceClock


class PrefixClock:
    """F(t) = open seconds from the window start to t, from the reference's minute cells."""

    def __init__(self, ref: ReferenceClock) -> None:
        self.start = ref.start
        self.end = ref.end
        self.open = [bool(x) for x in ref.open_cells(0, ref.minutes.cells)]
        self.cum = [0]
        for is_open in self.open:
            self.cum.append(self.cum[-1] + (MINUTE if is_open else 0))

    def f(self, t: int) -> int:
        cell = (t - self.start) // MINUTE
        if cell >= len(self.open):
            return self.cum[-1]
        partial = (t - self.start) - cell * MINUTE
        return self.cum[cell] + (partial if self.open[cell] else 0)

    def business(self, a: int, b: int) -> int:
        return self.f(b) - self.f(a) if b > a else 0


@dataclass
class Outcome:
    deadline: int | None
    elapsed: int
    status: str
    breach_seconds: int | None
    level: int
    next_escalation: int | None
    warning_at: int | None


def _ceil(fraction: Fraction, seconds: int) -> int:
    return -((-fraction.numerator * seconds) // fraction.denominator)


def evaluate_metric(
    clock: PrefixClock,
    spec: MetricTarget,
    created: int,
    stop: int | None,
    pauses: list[tuple[int, int | None, str]],
    now: int,
) -> Outcome:
    stopped = stop is not None and stop <= now
    end = stop if stopped else max(now, created)
    # The metric's pauses as they stand at `end`: clipped to [created, end], open ones marked.
    closed: list[tuple[int, int]] = []
    open_from: int | None = None
    for start, finish, status in pauses:
        if status not in spec.pausing_statuses or start > end:
            continue
        a = max(start, created)
        if finish is None or finish > end:
            if stopped:
                closed.append((a, end))
            else:
                open_from = a if open_from is None else min(open_from, a)
        elif finish > a:
            closed.append((a, finish))
    if open_from is not None:
        closed = [(a, min(b, open_from)) for a, b in closed if a < open_from]
    merged: list[list[int]] = []
    for a, b in sorted(closed):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])

    def active(t: int) -> int:
        """E(t): active business seconds from created to t, as known at `end`."""
        limit = t if open_from is None else min(t, open_from)
        spent = clock.business(created, limit)
        for a, b in merged:
            spent -= clock.business(min(a, limit), min(b, limit))
        return spent

    def reach(target: int) -> int | None:
        """Earliest t >= created with E(t) >= target; None if never known (open pause)."""
        if target <= 0:
            return created
        hi = clock.end if open_from is None else open_from
        if active(hi) < target:
            if open_from is None:
                raise OverflowError("past the window")
            return None
        lo = created
        while lo < hi:
            mid = (lo + hi) // 2
            if active(mid) >= target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    elapsed = active(end)
    deadline = reach(spec.target)
    try:
        warning_at = reach(_ceil(spec.warning, spec.target))
    except OverflowError:
        warning_at = None
    if stopped:
        status = "MET" if deadline is not None and stop <= deadline else "BREACHED"
    elif deadline is not None and now >= deadline:
        status = "BREACHED"
    elif open_from is not None:
        status = "PAUSED"
    elif elapsed >= _ceil(spec.warning, spec.target):
        status = "WARNING"
    else:
        status = "ON_TRACK"
    level = 0
    next_at: int | None = None
    for k, step in enumerate(spec.escalation, start=1):
        if step.fraction is not None:
            try:
                fire = reach(_ceil(step.fraction, spec.target))
            except OverflowError:
                fire = None
        else:
            fire = None if deadline is None else deadline + int(step.offset or 0)
        if fire is None:
            continue
        if (fire < stop) if stopped else (fire <= now):
            level = k
        elif not stopped:
            next_at = fire if next_at is None else min(next_at, fire)
    return Outcome(
        deadline,
        elapsed,
        status,
        elapsed - spec.target if status == "BREACHED" else None,
        level,
        next_at,
        warning_at,
    )


def known_at(ticket: dict, now: int) -> dict:
    """A ticket (``created_at``, stop fields, ``pauses`` as dicts, epoch seconds) cut to what
    was known at ``now``, by definition: stops after ``now`` are unknown, pauses starting after
    it did not happen yet, a pause ending after it is still open, and a resolution (a
    ``RESOLVED`` pause) still standing at ``now`` is the ticket's resolution."""
    out = dict(ticket)
    for field in STOP_FIELDS.values():
        if out.get(field) is not None and out[field] > now:
            out[field] = None
    pauses = []
    for p in ticket.get("pauses") or []:
        if p["start"] > now:
            continue
        end = p["end"] if p["end"] is not None and p["end"] <= now else None
        pauses.append({**p, "end": end})
    out["pauses"] = pauses
    if out.get("resolved_at") is None:
        standing = [
            max(p["start"], ticket["created_at"])
            for p in pauses
            if p["status"] == "RESOLVED" and p["end"] is None and ticket["created_at"] <= now
        ]
        if standing:
            out["resolved_at"] = max(standing)
    return out
