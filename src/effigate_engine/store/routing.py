"""Queues, agents, routing rules and the assignment history: the routing service's SQL.

Queues and agents are upserted by name / id; the tenant's routing rules are one live set with
numbered immutable versions (the database numbers and keeps them, migration 0013); the
``assignments`` table is the append-only history of where the service routed each ticket and
to whom it assigned it (the latest row of a ticket, by id, is where it left it). Every
function runs on a connection inside a tenant-bound transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class QueueRow:
    """A stored queue: ``calendar`` names a calendar of the tenant (``None``: always open);
    ``escalation_queue`` is where a ticket at risk goes when no agent here can take it."""

    name: str
    calendar: str | None = None
    escalation_queue: str | None = None


@dataclass(frozen=True)
class AgentRow:
    """A stored agent. ``skills`` ``None``: any job type; ``capacity``: most open tickets
    assigned at once; ``calendar`` ``None``: the queue's calendar."""

    id: str
    name: str
    support_levels: tuple[str, ...]
    skills: tuple[str, ...] | None
    queues: tuple[str, ...]
    capacity: int
    calendar: str | None = None
    active: bool = True


@dataclass(frozen=True)
class RulesRow:
    """The tenant's routing rules at one version (``body``: ``RoutingRules.to_json()``)."""

    version: int
    body: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class HistoryRow:
    """One row of the assignment history to insert: the ticket's queue and agent after the
    change (``agent_id`` ``None``: unassigned), the rule version and rule index that routed it,
    the reason, whether it was escalated, the weight added to the agent's load."""

    ticket_id: str
    queue: str
    agent_id: str | None
    reason: str
    rule_version: int | None = None
    rule: int | None = None
    escalated: bool = False
    weight: int | None = None


def _queue(row: asyncpg.Record) -> QueueRow:
    return QueueRow(row["name"], row["calendar"], row["escalation_queue"])


def _agent(row: asyncpg.Record) -> AgentRow:
    skills = row["skills"]
    return AgentRow(
        row["id"],
        row["name"],
        tuple(row["support_levels"]),
        None if skills is None else tuple(skills),
        tuple(row["queues"]),
        row["capacity"],
        row["calendar"],
        row["active"],
    )


# queues ---------------------------------------------------------------------------------------


async def upsert_queues(conn: asyncpg.Connection, queues: Sequence[QueueRow]) -> None:
    """Store each queue (a new name is created, a known one takes the values given); an
    escalation queue must be a queue of the tenant by the end of the transaction."""
    await conn.executemany(
        """INSERT INTO queues (name, calendar, escalation_queue) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id, name) DO UPDATE SET calendar = EXCLUDED.calendar,
               escalation_queue = EXCLUDED.escalation_queue, updated_at = now()
           WHERE (queues.calendar, queues.escalation_queue) IS DISTINCT FROM
               (EXCLUDED.calendar, EXCLUDED.escalation_queue)""",
        [(q.name, q.calendar, q.escalation_queue) for q in queues],
    )


async def load_queues(conn: asyncpg.Connection) -> list[QueueRow]:
    """Every queue of the tenant, by name."""
    rows = await conn.fetch(
        'SELECT name, calendar, escalation_queue FROM queues ORDER BY name COLLATE "C"'
    )
    return [_queue(r) for r in rows]


async def lock_queues(conn: asyncpg.Connection, names: Sequence[str]) -> list[str]:
    """Lock the named queues (``FOR UPDATE``, in name order, so two callers never deadlock)
    until the transaction ends: assignments into them are serialised. The names found."""
    rows = await conn.fetch(
        """SELECT name FROM queues WHERE name = ANY($1::text[])
           ORDER BY name COLLATE "C" FOR UPDATE""",
        list(names),
    )
    return [r["name"] for r in rows]


# agents ---------------------------------------------------------------------------------------


async def upsert_agents(conn: asyncpg.Connection, agents: Sequence[AgentRow]) -> None:
    """Store each agent (created, or its values replaced); the database refuses a queue that
    is not the tenant's."""
    await conn.executemany(
        """INSERT INTO agents (id, name, support_levels, skills, queues, capacity, calendar,
               active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name,
               support_levels = EXCLUDED.support_levels, skills = EXCLUDED.skills,
               queues = EXCLUDED.queues, capacity = EXCLUDED.capacity,
               calendar = EXCLUDED.calendar, active = EXCLUDED.active, updated_at = now()
           WHERE (agents.name, agents.support_levels, agents.skills, agents.queues,
                  agents.capacity, agents.calendar, agents.active) IS DISTINCT FROM
                 (EXCLUDED.name, EXCLUDED.support_levels, EXCLUDED.skills, EXCLUDED.queues,
                  EXCLUDED.capacity, EXCLUDED.calendar, EXCLUDED.active)""",
        [
            (
                a.id,
                a.name,
                list(a.support_levels),
                None if a.skills is None else list(a.skills),
                list(a.queues),
                a.capacity,
                a.calendar,
                a.active,
            )
            for a in agents
        ],
    )


_AGENT_COLUMNS = "id, name, support_levels, skills, queues, capacity, calendar, active"


async def load_agents(conn: asyncpg.Connection) -> list[AgentRow]:
    """Every agent of the tenant, by id (bytewise)."""
    rows = await conn.fetch(f'SELECT {_AGENT_COLUMNS} FROM agents ORDER BY id COLLATE "C"')
    return [_agent(r) for r in rows]


async def lock_agents(conn: asyncpg.Connection, queues: Sequence[str]) -> list[AgentRow]:
    """The agents working any of ``queues``, locked (``FOR UPDATE``, in id order) until the
    transaction ends: an agent's capacity is shared by all its queues, so two assignments
    into different queues with an agent in common are serialised too."""
    rows = await conn.fetch(
        f"""SELECT {_AGENT_COLUMNS} FROM agents WHERE queues && $1::text[]
            ORDER BY id COLLATE "C" FOR UPDATE""",
        list(queues),
    )
    return [_agent(r) for r in rows]


# routing rules --------------------------------------------------------------------------------


async def put_rules(conn: asyncpg.Connection, body: dict[str, Any]) -> int:
    """Store ``body`` as the tenant's routing rules; the version (a body equal to the current
    one keeps its version: nothing new is stored)."""
    return int(
        await conn.fetchval(
            """INSERT INTO routing_rules (body) VALUES ($1::jsonb)
               ON CONFLICT (tenant_id) DO UPDATE SET body = EXCLUDED.body
               RETURNING version""",
            json.dumps(body),
        )
    )


async def load_rules(conn: asyncpg.Connection, version: int | None = None) -> RulesRow | None:
    """The tenant's routing rules at ``version`` (default: current); ``None`` if there is no
    such version."""
    if version is None:
        row = await conn.fetchrow(
            """SELECT v.version, v.body, v.created_at FROM routing_rules r
               JOIN routing_rule_versions v ON v.tenant_id = r.tenant_id
                   AND v.version = r.version"""
        )
    else:
        row = await conn.fetchrow(
            "SELECT version, body, created_at FROM routing_rule_versions WHERE version = $1",
            version,
        )
    if row is None:
        return None
    return RulesRow(row["version"], json.loads(row["body"]), row["created_at"])


async def current_rules_version(conn: asyncpg.Connection) -> int | None:
    """The current version of the tenant's routing rules (``None``: none stored)."""
    return await conn.fetchval("SELECT version FROM routing_rules")


# tickets as routing sees them -----------------------------------------------------------------

_TICKET_COLUMNS = """t.id, t.client_id, t.contract_id, t.priority, t.status, t.created_at,
    t.support_level, t.job_type, t.after_hours, t.channel, t.subject, t.requester, t.queue,
    t.assignee, t.tags, c.sla_policy_id"""
_TICKET_FROM = (
    "tickets t LEFT JOIN contracts c ON c.tenant_id = t.tenant_id AND c.id = t.contract_id"
)


async def load_tickets(conn: asyncpg.Connection, ticket_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The stored tickets ``ticket_ids`` (those that exist) with their contract's SLA policy
    id (``sla_policy_id``), by id, each locked (``FOR UPDATE``) until the transaction ends."""
    rows = await conn.fetch(
        f"""SELECT {_TICKET_COLUMNS} FROM {_TICKET_FROM} WHERE t.id = ANY($1::text[])
            ORDER BY t.id COLLATE "C" FOR UPDATE OF t""",
        list(ticket_ids),
    )
    return [dict(r) for r in rows]


async def load_ticket_queues(
    conn: asyncpg.Connection, ticket_ids: Sequence[str]
) -> dict[str, str | None]:
    """``ticket -> queue`` of the stored tickets ``ticket_ids`` (read without a lock: what
    queues an assignment must lock before it reads the tickets again)."""
    rows = await conn.fetch(
        "SELECT id, queue FROM tickets WHERE id = ANY($1::text[])", list(ticket_ids)
    )
    return {r["id"]: r["queue"] for r in rows}


async def unassigned_ticket_ids(conn: asyncpg.Connection, queue: str, limit: int) -> list[str]:
    """Up to ``limit`` open, unassigned tickets of ``queue``, oldest first (then by id)."""
    rows = await conn.fetch(
        """SELECT id FROM tickets WHERE queue = $1 AND assignee IS NULL
               AND status <> 'RESOLVED'
           ORDER BY created_at, id COLLATE "C" LIMIT $2""",
        queue,
        limit,
    )
    return [r["id"] for r in rows]


async def open_assigned_tickets(
    conn: asyncpg.Connection, agent_ids: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The open tickets assigned to an agent (of ``agent_ids`` if given), by id, with their
    contract's SLA policy id."""
    rows = await conn.fetch(
        f"""SELECT {_TICKET_COLUMNS} FROM {_TICKET_FROM}
            WHERE t.assignee IS NOT NULL AND t.status <> 'RESOLVED'
                AND ($1::text[] IS NULL OR t.assignee = ANY($1::text[]))
            ORDER BY t.id COLLATE "C\"""",
        None if agent_ids is None else list(agent_ids),
    )
    return [dict(r) for r in rows]


async def tickets_created_between(
    conn: asyncpg.Connection, start: datetime | None, end: datetime | None
) -> list[dict[str, Any]]:
    """The stored tickets created in ``[start, end)`` (an open end: unbounded), by id."""
    rows = await conn.fetch(
        f"""SELECT {_TICKET_COLUMNS} FROM {_TICKET_FROM}
            WHERE ($1::timestamptz IS NULL OR t.created_at >= $1)
                AND ($2::timestamptz IS NULL OR t.created_at < $2)
            ORDER BY t.id COLLATE "C\"""",
        start,
        end,
    )
    return [dict(r) for r in rows]


# the assignment history -----------------------------------------------------------------------


async def latest_history(
    conn: asyncpg.Connection, ticket_ids: Sequence[str]
) -> dict[str, tuple[str, str | None, str]]:
    """``ticket -> (queue, agent, reason)`` of the latest history row of each of
    ``ticket_ids`` that has one."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (ticket_id) ticket_id, queue, agent_id, reason FROM assignments
           WHERE ticket_id = ANY($1::text[]) ORDER BY ticket_id, id DESC""",
        list(ticket_ids),
    )
    return {r["ticket_id"]: (r["queue"], r["agent_id"], r["reason"]) for r in rows}


async def insert_history(
    conn: asyncpg.Connection, rows: Sequence[HistoryRow], at: datetime, actor: str
) -> list[int]:
    """Append ``rows`` to the history (in order: ids increase); their ids."""
    if not rows:
        return []
    inserted = await conn.fetch(
        """INSERT INTO assignments (ticket_id, queue, agent_id, reason, rule_version, rule,
               escalated, weight, at, actor)
           SELECT r.ticket_id, r.queue, r.agent_id, r.reason, r.rule_version, r.rule,
               r.escalated, r.weight, $9, $10
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
               $7::bool[], $8::int[]) WITH ORDINALITY
               AS r(ticket_id, queue, agent_id, reason, rule_version, rule, escalated, weight, n)
           ORDER BY r.n
           RETURNING id""",
        [r.ticket_id for r in rows],
        [r.queue for r in rows],
        [r.agent_id for r in rows],
        [r.reason for r in rows],
        [r.rule_version for r in rows],
        [r.rule for r in rows],
        [r.escalated for r in rows],
        [r.weight for r in rows],
        at,
        actor,
    )
    return sorted(r["id"] for r in inserted)


async def last_assigned(conn: asyncpg.Connection) -> dict[str, int]:
    """``agent -> id of its latest assignment`` (rows naming an agent), for every agent
    ever assigned: the order in which agents were last given a ticket."""
    rows = await conn.fetch(
        """SELECT agent_id, max(id) AS last FROM assignments
           WHERE agent_id IS NOT NULL AND weight IS NOT NULL GROUP BY agent_id"""
    )
    return {r["agent_id"]: r["last"] for r in rows}


# reports --------------------------------------------------------------------------------------


async def queue_depth(conn: asyncpg.Connection) -> list[tuple[str, int, int]]:
    """``(queue, open tickets, of them unassigned)`` for every queue of the tenant and every
    queue an open ticket names, by queue name."""
    rows = await conn.fetch(
        """SELECT q.name, count(t.id) AS open,
               count(t.id) FILTER (WHERE t.assignee IS NULL) AS unassigned
           FROM (SELECT name FROM queues UNION
                 SELECT DISTINCT queue FROM tickets
                 WHERE queue IS NOT NULL AND status <> 'RESOLVED') q
           LEFT JOIN tickets t ON t.queue = q.name AND t.status <> 'RESOLVED'
           GROUP BY q.name ORDER BY q.name COLLATE "C\""""
    )
    return [(r["name"], r["open"], r["unassigned"]) for r in rows]


async def oldest_unassigned(
    conn: asyncpg.Connection,
) -> list[tuple[str, str, datetime, int]]:
    """``(queue, ticket, created_at, unassigned tickets)`` per queue with open unassigned
    tickets: the oldest of them (by creation, then id), by queue name."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (queue) queue, id, created_at,
               count(*) OVER (PARTITION BY queue) AS waiting
           FROM tickets WHERE queue IS NOT NULL AND assignee IS NULL
               AND status <> 'RESOLVED'
           ORDER BY queue, created_at, id COLLATE "C\""""
    )
    rows = sorted(rows, key=lambda r: r["queue"].encode())
    return [(r["queue"], r["id"], r["created_at"], r["waiting"]) for r in rows]
