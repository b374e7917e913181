"""The database of one service (:class:`Store`): an asyncpg pool and ADBC connections, both
logging in as the service role, with the database's errors translated on the way out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from effigate_engine.store.bulk import through
from effigate_engine.store.catalog_changes import CatalogChanges
from effigate_engine.store.errors import (
    ConnectionLost,
    TokenRefused,
    connection_lost,
    from_adbc,
    from_asyncpg,
    lost,
)
from effigate_engine.store.migrate import migrate, require_current_schema
from effigate_engine.store.roles import require_service_role
from effigate_engine.store.tenant import NOT_BOUND_SQLSTATE, TenantKey, tenant_transaction

#: An ADBC connection idle for longer than this (seconds), or whose last use failed, is
#: checked with a round trip before it is lent, and replaced if the server no longer answers
#: on it (the database was restarted or failed over while it sat in the pool).
ADBC_CHECK_IDLE_SECONDS = 0.5


class Keyed(Protocol):
    """A caller whose transactions bind to a tenant (the service's principal)."""

    @property
    def key(self) -> TenantKey: ...


def key_of(caller: TenantKey | Keyed) -> TenantKey:
    """The tenant key of ``caller`` (a key, or a caller holding one)."""
    return caller if isinstance(caller, TenantKey) else caller.key


@dataclass
class Store:
    """The database of one service: an asyncpg pool and ADBC connections, both logging in as
    the service role (``effigate_app``: row-level security binds it, it owns nothing and may
    not lock, truncate or alter anything). The owner's DSN, when given, is used to migrate
    at start and to create tenants (the demo); serving never needs it. One more connection
    of the service role listens for changes of the tenants' catalogs
    (:class:`~effigate_engine.store.catalog_changes.CatalogChanges`).

    Use :meth:`open` / :meth:`close`, or ``async with await Store.open(dsn)``.
    """

    app_dsn: str
    pool: asyncpg.Pool
    _adbc: asyncio.Queue[_AdbcSlot]
    _adbc_all: list[_AdbcSlot]
    catalog_changes: CatalogChanges
    admin_dsn: str | None = None
    #: listeners on other channels, opened on first use (:meth:`listener`)
    _listeners: dict[str, CatalogChanges] = field(default_factory=dict)
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    async def open(
        cls,
        app_dsn: str,
        *,
        admin_dsn: str | None = None,
        pool_size: int = 10,
        adbc_connections: int = 2,
    ) -> Store:
        """Connect as the service role at ``app_dsn``. With ``admin_dsn`` (the owner's) the
        database is migrated first; without, it must already be current. A DSN logging in as
        a superuser, a role that bypasses row-level security or the owner is refused."""
        from effigate_engine.store.bulk import connect_adbc

        if admin_dsn is not None:
            await migrate(admin_dsn)
        pool = await asyncpg.create_pool(
            app_dsn, min_size=1, max_size=pool_size, reset=_keep_session
        )
        try:
            async with pool.acquire() as conn:
                await require_service_role(conn)
                await require_current_schema(conn)
            changes = await CatalogChanges.open(app_dsn)
        except BaseException:
            await pool.close()
            raise
        try:
            slots = [
                _AdbcSlot(await asyncio.to_thread(connect_adbc, app_dsn))
                for _ in range(adbc_connections)
            ]
        except BaseException:
            await changes.close()
            await pool.close()
            raise
        queue: asyncio.Queue[_AdbcSlot] = asyncio.Queue()
        for slot in slots:
            queue.put_nowait(slot)
        return cls(app_dsn, pool, queue, slots, changes, admin_dsn)

    async def listener(self, channel: str) -> CatalogChanges:
        """The process's listener on ``channel`` (a channel whose payload is a tenant id, such
        as the event outbox's), opened on first use on a connection of its own and closed with
        the store; reconnects by itself like the catalog listener."""
        async with self._opening:
            listening = self._listeners.get(channel)
            if listening is None:
                listening = await CatalogChanges.open(self.app_dsn, channel)
                self._listeners[channel] = listening
            return listening

    async def close(self) -> None:
        """Close every connection."""
        await self.catalog_changes.close()
        listeners, self._listeners = list(self._listeners.values()), {}
        for listening in listeners:
            await listening.close()
        await self.pool.close()
        for slot in self._adbc_all:
            if slot.conn is not None:
                await asyncio.to_thread(_close_quietly, slot.conn)
                slot.conn = None
        self._adbc_all.clear()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self, caller: TenantKey | Keyed) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction bound to the caller's tenant (the database
        checks the caller's token); commits on success, rolls back on any error. Database
        refusals come out as :class:`~effigate_engine.store.errors.StoreError` naming the
        field; a token the database no longer accepts as
        :class:`~effigate_engine.store.errors.TokenRefused`.
        A connection that breaks midway (the database restarted or crashed) comes out as
        :class:`~effigate_engine.store.errors.ConnectionLost`: the transaction is then either
        committed whole or not at all, and the pool replaces the connection."""
        async with (
            _translated(),
            self.pool.acquire() as conn,
            _confused(conn),
            tenant_transaction(conn, key_of(caller)),
        ):
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection bound to no tenant (token resolution), with the database's
        errors translated as in :meth:`transaction`."""
        async with _translated(), self.pool.acquire() as conn, _confused(conn):
            yield conn

    @asynccontextmanager
    async def adbc(self) -> AsyncIterator[Any]:
        """Borrow an idle ADBC connection (bulk COPY paths); returned when the block ends.

        Run blocking work on it with :func:`~effigate_engine.store.bulk.run_adbc`, never a
        bare ``asyncio.to_thread``: a call cancelled midway must not hand the connection on
        while a thread still uses it.
        A connection idle for more than :data:`ADBC_CHECK_IDLE_SECONDS`, or whose last use
        failed, or any connection once one was lost, is checked first and replaced when the
        server no longer answers on it; when
        no connection can be made the block is not entered
        (:class:`~effigate_engine.store.errors.ConnectionLost`).
        """
        slot = await self._adbc.get()
        try:
            yield await through(asyncio.to_thread(slot.ready, self.app_dsn), lambda: None)
        except ConnectionLost:
            # the server went away: every connection made before is likely stale too
            for other in self._adbc_all:
                other.suspect = True
            raise
        except BaseException:
            slot.suspect = True
            raise
        finally:
            slot.idle_since = time.monotonic()
            self._adbc.put_nowait(slot)


@dataclass
class _AdbcSlot:
    """One ADBC connection of the store (``None`` after it was found broken and could not be
    replaced yet), when it was last returned, and whether its last use failed."""

    conn: Any
    idle_since: float = field(default_factory=time.monotonic)
    suspect: bool = False

    def ready(self, dsn: str) -> Any:
        """The connection, checked and replaced if needed (see :meth:`Store.adbc`); blocking."""
        import adbc_driver_manager

        from effigate_engine.store.bulk import connect_adbc

        stale = time.monotonic() - self.idle_since > ADBC_CHECK_IDLE_SECONDS
        if self.conn is not None and (self.suspect or stale) and not _answers(self.conn):
            _close_quietly(self.conn)
            self.conn = None
        if self.conn is None:
            try:
                self.conn = connect_adbc(dsn)
            except adbc_driver_manager.Error as exc:
                raise from_adbc(exc) from exc
        self.suspect = False
        return self.conn


def _answers(conn: Any) -> bool:
    """Whether the server answers on ADBC connection ``conn`` (one ``SELECT 1``)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
        conn.rollback()
    except Exception:
        return False
    return True


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection may fail to say goodbye
        return


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """The database's refusals as :class:`~effigate_engine.store.errors.StoreError` (naming
    the field), a broken connection as :class:`~effigate_engine.store.errors.ConnectionLost`;
    around a pooled connection's whole use, its release included."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise translated(exc) from exc
    except asyncpg.InterfaceError as exc:
        if _broken(exc):
            raise lost(str(exc)) from exc
        raise
    except asyncpg.InternalClientError as exc:  # resetting it for the pool failed
        raise lost(str(exc)) from exc


@asynccontextmanager
async def _confused(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Terminate ``conn`` (the pool then replaces it) when asyncpg's protocol lost track of its
    state, which a server's unsolicited goodbye (a shutdown) can cause: the call learns it as
    :class:`~effigate_engine.store.errors.ConnectionLost` (nothing of its transaction was
    committed, unless the break hit the commit itself)."""
    try:
        yield
    except asyncpg.InternalClientError as exc:
        conn.terminate()
        raise lost(str(exc)) from exc


def _broken(exc: BaseException) -> bool:
    """Whether an asyncpg ``InterfaceError`` comes from a connection that broke midway: its
    context holds a connection error (asyncpg then refuses to end the transaction on the
    closed connection), or it says the connection is closed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, asyncpg.PostgresError) and connection_lost(seen.sqlstate):
            return True
        seen = seen.__context__
    return "connection is closed" in str(exc)


def translated(exc: asyncpg.PostgresError) -> Exception:
    """The store's error for a database refusal: :class:`~effigate_engine.store.errors.
    TokenRefused` for a token the database does not accept (nothing was bound), else
    :func:`~effigate_engine.store.errors.from_asyncpg`'s."""
    if exc.sqlstate == NOT_BOUND_SQLSTATE:
        return TokenRefused("authorization", None, "is not a valid or active token", exc.sqlstate)
    return from_asyncpg(exc)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, besides rolling back a transaction left
    open (asyncpg always does): nothing. asyncpg's default sends ``RESET ALL`` and friends, a
    round trip per call; the service leaves no session state to reset (a tenant binding is
    transaction-local and verified per transaction, advisory locks are transaction-scoped, no
    ``LISTEN``, no cursor outlives its transaction)."""
