"""Keeping the SLA transition schedule and firing it (docs/events-scheduler.md).

:func:`reschedule` runs inside the transaction of every change that can move a ticket's
transitions (its events, a policy or calendar change, a Recompute): it evaluates the tickets
under the SLA policy of their contracts at ``now`` and writes each metric's next transition;
a metric stopped since it was last scheduled gets its ``SLA_MET`` (when met) in the same
transaction. :func:`fire` runs in the firing loop's transaction, bound to one tenant: each due
row is re-evaluated as of its due instant, the transitions reached by then are appended to the
outbox (exactly once per ticket, metric and step: their dedupe keys), and the next transition is
written, all in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pyarrow as pa

from effigate_engine.errors import EffigateError
from effigate_engine.events import sla_transitions as tr
from effigate_engine.events.types import SLA_MET, sla_key
from effigate_engine.service import wall_clock
from effigate_engine.service.context import Principal
from effigate_engine.service.rulesets import Ruleset, RulesetCache
from effigate_engine.service.ticket_batches import timelines_table
from effigate_engine.sla.policy import MetricTarget
from effigate_engine.sla.screening import evaluate_rows
from effigate_engine.store import schedule as stored
from effigate_engine.store.database import Store
from effigate_engine.store.events import NewEvent, append_events

#: Rulesets of the schedule's own evaluations (the firing loop and the write paths), per
#: process, keyed by versions like every other cache of compiled calendars.
RULESETS = RulesetCache()

#: The order transitions at one instant are announced in.
_ORDER = {tr.WARNING: 0, tr.ESCALATION: 1, tr.BREACHED: 2}


@dataclass
class _Evaluated:
    """One result row of a ticket metric evaluated at ``at`` (epoch seconds), with its promise."""

    ticket_id: str
    client_id: int
    metric: str
    at: int
    row: dict[str, Any]
    spec: MetricTarget
    rules: Ruleset


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def _evaluate(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    asks: Sequence[tuple[str, int]],
    cache: RulesetCache,
) -> list[_Evaluated]:
    """Evaluate each ``(ticket, instant)`` of ``asks`` under the SLA policy of the ticket's
    contract (tickets without one are skipped), its whole stored history read once; a ticket
    the engine cannot evaluate is skipped (the reports name such tickets)."""
    ids = sorted({t for t, _ in asks})
    if not ids:
        return []
    owners = await stored.ticket_policies(conn, ids)
    histories = await stored.load_histories_by_ids(conn, ids)
    table = timelines_table(histories)
    position = {t: i for i, t in enumerate(table.column("ticket_id").to_pylist())}
    by_policy: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for ticket_id, at in asks:
        policy_id = owners.get(ticket_id, (0, None))[1]
        if policy_id is not None and ticket_id in position:
            by_policy[policy_id].append((ticket_id, at))
    out: list[_Evaluated] = []
    for policy_id, group in by_policy.items():
        try:
            rules = await cache.ruleset(conn, tenant_id, policy_id)
        except EffigateError:  # a policy no longer usable: its tickets have nothing pending
            continue
        batch = table.take(pa.array([position[t] for t, _ in group]))
        # ids by position, so one ticket may be asked at several instants in one pass
        batch = batch.set_column(
            batch.column_names.index("ticket_id"),
            "ticket_id",
            pa.array([str(i) for i in range(len(group))], pa.string()),
        )
        screened = evaluate_rows(
            batch, rules.policy, rules.calendars, [_instant(at) for _, at in group]
        )
        for row in screened.evaluation.results.to_pylist():
            ticket_id, at = group[int(row["ticket_id"])]
            metric = row["metric"]
            spec = rules.policy.rules[row["rule"]].metrics[metric]
            out.append(_Evaluated(ticket_id, owners[ticket_id][0], metric, at, row, spec, rules))
    return out


def _evidence(e: _Evaluated, transition: tr.Transition | None = None) -> dict[str, Any]:
    """The data of an SLA event: what the engine knew when the transition happened."""
    row = e.row
    deadline = row.get("deadline")
    data: dict[str, Any] = {
        "ticket_id": e.ticket_id,
        "client_id": e.client_id,
        "metric": e.metric,
        "status": row["status"],
        "deadline": None if deadline is None else deadline.astimezone(UTC).isoformat(),
        "elapsed_seconds": int(row["elapsed_seconds"]),
        "target_seconds": int(row["target_seconds"]),
        "rule": int(row["rule"]),
        "policy": row["policy"],
        "policy_id": e.rules.policy_id,
        "policy_version": e.rules.policy_version,
        "calendar": row["calendar"],
        "calendar_version": e.rules.calendar_versions.get(row["calendar"]),
        "evaluated_at": _instant(e.at).isoformat(),
    }
    if row.get("stopped_at") is not None:
        data["stopped_at"] = row["stopped_at"].astimezone(UTC).isoformat()
    if transition is not None and transition.kind == tr.ESCALATION:
        assert transition.step is not None
        data["escalation_step"] = transition.step
        data["notify"] = [e.spec.escalation[transition.step - 1].notify]
    return data


async def reschedule(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    ticket_ids: Sequence[str],
    now: datetime,
    cache: RulesetCache = RULESETS,
) -> int:
    """Write the next transition of every metric of ``ticket_ids`` as known at ``now``, in the
    caller's transaction (bound to ``tenant_id``); a metric stopped since it was last
    scheduled, and met, gets its ``SLA_MET``. A transition of an already scheduled metric
    reached at ``now`` but not announced yet is scheduled at ``now`` (the loop announces it
    at once); a metric scheduled for the first time is announced from ``now`` on (a ticket
    imported past its deadline does not raise a late breach). Returns the rows written."""
    at = _epoch(now)
    evaluated = await _evaluate(conn, tenant_id, [(t, at) for t in ticket_ids], cache)
    if not evaluated:
        return 0
    known_rows = await stored.scheduled_metrics(conn, ticket_ids)
    rows: list[stored.ScheduleRow] = []
    met: list[NewEvent] = []
    pending: dict[tuple[str, str], list[tuple[str, tr.Transition]]] = {}
    for e in evaluated:
        if e.row.get("stopped_at") is not None:
            rows.append(stored.ScheduleRow(e.ticket_id, e.metric, None, None, None, False))
            if known_rows.get((e.ticket_id, e.metric)) and e.row["status"] == "MET":
                met.append(
                    NewEvent(
                        SLA_MET,
                        sla_key(e.ticket_id, e.metric, SLA_MET),
                        e.ticket_id,
                        e.row["stopped_at"],
                        _evidence(e),
                        e.client_id,
                    )
                )
            continue
        # a metric seen for the first time (a ticket created or imported) is announced from
        # now on; one already scheduled gets what it reached and was not told yet (a policy
        # change that moved a deadline into the past, a transition due while the loop was down)
        reached = tr.reached(e.row, e.spec, at) if (e.ticket_id, e.metric) in known_rows else []
        if reached:
            pending[(e.ticket_id, e.metric)] = [
                (tr.dedupe_key(e.ticket_id, e.metric, r), r) for r in reached
            ]
        nxt = tr.upcoming(e.row, e.spec, at)
        rows.append(
            stored.ScheduleRow(
                e.ticket_id,
                e.metric,
                None if nxt is None or nxt.at is None else _instant(nxt.at),
                None if nxt is None else nxt.kind,
                None if nxt is None else nxt.step,
            )
        )
    if pending:
        known = await stored.known_keys(conn, [k for ks in pending.values() for k, _ in ks])
        for i, row in enumerate(rows):
            missing = [r for k, r in pending.get((row.ticket_id, row.metric), []) if k not in known]
            if missing:
                first = min(missing, key=lambda r: _ORDER[r.kind])
                rows[i] = stored.ScheduleRow(row.ticket_id, row.metric, now, first.kind, first.step)
    await stored.write_schedule(conn, rows, now)
    await append_events(conn, met)
    return len(rows)


async def reschedule_open(
    conn: asyncpg.Connection, tenant_id: UUID, now: datetime, cache: RulesetCache = RULESETS
) -> int:
    """Reschedule every unresolved ticket of the tenant (a policy or calendar change, a
    Recompute); returns the rows written."""
    ids = await stored.unresolved_ticket_ids(conn)
    written = 0
    for start in range(0, len(ids), RESCHEDULE_CHUNK):
        written += await reschedule(
            conn, tenant_id, ids[start : start + RESCHEDULE_CHUNK], now, cache
        )
    return written


#: Tickets evaluated per pass of :func:`reschedule_open` (bounds the memory of one pass).
RESCHEDULE_CHUNK = 20_000


async def reschedule_in_chunks(
    store: Store,
    principal: Principal,
    ticket_ids: Sequence[str] | None,
    cache: RulesetCache = RULESETS,
) -> int:
    """Reschedule ``ticket_ids`` (``None``: every unresolved ticket of the tenant) in
    transactions of :data:`RESCHEDULE_CHUNK` tickets each (after a bulk ingest, for a
    Recompute): no transaction stays open long enough to hold back the delivery of events.
    Returns the rows written."""
    if ticket_ids is None:
        async with store.transaction(principal) as conn:
            ticket_ids = await stored.unresolved_ticket_ids(conn)
    ids = sorted(set(ticket_ids))
    written = 0
    for start in range(0, len(ids), RESCHEDULE_CHUNK):
        async with store.transaction(principal) as conn:
            written += await reschedule(
                conn,
                principal.tenant_id,
                ids[start : start + RESCHEDULE_CHUNK],
                wall_clock.now(),
                cache,
            )
    return written


@dataclass(frozen=True)
class Fired:
    """What one firing pass did: due rows processed and events appended."""

    rows: int
    events: int


async def fire(
    conn: asyncpg.Connection,
    tenant_id: UUID,
    now: datetime,
    limit: int = 2_000,
    cache: RulesetCache = RULESETS,
) -> Fired:
    """Fire the tenant's transitions due at or before ``now`` (at most ``limit`` rows), in the
    caller's transaction bound to the tenant: each row is evaluated as of its due instant, the
    transitions reached by then are appended (exactly once: dedupe keys; ``occurred_at`` the
    due instant), and its next transition is written, the earlier of the next as known at the
    due instant and as known at ``now`` (an event recorded in between counts)."""
    due = await stored.claim_due(conn, now, limit)
    if not due:
        return Fired(0, 0)
    at_now = _epoch(now)
    asks = [(d.ticket_id, _epoch(d.due_at)) for d in due]
    asks += [(t, at_now) for t in sorted({d.ticket_id for d in due})]
    evaluated = await _evaluate(conn, tenant_id, asks, cache)
    wanted = {(d.ticket_id, d.metric): _epoch(d.due_at) for d in due}
    at_due: dict[tuple[str, str], _Evaluated] = {}
    at_present: dict[tuple[str, str], _Evaluated] = {}
    for e in evaluated:
        key = (e.ticket_id, e.metric)
        if key not in wanted:
            continue
        if e.at == wanted[key] and key not in at_due:
            at_due[key] = e
        if e.at == at_now:
            at_present[key] = e
    events: list[NewEvent] = []
    rows: list[stored.ScheduleRow] = []
    for key, due_at in wanted.items():
        e = at_due.get(key)
        if e is None:  # no longer evaluated (no policy, not evaluable): nothing pending
            rows.append(stored.ScheduleRow(key[0], key[1], None, None, None, False))
            continue
        for r in sorted(tr.reached(e.row, e.spec, due_at), key=lambda r: _ORDER[r.kind]):
            events.append(
                NewEvent(
                    tr.EVENT_TYPE[r.kind],
                    tr.dedupe_key(e.ticket_id, e.metric, r),
                    e.ticket_id,
                    _instant(due_at),
                    _evidence(e, r),
                    e.client_id,
                )
            )
        candidates = [tr.upcoming(e.row, e.spec, due_at)]
        later = at_present.get(key)
        if later is not None and later.at > due_at:
            candidates.append(tr.upcoming(later.row, later.spec, later.at))
            reached_now = tr.reached(later.row, later.spec, later.at)
            if len(reached_now) > len(tr.reached(e.row, e.spec, due_at)):
                candidates.append(
                    tr.Transition(later.at, reached_now[-1].kind, reached_now[-1].step)
                )
        known = [c for c in candidates if c is not None and c.at is not None]
        nxt = min(known, key=lambda c: (c.at, _ORDER[c.kind])) if known else None
        stopped = (later or e).row.get("stopped_at") is not None
        rows.append(
            stored.ScheduleRow(
                key[0],
                key[1],
                None if nxt is None else _instant(nxt.at),
                None if nxt is None else nxt.kind,
                None if nxt is None else nxt.step,
                not stopped,
            )
        )
    inserted = await append_events(conn, events)
    await stored.write_schedule(conn, rows, now, fired_through=now)
    return Fired(len(due), inserted)
