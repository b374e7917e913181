"""SLA evaluation of inline and stored tickets, breach records and reports.

Compiling calendars is the expensive part of an evaluation (a century of one calendar takes
tenths of a second), so each server process keeps the compiled calendar set of every tenant it
serves, keyed by the versions of the tenant's calendars: a new calendar, a new version or a
deletion is picked up on the next call, and no version is compiled twice. Results name the
policy and calendar versions they were computed with (:meth:`Ruleset.stamp`).

A stored ticket the engine cannot evaluate (an instant outside the calendars' horizon, a stop
before creation) never stops the others: recomputing and the reports over stored tickets
evaluate the rest and name each such ticket (:class:`StoredReport`, ``failures``); asking for
that one ticket's status or timeline is :class:`~effigate_engine.service.errors.
FailedPrecondition` naming it, the field and the value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import clock, sla
from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.service import catalog
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.service.rulesets import (  # noqa: F401  (the evaluations' names)
    CALENDAR_VERSIONS_KEY,
    POLICY_ID_KEY,
    POLICY_VERSION_KEY,
    Mark,
    Ruleset,
    RulesetCache,
    stamped_versions,
)
from effigate_engine.service.ticket_fold import fold
from effigate_engine.service.tickets import (
    fetch_ticket,
    load_timelines,
    timelines_table,
    visible,
)
from effigate_engine.sla import few
from effigate_engine.sla import reports as sla_reports
from effigate_engine.sla import timeline as sla_timeline
from effigate_engine.sla.evaluation import Evaluation, TicketError
from effigate_engine.sla.few import MetricRow
from effigate_engine.sla.policy import Policy
from effigate_engine.sla.screening import Screened, evaluate_rows, screen_both
from effigate_engine.store import catalog as stored
from effigate_engine.store import tickets as stored_tickets
from effigate_engine.store.breaches import BreachRow, insert_breaches
from effigate_engine.store.database import Store
from effigate_engine.store.tickets import TicketHistory

#: Failures listed in a response; their total is always given.
MAX_LISTED_FAILURES = 100

#: Inline evaluations of fewer tickets than this run on the event loop, not in a thread: a
#: thread hop (tens of microseconds, more under load) costs more than evaluating them.
INLINE_EVALUATION_TICKETS = 2_000


class Unevaluable(FailedPrecondition):
    """A stored ticket the engine cannot evaluate (its data, not the request, is at fault):
    names the ticket, the field and the value."""

    def __init__(self, exc: TicketError) -> None:
        super().__init__(
            f"tickets[{exc.ticket_id!r}].{exc.field}",
            exc.value,
            f"{exc.problem}: the stored ticket cannot be evaluated until it is corrected",
        )


def _check_instants(ticket: Any, calendars: CalendarSet, name: str, at: datetime) -> None:
    """Refuse an instant asked for (``name``: ``at``/``until``) outside the calendars' horizon
    (the request's fault), then a stored ticket created outside it (the ticket's)."""
    horizon = calendars.horizon
    if not horizon.start <= int(at.timestamp()) <= horizon.end:
        raise EffigateError(
            f"{name}: {at.isoformat()!r} is outside the calendars' horizon {horizon}"
        )
    created = ticket.created_at
    if not horizon.start <= int(created.timestamp()) <= horizon.end:
        raise Unevaluable(
            TicketError(
                ticket.id,
                "created_at",
                created.isoformat(),
                f"is outside the calendars' horizon {horizon}",
            )
        )


@dataclass(frozen=True)
class StoredReport:
    """A report over stored tickets and the tickets it left out: ``failures`` has one row per
    stored ticket the engine cannot evaluate (:data:`~effigate_engine.sla.screening.
    REJECTED_ROWS`; ``row`` is its position in the tickets read, by id)."""

    table: pa.Table
    failures: pa.Table


async def ruleset(
    conn: asyncpg.Connection, cache: RulesetCache, principal: Principal, policy_id: int
) -> Ruleset:
    """The stored policy ``policy_id`` (its current version) and the tenant's compiled
    calendars."""
    return await cache.ruleset(conn, principal.tenant_id, policy_id)


async def screen_under_their_policies(
    histories: Sequence[TicketHistory],
    policy_of: Mapping[str, int],
    rulesets: Mapping[int, Ruleset],
    at: datetime,
) -> Screened:
    """Stored tickets evaluated at ``at`` in one batch (in a worker thread), each under its own
    policy: ``policy_of`` maps a ticket id to its policy id, ``rulesets`` holds each policy's
    :func:`ruleset` (one tenant: one calendar set). Tickets the engine cannot evaluate are in
    the result's rejected rows."""
    table = timelines_table(histories)
    names = [rulesets[policy_of[h.ticket.id]].policy.name for h in histories]
    table = table.set_column(
        table.schema.get_field_index("policy"), "policy", pa.array(names, pa.string())
    )
    calendars = next(iter(rulesets.values())).calendars
    policies = {r.policy.name: r.policy for r in rulesets.values()}
    return await asyncio.to_thread(evaluate_rows, table, policies, calendars, at)


async def ruleset_for(
    store: Store, cache: RulesetCache, principal: Principal, policy_id: int
) -> Ruleset:
    """:func:`ruleset` without a transaction of the caller's. When this process found the
    policy and calendars current while the store's catalog-change listener listened, and no
    change of the tenant was heard of since: no database round trip at all (a change made
    through any server process is used once its notification arrives, within milliseconds
    of its commit). Otherwise (not listening, or a change heard of), when this process has
    the current versions compiled, one statement (the versions, read with the tenant's
    binding); else a transaction that loads and compiles them."""
    changes = store.catalog_changes
    cache.follow(changes)
    tenant_id = principal.tenant_id
    mark = cache.mark(changes, tenant_id)
    if mark is not None:
        hit = cache.trusted(tenant_id, policy_id, mark)
        if hit is not None:
            return hit
    async with store.connection() as conn:
        version, calendars_key = await stored.load_policy_versions_bound(
            conn, principal.key, policy_id
        )
    if version is None:
        raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")
    rules = cache.cached(tenant_id, policy_id, version, calendars_key)
    if rules is None:
        async with store.transaction(principal) as conn:
            rules = await ruleset(conn, cache, principal, policy_id)
    if mark is not None:
        cache.trust(tenant_id, policy_id, mark, rules)
    return rules


async def deadline(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    calendar_id: int,
    start: datetime,
    business_seconds: int,
) -> datetime | None:
    """The instant ``business_seconds`` open seconds of the stored calendar ``calendar_id``
    after ``start`` (``None``: past the calendars' horizon)."""
    async with store.transaction(principal) as conn:
        record = await catalog.fetch_calendar(conn, calendar_id)
        calendars = await cache.calendars(conn, principal.tenant_id)
    return clock.deadline(calendars, record.name, start, business_seconds)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if now.tzinfo is None:
        raise EffigateError(f"now: {now.isoformat()!r} has no time zone")
    return now


async def evaluate_inline(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    tickets: pa.Table,
    now: datetime | None = None,
) -> Evaluation:
    """Evaluate tickets given by the caller (the ``sla.TICKETS`` columns) under a stored policy;
    nothing is stored. Fewer than :data:`INLINE_EVALUATION_TICKETS` tickets are evaluated on
    the event loop (handing them to a thread costs more than evaluating them), more in a
    worker thread (the kernels release the GIL)."""
    rules = await ruleset_for(store, cache, principal, policy_id)
    at = _now(now)
    if tickets.num_rows < INLINE_EVALUATION_TICKETS:
        evaluation = sla.evaluate(tickets, rules.policy, rules.calendars, at)
    else:
        evaluation = await asyncio.to_thread(
            sla.evaluate, tickets, rules.policy, rules.calendars, at
        )
    return rules.stamp(evaluation)


async def _status_inputs(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    ticket_id: str,
    policy_id: int | None,
    at: datetime | None,
) -> tuple[Any, TicketHistory, Ruleset, datetime]:
    """The stored ticket, its history, the ruleset and the instant of a status request,
    read in one statement when this process has the current versions compiled."""
    now = _now(at)
    async with store.connection() as conn:
        inputs = await stored_tickets.load_status_inputs(
            conn, principal.key, ticket_id, now, policy_id
        )
    history = inputs.history
    ticket = visible(principal, ticket_id, None if history is None else history.ticket)
    assert history is not None
    if inputs.policy_id is None:
        raise EffigateError(
            f"policy_id: none given and ticket {ticket_id!r} has no contract with an SLA policy"
        )
    if inputs.policy_version is None:
        raise NotFound("policy_id", inputs.policy_id, "is not an SLA policy of this tenant")
    rules = cache.cached(
        principal.tenant_id, inputs.policy_id, inputs.policy_version, inputs.calendars_key
    )
    if rules is None:
        async with store.transaction(principal) as conn:
            rules = await ruleset(conn, cache, principal, inputs.policy_id)
    _check_instants(ticket, rules.calendars, "at", now)
    return ticket, history, rules, now


def _evaluate_history(history: TicketHistory, rules: Ruleset, now: datetime) -> Evaluation:
    try:
        evaluation = sla.evaluate(timelines_table([history]), rules.policy, rules.calendars, now)
    except TicketError as exc:
        raise Unevaluable(exc) from None
    return rules.stamp(evaluation)


async def ticket_status(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    ticket_id: str,
    policy_id: int | None = None,
    at: datetime | None = None,
) -> tuple[Any, Evaluation]:
    """A stored ticket and its SLA metrics at ``at`` (default now) under ``policy_id`` (default:
    the policy of the ticket's contract). When this process has the policy's and calendars'
    current versions compiled, the ticket, its events and those versions are read in one
    statement (:func:`~effigate_engine.store.tickets.load_status_inputs`)."""
    ticket, history, rules, now = await _status_inputs(
        store, cache, principal, ticket_id, policy_id, at
    )
    return ticket, _evaluate_history(history, rules, now)


@dataclass(frozen=True)
class StatusMetrics:
    """A stored ticket's SLA metrics (:class:`~effigate_engine.sla.few.MetricRow`, in result
    order) and the ruleset (policy and calendar versions) that gave them."""

    ticket: Any
    rows: list[MetricRow]
    rules: Ruleset


async def ticket_status_metrics(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    ticket_id: str,
    policy_id: int | None = None,
    at: datetime | None = None,
) -> StatusMetrics:
    """:func:`ticket_status` as plain result rows, for the unary status call: the same answer
    and errors, but the ticket is evaluated from plain values (:mod:`effigate_engine.sla.few`,
    no Arrow for one ticket) unless it is not the ordinary case."""
    ticket, history, rules, now = await _status_inputs(
        store, cache, principal, ticket_id, policy_id, at
    )
    rows = few.evaluate_values(
        [ticket_values(history)], rules.policy, rules.calendars, few.seconds(now)
    )
    if rows is None:
        rows = few.rows_of(_evaluate_history(history, rules, now).results)
    return StatusMetrics(ticket, rows, rules)


def ticket_values(history: TicketHistory) -> few.TicketValues:
    """A stored ticket folded from its events, as the row :func:`timelines_table` makes of
    it (plain values)."""
    t = history.ticket
    line = fold(history.events, t)
    seconds = few.seconds
    return few.TicketValues(
        t.id,
        line.priority,
        seconds(t.created_at),
        seconds(line.first_response_at),
        seconds(line.resolution_plan_at),
        seconds(line.resolved_at),
        [(seconds(s), seconds(e), st) for s, e, st in line.pauses],
        str(t.client_id),
        line.support_level,
        line.job_type,
        t.after_hours,
    )


async def ticket_timeline(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    ticket_id: str,
    policy_id: int | None = None,
    until: datetime | None = None,
) -> tuple[Any, pa.Table]:
    """A stored ticket and its SLA timeline (:func:`effigate_engine.sla.timeline.
    ticket_timeline`) from creation to ``until`` (default now): the history as known from
    each of its events on (a priority change re-targets the ticket only from its instant)."""
    end = _now(until)
    async with store.transaction(principal) as conn:
        ticket = await fetch_ticket(conn, principal, ticket_id)
        policy_id = await _ticket_policy(conn, ticket, ticket_id, policy_id)
        rules = await ruleset(conn, cache, principal, policy_id)
        _check_instants(ticket, rules.calendars, "until", end)
        instants = sorted(
            set(await stored_tickets.event_instants(conn, ticket_id, end)) | {ticket.created_at}
        )
        segments = [
            await load_timelines(conn, principal, ticket_ids=[ticket_id], as_of=at)
            for at in instants
        ]
    table = pa.concat_tables(segments)
    try:
        timeline = await asyncio.to_thread(
            sla_timeline.ticket_timeline, table, instants, rules.policy, rules.calendars, end
        )
    except TicketError as exc:
        raise Unevaluable(exc) from None
    return ticket, timeline


async def _ticket_policy(
    conn: asyncpg.Connection, ticket: Any, ticket_id: str, policy_id: int | None
) -> int:
    """``policy_id``, or the SLA policy of the ticket's contract."""
    if policy_id is None and ticket.contract_id is not None:
        policy_id = await stored.contract_policy_id(conn, ticket.contract_id)
    if policy_id is None:
        raise EffigateError(
            f"policy_id: none given and ticket {ticket_id!r} has no contract with an SLA policy"
        )
    return int(policy_id)


@dataclass(frozen=True)
class Recomputation:
    """What a recompute found: tickets evaluated, counts per (metric, status), new breaches,
    and the stored tickets it could not evaluate (``failures``, see :class:`StoredReport`)."""

    tickets: int
    counts: list[tuple[str, str, int]]
    new_breaches: int
    now: datetime
    evaluation: Evaluation
    failures: pa.Table


async def _stored_evaluation(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    now: datetime | None,
    client_id: int | None,
) -> tuple[Screened, datetime]:
    """Every stored ticket (of ``client_id``) evaluated at ``now``, but those the engine
    cannot evaluate, which are named in ``Screened.rejected``."""
    at = _now(now)
    async with store.transaction(principal) as conn:
        rules = await ruleset(conn, cache, principal, policy_id)
        table = await load_timelines(conn, principal, client_id=client_id, as_of=at)
    screened = await asyncio.to_thread(evaluate_rows, table, rules.policy, rules.calendars, at)
    return dataclasses.replace(screened, evaluation=rules.stamp(screened.evaluation)), at


async def recompute(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    now: datetime | None = None,
    client_id: int | None = None,
) -> Recomputation:
    """Re-evaluate every stored ticket (of ``client_id``) at ``now`` and record each breach
    once (breach id ``<ticket>:<metric>``; a breach already recorded is left as it was). A
    stored ticket the engine cannot evaluate is left out and named in ``failures``."""
    principal.require_staff("recompute SLA status")
    screened, at = await _stored_evaluation(store, cache, principal, policy_id, now, client_id)
    evaluation = screened.evaluation
    results = evaluation.results
    grouped = (
        pa.table(
            {
                "metric": pc.cast(results["metric"], pa.string()),
                "status": pc.cast(results["status"], pa.string()),
            }
        )
        .group_by(["metric", "status"])
        .aggregate([("metric", "count")])
    )
    counts = sorted(
        zip(
            grouped["metric"].to_pylist(),
            grouped["status"].to_pylist(),
            grouped["metric_count"].to_pylist(),
            strict=True,
        )
    )
    breaches = sla.breach_records(evaluation)
    new = await store_breaches(store, principal, breaches, results)
    from effigate_engine.service import sla_schedule

    await sla_schedule.reschedule_in_chunks(store, principal, None, cache)
    return Recomputation(
        evaluation.tickets.num_rows, counts, new, at, evaluation, screened.rejected
    )


async def store_breaches(
    store: Store, principal: Principal, breaches: pa.Table, results: pa.Table
) -> int:
    """Insert breach records not stored yet (by breach id); returns how many were new."""
    if breaches.num_rows == 0:
        return 0
    rows = breach_rows(breaches, results)
    async with store.transaction(principal) as conn:
        return await insert_breaches(conn, rows)


#: The versions a breach's evidence names, per result row's policy and calendar names:
#: ``(policy name) -> (policy id, policy version)`` and ``(calendar name) -> version``.
Versions = tuple[Mapping[str, tuple[int, int]], Mapping[str, int]]


def breach_rows(
    breaches: pa.Table, results: pa.Table, versions: Versions | None = None
) -> list[BreachRow]:
    """The stored rows of ``breaches`` (:data:`~effigate_engine.sla.schemas.BREACH_RECORDS`),
    each with the deadline and calendar of its result row in ``results`` (by ticket and
    metric) and evidence naming the policy and calendar versions: those stamped on
    ``results`` (:meth:`Ruleset.stamp`), or with ``versions`` those of each row's own policy
    and calendar (results of several policies, e.g. loaded back from a scale-out job)."""
    keys = list(
        zip(
            results["ticket_id"].to_pylist(),
            pc.cast(results["metric"], pa.string()).to_pylist(),
            strict=True,
        )
    )
    deadline = dict(zip(keys, results["deadline"].to_pylist(), strict=True))
    calendar = dict(zip(keys, pc.cast(results["calendar"], pa.string()).to_pylist(), strict=True))
    policy_of = dict(zip(keys, pc.cast(results["policy"], pa.string()).to_pylist(), strict=True))
    policy_id, policy_version, calendar_versions = stamped_versions(results)
    rows: list[BreachRow] = []
    for b in breaches.to_pylist():
        key = (b["ticket_id"], b["metric"])
        calendar_name = calendar.get(key)
        if versions is not None:
            policy_id, policy_version = versions[0].get(policy_of.get(key) or "", (0, 0))
            calendar_versions = versions[1]
        evidence = {
            "priority": b["priority"],
            "breach_seconds": b["breach_seconds"],
            "severity": b["severity"],
            "client_id": b["client_id"],
            "policy_id": policy_id,
            "policy_version": policy_version,
            "calendar": calendar_name,
            "calendar_version": calendar_versions.get(calendar_name or "", 0),
        }
        contract = int(b["contract_id"]) if b["contract_id"] else None
        target = deadline.get(key) or b["breached_at"]
        rows.append(
            (
                b["breach_id"],
                b["ticket_id"],
                contract,
                b["metric"],
                target,
                b["breached_at"],
                json.dumps(evidence),
            )
        )
    return rows


async def compliance(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    group_by: Sequence[str] = ("priority",),
    period: str | None = None,
    now: datetime | None = None,
    client_id: int | None = None,
) -> StoredReport:
    """Hit rates of the stored tickets, grouped (see :func:`effigate_engine.sla.hit_rates`)."""
    screened, _ = await _stored_evaluation(store, cache, principal, policy_id, now, client_id)
    table = sla.hit_rates(
        screened.evaluation, by=list(group_by) or "priority", period=period or None
    )
    return StoredReport(table, screened.rejected)


async def percentiles(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    group_by: Sequence[str] = ("priority",),
    now: datetime | None = None,
    client_id: int | None = None,
) -> StoredReport:
    """P50/P75/P95 business response and resolution times of the stored tickets."""
    screened, _ = await _stored_evaluation(store, cache, principal, policy_id, now, client_id)
    table = sla.percentiles(screened.evaluation, by=list(group_by) or "priority")
    return StoredReport(table, screened.rejected)


async def recommended_targets(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    days: int = 90,
    now: datetime | None = None,
    client_id: int | None = None,
) -> StoredReport:
    """Per priority and metric, the P75 of the last ``days`` days of actual times."""
    screened, _ = await _stored_evaluation(store, cache, principal, policy_id, now, client_id)
    table = sla.recommended_targets(screened.evaluation, days=days or 90)
    return StoredReport(table, screened.rejected)


async def replay(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    current_policy_id: int,
    proposed: int | dict[str, Any],
    group_by: Sequence[str] = ("priority",),
    now: datetime | None = None,
    client_id: int | None = None,
) -> StoredReport:
    """The stored tickets under the current policy and a proposed one (a stored policy id or
    an unstored policy JSON body), with the differences per group. A ticket either policy
    cannot evaluate is left out of both and named in ``failures``."""
    principal.require_staff("replay policies")
    at = _now(now)
    async with store.transaction(principal) as conn:
        current = await ruleset(conn, cache, principal, current_policy_id)
        if isinstance(proposed, int):
            candidate = (await ruleset(conn, cache, principal, proposed)).policy
        else:
            candidate = Policy.from_json({"name": "proposed", **proposed})
        table = await load_timelines(conn, principal, client_id=client_id, as_of=at)
    by = list(group_by) or "priority"

    def run() -> StoredReport:
        before, after, failures = screen_both(
            table, current.policy, candidate, current.calendars, at
        )
        return StoredReport(
            sla_reports.replay_evaluations(before.evaluation, after.evaluation, by), failures
        )

    return await asyncio.to_thread(run)
