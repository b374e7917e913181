"""Fixtures for the HTTP side: the session's ``effigate serve`` (gRPC and HTTP ports) and a
fresh tenant, from the end-to-end fixtures."""

from __future__ import annotations

from tests.e2e.conftest import client, service, tenant  # noqa: F401  (fixtures)
from tests.store.conftest import db, server_dsn  # noqa: F401  (fixtures)
