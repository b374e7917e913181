"""Who is calling (:class:`Principal`) and where the data lives (:class:`Store`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from effigate_engine.service.errors import PermissionDenied, Unauthenticated
from effigate_engine.store.errors import from_asyncpg
from effigate_engine.store.migrate import migrate, require_current_schema
from effigate_engine.store.roles import require_service_role
from effigate_engine.store.tenant import NOT_BOUND_SQLSTATE, TenantKey, tenant_transaction


@dataclass(frozen=True)
class Principal:
    """The caller of an operation, resolved from its API token.

    ``client_id`` is set for client-scoped portal tokens: such a caller sees only that client's
    tickets, SLA status, bucket balances and invoices, and may change nothing but its own
    tickets. ``actor`` is what the audit log records. ``token`` is the bearer token the caller
    presented: each transaction hands it to the database, which binds the transaction to the
    token's tenant only after checking it (see :mod:`effigate_engine.store.tenant`).
    """

    tenant_id: UUID
    client_id: int | None = None
    actor: str = "api"
    token: str | None = field(default=None, repr=False)

    @property
    def key(self) -> TenantKey:
        """What binds this caller's transactions to its tenant."""
        return TenantKey(self.tenant_id, self.token)

    @property
    def is_portal(self) -> bool:
        """True for a client-scoped portal token."""
        return self.client_id is not None

    def require_staff(self, operation: str) -> None:
        """Refuse ``operation`` to portal tokens."""
        if self.client_id is not None:
            raise PermissionDenied(
                "token", f"portal token of client {self.client_id}", f"may not {operation}"
            )

    def require_client(self, client_id: int, what: str) -> None:
        """Refuse access to ``what`` (of ``client_id``) to a portal token of another client."""
        if self.client_id is not None and self.client_id != client_id:
            raise PermissionDenied(what, client_id, f"is not visible to client {self.client_id}")


@dataclass
class Store:
    """The database of one service: an asyncpg pool and ADBC connections, both logging in as
    the service role (``effigate_app``: row-level security binds it, it owns nothing and may
    not lock, truncate or alter anything). The owner's DSN, when given, is used to migrate
    at start and to create tenants (the demo); serving never needs it.

    Use :meth:`open` / :meth:`close`, or ``async with await Store.open(dsn)``.
    """

    app_dsn: str
    pool: asyncpg.Pool
    _adbc: asyncio.Queue[Any]
    _adbc_all: list[Any]
    admin_dsn: str | None = None

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
        pool = await asyncpg.create_pool(app_dsn, min_size=1, max_size=pool_size)
        try:
            async with pool.acquire() as conn:
                await require_service_role(conn)
                await require_current_schema(conn)
        except BaseException:
            await pool.close()
            raise
        conns = [await asyncio.to_thread(connect_adbc, app_dsn) for _ in range(adbc_connections)]
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for conn in conns:
            queue.put_nowait(conn)
        return cls(app_dsn, pool, queue, conns, admin_dsn)

    async def close(self) -> None:
        """Close every connection."""
        await self.pool.close()
        for conn in self._adbc_all:
            await asyncio.to_thread(conn.close)
        self._adbc_all.clear()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self, principal: Principal) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction bound to the principal's tenant (the database
        checks the principal's token); commits on success, rolls back on any error. Database
        refusals come out as :class:`~effigate_engine.store.errors.StoreError` naming the
        field; a token the database no longer accepts as :class:`Unauthenticated`."""
        try:
            async with self.pool.acquire() as conn, tenant_transaction(conn, principal.key):
                yield conn
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == NOT_BOUND_SQLSTATE:
                raise Unauthenticated(
                    "authorization", None, "is not a valid or active token"
                ) from None
            raise from_asyncpg(exc) from exc

    @asynccontextmanager
    async def adbc(self) -> AsyncIterator[Any]:
        """Borrow an idle ADBC connection (bulk COPY paths); returned when the block ends."""
        conn = await self._adbc.get()
        try:
            yield conn
        finally:
            self._adbc.put_nowait(conn)

