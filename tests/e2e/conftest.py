"""End-to-end fixtures: a real server process on a free loopback port over a real database.

The server is started as users start it (``effigate serve``), with ``EFFIGATE_DSN`` logging in
as the service role and ``EFFIGATE_ADMIN_DSN`` as the owner of a freshly created and migrated
test database; tests talk to it through the Python client.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from effigate_client import Client
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_server.process import ServiceProcess
from tests.store.conftest import create_database, db, drop_database, server_dsn  # noqa: F401
from tests.store.helpers import Database


@pytest.fixture(scope="session")
def service(db: Database) -> Iterator[ServiceProcess]:  # noqa: F811
    """One server process for the session's tests."""
    running = ServiceProcess.start(db.app, admin_dsn=db.admin)
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Tenant:
    """A tenant with a staff token."""

    id: uuid.UUID
    token: str
    admin: str

    def portal_token(self, client_id: int) -> str:
        """A new portal token of ``client_id``."""
        return asyncio.run(_token(self.admin, self.id, client_id))


async def _token(admin: str, tenant: uuid.UUID, client_id: int | None) -> str:
    conn = await asyncpg.connect(admin)
    try:
        return (await create_token(conn, tenant, client_id)).secret
    finally:
        await conn.close()


async def _tenant(admin: str) -> Tenant:
    conn = await asyncpg.connect(admin)
    try:
        tax = '[{"name": "GST", "rate_ppm": 100000}]'
        tenant = await create_tenant(conn, f"MSP {uuid.uuid4().hex[:6]}", "USD", tax)
        token = (await create_token(conn, tenant)).secret
    finally:
        await conn.close()
    return Tenant(tenant, token, admin)


@pytest.fixture
def tenant(db: Database) -> Tenant:  # noqa: F811
    """A fresh tenant (GST 10 % by default) with a staff token."""
    return asyncio.run(_tenant(db.admin))


@pytest.fixture
def client(service: ServiceProcess, tenant: Tenant) -> Iterator[Client]:
    """A blocking client of the session's service with the tenant's staff token."""
    with Client(service.address, tenant.token, timeout=120) as c:
        yield c


__all__ = ["create_database", "drop_database"]
