"""``effigate migrate``: apply pending database migrations."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from effigate_engine.store.errors import StoreError


def add_commands(subparsers: Any) -> None:
    """Register the ``migrate`` subcommand on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "migrate",
        help="apply pending database migrations (idempotent; safe to run concurrently)",
        description=(
            "Apply the schema migrations that the database has not recorded yet, each in its "
            "own transaction, as the owner of the schema. Without --dsn, uses "
            "EFFIGATE_ADMIN_DSN, else (with no EFFIGATE_DSN either) the embedded server in "
            "EFFIGATE_DATA_DIR (default .effigate/pgdata)."
        ),
    )
    parser.add_argument(
        "--dsn",
        default=None,
        help="PostgreSQL URI of the owner (or a superuser) (default: EFFIGATE_ADMIN_DSN)",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="list applied and pending migrations without applying any",
    )
    parser.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    """Run ``migrate`` for parsed ``args``; returns the process exit code (0 on success)."""
    from effigate_engine.store.migrate import load_migrations, migrate, recorded_migrations
    from effigate_engine.store.settings import require_admin_dsn

    dsn = getattr(args, "dsn", None) or require_admin_dsn("migrate")
    try:
        if getattr(args, "status", False):
            recorded = asyncio.run(recorded_migrations(dsn))
            for migration in load_migrations():
                state = "applied" if migration.version in recorded else "pending"
                print(f"{migration.version:04d}_{migration.name}  {state}")
            return 0
        applied = asyncio.run(migrate(dsn))
    except (StoreError, OSError) as exc:
        print(f"effigate migrate: {exc}", file=sys.stderr)
        return 1
    if applied:
        print("applied migrations: " + ", ".join(f"{v:04d}" for v in applied))
    else:
        print("schema is up to date")
    return 0
