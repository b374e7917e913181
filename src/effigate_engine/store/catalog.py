"""Clients, calendars and SLA policies of the bound tenant: the catalog's SQL.

A calendar or policy is stored as a validated JSON body under a name unique among the tenant's
live ones, with numbered immutable versions (the database numbers and keeps them, see
migration 0008). Every function runs on a connection inside a tenant-bound transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from effigate_engine.calendar import Calendar
from effigate_engine.sla.policy import Policy
from effigate_engine.store.tenant import TenantKey, verify_bound


@dataclass(frozen=True)
class CalendarRecord:
    """A stored business-hours calendar at one of its versions (``body`` is
    :meth:`Calendar.to_json`). ``id`` names the calendar across its versions."""

    id: int
    name: str
    body: dict[str, Any]
    version: int = 1

    def calendar(self) -> Calendar:
        """The calendar, named by its stored name."""
        return Calendar.from_json({**self.body, "name": self.name})


@dataclass(frozen=True)
class PolicyRecord:
    """A stored SLA policy at one of its versions (``body`` is :meth:`Policy.to_json`) and
    that version's default calendar. ``id`` names the policy across its versions."""

    id: int
    name: str
    calendar_id: int
    body: dict[str, Any]
    version: int = 1

    def policy(self) -> Policy:
        """The policy, named by its stored name."""
        return Policy.from_json({**self.body, "name": self.name})


def _calendar(row: asyncpg.Record) -> CalendarRecord:
    return CalendarRecord(row["id"], row["name"], json.loads(row["body"]), row["version"])


def _policy(row: asyncpg.Record) -> PolicyRecord:
    return PolicyRecord(
        row["id"], row["name"], row["calendar_id"], json.loads(row["body"]), row["version"]
    )


# clients ------------------------------------------------------------------------------------


async def insert_client(conn: asyncpg.Connection, name: str) -> int:
    """Store a client named ``name``; its id."""
    return int(await conn.fetchval("INSERT INTO clients (name) VALUES ($1) RETURNING id", name))


async def load_clients(conn: asyncpg.Connection, client_id: int | None) -> list[tuple[int, str]]:
    """``(id, name)`` of every client (only ``client_id`` when given), by id."""
    rows = await conn.fetch(
        "SELECT id, name FROM clients WHERE $1::bigint IS NULL OR id = $1 ORDER BY id", client_id
    )
    return [(r["id"], r["name"]) for r in rows]


async def client_exists(conn: asyncpg.Connection, client_id: int) -> bool:
    """Whether ``client_id`` is a client of the tenant."""
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)", client_id)
    )


async def contract_exists(conn: asyncpg.Connection, contract_id: int) -> bool:
    """Whether ``contract_id`` is a contract of the tenant."""
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM contracts WHERE id = $1)", contract_id)
    )


async def contract_policy_id(conn: asyncpg.Connection, contract_id: int) -> int | None:
    """The SLA policy of contract ``contract_id`` (``None``: none, or no such contract)."""
    value = await conn.fetchval("SELECT sla_policy_id FROM contracts WHERE id = $1", contract_id)
    return None if value is None else int(value)


# calendars ----------------------------------------------------------------------------------


async def insert_calendar(conn: asyncpg.Connection, name: str, body: dict[str, Any]) -> int | None:
    """Store ``body`` as version 1 of a calendar named ``name``; its id, or ``None`` when a
    live calendar already has that name (the database keeps one per name, so of two racing
    inserts exactly one wins)."""
    value = await conn.fetchval(
        "INSERT INTO calendars (name, body) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (tenant_id, name) WHERE retired_at IS NULL DO NOTHING RETURNING id",
        name,
        json.dumps(body),
    )
    return None if value is None else int(value)


async def live_calendar_id(conn: asyncpg.Connection, name: str) -> int | None:
    """The id of the live calendar named ``name``."""
    return await conn.fetchval(
        "SELECT id FROM calendars WHERE name = $1 AND retired_at IS NULL", name
    )


async def update_calendar(
    conn: asyncpg.Connection, name: str, body: dict[str, Any]
) -> tuple[int, int] | None:
    """Store ``body`` as the live calendar ``name``'s next version (the database keeps a
    version equal to the current one as it is); its ``(id, version)``, ``None`` if no such
    calendar."""
    row = await conn.fetchrow(
        "UPDATE calendars SET body = $2::jsonb WHERE name = $1 AND retired_at IS NULL"
        " RETURNING id, version",
        name,
        json.dumps(body),
    )
    return None if row is None else (row["id"], row["version"])


async def retire_calendar(conn: asyncpg.Connection, calendar_id: int) -> bool:
    """Retire the live calendar ``calendar_id``; whether there was one (the database refuses
    while a policy or contract uses it)."""
    return (
        await conn.fetchval(
            "UPDATE calendars SET retired_at = now() WHERE id = $1 AND retired_at IS NULL"
            " RETURNING id",
            calendar_id,
        )
        is not None
    )


async def load_calendar(conn: asyncpg.Connection, calendar_id: int) -> CalendarRecord | None:
    """The live calendar ``calendar_id`` at its current version."""
    row = await conn.fetchrow(
        "SELECT id, name, body, version FROM calendars WHERE id = $1 AND retired_at IS NULL",
        calendar_id,
    )
    return None if row is None else _calendar(row)


async def load_calendar_body(
    conn: asyncpg.Connection, calendar_id: int, version: int
) -> dict[str, Any] | None:
    """The body of calendar ``calendar_id`` at an earlier ``version``."""
    body = await conn.fetchval(
        "SELECT body FROM calendar_versions WHERE calendar_id = $1 AND version = $2",
        calendar_id,
        version,
    )
    return None if body is None else json.loads(body)


async def load_calendars(conn: asyncpg.Connection) -> list[CalendarRecord]:
    """Every live calendar of the tenant at its current version, by id."""
    rows = await conn.fetch(
        "SELECT id, name, body, version FROM calendars WHERE retired_at IS NULL ORDER BY id"
    )
    return [_calendar(r) for r in rows]


#: The live calendars of the bound tenant as ``id:version`` (ids ascending): it changes exactly
#: when a calendar is created, updated (a new version) or deleted.
CALENDARS_KEY_SQL = (
    "SELECT coalesce(string_agg(id::text || ':' || version::text, ',' ORDER BY id), '')"
    " FROM calendars WHERE retired_at IS NULL"
)


def calendars_key(records: list[CalendarRecord]) -> str:
    """The key of :data:`CALENDARS_KEY_SQL` for ``records`` (by id)."""
    return ",".join(f"{r.id}:{r.version}" for r in records)


async def load_calendars_key(conn: asyncpg.Connection) -> str:
    """The :data:`CALENDARS_KEY_SQL` of the tenant ('' when it has no live calendar)."""
    return str(await conn.fetchval(CALENDARS_KEY_SQL))


# policies -----------------------------------------------------------------------------------


async def insert_policy(
    conn: asyncpg.Connection, name: str, calendar_id: int, body: dict[str, Any]
) -> int | None:
    """Store ``body`` as version 1 of a policy named ``name``; its id, ``None`` when a live
    policy already has that name."""
    value = await conn.fetchval(
        "INSERT INTO sla_policies (name, calendar_id, body) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT (tenant_id, name) WHERE retired_at IS NULL DO NOTHING RETURNING id",
        name,
        calendar_id,
        json.dumps(body),
    )
    return None if value is None else int(value)


async def live_policy_id(conn: asyncpg.Connection, name: str) -> int | None:
    """The id of the live SLA policy named ``name``."""
    return await conn.fetchval(
        "SELECT id FROM sla_policies WHERE name = $1 AND retired_at IS NULL", name
    )


async def update_policy(
    conn: asyncpg.Connection, name: str, calendar_id: int | None, body: dict[str, Any]
) -> tuple[int, int, int] | None:
    """Store ``body`` (and ``calendar_id``, default: the current one) as the live policy
    ``name``'s next version; its ``(id, version, calendar_id)``, ``None`` if no such policy."""
    row = await conn.fetchrow(
        "UPDATE sla_policies SET body = $2::jsonb, calendar_id = coalesce($3, calendar_id)"
        " WHERE name = $1 AND retired_at IS NULL RETURNING id, version, calendar_id",
        name,
        json.dumps(body),
        calendar_id,
    )
    return None if row is None else (row["id"], row["version"], row["calendar_id"])


async def retire_policy(conn: asyncpg.Connection, policy_id: int) -> bool:
    """Retire the live policy ``policy_id``; whether there was one."""
    return (
        await conn.fetchval(
            "UPDATE sla_policies SET retired_at = now() WHERE id = $1 AND retired_at IS NULL"
            " RETURNING id",
            policy_id,
        )
        is not None
    )


async def load_policy(conn: asyncpg.Connection, policy_id: int) -> PolicyRecord | None:
    """The live SLA policy ``policy_id`` at its current version."""
    row = await conn.fetchrow(
        "SELECT id, name, calendar_id, body, version FROM sla_policies"
        " WHERE id = $1 AND retired_at IS NULL",
        policy_id,
    )
    return None if row is None else _policy(row)


async def load_policy_version(
    conn: asyncpg.Connection, current: PolicyRecord, version: int
) -> PolicyRecord | None:
    """The policy of ``current`` at an earlier ``version``."""
    row = await conn.fetchrow(
        "SELECT calendar_id, body FROM sla_policy_versions WHERE policy_id = $1 AND version = $2",
        current.id,
        version,
    )
    if row is None:
        return None
    return PolicyRecord(
        current.id, current.name, row["calendar_id"], json.loads(row["body"]), version
    )


async def load_policies(conn: asyncpg.Connection) -> list[PolicyRecord]:
    """Every live SLA policy of the tenant at its current version, by id."""
    rows = await conn.fetch(
        "SELECT id, name, calendar_id, body, version FROM sla_policies"
        " WHERE retired_at IS NULL ORDER BY id"
    )
    return [_policy(r) for r in rows]


async def load_policy_versions(conn: asyncpg.Connection, policy_id: int) -> tuple[int, str] | None:
    """The current version of the live policy ``policy_id`` and the tenant's calendars key
    (:data:`CALENDARS_KEY_SQL`), in one query; ``None`` if no such policy."""
    row = await conn.fetchrow(
        f"SELECT version, ({CALENDARS_KEY_SQL}) AS calendars FROM sla_policies"
        " WHERE id = $1 AND retired_at IS NULL",
        policy_id,
    )
    return None if row is None else (int(row["version"]), str(row["calendars"]))


async def load_policy_versions_bound(
    conn: asyncpg.Connection, key: TenantKey, policy_id: int
) -> tuple[int | None, str]:
    """:func:`load_policy_versions` for the tenant of ``key``'s token in one statement on a
    connection outside any transaction (it binds its own, see migration 0010): the policy's
    current version (``None``: no live policy of that id) and the calendars key."""
    row = await conn.fetchrow(
        "SELECT * FROM effigate_policy_versions($1, $2)", key.token, policy_id
    )
    verify_bound(row["tenant_id"], key)
    return row["policy_version"], row["calendars"]
