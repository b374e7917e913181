"""The tenant's routing setup: queues, agents and routing rules (numbered immutable
versions), stored and read back. Every operation is staff-only: a portal token is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from effigate_engine.errors import EffigateError
from effigate_engine.routing import Agent, Queue, RoutingRules
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.sla.policy import SUPPORT_LEVELS
from effigate_engine.store import catalog as stored_catalog
from effigate_engine.store import routing as stored
from effigate_engine.store.database import Store
from effigate_engine.store.routing import AgentRow, QueueRow, RulesRow

__all__ = ["AgentRow", "QueueRow", "RulesRow"]


def queue_row(queue: Queue) -> QueueRow:
    """The stored form of a queue."""
    return QueueRow(queue.name, queue.calendar, queue.escalation_queue)


def agent_row(agent: Agent) -> AgentRow:
    """The stored form of an agent (sets sorted)."""
    return AgentRow(
        agent.id,
        agent.name,
        tuple(sorted(agent.support_levels, key=SUPPORT_LEVELS.index)),
        None if agent.skills is None else tuple(sorted(agent.skills)),
        tuple(sorted(agent.queues)),
        agent.capacity,
        agent.calendar,
        agent.active,
    )


def queue_of(row: QueueRow) -> Queue:
    """The engine's queue of a stored row."""
    return Queue(row.name, row.calendar, row.escalation_queue)


def agent_of(row: AgentRow) -> Agent:
    """The engine's agent of a stored row."""
    return Agent(
        row.id,
        row.name,
        frozenset(row.support_levels),
        None if row.skills is None else frozenset(row.skills),
        frozenset(row.queues),
        row.capacity,
        row.calendar,
        row.active,
    )


def _refuse_repeats(path: str, field: str, keys: Sequence[str]) -> None:
    """Refuse a key given twice in one call, naming its second position."""
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise EffigateError(f"{path}[{i}].{field}: {key!r} is given twice")
        seen.add(key)


async def _check_calendars(
    conn: asyncpg.Connection, named: Sequence[tuple[str, str | None]]
) -> None:
    """Refuse a calendar name (``(field path, name)``) that is not a live calendar of the
    tenant."""
    wanted = [(path, name) for path, name in named if name is not None]
    if not wanted:
        return
    live = {c.name for c in await stored_catalog.load_calendars(conn)}
    for path, name in wanted:
        if name not in live:
            known = ", ".join(sorted(live)) or "none stored"
            raise NotFound(path, name, f"is not a calendar of this tenant ({known})")


async def put_queues(store: Store, principal: Principal, queues: Sequence[Queue]) -> list[QueueRow]:
    """Create or replace ``queues`` by name in one transaction; every queue of the tenant
    afterwards. An escalation queue must be one of ``queues`` or already stored; a calendar a
    live calendar of the tenant."""
    principal.require_staff("change queues")
    names = [q.name for q in queues]
    _refuse_repeats("queues", "name", names)
    async with store.transaction(principal) as conn:
        await _check_calendars(
            conn, [(f"queues[{i}].calendar", q.calendar) for i, q in enumerate(queues)]
        )
        known = {q.name for q in await stored.load_queues(conn)} | set(names)
        for i, q in enumerate(queues):
            if q.escalation_queue is not None and q.escalation_queue not in known:
                raise NotFound(
                    f"queues[{i}].escalation_queue",
                    q.escalation_queue,
                    "is not a queue of this tenant: store it first or in the same call",
                )
        await stored.upsert_queues(conn, [queue_row(q) for q in queues])
        return await stored.load_queues(conn)


async def list_queues(store: Store, principal: Principal) -> list[QueueRow]:
    """Every queue of the tenant, by name."""
    principal.require_staff("read queues")
    async with store.transaction(principal) as conn:
        return await stored.load_queues(conn)


async def put_agents(store: Store, principal: Principal, agents: Sequence[Agent]) -> list[AgentRow]:
    """Create or replace ``agents`` by id in one transaction; every agent of the tenant
    afterwards. Their queues must be stored queues, their calendars live calendars."""
    principal.require_staff("change agents")
    _refuse_repeats("agents", "id", [a.id for a in agents])
    async with store.transaction(principal) as conn:
        await _check_calendars(
            conn, [(f"agents[{i}].calendar", a.calendar) for i, a in enumerate(agents)]
        )
        known = {q.name for q in await stored.load_queues(conn)}
        for i, agent in enumerate(agents):
            for name in sorted(agent.queues):
                if name not in known:
                    raise NotFound(f"agents[{i}].queues", name, "is not a queue of this tenant")
        await stored.upsert_agents(conn, [agent_row(a) for a in agents])
        return await stored.load_agents(conn)


async def list_agents(store: Store, principal: Principal) -> list[AgentRow]:
    """Every agent of the tenant, by id."""
    principal.require_staff("read agents")
    async with store.transaction(principal) as conn:
        return await stored.load_agents(conn)


def parse_rules(body: Mapping[str, Any]) -> RoutingRules:
    """Validate a routing-rules JSON object (:class:`~effigate_engine.routing.RoutingError`
    names the field path: ``rules[2].match.priority``)."""
    return RoutingRules.from_json(body)


def _check_rule_queues(rules: RoutingRules, known: set[str]) -> None:
    if rules.fallback_queue not in known:
        raise NotFound("fallback_queue", rules.fallback_queue, "is not a queue of this tenant")
    for i, rule in enumerate(rules.rules):
        if rule.queue not in known:
            raise NotFound(f"rules[{i}].queue", rule.queue, "is not a queue of this tenant")


async def put_rules(store: Store, principal: Principal, body: Mapping[str, Any]) -> RulesRow:
    """Validate ``body`` and store it as the next version of the tenant's routing rules (equal
    to the current version: nothing new is stored, that version is returned). Every queue the
    rules name must be stored."""
    principal.require_staff("change routing rules")
    rules = parse_rules(body)
    async with store.transaction(principal) as conn:
        _check_rule_queues(rules, {q.name for q in await stored.load_queues(conn)})
        version = await stored.put_rules(conn, rules.to_json())
        row = await stored.load_rules(conn, version)
    assert row is not None
    return row


async def get_rules(store: Store, principal: Principal, version: int | None = None) -> RulesRow:
    """The tenant's routing rules at ``version`` (default: current)."""
    principal.require_staff("read routing rules")
    if version is not None and version < 1:
        raise EffigateError(f"version: {version} is not a version number (1, 2, …; 0: current)")
    async with store.transaction(principal) as conn:
        row = await stored.load_rules(conn, version)
        if row is None:
            current = await stored.current_rules_version(conn)
    if row is None:
        if current is None:
            raise NotFound("routing_rules", None, "none stored for this tenant; put them first")
        raise NotFound("version", version, f"is not a version of the routing rules (1–{current})")
    return row


async def live_rules(conn: asyncpg.Connection) -> RulesRow:
    """The tenant's current routing rules; refused when none are stored."""
    row = await stored.load_rules(conn)
    if row is None:
        raise FailedPrecondition(
            "routing_rules", None, "none stored for this tenant: put routing rules first"
        )
    return row
