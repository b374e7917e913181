"""Compiled rulesets: a tenant's SLA policy at one version with its compiled calendars, and the
per-process cache of them (keyed by versions; trusted while the catalog-change listener
listens). Used by the evaluations and by the SLA schedule."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
import pyarrow as pa

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.service.errors import NotFound
from effigate_engine.sla.evaluation import Evaluation
from effigate_engine.sla.policy import Policy
from effigate_engine.store import catalog as stored
from effigate_engine.store.catalog_changes import CatalogChanges

#: Where a tenant's catalog changes stood when a ruleset was found current: the listener
#: (its identity and connection epoch), the resets and the tenant's changes heard of.
Mark = tuple[int, int, int, int]


#: Schema metadata of stamped results: the policy and calendar versions that produced them.
POLICY_ID_KEY = b"effigate.policy_id"
POLICY_VERSION_KEY = b"effigate.policy_version"
CALENDAR_VERSIONS_KEY = b"effigate.calendar_versions"


@dataclass(frozen=True)
class Ruleset:
    """A policy at one version and the compiled calendars (at their versions) it is evaluated
    against. ``calendar_versions`` maps each calendar name of the set to its version."""

    policy: Policy
    calendars: CalendarSet
    policy_id: int = 0
    policy_version: int = 0
    calendar_versions: dict[str, int] = field(default_factory=dict)

    @functools.cached_property
    def stamp_metadata(self) -> dict[bytes, bytes]:
        """The schema metadata :meth:`stamp` adds (encoded once per ruleset: a ruleset is
        immutable, and unary calls pay for every microsecond)."""
        return {
            POLICY_ID_KEY: str(self.policy_id).encode(),
            POLICY_VERSION_KEY: str(self.policy_version).encode(),
            CALENDAR_VERSIONS_KEY: json.dumps(self.calendar_versions).encode(),
        }

    def stamp(self, evaluation: Evaluation) -> Evaluation:
        """``evaluation`` with its results' schema metadata naming the policy id and version
        and the version of every calendar (``{"name": version}``) they were computed with."""
        results = evaluation.results
        metadata = {**(results.schema.metadata or {}), **self.stamp_metadata}
        return dataclasses.replace(evaluation, results=results.replace_schema_metadata(metadata))


def stamped_versions(results: pa.Table) -> tuple[int, int, Mapping[str, int]]:
    """The policy id, policy version and calendar versions :meth:`Ruleset.stamp` recorded
    (zeros and ``{}`` for unstamped results)."""
    metadata = results.schema.metadata or {}
    return (
        int(metadata.get(POLICY_ID_KEY, b"0")),
        int(metadata.get(POLICY_VERSION_KEY, b"0")),
        _calendar_versions(metadata.get(CALENDAR_VERSIONS_KEY, b"{}")),
    )


@functools.lru_cache(maxsize=256)
def _calendar_versions(encoded: bytes) -> Mapping[str, int]:
    """The calendar versions of stamped metadata, read-only (the same few rulesets stamp
    every result, so one parsed mapping serves them all)."""
    return types.MappingProxyType(json.loads(encoded))


class RulesetCache:
    """Per-tenant compiled calendar sets and rulesets (a policy checked against them), kept by
    one server process.

    A stored version is immutable (an update is a new version), so what is cached is keyed by
    versions: the calendar set by the ids and versions of the tenant's live calendars, a
    ruleset by its policy's id and version and the calendar set it was checked against.

    Whether a cached ruleset is still current is either read from the database (the current
    versions, part of the call's one statement on the warm paths) or known from the store's
    catalog-change listener (:class:`~effigate_engine.store.catalog_changes.CatalogChanges`):
    a ruleset found current while the listener listened stays *trusted* until a change of its
    tenant is notified (or written by this process), or the listener's connection is lost;
    a trusted ruleset is used without asking the database (:func:`ruleset_for`).
    """

    def __init__(self) -> None:
        self._sets: dict[UUID, tuple[str, CalendarSet, dict[str, int]]] = {}
        self._rules: dict[tuple[UUID, int], tuple[tuple[int, str], Ruleset]] = {}
        self._lock = asyncio.Lock()
        # trust: per (tenant, policy), the mark under which its ruleset was found current
        self._trusted: dict[tuple[UUID, int], tuple[Mark, Ruleset]] = {}
        self._changes_seen: dict[UUID, int] = {}  # catalog changes heard of, per tenant
        self._resets = 0  # times every tenant had to be assumed changed
        self._following: list[CatalogChanges] = []

    def follow(self, changes: CatalogChanges) -> None:
        """Hear of catalog changes from ``changes`` (once per listener)."""
        if not any(f is changes for f in self._following):
            self._following.append(changes)
            changes.subscribe(self._changed)

    def _changed(self, tenant_id: UUID | None) -> None:
        if tenant_id is None:
            self._resets += 1
            self._trusted.clear()
        else:
            self._changes_seen[tenant_id] = self._changes_seen.get(tenant_id, 0) + 1

    def mark(self, changes: CatalogChanges, tenant_id: UUID) -> Mark | None:
        """Where the catalog changes of ``tenant_id`` stand now (``None``: nobody listens,
        nothing can be trusted); taken before the versions are read, so that a change
        notified while they are read withholds the trust."""
        epoch = changes.epoch
        if epoch is None:
            return None
        return (id(changes), epoch, self._resets, self._changes_seen.get(tenant_id, 0))

    def trusted(self, tenant_id: UUID, policy_id: int, mark: Mark) -> Ruleset | None:
        """The ruleset found current under ``mark`` (no change heard of since), if any."""
        hit = self._trusted.get((tenant_id, policy_id))
        if hit is not None and hit[0] == mark:
            return hit[1]
        return None

    def trust(self, tenant_id: UUID, policy_id: int, mark: Mark, rules: Ruleset) -> None:
        """Remember ``rules`` as current under ``mark`` (taken before its versions were
        read)."""
        self._trusted[(tenant_id, policy_id)] = (mark, rules)

    async def calendars(self, conn: asyncpg.Connection, tenant_id: UUID) -> CalendarSet:
        """The compiled set of every live calendar of the transaction's tenant."""
        return (await self._calendar_set(conn, tenant_id, None))[0]

    async def _calendar_set(
        self, conn: asyncpg.Connection, tenant_id: UUID, key: str | None
    ) -> tuple[CalendarSet, dict[str, int], str]:
        if key is None:
            key = await stored.load_calendars_key(conn)
        if not key:
            raise NotFound("calendars", [], "none stored for this tenant; create one first")
        hit = self._sets.get(tenant_id)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2], key
        async with self._lock:
            hit = self._sets.get(tenant_id)
            if hit is not None and hit[0] == key:
                return hit[1], hit[2], key
            records = await stored.load_calendars(conn)
            key = stored.calendars_key(records)
            versions = {r.name: r.version for r in records}
            compiled = await asyncio.to_thread(CalendarSet, [r.calendar() for r in records])
            self._sets[tenant_id] = (key, compiled, versions)
            return compiled, versions, key

    def cached(
        self, tenant_id: UUID, policy_id: int, policy_version: int, calendars_key: str
    ) -> Ruleset | None:
        """The ruleset compiled for the policy at ``policy_version`` and the calendars of
        ``calendars_key``, if this process has it."""
        hit = self._rules.get((tenant_id, policy_id))
        if hit is not None and hit[0] == (policy_version, calendars_key):
            return hit[1]
        return None

    async def ruleset(self, conn: asyncpg.Connection, tenant_id: UUID, policy_id: int) -> Ruleset:
        """The current version of the stored policy ``policy_id`` and the tenant's compiled
        calendars, compiled once per version."""
        versions = await stored.load_policy_versions(conn, policy_id)
        if versions is None:
            raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")
        hit = self.cached(tenant_id, policy_id, *versions)
        if hit is not None:
            return hit
        record = await stored.load_policy(conn, policy_id)
        if record is None:
            raise NotFound("policy_id", policy_id, "is not an SLA policy of this tenant")
        policy = record.policy()
        calendars, calendar_versions, key = await self._calendar_set(conn, tenant_id, versions[1])
        for rule in policy.rules:
            for metric, target in rule.metrics.items():
                if target.calendar not in calendars.names:
                    raise EffigateError(
                        f"policy {record.name!r}: {metric}.calendar {target.calendar!r} is not"
                        f" a stored calendar of this tenant ({', '.join(calendars.names)})"
                    )
        rules = Ruleset(policy, calendars, record.id, record.version, calendar_versions)
        self._rules[(tenant_id, policy_id)] = ((record.version, key), rules)
        return rules
