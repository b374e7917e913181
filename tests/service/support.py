"""Shared setup of the service tests: a store on the test database and fresh tenants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from effigate_engine.service import Principal, Store
from tests.store.helpers import Database


@asynccontextmanager
async def open_store(db: Database) -> AsyncIterator[Store]:
    """A :class:`Store` on the migrated test database (service role), closed afterwards."""
    store = await Store.open(db.admin, db.app, run_migrations=False, adbc_connections=1)
    try:
        yield store
    finally:
        await store.close()


async def new_tenant(db: Database, currency: str = "USD", name: str = "Northwind MSP") -> Principal:
    """Create a tenant (admin connection) and return a staff principal for it."""
    tenant = uuid.uuid4()
    conn = await asyncpg.connect(db.admin)
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, default_currency) VALUES ($1, $2, $3)",
            tenant,
            name,
            currency,
        )
    finally:
        await conn.close()
    return Principal(tenant, actor="test")
