"""Fixtures for the dataset tests: the service tests' database (a real PostgreSQL)."""

from __future__ import annotations

from tests.store.conftest import db, server_dsn  # noqa: F401  (fixtures)
