"""Where the database is: ``EFFIGATE_DSN`` (the service role), ``EFFIGATE_ADMIN_DSN`` (the
owner, for migrations and tenant creation), ``EFFIGATE_TEST_DSN`` (tests and benchmarks), or
the embedded server (:mod:`effigate_engine.store.embedded`) when none is set.
"""

from __future__ import annotations

import os
import socket

from effigate_engine.store.embedded import start_embedded

ENV_DSN = "EFFIGATE_DSN"
ENV_ADMIN_DSN = "EFFIGATE_ADMIN_DSN"
ENV_TEST_DSN = "EFFIGATE_TEST_DSN"
LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
LOCAL_DSN = f"postgresql://postgres@{LOCAL_HOST}:{LOCAL_PORT}/postgres"


def local_server_answers(
    host: str = LOCAL_HOST, port: int = LOCAL_PORT, timeout_s: float = 0.5
) -> bool:
    """True when something accepts TCP connections at ``host:port`` within ``timeout_s`` s."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_dsn() -> str:
    """The service role's DSN: ``EFFIGATE_DSN`` when set, else the embedded server's (started
    if needed; data in ``EFFIGATE_DATA_DIR``, default ``.effigate/pgdata``)."""
    configured = os.environ.get(ENV_DSN)
    if configured:
        return configured
    return start_embedded().app_dsn()


def resolve_admin_dsn() -> str | None:
    """The owner's DSN (migrations, tenants, tokens): ``EFFIGATE_ADMIN_DSN`` when set, else the
    embedded server's owner when no ``EFFIGATE_DSN`` is set either, else ``None`` (a service
    pointed at its own server without the owner's credentials)."""
    configured = os.environ.get(ENV_ADMIN_DSN)
    if configured:
        return configured
    if os.environ.get(ENV_DSN):
        return None
    return start_embedded().owner_dsn()


def require_admin_dsn(command: str) -> str:
    """:func:`resolve_admin_dsn`, or ``SystemExit`` naming the setting ``command`` needs."""
    dsn = resolve_admin_dsn()
    if dsn is None:
        raise SystemExit(
            f"effigate {command}: needs the owner's credentials: set {ENV_ADMIN_DSN} "
            "(EFFIGATE_DSN is the service role's and may not migrate or create tenants)"
        )
    return dsn


def resolve_test_dsn() -> str:
    """The superuser DSN for tests and benchmarks.

    ``EFFIGATE_TEST_DSN`` when set, else the server on 127.0.0.1:5432 when one answers, else the
    embedded server, so the suite runs on a machine with no PostgreSQL installed.
    """
    configured = os.environ.get(ENV_TEST_DSN)
    if configured:
        return configured
    if local_server_answers():
        return LOCAL_DSN
    return start_embedded().dsn()
