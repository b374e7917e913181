"""Calendar and SLA-policy names, versions and retirement, attacked in plain SQL as the service
role (bound to its tenant): one live row per name, versions numbered and kept by the database,
no reference to a retired one whatever the interleaving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest

from effigate_engine.store.tenant import tenant_transaction
from tests.store.helpers import Database, Seed, seed_tenant
from tests.store.races import ISOLATIONS, ORDERINGS, REFUSED, race

BODY = json.dumps({"timezone": "UTC", "24x7": True})
OTHER_BODY = json.dumps({"timezone": "Europe/London", "24x7": True})
NEW_CALENDAR = "INSERT INTO calendars (name, body) VALUES ($1, $2::jsonb) RETURNING id"
NEW_POLICY = (
    "INSERT INTO sla_policies (name, calendar_id, body) VALUES ($1, $2, $3::jsonb) RETURNING id"
)


def policy_body(calendar: str) -> str:
    return json.dumps(
        {"rules": [{"match": {}, "metrics": {"RESOLUTION": {"target": 60, "calendar": calendar}}}]}
    )


async def _seeds(db: Database, n: int = 1) -> list[Seed]:
    admin = await asyncpg.connect(db.admin)
    try:
        return [await seed_tenant(admin, f"Catalog {i}") for i in range(n)]
    finally:
        await admin.close()


async def _refused(app: asyncpg.Connection, seed: Seed, sql: str, *args: object) -> BaseException:
    with pytest.raises(asyncpg.PostgresError) as refused:
        async with tenant_transaction(app, seed.key):
            await app.execute(sql, *args)
    return refused.value


def test_one_live_calendar_and_policy_per_name_and_tenant(db: Database) -> None:
    async def scenario() -> None:
        mine, theirs = await _seeds(db, 2)
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, mine.key):
                hours = await app.fetchval(NEW_CALENDAR, "hours", BODY)
                await app.fetchval(NEW_POLICY, "std", hours, policy_body("hours"))
                other = await app.fetchval(NEW_CALENDAR, "other", BODY)
            for sql, args in (
                (NEW_CALENDAR, ("hours", OTHER_BODY)),
                (NEW_POLICY, ("std", hours, policy_body("hours"))),
            ):
                refusal = await _refused(app, mine, sql, *args)
                assert isinstance(refusal, asyncpg.UniqueViolationError), refusal
            # renaming onto a used name, or at all, is refused: a name is an identity
            refusal = await _refused(
                app, mine, "UPDATE calendars SET name = 'hours' WHERE id = $1", other
            )
            assert isinstance(refusal, asyncpg.CheckViolationError)
            assert "keeps its name" in refusal.message and refusal.column_name == "name"
            # the name is per tenant
            async with tenant_transaction(app, theirs.key):
                assert await app.fetchval(NEW_CALENDAR, "hours", BODY) != hours
            # no deletion, no writing the version or the history by hand
            for sql in (
                "DELETE FROM calendars",
                "DELETE FROM sla_policies",
                "UPDATE calendars SET version = 9",
                "INSERT INTO calendar_versions (calendar_id, version, body) VALUES (1, 9, '{}')",
                "UPDATE calendar_versions SET body = '{}'",
                "UPDATE sla_policy_versions SET body = '{}'",
                "DELETE FROM calendar_versions",
            ):
                refusal = await _refused(app, mine, sql)
                assert refusal.sqlstate == "42501", sql
        finally:
            await app.close()

    asyncio.run(scenario())


def test_versions_are_numbered_and_kept_by_the_database(db: Database) -> None:
    async def scenario() -> None:
        (seed,) = await _seeds(db)
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, seed.key):
                hours = await app.fetchval(NEW_CALENDAR, "hours", BODY)
                versions = [
                    await app.fetchval(
                        "UPDATE calendars SET body = $2::jsonb WHERE id = $1 RETURNING version",
                        hours,
                        body,
                    )
                    for body in (OTHER_BODY, OTHER_BODY, BODY)
                ]
                history = await app.fetch(
                    "SELECT version, body FROM calendar_versions WHERE calendar_id = $1"
                    " ORDER BY version",
                    hours,
                )
                await app.execute("UPDATE calendars SET retired_at = now() WHERE id = $1", hours)
            # an unchanged body is no new version
            assert versions == [2, 2, 3]
            assert [(r["version"], json.loads(r["body"])) for r in history] == [
                (1, json.loads(BODY)),
                (2, json.loads(OTHER_BODY)),
                (3, json.loads(BODY)),
            ]
            # a retired calendar never changes again, and is not brought back
            for sql in (
                "UPDATE calendars SET retired_at = NULL WHERE id = $1",
                "UPDATE calendars SET body = '{}' WHERE id = $1",
            ):
                refusal = await _refused(app, seed, sql, hours)
                assert isinstance(refusal, asyncpg.CheckViolationError), sql
                assert "was deleted" in refusal.message
            # its name may be used again, by a new calendar
            async with tenant_transaction(app, seed.key):
                again = await app.fetchval(NEW_CALENDAR, "hours", OTHER_BODY)
                assert again != hours
                assert await app.fetchval("SELECT version FROM calendars WHERE id = $1", again) == 1
        finally:
            await app.close()

    asyncio.run(scenario())


def test_retiring_what_is_used_is_refused_naming_the_users(db: Database) -> None:
    async def scenario() -> None:
        (seed,) = await _seeds(db)
        app = await asyncpg.connect(db.app)
        try:
            async with tenant_transaction(app, seed.key):
                default = await app.fetchval(NEW_CALENDAR, "default", BODY)
                named = await app.fetchval(NEW_CALENDAR, "named", BODY)
                policy = await app.fetchval(NEW_POLICY, "std", default, policy_body("named"))
                await app.execute(
                    "UPDATE contracts SET sla_policy_id = $2, calendar_id = $3 WHERE id = $1",
                    seed.contract_id,
                    policy,
                    named,
                )
            retire_calendar = "UPDATE calendars SET retired_at = now() WHERE id = $1"
            refusal = await _refused(app, seed, retire_calendar, default)
            assert isinstance(refusal, asyncpg.CheckViolationError)
            assert f"policy 'std' (id {policy})" in refusal.message
            assert refusal.column_name == "retired_at"
            refusal = await _refused(app, seed, retire_calendar, named)
            assert f"policy 'std' (id {policy})" in refusal.message
            assert f"contract {seed.contract_id} (ACTIVE)" in refusal.message
            refusal = await _refused(
                app, seed, "UPDATE sla_policies SET retired_at = now() WHERE id = $1", policy
            )
            assert f"contract {seed.contract_id} (ACTIVE)" in refusal.message
        finally:
            await app.close()

    asyncio.run(scenario())


@dataclass(frozen=True)
class Target:
    """What one race is about: the calendar or policy retired, a spare calendar, the contract."""

    id: int
    name: str
    spare: int
    contract: int


Use = Callable[[asyncpg.Connection, Target], Awaitable[object]]

#: How a writer starts to use a calendar or policy, by what is retired.
USES: dict[str, tuple[str, Use]] = {
    "policy default calendar": (
        "calendars",
        lambda c, t: c.execute(NEW_POLICY, f"uses-{t.id}", t.id, policy_body("spare")),
    ),
    "policy metric calendar": (
        "calendars",
        lambda c, t: c.execute(NEW_POLICY, f"uses-{t.id}", t.spare, policy_body(t.name)),
    ),
    "contract calendar": (
        "calendars",
        lambda c, t: c.execute(
            "UPDATE contracts SET calendar_id = $1 WHERE id = $2", t.id, t.contract
        ),
    ),
    "contract policy": (
        "sla_policies",
        lambda c, t: c.execute(
            "UPDATE contracts SET sla_policy_id = $1 WHERE id = $2", t.id, t.contract
        ),
    ),
}


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("use", sorted(USES))
def test_nothing_is_retired_under_a_new_reference(
    db: Database, isolation: str, ordering: str, use: str
) -> None:
    """A retirement and a new use of the same calendar or policy, in either order: the second
    of the two is refused (a check of ours, or 40001 to retry)."""
    table, start_using = USES[use]

    async def scenario() -> dict[str, BaseException | None]:
        (seed,) = await _seeds(db)
        admin = await asyncpg.connect(db.admin)
        outcomes = {}
        try:
            for order in ("retire first", "use first"):
                cal, spare, policy = await _catalog(admin, seed, order.replace(" ", "-"))
                target_id = policy if table == "sla_policies" else cal
                name = await admin.fetchval(f"SELECT name FROM {table} WHERE id = $1", target_id)
                target = Target(target_id, name, spare, seed.contract_id)

                async def retire(conn: asyncpg.Connection, target: Target = target) -> None:
                    await conn.execute(
                        f"UPDATE {table} SET retired_at = now() WHERE id = $1", target.id
                    )

                async def new_use(conn: asyncpg.Connection, target: Target = target) -> None:
                    await start_using(conn, target)

                first, second = (retire, new_use) if order == "retire first" else (new_use, retire)
                outcomes[order] = await race(db, seed.key, isolation, ordering, first, second)
                await admin.execute(
                    "UPDATE contracts SET calendar_id = NULL, sla_policy_id = NULL WHERE id = $1",
                    seed.contract_id,
                )
        finally:
            await admin.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes["use first"], REFUSED), outcomes
    if use == "policy metric calendar":
        # a metric may name a calendar that is not stored (yet): evaluating refuses it, so a
        # retirement that came first leaves a policy naming a calendar no longer stored
        assert not isinstance(outcomes["retire first"], asyncpg.CheckViolationError), outcomes
    else:
        assert isinstance(outcomes["retire first"], REFUSED), outcomes


async def _catalog(admin: asyncpg.Connection, seed: Seed, label: str) -> tuple[int, int, int]:
    """A calendar, a spare calendar and a policy (on the spare) of the seed's tenant."""
    ids = []
    for name in (f"cal-{label}", f"spare-{label}"):
        ids.append(
            await admin.fetchval(
                "INSERT INTO calendars (tenant_id, name, body) VALUES ($1, $2, $3::jsonb)"
                " RETURNING id",
                seed.tenant_id,
                name,
                BODY,
            )
        )
    policy = await admin.fetchval(
        "INSERT INTO sla_policies (tenant_id, name, calendar_id, body)"
        " VALUES ($1, $2, $3, '{}') RETURNING id",
        seed.tenant_id,
        f"policy-{label}",
        ids[1],
    )
    return ids[0], ids[1], policy
