"""A few tickets evaluated from plain Python values, without Arrow: the unary calls' path.

:func:`evaluate` (``evaluation.py``) is built for batches: for one ticket, building the Arrow
tickets table, reading its columns back as NumPy and building the Arrow results costs over
twenty times what the compiled kernel does. :func:`evaluate_values` feeds the same kernels
(rule matching and ``evaluate_tickets``, with the same flattened policy) from
:class:`TicketValues` and reads the result buffers straight into :class:`MetricRow` values,
exactly what :func:`rows_of` reads from the Arrow results of :func:`evaluate`.

It answers only the ordinary case: every ticket matched by a rule, every pause with a start
not after its end, and no ticket the kernel refuses. Anything else is ``None``, and the caller
evaluates the same tickets through :func:`evaluate`, which reports unmatched tickets and
raises the errors naming ticket, field and value.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.instants import NO_INSTANT
from effigate_engine.priority import priority_name
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import METRICS, Policy
from effigate_engine.sla.rule_tables import OTHER_STATUS, Specs, flattened
from effigate_engine.sla.schemas import STATUSES

_BREACHED = STATUSES.index("BREACHED")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Rule-matched fields whose values are normalised before matching (as ``evaluate`` does).
_NORMALISE = {"priority": priority_name, "support_level": str.upper}


class TicketValues(NamedTuple):
    """One ticket as the ``sla.TICKETS`` row it stands for: instants in epoch seconds (UTC,
    floored to the second; ``None``: has not happened), pauses as ``(start, end or None,
    status)``."""

    ticket_id: str
    priority: str | None
    created: int
    first_response: int | None = None
    resolution_plan: int | None = None
    resolved: int | None = None
    pauses: Sequence[tuple[int | None, int | None, str | None]] = ()
    client_id: str | None = None
    support_level: str | None = None
    job_type: str | None = None
    after_hours: bool | None = None


class MetricRow(NamedTuple):
    """One ``SLA_RESULTS`` row as plain values: instants in epoch seconds (``None``: null),
    durations in business seconds; ``rule`` is the matched rule's index in its policy."""

    ticket_id: str
    metric: str
    policy: str
    rule: int
    target_seconds: int
    calendar: str
    deadline: int | None
    elapsed_seconds: int
    remaining_seconds: int
    status: str
    stopped_at: int | None
    breached_at: int | None
    breach_seconds: int | None
    escalation_level: int
    escalation_notify: str | None
    next_escalation_at: int | None
    warning_at: int | None


def seconds(value: datetime | None) -> int | None:
    """Epoch seconds of an aware datetime, floored (as a ``timestamp[s]`` column holds it)."""
    if value is None:
        return None
    return (value - _EPOCH).days * 86_400 + (value - _EPOCH).seconds


def _instant(value: int | None) -> int:
    return NO_INSTANT if value is None else value


def _code(specs: Specs, name: str, value: str | None) -> int:
    """The code rule matching reads for ``value`` of field ``name`` (-1: null / not
    mentioned by any rule); :class:`EffigateError` from a normalisation is left to raise."""
    mentioned = specs.match_values[name]
    if not mentioned or value is None:
        return -1
    normalise = _NORMALISE.get(name)
    if normalise is not None:
        value = normalise(value)
    try:
        return mentioned.index(value)
    except ValueError:
        return -1


class _Plan(NamedTuple):
    """What :func:`evaluate_values` reads of a policy flattened over a calendar set, as plain
    values: the calendars' names (the kernel writes each result's target, rule and calendar
    index itself); the escalation notifications; empty pause columns."""

    specs: Specs
    calendar: list[str]
    notify: list[str]
    no_pauses: np.ndarray


_PLANS: weakref.WeakKeyDictionary[CalendarSet, list[tuple[Policy, _Plan]]] = (
    weakref.WeakKeyDictionary()
)


def _plan(policy: Policy, calendars: CalendarSet) -> _Plan:
    """The plan of ``policy`` over ``calendars``, remembered like ``flattened`` remembers its
    specs (a service evaluates the same policy over and over)."""
    entries = _PLANS.setdefault(calendars, [])
    for known, plan in entries:
        if known is policy:
            return plan
    specs = flattened([policy], calendars)
    names = [c.name for c in calendars.calendars]
    plan = _Plan(
        specs,
        names,
        specs.notify or [""],
        np.empty(0, np.int64),
    )
    entries.append((policy, plan))
    del entries[:-8]
    return plan


def evaluate_values(
    tickets: Sequence[TicketValues], policy: Policy, calendars: CalendarSet, now: int
) -> list[MetricRow] | None:
    """The result rows of ``tickets`` under ``policy`` at ``now`` (epoch seconds), in the
    order :func:`~effigate_engine.sla.evaluation.evaluate` gives them; ``None`` when a ticket
    is not the ordinary case (see the module docstring) and :func:`evaluate` must answer."""
    n = len(tickets)
    if n == 0:
        return None
    plan = _plan(policy, calendars)
    specs = plan.specs
    int64 = np.int64
    try:
        match = _evaluate.MatchColumns(
            np.zeros(n, int64),
            np.array([_code(specs, "priority", t.priority) for t in tickets], int64),
            np.array([_code(specs, "support_level", t.support_level) for t in tickets], int64),
            np.array([_code(specs, "job_type", t.job_type) for t in tickets], int64),
            np.array([_code(specs, "client_id", t.client_id) for t in tickets], int64),
            np.array(
                [-1 if t.after_hours is None else int(t.after_hours) for t in tickets], np.int8
            ),
        )
    except EffigateError:
        return None
    rule_of, row_count = _evaluate.match_rules(match, specs.rule_table)
    if min(rule_of.tolist()) < 0:
        return None
    offsets, starts, ends, bits = [0], [], [], []
    status_bit = specs.status_bit
    for t in tickets:
        for start, end, status in t.pauses:
            if start is None or (end is not None and end < start):
                return None
            starts.append(start)
            ends.append(NO_INSTANT if end is None else end)
            bits.append(status_bit.get(status, OTHER_STATUS))  # type: ignore[arg-type]
        offsets.append(len(starts))
    counts = row_count.tolist()
    first = [0] * n
    for i in range(1, n):
        first[i] = first[i - 1] + counts[i - 1]
    if starts:
        pause_columns = (np.array(starts, int64), np.array(ends, int64), np.array(bits, int64))
    else:
        pause_columns = (plan.no_pauses,) * 3
    columns = _evaluate.TicketColumns(
        np.array([t.created for t in tickets], int64),
        np.array([_instant(t.first_response) for t in tickets], int64),
        np.array([_instant(t.resolution_plan) for t in tickets], int64),
        np.array([_instant(t.resolved) for t in tickets], int64),
        rule_of,
        np.array(first, int64),
        np.array(offsets, int64),
        *pause_columns,
    )
    out = _evaluate.ResultBuffers(sum(counts))
    bad, _ = _evaluate.evaluate_tickets(
        calendars.packed, np.array([now], int64), False, columns, specs.spec_table, out, 0
    )
    if bad >= 0:
        return None
    return _rows(tickets, policy, plan, out)


def _rows(
    tickets: Sequence[TicketValues], policy: Policy, plan: _Plan, out: _evaluate.ResultBuffers
) -> list[MetricRow] | None:
    columns = zip(
        out.ticket.tolist(),
        out.rule.tolist(),
        out.target.tolist(),
        out.calendar.tolist(),
        out.metric.tolist(),
        out.deadline.tolist(),
        out.elapsed.tolist(),
        out.status.tolist(),
        out.stopped.tolist(),
        out.breach.tolist(),
        out.level.tolist(),
        out.notify.tolist(),
        out.next.tolist(),
        out.warning_at.tolist(),
        strict=True,
    )
    rows = []
    name = policy.name
    for (
        ticket,
        rule,
        target,
        calendar,
        metric,
        deadline,
        elapsed,
        status,
        stopped,
        breach,
        level,
        notify,
        *rest,
    ) in columns:
        nxt, warn = rest
        breached = status == _BREACHED
        if breached and deadline == NO_INSTANT:
            return None  # the Arrow results would hold no instant there: leave it to them
        rows.append(
            MetricRow(
                tickets[ticket].ticket_id,
                METRICS[metric],
                name,
                rule,
                target,
                plan.calendar[calendar],
                None if deadline == NO_INSTANT else deadline,
                elapsed,
                target - elapsed,
                STATUSES[status],
                None if stopped == NO_INSTANT else stopped,
                deadline if breached else None,
                breach if breached else None,
                level,
                None if notify < 0 else plan.notify[notify],
                None if nxt == NO_INSTANT else nxt,
                None if warn == NO_INSTANT else warn,
            )
        )
    return rows


_INSTANT_FIELDS = ("deadline", "stopped_at", "breached_at", "next_escalation_at", "warning_at")


def rows_of(results: pa.Table) -> list[MetricRow]:
    """The rows of ``SLA_RESULTS`` (:func:`evaluate`'s results) as :class:`MetricRow`."""
    rows = []
    for row in results.to_pylist():
        for name in _INSTANT_FIELDS:
            row[name] = seconds(row[name])
        rows.append(MetricRow(**row))
    return rows
