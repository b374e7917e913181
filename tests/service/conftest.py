"""Fixtures for the service tests: a real PostgreSQL database per test process.

Reuses the store tests' server resolution (``EFFIGATE_TEST_DSN``, else 127.0.0.1:5432, else the
embedded server). Each test makes its own tenant, so tests are independent of one another.
"""

from __future__ import annotations

from tests.store.conftest import db, server_dsn  # noqa: F401  (fixtures)
