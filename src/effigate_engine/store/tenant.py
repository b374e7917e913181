"""Tenant binding: every query runs in a transaction the database has bound to one tenant.

Row-level security admits a transaction to the rows of the tenant it is *bound* to, and a
binding needs proof the database checks itself: the service role presents a bearer token of
the tenant (``effigate_bind(token)``: the database hashes it and looks it up among the active
tokens' digests); the owner binds by tenant id (``effigate_bind_tenant``, which the service
role may not call). The binding is a pair of transaction-local settings, the tenant and an
HMAC over the tenant and the transaction's start under a key only the owner can read, so it
ends with the transaction, a pooled connection carries nothing into the next one, and a
hand-made ``set_config('effigate.tenant_id', ...)`` binds nothing: such a transaction sees no
tenant's rows and can write none. One statement per transaction, in place of the
``set_config`` it replaces: no extra round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

#: The claimed tenant (transaction-local); only a binding function sets it with its proof.
TENANT_SETTING = "effigate.tenant_id"
BIND_SQL = "SELECT effigate_bind($1)"
OWNER_BIND_SQL = "SELECT effigate_bind_tenant($1::uuid)"
#: SQLSTATE of a token the database does not accept (invalid_authorization_specification).
NOT_BOUND_SQLSTATE = "28000"


def tenant_text(tenant_id: UUID | str) -> str:
    """The canonical text of a tenant id; raises ``ValueError`` for anything but a UUID."""
    return str(tenant_id if isinstance(tenant_id, UUID) else UUID(str(tenant_id)))


@dataclass(frozen=True)
class TenantKey:
    """What binds a transaction to a tenant.

    ``token`` is a bearer token (its secret) of the tenant: the service role's proof. Without a
    token the transaction is bound by ``tenant_id`` alone, which only the owner's connections
    may do (maintenance, tenant and token creation).
    """

    tenant_id: UUID
    token: str | None = field(default=None, repr=False)

    @classmethod
    def for_owner(cls, tenant_id: UUID | str) -> TenantKey:
        """A key the owner binds with (refused on the service role's connections)."""
        return cls(UUID(tenant_text(tenant_id)))

    def bind_statement(self) -> tuple[str, str]:
        """The statement that binds a transaction with this key, and its one parameter."""
        if self.token is None:
            return OWNER_BIND_SQL, tenant_text(self.tenant_id)
        return BIND_SQL, self.token


class TenantMismatch(RuntimeError):
    """The database bound a different tenant than the caller expected (a token of another
    tenant presented under this tenant's name)."""


async def bind(conn: asyncpg.Connection, key: TenantKey) -> UUID:
    """Bind the current transaction (must be inside one) to ``key``'s tenant; returns it.

    A token the database does not accept raises ``asyncpg.InvalidAuthorizationSpecificationError``
    (SQLSTATE 28000) and binds nothing.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("bind outside a transaction would not last; open one first")
    sql, parameter = key.bind_statement()
    return verify_bound(await conn.fetchval(sql, parameter), key)


def verify_bound(bound: object, key: TenantKey) -> UUID:
    """``key``'s tenant when the database bound it (``bound``: what the binding returned);
    :class:`TenantMismatch` otherwise."""
    if bound is None or tenant_text(str(bound)) != tenant_text(key.tenant_id):
        raise TenantMismatch(f"bound tenant {bound}, expected {key.tenant_id}")
    return UUID(tenant_text(key.tenant_id))


@asynccontextmanager
async def tenant_transaction(
    conn: asyncpg.Connection, key: TenantKey
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on ``conn`` bound to ``key``'s tenant; commits on success."""
    async with conn.transaction():
        await bind(conn, key)
        yield conn


class TenantPool:
    """An asyncpg pool whose connections are handed out inside a tenant-bound transaction.

    Connect it with the service role's DSN (``effigate_app``: not a superuser, not the owner),
    so row-level security applies to every query.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> TenantPool:
        """Open a pool of ``min_size``..``max_size`` connections to ``dsn``."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(pool)

    @asynccontextmanager
    async def tenant(self, key: TenantKey) -> AsyncIterator[asyncpg.Connection]:
        """Acquire a connection and open a transaction bound to ``key``'s tenant."""
        async with self._pool.acquire() as conn, tenant_transaction(conn, key):
            yield conn

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._pool.close()
