"""Clients, calendars and SLA policies of a tenant: stored as validated JSON bodies.

A calendar or policy is a name, unique among the tenant's live ones, with numbered immutable
versions (an update is a new version; the database numbers and keeps them). Deleting retires
it: it leaves every list and lookup, keeps its history, and frees its name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from effigate_engine.calendar import Calendar
from effigate_engine.errors import EffigateError
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import AlreadyExists, NotFound
from effigate_engine.sla.policy import Policy
from effigate_engine.store.database import Store


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


async def create_client(store: Store, principal: Principal, name: str) -> int:
    """Create a client of the tenant; returns its id."""
    principal.require_staff("create clients")
    async with store.transaction(principal) as conn:
        return int(await conn.fetchval("INSERT INTO clients (name) VALUES ($1) RETURNING id", name))


async def create_calendar(
    store: Store, principal: Principal, name: str, body: dict[str, Any]
) -> CalendarRecord:
    """Validate ``body`` (calendar JSON, see ``docs/calendars``) and store it under ``name`` as
    version 1. A name the tenant already uses is :class:`AlreadyExists` (the database keeps
    one live calendar per name, so of two racing creates exactly one wins)."""
    principal.require_staff("create calendars")
    stored = _calendar_body(name, body)
    async with store.transaction(principal) as conn:
        calendar_id = await conn.fetchval(
            "INSERT INTO calendars (name, body) VALUES ($1, $2::jsonb)"
            " ON CONFLICT (tenant_id, name) WHERE retired_at IS NULL DO NOTHING RETURNING id",
            name,
            json.dumps(stored),
        )
        if calendar_id is None:
            existing = await conn.fetchval(_LIVE_CALENDAR_ID, name)
            raise AlreadyExists(
                "name",
                name,
                f"is already calendar {existing} of this tenant: update it"
                " (UpdateCalendar) to store a new version, or choose another name",
            )
    return CalendarRecord(int(calendar_id), name, stored, 1)


async def update_calendar(
    store: Store, principal: Principal, name: str, body: dict[str, Any]
) -> CalendarRecord:
    """Store ``body`` as the next version of the calendar ``name``; the earlier versions are
    kept. A body equal to the current version's stores nothing and returns that version (so
    a re-sent update never adds a version)."""
    principal.require_staff("update calendars")
    stored = _calendar_body(name, body)
    async with store.transaction(principal) as conn:
        row = await conn.fetchrow(
            "UPDATE calendars SET body = $2::jsonb WHERE name = $1 AND retired_at IS NULL"
            " RETURNING id, version",
            name,
            json.dumps(stored),
        )
    if row is None:
        raise NotFound("name", name, "is not a calendar of this tenant; create it first")
    return CalendarRecord(row["id"], name, stored, row["version"])


async def delete_calendar(store: Store, principal: Principal, calendar_id: int) -> None:
    """Retire the calendar ``calendar_id``: it leaves lists, lookups and the tenant's calendar
    set, its history is kept and its name may be used again. Refused (by the database, whatever
    runs concurrently) while a policy or a contract uses it, naming them."""
    principal.require_staff("delete calendars")
    async with store.transaction(principal) as conn:
        retired = await conn.fetchval(
            "UPDATE calendars SET retired_at = now() WHERE id = $1 AND retired_at IS NULL"
            " RETURNING id",
            calendar_id,
        )
    if retired is None:
        raise NotFound("calendar_id", calendar_id, "is not a calendar of this tenant")


_LIVE_CALENDAR_ID = "SELECT id FROM calendars WHERE name = $1 AND retired_at IS NULL"
_LIVE_POLICY_ID = "SELECT id FROM sla_policies WHERE name = $1 AND retired_at IS NULL"


def _check_version(version: int | None) -> None:
    if version is not None and version < 1:
        raise EffigateError(f"version: {version} is not a version number (1, 2, …; 0: current)")


def _calendar_body(name: str, body: dict[str, Any]) -> dict[str, Any]:
    if not name:
        raise EffigateError("name: '' is empty")
    return Calendar.from_json({**body, "name": name}).to_json()


def _policy_body(name: str, body: dict[str, Any]) -> dict[str, Any]:
    if not name:
        raise EffigateError("name: '' is empty")
    return Policy.from_json({**body, "name": name}).to_json()


async def fetch_calendar(
    conn: asyncpg.Connection, calendar_id: int, version: int | None = None
) -> CalendarRecord:
    """The calendar ``calendar_id`` of the transaction's tenant at ``version`` (default: its
    current version). A deleted calendar is not found."""
    _check_version(version)
    row = await conn.fetchrow(
        "SELECT id, name, body, version FROM calendars WHERE id = $1 AND retired_at IS NULL",
        calendar_id,
    )
    if row is None:
        raise NotFound("calendar_id", calendar_id, "is not a calendar of this tenant")
    if version is None or version == row["version"]:
        return CalendarRecord(row["id"], row["name"], json.loads(row["body"]), row["version"])
    old = await conn.fetchval(
        "SELECT body FROM calendar_versions WHERE calendar_id = $1 AND version = $2",
        calendar_id,
        version,
    )
    if old is None:
        raise NotFound(
            "version", version, f"is not a version of calendar {calendar_id} (1–{row['version']})"
        )
    return CalendarRecord(row["id"], row["name"], json.loads(old), version)


async def get_calendar(
    store: Store, principal: Principal, calendar_id: int, version: int | None = None
) -> CalendarRecord:
    """The stored calendar ``calendar_id`` at ``version`` (default: current)."""
    async with store.transaction(principal) as conn:
        return await fetch_calendar(conn, calendar_id, version)


async def list_calendars(store: Store, principal: Principal) -> list[CalendarRecord]:
    """Every calendar of the tenant (deleted ones left out) at its current version, by id."""
    async with store.transaction(principal) as conn:
        rows = await conn.fetch(
            "SELECT id, name, body, version FROM calendars WHERE retired_at IS NULL ORDER BY id"
        )
    return [CalendarRecord(r["id"], r["name"], json.loads(r["body"]), r["version"]) for r in rows]


async def create_policy(
    store: Store, principal: Principal, name: str, calendar_id: int, body: dict[str, Any]
) -> PolicyRecord:
    """Validate ``body`` (policy JSON, see ``docs/sla.md``) and store it under ``name`` as
    version 1. A name the tenant already uses is :class:`AlreadyExists`.

    ``calendar_id`` is the policy's default calendar; metric targets may name other stored
    calendars by name.
    """
    principal.require_staff("create SLA policies")
    stored = _policy_body(name, body)
    async with store.transaction(principal) as conn:
        await fetch_calendar(conn, calendar_id)
        policy_id = await conn.fetchval(
            "INSERT INTO sla_policies (name, calendar_id, body) VALUES ($1, $2, $3::jsonb)"
            " ON CONFLICT (tenant_id, name) WHERE retired_at IS NULL DO NOTHING RETURNING id",
            name,
            calendar_id,
            json.dumps(stored),
        )
        if policy_id is None:
            existing = await conn.fetchval(_LIVE_POLICY_ID, name)
            raise AlreadyExists(
                "name",
                name,
                f"is already SLA policy {existing} of this tenant: update it"
                " (UpdatePolicy) to store a new version, or choose another name",
            )
    return PolicyRecord(int(policy_id), name, calendar_id, stored, 1)


async def update_policy(
    store: Store,
    principal: Principal,
    name: str,
    calendar_id: int | None,
    body: dict[str, Any],
) -> PolicyRecord:
    """Store ``body`` (and ``calendar_id``, default: the current one) as the next version of
    the SLA policy ``name``; earlier versions are kept. Content equal to the current version's
    stores nothing and returns that version."""
    principal.require_staff("update SLA policies")
    stored = _policy_body(name, body)
    async with store.transaction(principal) as conn:
        if calendar_id is not None:
            await fetch_calendar(conn, calendar_id)
        row = await conn.fetchrow(
            "UPDATE sla_policies SET body = $2::jsonb, calendar_id = coalesce($3, calendar_id)"
            " WHERE name = $1 AND retired_at IS NULL RETURNING id, version, calendar_id",
            name,
            json.dumps(stored),
            calendar_id,
        )
    if row is None:
        raise NotFound("name", name, "is not an SLA policy of this tenant; create it first")
    return PolicyRecord(row["id"], name, row["calendar_id"], stored, row["version"])


async def delete_policy(store: Store, principal: Principal, policy_id: int) -> None:
    """Retire the SLA policy ``policy_id`` (see :func:`delete_calendar`); refused while a
    contract uses it, naming the contracts."""
    principal.require_staff("delete SLA policies")
    async with store.transaction(principal) as conn:
        retired = await conn.fetchval(
            "UPDATE sla_policies SET retired_at = now() WHERE id = $1 AND retired_at IS NULL"
            " RETURNING id",
            policy_id,
        )
    if retired is None:
        raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")


async def fetch_policy(
    conn: asyncpg.Connection, policy_id: int, version: int | None = None
) -> PolicyRecord:
    """The SLA policy ``policy_id`` of the transaction's tenant at ``version`` (default: its
    current version). A deleted policy is not found."""
    _check_version(version)
    row = await conn.fetchrow(
        "SELECT id, name, calendar_id, body, version FROM sla_policies"
        " WHERE id = $1 AND retired_at IS NULL",
        policy_id,
    )
    if row is None:
        raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")
    if version is None or version == row["version"]:
        return PolicyRecord(
            row["id"], row["name"], row["calendar_id"], json.loads(row["body"]), row["version"]
        )
    old = await conn.fetchrow(
        "SELECT calendar_id, body FROM sla_policy_versions WHERE policy_id = $1 AND version = $2",
        policy_id,
        version,
    )
    if old is None:
        raise NotFound(
            "version", version, f"is not a version of SLA policy {policy_id} (1–{row['version']})"
        )
    return PolicyRecord(
        row["id"], row["name"], old["calendar_id"], json.loads(old["body"]), version
    )


async def get_policy(
    store: Store, principal: Principal, policy_id: int, version: int | None = None
) -> PolicyRecord:
    """The stored SLA policy ``policy_id`` at ``version`` (default: current)."""
    async with store.transaction(principal) as conn:
        return await fetch_policy(conn, policy_id, version)


async def list_policies(store: Store, principal: Principal) -> list[PolicyRecord]:
    """Every SLA policy of the tenant (deleted ones left out) at its current version, by id."""
    async with store.transaction(principal) as conn:
        rows = await conn.fetch(
            "SELECT id, name, calendar_id, body, version FROM sla_policies"
            " WHERE retired_at IS NULL ORDER BY id"
        )
    return [
        PolicyRecord(r["id"], r["name"], r["calendar_id"], json.loads(r["body"]), r["version"])
        for r in rows
    ]
