"""Versioned plain-SQL migrations: applied in order, each in its own transaction, recorded.

Migrations are the package's ``migrations/NNNN_name.sql`` files. Applying is idempotent and
safe under concurrent starts: a connection-level advisory lock (scoped to the database) makes a
second migrator wait, after which it finds nothing left to apply. A recorded migration whose
file has since changed (SHA-256 differs) is an error, never silently re-applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from effigate_engine.store.errors import MigrationError, from_asyncpg

MIGRATIONS_TABLE = "effigate_schema_migrations"
#: Advisory-lock key held while migrating (any fixed 64-bit value unique to this purpose).
MIGRATION_LOCK_KEY = 0x45464647_4D494752  # "EFFGMIGR"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` from its 4-digit prefix, ``sha256`` of its text."""

    version: int
    name: str
    sql: str
    sha256: str


def load_migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    folder = resources.files("effigate_engine.store").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=sql,
                sha256=hashlib.sha256(sql.encode("utf-8")).hexdigest(),
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("migrations.version", versions, "has a duplicate version number")
    return found


async def applied_versions(conn: asyncpg.Connection) -> dict[int, str]:
    """Recorded migrations of the database: version -> SHA-256 ({} on a fresh database)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", MIGRATIONS_TABLE)
    if not exists:
        return {}
    rows = await conn.fetch(f"SELECT version, sha256 FROM {MIGRATIONS_TABLE}")
    return {row["version"]: row["sha256"] for row in rows}


async def migrate_connection(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[int]:
    """Apply pending migrations over ``conn`` (a table-owner or superuser connection).

    Returns the versions applied by this call (empty when the schema was already current).
    """
    pending_source = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    sha256 text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"""
        )
        recorded = await applied_versions(conn)
        applied: list[int] = []
        for migration in pending_source:
            known = recorded.get(migration.version)
            if known is not None:
                if known != migration.sha256:
                    raise MigrationError(
                        f"migrations.{migration.version:04d}_{migration.name}",
                        migration.sha256,
                        f"differs from the applied version (sha256 {known}); add a new "
                        "migration instead of editing an applied one",
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (version, name, sha256) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.sha256,
                    )
            except asyncpg.PostgresError as exc:
                error = from_asyncpg(exc)
                raise MigrationError(
                    f"migrations.{migration.version:04d}_{migration.name}",
                    None,
                    f"failed and was rolled back: {error}",
                    error.sqlstate,
                ) from exc
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def require_current_schema(conn: asyncpg.Connection) -> None:
    """Refuse a database whose recorded migrations differ from the package's (pending ones, or
    a changed file): the service role can read the record but cannot migrate."""
    try:
        recorded = await applied_versions(conn)
    except asyncpg.InsufficientPrivilegeError:
        raise MigrationError(
            MIGRATIONS_TABLE,
            None,
            "is not readable by this role: the schema predates the service role's read access "
            "(0006); run effigate migrate with the owner's DSN (EFFIGATE_ADMIN_DSN)",
        ) from None
    for migration in load_migrations():
        known = recorded.get(migration.version)
        if known != migration.sha256:
            state = "is not applied" if known is None else f"was applied as sha256 {known}"
            raise MigrationError(
                f"migrations.{migration.version:04d}_{migration.name}",
                migration.sha256,
                f"{state}: run effigate migrate with the owner's DSN (EFFIGATE_ADMIN_DSN)",
            )


async def migrate(dsn: str) -> list[int]:
    """Connect to ``dsn`` and apply pending migrations; returns the versions applied."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate_connection(conn)
    finally:
        await conn.close()


async def recorded_migrations(dsn: str) -> dict[int, str]:
    """Connect to ``dsn`` and return its recorded migrations: version -> SHA-256."""
    conn = await asyncpg.connect(dsn)
    try:
        return await applied_versions(conn)
    finally:
        await conn.close()
