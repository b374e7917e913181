"""Clients, calendars and SLA policies of a tenant: stored as validated JSON bodies.

A calendar or policy is a name, unique among the tenant's live ones, with numbered immutable
versions (an update is a new version; the database numbers and keeps them). Deleting retires
it: it leaves every list and lookup, keeps its history, and frees its name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from effigate_engine.calendar import Calendar
from effigate_engine.errors import EffigateError
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import AlreadyExists, NotFound
from effigate_engine.sla.policy import Policy
from effigate_engine.store import catalog as stored
from effigate_engine.store.catalog import CalendarRecord, PolicyRecord
from effigate_engine.store.database import Store

__all__ = ["CalendarRecord", "PolicyRecord"]


@asynccontextmanager
async def _catalog_write(store: Store, principal: Principal) -> AsyncIterator[Any]:
    """A transaction writing the tenant's calendars or policies; once it ended (committed, or
    not: a connection lost at the commit leaves it unknown) this process's caches hear of the
    change at once, not only when the database's notification arrives."""
    try:
        async with store.transaction(principal) as conn:
            yield conn
    finally:
        store.catalog_changes.changed(principal.tenant_id)


async def create_client(store: Store, principal: Principal, name: str) -> int:
    """Create a client of the tenant; returns its id."""
    principal.require_staff("create clients")
    async with store.transaction(principal) as conn:
        return await stored.insert_client(conn, name)


async def list_clients(store: Store, principal: Principal) -> list[tuple[int, str]]:
    """``(id, name)`` of the tenant's clients by id (a portal token: its own client only)."""
    async with store.transaction(principal) as conn:
        return await stored.load_clients(conn, principal.client_id)


async def create_calendar(
    store: Store, principal: Principal, name: str, body: dict[str, Any]
) -> CalendarRecord:
    """Validate ``body`` (calendar JSON, see ``docs/calendars``) and store it under ``name`` as
    version 1. A name the tenant already uses is :class:`AlreadyExists` (the database keeps
    one live calendar per name, so of two racing creates exactly one wins)."""
    principal.require_staff("create calendars")
    checked = _calendar_body(name, body)
    async with _catalog_write(store, principal) as conn:
        calendar_id = await stored.insert_calendar(conn, name, checked)
        if calendar_id is None:
            existing = await stored.live_calendar_id(conn, name)
            raise AlreadyExists(
                "name",
                name,
                f"is already calendar {existing} of this tenant: update it"
                " (UpdateCalendar) to store a new version, or choose another name",
            )
    return CalendarRecord(calendar_id, name, checked, 1)


async def update_calendar(
    store: Store, principal: Principal, name: str, body: dict[str, Any]
) -> CalendarRecord:
    """Store ``body`` as the next version of the calendar ``name``; the earlier versions are
    kept. A body equal to the current version's stores nothing and returns that version (so
    a re-sent update never adds a version)."""
    principal.require_staff("update calendars")
    checked = _calendar_body(name, body)
    async with _catalog_write(store, principal) as conn:
        updated = await stored.update_calendar(conn, name, checked)
        if updated is not None:
            await _reschedule_open(conn, principal)
    if updated is None:
        raise NotFound("name", name, "is not a calendar of this tenant; create it first")
    return CalendarRecord(updated[0], name, checked, updated[1])


async def delete_calendar(store: Store, principal: Principal, calendar_id: int) -> None:
    """Retire the calendar ``calendar_id``: it leaves lists, lookups and the tenant's calendar
    set, its history is kept and its name may be used again. Refused (by the database, whatever
    runs concurrently) while a policy or a contract uses it, naming them."""
    principal.require_staff("delete calendars")
    async with _catalog_write(store, principal) as conn:
        retired = await stored.retire_calendar(conn, calendar_id)
    if not retired:
        raise NotFound("calendar_id", calendar_id, "is not a calendar of this tenant")


async def _reschedule_open(conn: asyncpg.Connection, principal: Principal) -> None:
    """Move the SLA transitions of the tenant's open tickets to the new version, in the
    transaction of the change."""
    from effigate_engine.service import sla_schedule, wall_clock

    await sla_schedule.reschedule_open(conn, principal.tenant_id, wall_clock.now())


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
    current = await stored.load_calendar(conn, calendar_id)
    if current is None:
        raise NotFound("calendar_id", calendar_id, "is not a calendar of this tenant")
    if version is None or version == current.version:
        return current
    old = await stored.load_calendar_body(conn, calendar_id, version)
    if old is None:
        raise NotFound(
            "version", version, f"is not a version of calendar {calendar_id} (1–{current.version})"
        )
    return CalendarRecord(current.id, current.name, old, version)


async def get_calendar(
    store: Store, principal: Principal, calendar_id: int, version: int | None = None
) -> CalendarRecord:
    """The stored calendar ``calendar_id`` at ``version`` (default: current)."""
    async with store.transaction(principal) as conn:
        return await fetch_calendar(conn, calendar_id, version)


async def list_calendars(store: Store, principal: Principal) -> list[CalendarRecord]:
    """Every calendar of the tenant (deleted ones left out) at its current version, by id."""
    async with store.transaction(principal) as conn:
        return await stored.load_calendars(conn)


async def create_policy(
    store: Store, principal: Principal, name: str, calendar_id: int, body: dict[str, Any]
) -> PolicyRecord:
    """Validate ``body`` (policy JSON, see ``docs/sla.md``) and store it under ``name`` as
    version 1. A name the tenant already uses is :class:`AlreadyExists`.

    ``calendar_id`` is the policy's default calendar; metric targets may name other stored
    calendars by name.
    """
    principal.require_staff("create SLA policies")
    checked = _policy_body(name, body)
    async with _catalog_write(store, principal) as conn:
        await fetch_calendar(conn, calendar_id)
        policy_id = await stored.insert_policy(conn, name, calendar_id, checked)
        if policy_id is None:
            existing = await stored.live_policy_id(conn, name)
            raise AlreadyExists(
                "name",
                name,
                f"is already SLA policy {existing} of this tenant: update it"
                " (UpdatePolicy) to store a new version, or choose another name",
            )
    return PolicyRecord(policy_id, name, calendar_id, checked, 1)


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
    checked = _policy_body(name, body)
    async with _catalog_write(store, principal) as conn:
        if calendar_id is not None:
            await fetch_calendar(conn, calendar_id)
        updated = await stored.update_policy(conn, name, calendar_id, checked)
        if updated is not None:
            await _reschedule_open(conn, principal)
    if updated is None:
        raise NotFound("name", name, "is not an SLA policy of this tenant; create it first")
    return PolicyRecord(updated[0], name, updated[2], checked, updated[1])


async def delete_policy(store: Store, principal: Principal, policy_id: int) -> None:
    """Retire the SLA policy ``policy_id`` (see :func:`delete_calendar`); refused while a
    contract uses it, naming the contracts."""
    principal.require_staff("delete SLA policies")
    async with _catalog_write(store, principal) as conn:
        retired = await stored.retire_policy(conn, policy_id)
    if not retired:
        raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")


async def fetch_policy(
    conn: asyncpg.Connection, policy_id: int, version: int | None = None
) -> PolicyRecord:
    """The SLA policy ``policy_id`` of the transaction's tenant at ``version`` (default: its
    current version). A deleted policy is not found."""
    _check_version(version)
    current = await stored.load_policy(conn, policy_id)
    if current is None:
        raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")
    if version is None or version == current.version:
        return current
    old = await stored.load_policy_version(conn, current, version)
    if old is None:
        raise NotFound(
            "version", version, f"is not a version of SLA policy {policy_id} (1–{current.version})"
        )
    return old


async def get_policy(
    store: Store, principal: Principal, policy_id: int, version: int | None = None
) -> PolicyRecord:
    """The stored SLA policy ``policy_id`` at ``version`` (default: current)."""
    async with store.transaction(principal) as conn:
        return await fetch_policy(conn, policy_id, version)


async def list_policies(store: Store, principal: Principal) -> list[PolicyRecord]:
    """Every SLA policy of the tenant (deleted ones left out) at its current version, by id."""
    async with store.transaction(principal) as conn:
        return await stored.load_policies(conn)
