"""Shared setup of the service tests: a store on the test database and fresh tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from effigate_engine.service.context import Principal
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_engine.store.database import Store
from tests.store.helpers import Database


@asynccontextmanager
async def open_store(db: Database) -> AsyncIterator[Store]:
    """A :class:`Store` on the migrated test database (service role), closed afterwards."""
    store = await Store.open(db.app, adbc_connections=1)
    try:
        yield store
    finally:
        await store.close()


async def new_tenant(db: Database, currency: str = "USD", name: str = "Northwind MSP") -> Principal:
    """Create a tenant and a staff token of it (admin connection); return the staff principal
    presenting that token."""
    conn = await asyncpg.connect(db.admin)
    try:
        tenant = await create_tenant(conn, name, currency)
        token = await create_token(conn, tenant, label="test")
    finally:
        await conn.close()
    return Principal(tenant, actor="test", token=token.secret)
