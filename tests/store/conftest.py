"""Fixtures for the store tests: a real PostgreSQL server and a fresh database per test run.

The server is ``EFFIGATE_TEST_DSN`` when set, else the one on 127.0.0.1:5432 when it answers,
else the embedded server. Each pytest process (each xdist worker) creates its own database
with a random name, migrates it, and drops it at the end; every test makes its own tenants,
so tests do not depend on one another or on their order. The service role logs in with the
password ``EFFIGATE_TEST_APP_PASSWORD`` gives, or the embedded server's, or none (trust).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from effigate_engine.store.dsn import APP_ROLE, with_database, with_user
from effigate_engine.store.embedded import passwords_for
from effigate_engine.store.migrate import migrate
from effigate_engine.store.settings import resolve_test_dsn
from tests.store.helpers import Database


async def create_database(server_dsn: str, name: str) -> None:
    """``CREATE DATABASE name`` on the server."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(server_dsn: str, name: str) -> None:
    """Drop ``name``, closing connections left open by failed tests."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def app_password(server_dsn: str) -> str | None:
    """The service role's password on the test server (``None``: the server trusts logins)."""
    configured = os.environ.get("EFFIGATE_TEST_APP_PASSWORD")
    if configured:
        return configured
    passwords = passwords_for(server_dsn)
    return None if passwords is None else passwords[APP_ROLE]


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """Superuser DSN of the test server (its maintenance database)."""
    return resolve_test_dsn()


@pytest.fixture(scope="session")
def db(server_dsn: str) -> Iterator[Database]:
    """A freshly created and migrated database, dropped at the end of the run."""
    name = f"effigate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(create_database(server_dsn, name))
    admin = with_database(server_dsn, name)
    try:
        asyncio.run(migrate(admin))
        app = with_user(admin, APP_ROLE, app_password(server_dsn))
        yield Database(name=name, admin=admin, app=app)
    finally:
        asyncio.run(drop_database(server_dsn, name))


@pytest.fixture
def empty_database(server_dsn: str) -> Iterator[str]:
    """Admin DSN of a brand-new, unmigrated database, dropped after the test."""
    name = f"effigate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(create_database(server_dsn, name))
    try:
        yield with_database(server_dsn, name)
    finally:
        asyncio.run(drop_database(server_dsn, name))
