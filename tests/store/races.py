"""Two service-role transactions run in an explicit order, to test races deterministically.

``after_commit``: the second transaction takes its snapshot, the first one runs and commits,
then the second runs its statements (under REPEATABLE READ and SERIALIZABLE it still sees the
database as it was before the first). ``while_held``: the first transaction runs and keeps
its locks; the second one starts and must be seen waiting for it (``pg_blocking_pids``) before
the first commits. No sleeps decide the order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from effigate_engine.store.tenant import TenantKey, bind
from tests.store.helpers import Database

#: Transaction isolation levels, as asyncpg names them.
ISOLATIONS = ("read_committed", "repeatable_read", "serializable")
ORDERINGS = ("after_commit", "while_held")
#: How the database refuses the second of two conflicting transactions: a check of ours, a
#: serialization failure (the caller retries and then meets the check), an exclusion.
REFUSED = (
    asyncpg.CheckViolationError,
    asyncpg.SerializationError,
    asyncpg.ExclusionViolationError,
)
#: Longest wait for the second transaction to block, in seconds.
BLOCK_TIMEOUT_S = 10.0

Op = Callable[[asyncpg.Connection], Awaitable[object]]


async def _begin(
    conn: asyncpg.Connection, isolation: str, key: TenantKey
) -> asyncpg.transaction.Transaction:
    tx = conn.transaction(isolation=isolation)
    await tx.start()
    # the first statement of the transaction (under REPEATABLE READ it fixes the snapshot):
    # the binding, with the tenant's bearer token
    await bind(conn, key)
    return tx


async def _finish(
    conn: asyncpg.Connection, tx: asyncpg.transaction.Transaction, op: Op
) -> BaseException | None:
    """Run ``op`` and commit; the refusal if the database refused either (rolled back)."""
    try:
        await op(conn)
        await tx.commit()
    except REFUSED as exc:
        await tx.rollback()
        return exc
    except BaseException:
        await tx.rollback()
        raise
    return None


async def _blocked_by(
    observer: asyncpg.Connection, waiter: int, holder: int, task: asyncio.Task[object]
) -> bool:
    """Poll until backend ``waiter`` waits for ``holder`` (True) or ``task`` ends (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BLOCK_TIMEOUT_S
    while not task.done() and loop.time() < deadline:
        if await observer.fetchval("SELECT $2 = ANY (pg_blocking_pids($1))", waiter, holder):
            return True
        await asyncio.sleep(0.005)
    return False


async def race(
    db: Database, key: TenantKey, isolation: str, ordering: str, first: Op, second: Op
) -> BaseException | None:
    """Run ``first`` then ``second`` in two service-role transactions bound with ``key``, at
    ``isolation``, in the given ordering; ``first`` must commit. Returns how the database
    refused ``second`` (None if it committed). In ``while_held``, ``second`` must have waited
    for ``first``."""
    one = await asyncpg.connect(db.app)
    two = await asyncpg.connect(db.app)
    observer = await asyncpg.connect(db.admin)
    try:
        if ordering == "after_commit":
            tx_two = await _begin(two, isolation, key)
            tx_one = await _begin(one, isolation, key)
            await first(one)
            await tx_one.commit()
            return await _finish(two, tx_two, second)
        tx_one = await _begin(one, isolation, key)
        await first(one)
        tx_two = await _begin(two, isolation, key)
        task = asyncio.create_task(_finish(two, tx_two, second))
        blocked = await _blocked_by(
            observer, two.get_server_pid(), one.get_server_pid(), task
        )
        await tx_one.commit()
        outcome = await task
        assert blocked, f"the second transaction did not wait for the first ({outcome!r})"
        return outcome
    finally:
        for conn in (one, two, observer):
            await conn.close()


async def alone(db: Database, key: TenantKey, isolation: str, op: Op) -> None:
    """Run ``op`` in one service-role transaction bound with ``key``, at ``isolation``, and
    commit."""
    conn = await asyncpg.connect(db.app)
    try:
        tx = await _begin(conn, isolation, key)
        await op(conn)
        await tx.commit()
    finally:
        await conn.close()
