"""Clients, calendars and SLA policies of a tenant: stored as validated JSON bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from effigate_engine.calendar import Calendar
from effigate_engine.service.context import Principal, Store
from effigate_engine.service.errors import NotFound
from effigate_engine.sla.policy import Policy


@dataclass(frozen=True)
class CalendarRecord:
    """A stored business-hours calendar (``body`` is :meth:`Calendar.to_json`)."""

    id: int
    name: str
    body: dict[str, Any]

    def calendar(self) -> Calendar:
        """The calendar, named by its stored name."""
        return Calendar.from_json({**self.body, "name": self.name})


@dataclass(frozen=True)
class PolicyRecord:
    """A stored SLA policy (``body`` is :meth:`Policy.to_json`) and its default calendar."""

    id: int
    name: str
    calendar_id: int
    body: dict[str, Any]

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
    """Validate ``body`` (calendar JSON, see ``docs/calendars``) and store it under ``name``."""
    principal.require_staff("create calendars")
    calendar = Calendar.from_json({**body, "name": name})
    stored = calendar.to_json()
    async with store.transaction(principal) as conn:
        calendar_id = await conn.fetchval(
            "INSERT INTO calendars (name, body) VALUES ($1, $2::jsonb) RETURNING id",
            name,
            json.dumps(stored),
        )
    return CalendarRecord(int(calendar_id), name, stored)


async def fetch_calendar(conn: asyncpg.Connection, calendar_id: int) -> CalendarRecord:
    """The calendar ``calendar_id`` of the transaction's tenant."""
    row = await conn.fetchrow("SELECT id, name, body FROM calendars WHERE id = $1", calendar_id)
    if row is None:
        raise NotFound("calendar_id", calendar_id, "is not a calendar of this tenant")
    return CalendarRecord(row["id"], row["name"], json.loads(row["body"]))


async def get_calendar(store: Store, principal: Principal, calendar_id: int) -> CalendarRecord:
    """The stored calendar ``calendar_id``."""
    async with store.transaction(principal) as conn:
        return await fetch_calendar(conn, calendar_id)


async def list_calendars(store: Store, principal: Principal) -> list[CalendarRecord]:
    """Every calendar of the tenant, by id."""
    async with store.transaction(principal) as conn:
        rows = await conn.fetch("SELECT id, name, body FROM calendars ORDER BY id")
    return [CalendarRecord(r["id"], r["name"], json.loads(r["body"])) for r in rows]


async def create_policy(
    store: Store, principal: Principal, name: str, calendar_id: int, body: dict[str, Any]
) -> PolicyRecord:
    """Validate ``body`` (policy JSON, see ``docs/sla.md``) and store it under ``name``.

    ``calendar_id`` is the policy's default calendar; metric targets may name other stored
    calendars by name.
    """
    principal.require_staff("create SLA policies")
    policy = Policy.from_json({**body, "name": name})
    stored = policy.to_json()
    async with store.transaction(principal) as conn:
        await fetch_calendar(conn, calendar_id)
        policy_id = await conn.fetchval(
            "INSERT INTO sla_policies (name, calendar_id, body) VALUES ($1, $2, $3::jsonb)"
            " RETURNING id",
            name,
            calendar_id,
            json.dumps(stored),
        )
    return PolicyRecord(int(policy_id), name, calendar_id, stored)


async def fetch_policy(conn: asyncpg.Connection, policy_id: int) -> PolicyRecord:
    """The SLA policy ``policy_id`` of the transaction's tenant."""
    row = await conn.fetchrow(
        "SELECT id, name, calendar_id, body FROM sla_policies WHERE id = $1", policy_id
    )
    if row is None:
        raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")
    return PolicyRecord(row["id"], row["name"], row["calendar_id"], json.loads(row["body"]))


async def get_policy(store: Store, principal: Principal, policy_id: int) -> PolicyRecord:
    """The stored SLA policy ``policy_id``."""
    async with store.transaction(principal) as conn:
        return await fetch_policy(conn, policy_id)


async def list_policies(store: Store, principal: Principal) -> list[PolicyRecord]:
    """Every SLA policy of the tenant, by id."""
    async with store.transaction(principal) as conn:
        rows = await conn.fetch("SELECT id, name, calendar_id, body FROM sla_policies ORDER BY id")
    return [PolicyRecord(r["id"], r["name"], r["calendar_id"], json.loads(r["body"])) for r in rows]
