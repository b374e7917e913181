"""``effigate export`` and ``effigate load-back``: the Parquet dataset the scale-out jobs read,
and their SLA results loaded back (:mod:`effigate_engine.service.datasets`,
``docs/scale-out.md``).

Both work on the database directly, like ``migrate`` and ``token``: the service role at
``EFFIGATE_DSN`` (else the embedded server), binding each tenant with a job token issued with
the owner's credentials (``EFFIGATE_ADMIN_DSN``, else the embedded server's) and revoked when
the command ends; without the owner's credentials, ``EFFIGATE_TOKEN`` (a staff token) names
the one tenant to work for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from effigate_cli.failures import EXIT_USAGE, CommandFailure

ENV_TOKEN = "EFFIGATE_TOKEN"


def add_commands(commands: Any) -> None:
    """Register ``export`` and ``load-back`` on the ``effigate`` subparsers."""
    export = commands.add_parser(
        "export",
        help="export tickets, time logs and catalogs to a Parquet dataset (local or fsspec URL)",
        description=(
            "Write every tenant's (or the --tenant ones') tickets as known at --as-of, time"
            " logs, calendars, policies, contracts and breach records to the dataset at URL"
            " (a folder, or any fsspec URL such as s3://bucket/prefix). Re-running replaces"
            " the parts; it never adds a second copy."
        ),
    )
    export.add_argument("url", help="where the dataset goes (a folder or an fsspec URL)")
    export.add_argument(
        "--tenant", action="append", default=None, metavar="UUID", help="only this tenant"
    )
    export.add_argument(
        "--as-of",
        default=None,
        metavar="ISO",
        help="the instant the tickets are exported as known at (default: now)",
    )
    export.set_defaults(handler=run_export)
    back = commands.add_parser(
        "load-back",
        help="load a job's SLA results (standings, breach records) from a dataset into the store",
        description=(
            "Load results/<job>/ (SLA results) and results/<job>_breaches/ of the dataset at URL"
            " into the store, one transaction per part: idempotent, a part that fails leaves"
            " nothing of it stored."
        ),
    )
    back.add_argument("url", help="the dataset (a folder or an fsspec URL)")
    back.add_argument("--job", default="sla", help="the job whose results to load (default sla)")
    back.add_argument(
        "--tenant", action="append", default=None, metavar="UUID", help="only this tenant"
    )
    back.set_defaults(handler=run_load_back)


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandFailure(f"--as-of: {text!r} is not an ISO 8601 instant", EXIT_USAGE) from None
    if value.tzinfo is None:
        raise CommandFailure(f"--as-of: {text!r} has no time zone (add Z or +hh:mm)", EXIT_USAGE)
    return value


@asynccontextmanager
async def _opened(tenants: list[str] | None) -> AsyncIterator[tuple[Any, list[Any] | None]]:
    """The store, and the tenants to work for: the ids given (or every tenant) with the
    owner's credentials, else the tenant of ``EFFIGATE_TOKEN``."""
    from effigate_engine.service import Store
    from effigate_engine.service.tokens import TokenResolver
    from effigate_engine.store.settings import resolve_admin_dsn, resolve_dsn

    admin_dsn = resolve_admin_dsn()
    store = await Store.open(resolve_dsn(), admin_dsn=admin_dsn, adbc_connections=1)
    try:
        refs: list[Any] | None = list(tenants) if tenants else None
        if admin_dsn is None and os.environ.get(ENV_TOKEN):
            principal = await TokenResolver(store).resolve(os.environ[ENV_TOKEN])
            if refs is not None and refs != [str(principal.tenant_id)]:
                raise CommandFailure(
                    f"--tenant: {ENV_TOKEN} is a token of tenant {principal.tenant_id}; other"
                    " tenants need the owner's credentials (EFFIGATE_ADMIN_DSN)",
                    EXIT_USAGE,
                )
            refs = [principal]
        yield store, refs
    finally:
        await store.close()


def run_export(args: argparse.Namespace) -> int:
    """Run ``export``; prints one line."""
    from effigate_engine.service.datasets import export_dataset

    as_of = _as_of(args.as_of)

    async def go() -> Any:
        async with _opened(args.tenant) as (store, tenants):
            return await export_dataset(store, args.url, tenants=tenants, as_of=as_of)

    print(asyncio.run(go()).line())
    return 0


def run_load_back(args: argparse.Namespace) -> int:
    """Run ``load-back``; prints one line."""
    from effigate_engine.service.datasets import load_sla_results

    async def go() -> Any:
        async with _opened(args.tenant) as (store, tenants):
            return await load_sla_results(store, args.url, job=args.job, tenants=tenants)

    print(asyncio.run(go()).line())
    return 0
