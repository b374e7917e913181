"""SQL round trips of the warm SLA reads, counted on the store's one pooled connection.

A warm ``GetTicketStatus`` (token resolved, policy and calendars compiled and cached) is one
statement: the statement binds the tenant itself (migration 0010), so the binding's guarantees
are checked here too: it lasts only that statement, a revoked token reads nothing, a portal
token sees only its client's tickets. A warm ``Evaluate`` of inline tickets makes none while
the store's catalog-change listener listens (migration 0011): a change committed through
another server is used once its notification arrives; with the listener's connection lost,
each call reads the versions (one statement) until it is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from effigate_engine import sla
from effigate_engine.service import NotFound, catalog, evaluations, tickets
from effigate_engine.service.context import Principal
from effigate_engine.store.catalog_changes import CHECK_EVERY_SECONDS
from effigate_engine.store.database import Store
from effigate_engine.store.errors import TokenRefused
from tests.service.support import new_tenant
from tests.store.helpers import Database

NINE_TO_FIVE = {
    "timezone": "UTC",
    "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed")],
}
POLICY = {
    "rules": [{"match": {}, "metrics": {"FIRST_RESPONSE": {"target": "4h", "calendar": "nine"}}}]
}
CREATED = datetime(2026, 3, 2, 6, tzinfo=UTC)
AT = datetime(2026, 3, 2, 11, tzinfo=UTC)


@dataclass(eq=False)
class Counter:
    """Statements the store's connection sent (asyncpg's query logger: every query, BEGIN and
    COMMIT included)."""

    queries: list[str]

    def __call__(self, record: Any) -> None:
        self.queries.append(record.query)

    def since(self, mark: int) -> list[str]:
        return self.queries[mark:]


@asynccontextmanager
async def counted_store(db: Database) -> AsyncIterator[tuple[Store, Counter]]:
    """A store with one pooled connection, every statement of which is counted."""
    store = await Store.open(db.app, pool_size=1, adbc_connections=0)
    counter = Counter([])
    try:
        async with store.pool.acquire() as conn:
            conn.add_query_logger(counter)  # stays on the pool's only connection
        yield store, counter
    finally:
        await store.close()


async def stocked(store: Store, db: Database) -> tuple[Principal, int, int]:
    """A tenant with a calendar, a policy and ticket T-1 of a client: the staff principal, the
    policy id and the client id."""
    principal = await new_tenant(db)
    await catalog.create_calendar(store, principal, "nine", NINE_TO_FIVE)
    calendar = (await catalog.list_calendars(store, principal))[0]
    policy = await catalog.create_policy(store, principal, "standard", calendar.id, POLICY)
    client_id = await catalog.create_client(store, principal, "Contoso")
    await tickets.create_ticket(store, principal, "T-1", client_id, "HIGH", CREATED)
    return principal, policy.id, client_id


def test_warm_ticket_status_is_one_round_trip(db: Database) -> None:
    async def scenario() -> None:
        async with counted_store(db) as (store, counter):
            principal, policy_id, _ = await stocked(store, db)
            cache = evaluations.RulesetCache()
            _, cold = await evaluations.ticket_status(store, cache, principal, "T-1", policy_id, AT)
            mark = len(counter.queries)
            ticket, warm = await evaluations.ticket_status(
                store, cache, principal, "T-1", policy_id, AT
            )
            sent = counter.since(mark)
            assert len(sent) == 1, sent
            assert "effigate_ticket_status_inputs" in sent[0]
            assert ticket.id == "T-1"
            assert warm.results.to_pylist() == cold.results.to_pylist()
            row = warm.results.to_pylist()[0]
            assert (row["metric"], row["status"]) == ("FIRST_RESPONSE", "ON_TRACK")
            assert row["elapsed_seconds"] == 2 * 3600  # 09:00 to 11:00 of a Monday

    asyncio.run(scenario())


INLINE = pa.Table.from_pylist(
    [{"ticket_id": "X", "priority": "P2", "created_at": CREATED}], schema=sla.TICKETS
)
#: How long a notification may take to arrive (seconds; generous for a loaded machine).
NOTIFIED_WITHIN = 2.0


async def until(check: Callable[[], Awaitable[bool]], within: float = NOTIFIED_WITHIN) -> None:
    """Wait until ``check()`` holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.01)


async def target_of(store: Store, cache: Any, principal: Principal, policy_id: int) -> int:
    """The FIRST_RESPONSE target (seconds) an inline evaluation of ticket X uses."""
    result = await evaluations.evaluate_inline(store, cache, principal, policy_id, INLINE, AT)
    return result.results["target_seconds"].to_pylist()[0]


async def untouched_call(
    store: Store, cache: Any, principal: Principal, policy_id: int, counter: Counter
) -> bool:
    """Whether an inline evaluation went without any statement."""
    mark = len(counter.queries)
    await evaluations.evaluate_inline(store, cache, principal, policy_id, INLINE, AT)
    return not counter.since(mark)


def longer_policy(target: str) -> dict:
    return {"rules": [{"match": {}, "metrics": {"FIRST_RESPONSE": {"target": target,
                                                                   "calendar": "nine"}}}]}


def test_warm_evaluate_makes_no_round_trip_while_listening(db: Database) -> None:
    async def scenario() -> None:
        async with counted_store(db) as (store, counter):
            principal, policy_id, _ = await stocked(store, db)
            cache = evaluations.RulesetCache()
            assert store.catalog_changes.epoch is not None
            # the notifications of the stocking may still arrive (each withdraws the trust)
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))
            for _ in range(20):
                mark = len(counter.queries)
                warm = await evaluations.evaluate_inline(
                    store, cache, principal, policy_id, INLINE, AT
                )
                assert counter.since(mark) == []
                assert warm.results.num_rows == 1
                assert evaluations.stamped_versions(warm.results)[:2] == (policy_id, 1)

    asyncio.run(scenario())


def test_a_change_through_another_server_is_used_once_notified(db: Database) -> None:
    async def scenario() -> None:
        async with (
            counted_store(db) as (store, counter),
            await Store.open(db.app, pool_size=1, adbc_connections=0) as other,
        ):
            principal, policy_id, _ = await stocked(store, db)
            cache = evaluations.RulesetCache()
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))
            assert await target_of(store, cache, principal, policy_id) == 4 * 3600

            # a new policy version, written by the other server (whose own caches this one
            # does not share): used once its notification arrived
            await catalog.update_policy(other, principal, "standard", None, longer_policy("8h"))

            async def eight_hours() -> bool:
                return await target_of(store, cache, principal, policy_id) == 8 * 3600

            await until(eight_hours)
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))

            # a new calendar version: a 4 h target from 06:00 ends 4 h after it opens
            early = {**NINE_TO_FIVE, "weekly": [
                {"weekday": d, "start": "07:00", "end": "17:00"} for d in ("mon", "tue")
            ]}
            await catalog.update_calendar(other, principal, "nine", early)

            async def calendar_two() -> bool:
                result = await evaluations.evaluate_inline(
                    store, cache, principal, policy_id, INLINE, AT
                )
                return evaluations.stamped_versions(result.results)[2] == {"nine": 2}

            await until(calendar_two)

            # a deletion: refused once notified
            await catalog.delete_policy(other, principal, policy_id)

            async def gone() -> bool:
                try:
                    await target_of(store, cache, principal, policy_id)
                except NotFound:
                    return True
                return False

            await until(gone)

    asyncio.run(scenario())


async def listener_pid(db: Database, admin: asyncpg.Connection) -> int | None:
    return await admin.fetchval(
        """SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND query = 'LISTEN "effigate_catalog"'"""
    )


def test_without_the_listener_each_call_checks_and_trust_resumes_after(db: Database) -> None:
    async def scenario() -> None:
        async with (
            counted_store(db) as (store, counter),
            await Store.open(db.app, pool_size=1, adbc_connections=0) as other,
        ):
            changes = store.catalog_changes
            changes.first_retry_seconds = 6.0  # room to observe the fallback on a loaded machine
            principal, policy_id, _ = await stocked(store, db)
            cache = evaluations.RulesetCache()
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))
            listening = changes.epoch
            admin = await asyncpg.connect(db.admin)
            try:
                # two listeners (this store's and the other's): kill this store's only
                pids = await admin.fetch(
                    """SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                           AND query = 'LISTEN "effigate_catalog"'"""
                )
                assert len(pids) == 2
                for row in pids:
                    await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
            finally:
                await admin.close()

            async def down() -> bool:
                return changes.epoch is None

            await until(down)
            # not listening: every call reads the versions, and so sees a change at once
            for target in ("8h", "9h"):
                await catalog.update_policy(
                    other, principal, "standard", None, longer_policy(target)
                )
                mark = len(counter.queries)
                assert await target_of(store, cache, principal, policy_id) == int(
                    target[0]
                ) * 3600
                sent = counter.since(mark)
                assert any("effigate_policy_versions" in q for q in sent), sent
            assert changes.epoch is None, "the listener came back too soon to tell"

            async def back() -> bool:
                return changes.epoch is not None

            await until(back, within=20)
            assert changes.epoch != listening
            # whatever was trusted before was dropped: the first call checks again
            mark = len(counter.queries)
            assert await target_of(store, cache, principal, policy_id) == 9 * 3600
            assert len(counter.since(mark)) == 1
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))
            # and changes are heard of again
            await catalog.update_policy(other, principal, "standard", None, longer_policy("2h"))

            async def two_hours() -> bool:
                return await target_of(store, cache, principal, policy_id) == 2 * 3600

            await until(two_hours)

    asyncio.run(scenario())


def test_a_new_version_is_seen_by_the_next_warm_call(db: Database) -> None:
    async def scenario() -> None:
        async with counted_store(db) as (store, _):
            principal, policy_id, _ = await stocked(store, db)
            cache = evaluations.RulesetCache()
            _, before = await evaluations.ticket_status(
                store, cache, principal, "T-1", policy_id, AT
            )
            longer = {"rules": [{**POLICY["rules"][0]}]}
            longer["rules"][0]["metrics"] = {
                "FIRST_RESPONSE": {"target": "8h", "calendar": "nine"}
            }
            await catalog.update_policy(store, principal, "standard", None, longer)
            _, after = await evaluations.ticket_status(
                store, cache, principal, "T-1", policy_id, AT
            )
            assert before.results["target_seconds"].to_pylist() == [4 * 3600]
            assert after.results["target_seconds"].to_pylist() == [8 * 3600]
            assert evaluations.stamped_versions(after.results)[1] == 2

    asyncio.run(scenario())


def test_the_one_statement_binds_only_itself_and_only_a_valid_token(db: Database) -> None:
    async def scenario() -> None:
        async with counted_store(db) as (store, _):
            principal, policy_id, client_id = await stocked(store, db)
            cache = evaluations.RulesetCache()
            await evaluations.ticket_status(store, cache, principal, "T-1", policy_id, AT)
            # the binding ended with the statement: the same pooled connection is unbound
            async with store.pool.acquire() as conn:
                assert await conn.fetchval("SELECT effigate_current_tenant()") is None
                assert await conn.fetchval("SELECT count(*) FROM tickets") == 0

            # a portal token of another client does not see the ticket
            other = await catalog.create_client(store, principal, "Fabrikam")
            portal = replace(principal, client_id=other)
            with pytest.raises(NotFound):
                await evaluations.ticket_status(store, cache, portal, "T-1", policy_id, AT)
            mine = replace(principal, client_id=client_id)
            ticket, _ = await evaluations.ticket_status(store, cache, mine, "T-1", policy_id, AT)
            assert ticket.client_id == client_id

            # a revoked token reads nothing, warm cache or not
            admin = await asyncpg.connect(db.admin)
            try:
                await admin.execute(
                    "UPDATE api_tokens SET revoked_at = now() WHERE tenant_id = $1",
                    principal.tenant_id,
                )
            finally:
                await admin.close()
            with pytest.raises(TokenRefused):
                await evaluations.ticket_status(store, cache, principal, "T-1", policy_id, AT)
            with pytest.raises(TokenRefused):
                await evaluations.ruleset_for(store, cache, principal, policy_id)

    asyncio.run(scenario())


def test_the_use_case_functions_are_the_service_roles_only(db: Database) -> None:
    async def scenario() -> None:
        admin = await asyncpg.connect(db.admin)
        try:
            rows = await admin.fetch(
                """SELECT p.proname, p.prosecdef,
                       has_function_privilege('effigate_app', p.oid, 'EXECUTE') AS app,
                       has_function_privilege('public', p.oid, 'EXECUTE') AS anyone
                   FROM pg_proc p
                   WHERE p.proname IN ('effigate_ticket_status_inputs',
                                       'effigate_policy_versions')
                   ORDER BY p.proname"""
            )
        finally:
            await admin.close()
        assert [(r["proname"], r["prosecdef"], r["app"], r["anyone"]) for r in rows] == [
            ("effigate_policy_versions", False, True, False),
            ("effigate_ticket_status_inputs", False, True, False),
        ]

    asyncio.run(scenario())


def test_a_listener_that_stops_answering_is_replaced(db: Database) -> None:
    """A connection that dies without a reset (here: its backend stopped with SIGSTOP) is
    found mute by the listener's check and replaced; meanwhile every call checks."""

    async def scenario() -> None:
        async with counted_store(db) as (store, counter):
            changes = store.catalog_changes
            changes.check_every_seconds = 0.2
            changes.check_timeout_seconds = 0.3
            changes.first_retry_seconds = 6.0  # room to observe the fallback on a loaded machine
            principal, policy_id, _ = await stocked(store, db)
            cache = evaluations.RulesetCache()
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))
            listening = changes.epoch
            admin = await asyncpg.connect(db.admin)
            try:
                pid = await listener_pid(db, admin)
            finally:
                await admin.close()
            assert pid is not None
            try:
                os.kill(pid, signal.SIGSTOP)
            except (PermissionError, ProcessLookupError):
                pytest.skip("the database server's processes are not this machine's to signal")
            try:

                async def down() -> bool:
                    return changes.epoch is None

                # the check already under way waits the default interval first
                await until(down, within=CHECK_EVERY_SECONDS + 5)
                mark = len(counter.queries)
                assert await target_of(store, cache, principal, policy_id) == 4 * 3600
                assert len(counter.since(mark)) == 1
            finally:
                os.kill(pid, signal.SIGCONT)

            async def back() -> bool:
                return changes.epoch is not None

            await until(back, within=20)
            assert changes.epoch != listening
            await until(lambda: untouched_call(store, cache, principal, policy_id, counter))

    asyncio.run(scenario())
