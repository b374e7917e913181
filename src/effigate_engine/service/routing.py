"""Routing and assignment of stored tickets, and the reports on queues and agents' workload.

The tenant's queues, agents and routing rules are stored by
:mod:`~effigate_engine.service.routing_setup`. Routing and assignment run the engine's
kernels (:mod:`effigate_engine.routing`) over the stored tickets and record what changed:
the ticket's events (``QUEUE_CHANGED``, ``PRIORITY_CHANGED``, ``SUPPORT_LEVEL_CHANGED``,
``TAGS_CHANGED``, ``ASSIGNED``) through
:func:`~effigate_engine.service.ticket_changes.apply_changes` (``apply_events`` of many
tickets in a few statements), and one row of the append-only assignment history per changed
ticket. Nothing is recorded for a ticket that stays as it was,
so re-sending a call never duplicates history.

Assignment starts from the agents' workload derived at the call: their open assigned tickets
(count, and weighted load by each ticket's priority and the business seconds left on its most
urgent open SLA metric, from the SLA evaluation of the stored tickets under their contracts'
policies) and the order of their latest assignments in the history. Two assignments that
could touch the same queue or agent are serialised: each locks its queues (with their
escalation chains), then the agents working them, in name / id order, before reading anything.

Every operation is staff-only: a portal token is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import routing
from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.routing import RoutingRules
from effigate_engine.service import evaluations
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import NotFound
from effigate_engine.service.evaluations import RulesetCache
from effigate_engine.service.routing_setup import agent_of, live_rules, parse_rules, queue_of
from effigate_engine.service.ticket_changes import apply_changes
from effigate_engine.store import routing as stored
from effigate_engine.store import tickets as stored_tickets
from effigate_engine.store.database import Store
from effigate_engine.store.routing import AgentRow, HistoryRow, QueueRow, RulesRow

__all__ = ["AgentRow", "QueueRow", "RulesRow"]

#: Tickets an ``Assign`` of a queue takes when no limit is given, and at most.
DEFAULT_ASSIGN_LIMIT = 100
MAX_ASSIGN_LIMIT = 10_000
#: Reasons of tickets an assignment leaves as they were (the kernel's are ``routing.REASONS``).
ALREADY_ASSIGNED = "ALREADY_ASSIGNED"
RESOLVED = "RESOLVED"
#: The reason of a history row written by routing.
ROUTED = "ROUTED"
#: SLA statuses of open metrics, most severe first: a ticket's status is its most severe.
_SEVERITY = ("BREACHED", "WARNING", "PAUSED", "ON_TRACK")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    if now.tzinfo is None:
        raise EffigateError(f"now: {now.isoformat()!r} has no time zone")
    return now


# tickets as the kernels read them --------------------------------------------------------------


def routing_table(tickets: Sequence[Mapping[str, Any]], **extra: Sequence[Any]) -> pa.Table:
    """Stored tickets (rows of :mod:`effigate_engine.store.routing`) as a
    ``routing.ROUTING_TICKETS`` batch; ``extra`` adds columns (of that schema, or text columns
    such as ``assignee``)."""
    schema = routing.ROUTING_TICKETS
    columns: dict[str, Any] = {
        "ticket_id": [t["id"] for t in tickets],
        "client_id": [str(t["client_id"]) for t in tickets],
        "priority": [t["priority"] for t in tickets],
        "support_level": [t["support_level"] for t in tickets],
        "job_type": [t["job_type"] for t in tickets],
        "after_hours": [bool(t["after_hours"]) for t in tickets],
        "channel": [t["channel"] for t in tickets],
        "subject": [t["subject"] for t in tickets],
        "requester": [t["requester"] for t in tickets],
        "queue": [t["queue"] for t in tickets],
        "tags": [list(t["tags"] or ()) for t in tickets],
        **extra,
    }
    return pa.table(
        {
            k: pa.array(v, schema.field(k).type if k in schema.names else pa.string())
            for k, v in columns.items()
        }
    )


@dataclass(frozen=True)
class SlaState:
    """A stored ticket's SLA standing at an instant: the most severe status of its open
    metrics and the business seconds left on the most urgent (negative once breached)."""

    status: str
    remaining_seconds: int


async def sla_states(
    conn: asyncpg.Connection,
    cache: RulesetCache,
    principal: Principal,
    tickets: Sequence[Mapping[str, Any]],
    now: datetime,
) -> tuple[dict[str, SlaState], pa.Table]:
    """The :class:`SlaState` of each ticket whose contract has an SLA policy and that has an
    open metric, from the SLA evaluation of the stored tickets as known at ``now`` (their
    events up to it) under their contracts' policies; and the tickets the engine could not evaluate
    (``sla.screening.REJECTED_ROWS``). A ticket without a policy, or whose metrics all
    stopped, has no state (no SLA: urgency 1)."""
    with_policy = [t for t in tickets if t["sla_policy_id"] is not None]
    empty = pa.table({"row": pa.array([], pa.int64())})
    if not with_policy:
        return {}, empty
    rulesets = {}
    for policy_id in sorted({int(t["sla_policy_id"]) for t in with_policy}):
        rulesets[policy_id] = await evaluations.ruleset(conn, cache, principal, policy_id)
    histories = await stored_tickets.load_histories(conn, ticket_ids=[t["id"] for t in with_policy])
    policy_of = {t["id"]: int(t["sla_policy_id"]) for t in with_policy}
    screened = await evaluations.screen_under_their_policies(histories, policy_of, rulesets, now)
    results = screened.evaluation.results
    open_rows = results.filter(pc.is_null(results["stopped_at"]))
    states: dict[str, SlaState] = {}
    for ticket_id, status, remaining in zip(
        open_rows["ticket_id"].to_pylist(),
        pc.cast(open_rows["status"], pa.string()).to_pylist(),
        open_rows["remaining_seconds"].to_pylist(),
        strict=True,
    ):
        if status not in _SEVERITY:
            continue
        seen = states.get(ticket_id)
        if seen is None:
            states[ticket_id] = SlaState(status, remaining)
            continue
        worse = status if _SEVERITY.index(status) < _SEVERITY.index(seen.status) else seen.status
        states[ticket_id] = SlaState(worse, min(remaining, seen.remaining_seconds))
    return states, screened.rejected


def _sla_columns(
    tickets: Sequence[Mapping[str, Any]], states: Mapping[str, SlaState]
) -> dict[str, list[Any]]:
    status = [getattr(states.get(t["id"]), "status", None) for t in tickets]
    remaining = [getattr(states.get(t["id"]), "remaining_seconds", None) for t in tickets]
    return {"sla_status": status, "remaining_seconds": remaining}


# routing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteOutcome:
    """Where routing sent one ticket: the rule (-1: fallback), the queue and the queue it had,
    the priority, support level and tags after the rule, and whether anything was recorded."""

    ticket_id: str
    rule: int
    queue: str
    previous_queue: str | None
    priority: str
    support_level: str | None
    tags: tuple[str, ...]
    changed: bool


def event_id(history_id: int, kind: str) -> str:
    """The id of the event of ``kind`` recorded with history row ``history_id``:
    ``routing:<history id, 19 digits>:<kind>``. Events of one kind at one instant fold in id
    order, so a later change (a later history row) wins over an earlier one at the same
    instant, routing or assignment alike."""
    return f"routing:{history_id:019d}:{kind.lower()}"


def _event_instant(ticket: Mapping[str, Any], at: datetime) -> datetime:
    """An event's instant: ``at``, or the ticket's creation when that is later (an event
    never precedes its ticket)."""
    return max(at, ticket["created_at"])


async def route(
    store: Store, principal: Principal, ticket_ids: Sequence[str], now: datetime | None = None
) -> tuple[int, list[RouteOutcome]]:
    """Route the stored tickets ``ticket_ids`` with the tenant's current rules; the rules'
    version and each ticket's outcome (in id order). What changed (queue, priority, support
    level, tags) is recorded as the ticket's events at ``now`` and one history row (reason
    ``ROUTED``, the rule version and rule, the assignee kept); a ticket routed where it already
    is records nothing."""
    principal.require_staff("route tickets")
    at = _now(now)
    ids = _unique_ids(ticket_ids)
    async with store.transaction(principal) as conn:
        rules_row = await live_rules(conn)
        rules = parse_rules(rules_row.body)
        tickets = await _tickets(conn, ids)
        routes = routing.route(routing_table(tickets), rules)
        outcomes, history, events = _route_changes(tickets, routes, rules_row.version)
        hids = await stored.insert_history(conn, history, at, principal.actor)
        by_id = {t["id"]: t for t in tickets}
        await apply_changes(
            conn,
            principal,
            {
                row.ticket_id: [
                    (event_id(hid, kind), kind, _event_instant(by_id[row.ticket_id], at), detail)
                    for kind, detail in events[row.ticket_id]
                ]
                for hid, row in zip(hids, history, strict=True)
            },
        )
    return rules_row.version, outcomes


def _unique_ids(ticket_ids: Sequence[str]) -> list[str]:
    for i, ticket_id in enumerate(ticket_ids):
        if not ticket_id:
            raise EffigateError(f"ticket_ids[{i}]: '' is empty")
    return sorted(set(ticket_ids), key=str.encode)


async def _tickets(conn: asyncpg.Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    tickets = await stored.load_tickets(conn, ids)
    found = {t["id"] for t in tickets}
    for ticket_id in ids:
        if ticket_id not in found:
            raise NotFound("ticket_ids", ticket_id, "is not a ticket of this tenant")
    return sorted(tickets, key=lambda t: t["id"].encode())


def _route_changes(
    tickets: Sequence[Mapping[str, Any]], routes: pa.Table, version: int
) -> tuple[list[RouteOutcome], list[HistoryRow], dict[str, list[tuple[str, str | None]]]]:
    by_id = {t["id"]: t for t in tickets}
    outcomes = []
    history = []
    events: dict[str, list[tuple[str, str | None]]] = {}
    for r in routes.to_pylist():
        t = by_id[r["ticket_id"]]
        tags = tuple(r["tags"] or ())
        changes: list[tuple[str, str | None]] = []
        if r["queue"] != t["queue"]:
            changes.append(("QUEUE_CHANGED", r["queue"]))
        if r["priority"] != t["priority"]:
            changes.append(("PRIORITY_CHANGED", r["priority"]))
        if r["support_level"] != t["support_level"]:
            changes.append(("SUPPORT_LEVEL_CHANGED", r["support_level"]))
        if tags != tuple(t["tags"] or ()):
            changes.append(("TAGS_CHANGED", ",".join(tags)))
        if changes:
            events[t["id"]] = changes
            history.append(
                HistoryRow(t["id"], r["queue"], t["assignee"], ROUTED, version, r["rule"])
            )
        outcomes.append(
            RouteOutcome(
                t["id"],
                r["rule"],
                r["queue"],
                t["queue"],
                r["priority"],
                r["support_level"],
                tags,
                bool(changes),
            )
        )
    return outcomes, history, events


async def route_table(store: Store, principal: Principal, tickets: pa.Table) -> pa.Table:
    """Route a caller's batch of tickets (``routing.ROUTING_TICKETS`` columns) with the
    tenant's current rules; nothing is stored. ``routing.ROUTES``, in input order."""
    rules = await current_rules(store, principal)
    return routing.route(tickets, rules)


async def current_rules(store: Store, principal: Principal) -> RoutingRules:
    """The tenant's current routing rules (staff only)."""
    principal.require_staff("route tickets")
    async with store.transaction(principal) as conn:
        return parse_rules((await live_rules(conn)).body)


# assignment ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignOutcome:
    """What assignment did with one ticket: its queue after escalation (``None``: it has
    none), the agent (``None``: unassigned), whether escalated, why, its work weight, and
    whether anything was recorded."""

    ticket_id: str
    queue: str | None
    assignee: str | None
    escalated: bool
    reason: str
    weight: int
    recorded: bool


def _escalation_closure(queues: Mapping[str, QueueRow], names: set[str]) -> set[str]:
    seen = set()
    todo = [n for n in names if n in queues]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        up = queues[name].escalation_queue
        if up is not None and up in queues:
            todo.append(up)
    return seen


async def _calendar_set(
    conn: asyncpg.Connection,
    cache: RulesetCache,
    principal: Principal,
    queues: Sequence[QueueRow],
    agents: Sequence[AgentRow],
) -> CalendarSet | None:
    """The tenant's compiled calendars when a queue or agent names one (else ``None``)."""
    if not any(q.calendar for q in queues) and not any(a.calendar for a in agents):
        return None
    return await cache.calendars(conn, principal.tenant_id)


async def assign(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    ticket_ids: Sequence[str] = (),
    queue: str = "",
    limit: int = 0,
    at: datetime | None = None,
) -> list[AssignOutcome]:
    """Assign the stored tickets ``ticket_ids`` (or, given ``queue``, its open unassigned
    tickets, oldest first, ``limit`` at most: 0 is :data:`DEFAULT_ASSIGN_LIMIT`) to agents for
    the instant ``at`` (default now), sequentially in (``at``, ticket id) order, each to the
    eligible agent with the least weighted load (docs/routing.md). Records, per ticket whose
    queue or assignee changed (or that stays unassigned for a new reason), the events
    (``ASSIGNED``, ``QUEUE_CHANGED`` when escalated) and a history row. A resolved ticket, or
    one already assigned, is left as it is (reasons ``RESOLVED``, ``ALREADY_ASSIGNED``)."""
    principal.require_staff("assign tickets")
    when = _now(at)
    if bool(ticket_ids) == bool(queue):
        raise EffigateError("ticket_ids: give either ticket ids or a queue, not both or neither")
    if not 0 <= limit <= MAX_ASSIGN_LIMIT:
        raise EffigateError(f"limit: {limit} is not within 0..{MAX_ASSIGN_LIMIT}")
    ids = _unique_ids(ticket_ids) if ticket_ids else []
    async with store.transaction(principal) as conn:
        queues = {q.name: q for q in await stored.load_queues(conn)}
        if queue:
            if queue not in queues:
                raise NotFound("queue", queue, "is not a queue of this tenant")
            wanted = {queue}
        else:
            peek = await stored.load_ticket_queues(conn, ids)
            wanted = {q for q in peek.values() if q is not None}
        involved = _escalation_closure(queues, wanted)
        await stored.lock_queues(conn, sorted(involved))
        agents = await stored.lock_agents(conn, sorted(involved))
        if queue:
            ids = await stored.unassigned_ticket_ids(conn, queue, limit or DEFAULT_ASSIGN_LIMIT)
        tickets = await _tickets(conn, ids)
        return await _assign_locked(
            conn, cache, principal, tickets, list(queues.values()), agents, when
        )


async def _assign_locked(
    conn: asyncpg.Connection,
    cache: RulesetCache,
    principal: Principal,
    tickets: list[dict[str, Any]],
    queues: list[QueueRow],
    agents: list[AgentRow],
    at: datetime,
) -> list[AssignOutcome]:
    left: dict[str, AssignOutcome] = {}
    todo = []
    for t in tickets:
        if t["status"] == "RESOLVED":
            left[t["id"]] = AssignOutcome(
                t["id"], t["queue"], t["assignee"], False, RESOLVED, 0, False
            )
        elif t["assignee"] is not None:
            left[t["id"]] = AssignOutcome(
                t["id"], t["queue"], t["assignee"], False, ALREADY_ASSIGNED, 0, False
            )
        else:
            todo.append(t)
    outcomes: dict[str, AssignOutcome] = dict(left)
    if todo:
        held = await stored.open_assigned_tickets(conn, [a.id for a in agents])
        states, _ = await sla_states(conn, cache, principal, [*todo, *held], at)
        state = await _workload(conn, held, states)
        calendars = await _calendar_set(conn, cache, principal, queues, agents)
        table = routing_table(todo, assign_at=[at] * len(todo), **_sla_columns(todo, states))
        results, _ = routing.assign(
            table, [queue_of(q) for q in queues], [agent_of(a) for a in agents], calendars, state
        )
        outcomes.update(await _record_assignments(conn, principal, todo, results, at))
    return [outcomes[t["id"]] for t in tickets]


async def _workload(
    conn: asyncpg.Connection, held: Sequence[Mapping[str, Any]], states: Mapping[str, SlaState]
) -> routing.Workload:
    """The agents' workload at the call: open count and weighted load of their open assigned
    tickets, and their order of latest assignment in the history (-1: never)."""
    table = routing_table(
        held, assignee=[t["assignee"] for t in held], **_sla_columns(held, states)
    )
    loads = routing.workload(table)
    latest = await stored.last_assigned(conn)
    ranked = sorted(latest, key=lambda a: latest[a])
    rank = {a: i for i, a in enumerate(ranked)}
    agents = set(loads.agents) | set(rank)
    return routing.Workload(
        {
            a: routing.AgentLoad(loads.of(a).open_count, loads.of(a).load, rank.get(a, -1))
            for a in agents
        },
        len(ranked),
    )


async def _record_assignments(
    conn: asyncpg.Connection,
    principal: Principal,
    tickets: Sequence[Mapping[str, Any]],
    results: pa.Table,
    at: datetime,
) -> dict[str, AssignOutcome]:
    by_id = {t["id"]: t for t in tickets}
    latest = await stored.latest_history(conn, list(by_id))
    outcomes = {}
    history: list[HistoryRow] = []
    events: dict[str, list[tuple[str, str | None]]] = {}
    for r in results.to_pylist():
        t = by_id[r["ticket_id"]]
        final, agent, reason = r["queue"], r["assignee"], r["reason"]
        changes: list[tuple[str, str | None]] = []
        if final is not None and final != t["queue"]:
            changes.append(("QUEUE_CHANGED", final))
        if agent is not None:
            changes.append(("ASSIGNED", agent))
        record = final is not None and (
            bool(changes) or latest.get(t["id"]) != (final, None, reason)
        )
        if record:
            history.append(
                HistoryRow(
                    t["id"],
                    final,
                    agent,
                    reason,
                    escalated=r["escalated"],
                    weight=r["weight"] if agent is not None else None,
                )
            )
            events[t["id"]] = changes
        outcomes[t["id"]] = AssignOutcome(
            t["id"], final, agent, r["escalated"], reason, r["weight"], record
        )
    hids = await stored.insert_history(conn, history, at, principal.actor)
    await apply_changes(
        conn,
        principal,
        {
            row.ticket_id: [
                (event_id(hid, kind), kind, _event_instant(by_id[row.ticket_id], at), detail)
                for kind, detail in events[row.ticket_id]
            ]
            for hid, row in zip(hids, history, strict=True)
            if events[row.ticket_id]
        },
    )
    return outcomes


# reports ---------------------------------------------------------------------------------------


async def queue_depth(store: Store, principal: Principal) -> list[tuple[str, int, int]]:
    """``(queue, open tickets, of them unassigned)`` per queue (the tenant's queues and any
    queue an open ticket names), by name."""
    principal.require_staff("read queue depth")
    async with store.transaction(principal) as conn:
        return await stored.queue_depth(conn)


@dataclass(frozen=True)
class AgentWorkload:
    """One agent's workload: open assigned tickets, their summed work weight, how many are in
    SLA ``WARNING`` and how many ``BREACHED``."""

    agent_id: str
    name: str
    open_tickets: int
    load: int
    at_risk: int
    breached: int
    capacity: int
    active: bool


async def agent_workload(
    store: Store, cache: RulesetCache, principal: Principal, now: datetime | None = None
) -> tuple[list[AgentWorkload], datetime, pa.Table]:
    """Every agent's workload at ``now`` (default now), by id (an assignee that is not a
    stored agent is listed too, with capacity 0); the instant; the open tickets the SLA engine
    could not evaluate (counted with urgency 1)."""
    principal.require_staff("read agents' workload")
    at = _now(now)
    async with store.transaction(principal) as conn:
        agents = {a.id: a for a in await stored.load_agents(conn)}
        held = await stored.open_assigned_tickets(conn)
        states, failures = await sla_states(conn, cache, principal, held, at)
    table = routing_table(
        held, assignee=[t["assignee"] for t in held], **_sla_columns(held, states)
    )
    loads = routing.workload(table)
    risk: dict[str, list[int]] = {}
    for t in held:
        counts = risk.setdefault(t["assignee"], [0, 0])
        state = states.get(t["id"])
        if state is not None and state.status == "WARNING":
            counts[0] += 1
        if state is not None and state.status == "BREACHED":
            counts[1] += 1
    rows = []
    for agent_id in sorted(set(agents) | set(loads.agents), key=str.encode):
        a = agents.get(agent_id)
        load = loads.of(agent_id)
        at_risk, breached = risk.get(agent_id, [0, 0])
        rows.append(
            AgentWorkload(
                agent_id,
                "" if a is None else a.name,
                load.open_count,
                load.load,
                at_risk,
                breached,
                0 if a is None else a.capacity,
                False if a is None else a.active,
            )
        )
    return rows, at, failures


async def oldest_unassigned(
    store: Store, principal: Principal, now: datetime | None = None
) -> list[tuple[str, str, datetime, int, int]]:
    """Per queue with open unassigned tickets: ``(queue, oldest ticket, its created_at,
    wall-clock seconds it has waited at now, unassigned tickets)``, by queue."""
    principal.require_staff("read unassigned tickets")
    at = _now(now)
    async with store.transaction(principal) as conn:
        rows = await stored.oldest_unassigned(conn)
    return [
        (q, ticket, created, max(0, int((at - created).total_seconds())), waiting)
        for q, ticket, created, waiting in rows
    ]


@dataclass(frozen=True)
class RoutingReplay:
    """Proposed rules over stored tickets: how many were replayed, how many would move, and
    ``(from queue, to queue, tickets)`` per move (``from`` ``None``: no queue yet)."""

    tickets: int
    moved: int
    moves: list[tuple[str | None, str, int]]


async def replay_routing(
    store: Store,
    principal: Principal,
    body: Mapping[str, Any] | None = None,
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> RoutingReplay:
    """Route the stored tickets created in ``[start, end)`` with proposed rules (a JSON
    ``body``, or a stored ``version``) and with the tenant's current rules; nothing is
    stored. A ticket *moves* when the two send it to different queues (without current
    rules: when the proposed ones send it elsewhere than its stored queue). Moves by count
    (most first), then from and to queue (bytewise)."""
    principal.require_staff("replay routing")
    if (body is None) == (version is None):
        raise EffigateError(
            "proposed_rules_json: give proposed rules or a stored version (one of them)"
        )
    if start is not None and end is not None and end < start:
        raise EffigateError(f"end: {end.isoformat()!r} is before start ({start.isoformat()})")
    async with store.transaction(principal) as conn:
        if body is None:
            row = await stored.load_rules(conn, version)
            if row is None:
                raise NotFound("proposed_version", version, "is not a version of the routing rules")
            body = row.body
        proposed = parse_rules(body)
        current = await stored.load_rules(conn)
        tickets = await stored.tickets_created_between(conn, start, end)
    if not tickets:
        return RoutingReplay(0, 0, [])
    table = routing_table(tickets)
    to_queues = pc.cast(routing.route(table, proposed)["queue"], pa.string()).to_pylist()
    if current is None:
        from_queues = [t["queue"] for t in tickets]
    else:
        routes = routing.route(table, parse_rules(current.body))
        from_queues = pc.cast(routes["queue"], pa.string()).to_pylist()
    counts: dict[tuple[str | None, str], int] = {}
    for source, to in zip(from_queues, to_queues, strict=True):
        if to != source:
            counts[(source, to)] = counts.get((source, to), 0) + 1
    moves = sorted(
        ((f, to, n) for (f, to), n in counts.items()),
        key=lambda m: (-m[2], (m[0] or "").encode(), m[1].encode()),
    )
    return RoutingReplay(len(tickets), sum(n for *_, n in moves), moves)
