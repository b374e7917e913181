"""Fixtures for the dataset tests: the service tests' database (a real PostgreSQL) and a
seeded tenant per test module (:func:`tests.datasets.support.seed`)."""

from __future__ import annotations

import asyncio

import pytest

from tests.datasets.support import Seeded, seed
from tests.service.support import open_store
from tests.store.conftest import db, server_dsn  # noqa: F401  (fixtures)
from tests.store.helpers import Database


@pytest.fixture(scope="module")
def seeded(db: Database) -> Seeded:  # noqa: F811  (db is the fixture imported above)
    """A tenant seeded through the service, shared by the tests of one module."""

    async def go() -> Seeded:
        async with open_store(db) as store:
            return await seed(store, db)

    return asyncio.run(go())
