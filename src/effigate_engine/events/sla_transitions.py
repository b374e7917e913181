"""SLA transitions of a ticket metric: which were reached by an instant, and which comes next.

A metric of an open ticket passes, in time order, its warning threshold, the steps of its
escalation ladder and its deadline (the breach). Each is announced once (the dedupe keys of
:mod:`effigate_engine.events.types`). From one SLA result row evaluated at instant ``t``
(``SLA_RESULTS``, as known at ``t``) and the rule's promise for the metric:

- :func:`reached`: every transition that has happened by ``t`` — the warning when active elapsed
  has reached the threshold, each ladder step whose instant is at or before ``t`` (a fraction
  step when elapsed reached ``ceil(fraction x target)``; an offset step at deadline + offset),
  the breach when the status is ``BREACHED``. A metric stopped by ``t`` reaches nothing more
  (its ``SLA_MET`` is written with the stopping event).
- :func:`upcoming`: the earliest transition after ``t`` still to come as known at ``t`` (none
  while paused before the deadline: the pause removes it; a resume brings it back).

Pure: no SQL, no clock of its own. Instants are epoch seconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from effigate_engine.events.types import SLA_BREACHED, SLA_ESCALATION, SLA_WARNING, sla_key
from effigate_engine.sla.policy import MetricTarget, ceil_fraction

WARNING = "WARNING"
ESCALATION = "ESCALATION"
BREACHED = "BREACHED"


@dataclass(frozen=True, order=True)
class Transition:
    """One transition of a metric: ``kind`` (WARNING | ESCALATION | BREACHED), the ladder
    ``step`` (1-based, ESCALATION only) and, when known, its instant ``at`` (epoch seconds)."""

    at: int | None
    kind: str
    step: int | None = None


def _seconds(value: Any) -> int | None:
    if value is None:
        return None
    return int(value.timestamp()) if hasattr(value, "timestamp") else int(value)


def reached(row: dict[str, Any], spec: MetricTarget, t: int) -> list[Transition]:
    """The transitions of ``row`` (a result evaluated at ``t``) that happened by ``t``."""
    if row.get("stopped_at") is not None:
        return []
    out: list[Transition] = []
    elapsed = int(row["elapsed_seconds"])
    warning_at = _seconds(row.get("warning_at"))
    if elapsed >= spec.warning_threshold or (warning_at is not None and warning_at <= t):
        out.append(Transition(warning_at, WARNING))
    deadline = _seconds(row.get("deadline"))
    for k, step in enumerate(spec.escalation, start=1):
        if step.fraction is not None:
            if elapsed >= ceil_fraction(step.fraction, spec.target):
                out.append(Transition(None, ESCALATION, k))
        elif deadline is not None and deadline + int(step.offset or 0) <= t:
            out.append(Transition(deadline + int(step.offset or 0), ESCALATION, k))
    if row["status"] == "BREACHED":
        out.append(Transition(deadline, BREACHED))
    return out


def upcoming(row: dict[str, Any], spec: MetricTarget, t: int) -> Transition | None:
    """The earliest transition of ``row`` (evaluated at ``t``) after ``t``, as known at ``t``;
    ``None`` when nothing is pending (stopped, paused before the deadline, all passed)."""
    if row.get("stopped_at") is not None:
        return None
    candidates: list[Transition] = []
    warning_at = _seconds(row.get("warning_at"))
    if warning_at is not None and warning_at > t:
        candidates.append(Transition(warning_at, WARNING))
    deadline = _seconds(row.get("deadline"))
    if deadline is not None and deadline > t:
        candidates.append(Transition(deadline, BREACHED))
    nxt = _seconds(row.get("next_escalation_at"))
    if nxt is not None and nxt > t:
        candidates.append(Transition(nxt, ESCALATION, _step_at(row, spec, nxt, deadline)))
    if not candidates:
        return None
    # at one instant: warning, then escalation, then breach (the order they are announced in)
    order = {WARNING: 0, ESCALATION: 1, BREACHED: 2}
    return min(candidates, key=lambda c: (c.at, order[c.kind]))


def _step_at(row: dict[str, Any], spec: MetricTarget, at: int, deadline: int | None) -> int:
    """The ladder step whose instant is ``at`` (an offset step at deadline + offset, else the
    first fraction step not reached yet)."""
    for k, step in enumerate(spec.escalation, start=1):
        if step.offset is not None and deadline is not None and deadline + step.offset == at:
            return k
    elapsed = int(row["elapsed_seconds"])
    for k, step in enumerate(spec.escalation, start=1):
        if step.fraction is not None and elapsed < ceil_fraction(step.fraction, spec.target):
            return k
    return 1


#: The event type announcing each kind of transition.
EVENT_TYPE = {WARNING: SLA_WARNING, ESCALATION: SLA_ESCALATION, BREACHED: SLA_BREACHED}


def dedupe_key(ticket_id: str, metric: str, transition: Transition) -> str:
    """The exactly-once key of a transition (``sla:<ticket>:<metric>:<kind>[:<step>]``)."""
    return sla_key(ticket_id, metric, EVENT_TYPE[transition.kind], transition.step)
