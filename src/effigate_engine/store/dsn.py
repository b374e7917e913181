"""DSN rewriting: another database or user in the same DSN, and the database a DSN names
(where the database is comes from :mod:`effigate_engine.store.settings`).

DSNs are PostgreSQL URIs (``postgresql://user:password@host:port/database?params``); a Unix
socket directory is given as ``?host=/path``, as the embedded server does.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

#: The role the service connects as; created by the first migration (see docs/store.md).
APP_ROLE = "effigate_app"


def with_database(dsn: str, database: str) -> str:
    """Return ``dsn`` pointing at ``database`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + quote(database)))


def with_user(dsn: str, user: str, password: str | None = None) -> str:
    """Return ``dsn`` logging in as ``user`` (with ``password`` if given) instead."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = quote(user, safe="")
    if password is not None:
        netloc += ":" + quote(password, safe="")
    netloc += "@" + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in {"user"}])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def database_of(dsn: str) -> str:
    """The database name a DSN points at (``postgres`` when it names none)."""
    path = urlsplit(dsn).path.lstrip("/")
    return path or "postgres"
