"""Tenant context: every query runs in a transaction that names its tenant.

Row-level security keys on the setting ``effigate.tenant_id``, set with
``set_config(..., true)`` (the ``SET LOCAL`` form), so it lasts exactly one transaction and a
pooled connection never carries a tenant into the next request. A transaction that sets no
tenant sees no tenant rows at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg

TENANT_SETTING = "effigate.tenant_id"
SET_TENANT_SQL = "SELECT set_config('effigate.tenant_id', $1, true)"


def tenant_text(tenant_id: UUID | str) -> str:
    """The canonical text of a tenant id; raises ``ValueError`` for anything but a UUID."""
    return str(tenant_id if isinstance(tenant_id, UUID) else UUID(str(tenant_id)))


async def set_tenant(conn: asyncpg.Connection, tenant_id: UUID | str) -> None:
    """Set the tenant for the rest of the current transaction (must be inside one)."""
    if not conn.is_in_transaction():
        raise RuntimeError("set_tenant outside a transaction would not last; open one first")
    await conn.execute(SET_TENANT_SQL, tenant_text(tenant_id))


@asynccontextmanager
async def tenant_transaction(
    conn: asyncpg.Connection, tenant_id: UUID | str
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on ``conn`` scoped to ``tenant_id``; commits on success."""
    async with conn.transaction():
        await conn.execute(SET_TENANT_SQL, tenant_text(tenant_id))
        yield conn


class TenantPool:
    """An asyncpg pool whose connections are handed out inside a tenant-scoped transaction.

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
    async def tenant(self, tenant_id: UUID | str) -> AsyncIterator[asyncpg.Connection]:
        """Acquire a connection and open a transaction scoped to ``tenant_id``."""
        async with self._pool.acquire() as conn, tenant_transaction(conn, tenant_id):
            yield conn

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._pool.close()
