"""Who is calling (:class:`Principal`) and where the data lives (:class:`Store`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from effigate_engine.service.errors import PermissionDenied
from effigate_engine.store.dsn import APP_ROLE, with_user
from effigate_engine.store.errors import from_asyncpg
from effigate_engine.store.migrate import migrate
from effigate_engine.store.tenant import tenant_transaction


@dataclass(frozen=True)
class Principal:
    """The caller of an operation, resolved from its API token.

    ``client_id`` is set for client-scoped portal tokens: such a caller sees only that client's
    tickets, SLA status, bucket balances and invoices, and may change nothing but its own
    tickets. ``actor`` is what the audit log records.
    """

    tenant_id: UUID
    client_id: int | None = None
    actor: str = "api"

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
    the service role (``effigate_app``, which row-level security binds), plus the admin DSN
    used for migrations and for creating tenants.

    Use :meth:`open` / :meth:`close`, or ``async with await Store.open(dsn)``.
    """

    admin_dsn: str
    app_dsn: str
    pool: asyncpg.Pool
    _adbc: asyncio.Queue[Any]
    _adbc_all: list[Any]

    @classmethod
    async def open(
        cls,
        admin_dsn: str,
        app_dsn: str | None = None,
        *,
        pool_size: int = 10,
        adbc_connections: int = 2,
        run_migrations: bool = True,
    ) -> Store:
        """Migrate the database at ``admin_dsn`` (a table owner or superuser) and connect as the
        service role (``app_dsn``, default: ``admin_dsn`` logging in as ``effigate_app``)."""
        from effigate_engine.store.bulk import connect_adbc

        if run_migrations:
            await migrate(admin_dsn)
        app = app_dsn or with_user(admin_dsn, APP_ROLE)
        pool = await asyncpg.create_pool(app, min_size=1, max_size=pool_size)
        conns = [await asyncio.to_thread(connect_adbc, app) for _ in range(adbc_connections)]
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for conn in conns:
            queue.put_nowait(conn)
        return cls(admin_dsn, app, pool, queue, conns)

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
        """A connection inside a transaction scoped to the principal's tenant; commits on
        success, rolls back on any error. Database refusals come out as
        :class:`~effigate_engine.store.errors.StoreError` naming the field."""
        try:
            async with self.pool.acquire() as conn, tenant_transaction(conn, principal.tenant_id):
                yield conn
        except asyncpg.PostgresError as exc:
            raise from_asyncpg(exc) from exc

    @asynccontextmanager
    async def adbc(self) -> AsyncIterator[Any]:
        """Borrow an idle ADBC connection (bulk COPY paths); returned when the block ends."""
        conn = await self._adbc.get()
        try:
            yield conn
        finally:
            self._adbc.put_nowait(conn)

    async def admin(self) -> asyncpg.Connection:
        """A new connection as the admin role (bypasses RLS: tenant creation only). Close it."""
        try:
            return await asyncpg.connect(self.admin_dsn)
        except asyncpg.PostgresError as exc:  # pragma: no cover - server refused the login
            raise from_asyncpg(exc) from exc

