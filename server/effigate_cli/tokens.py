"""``effigate token create``: a tenant or portal token, made with the owner's credentials
(``EFFIGATE_ADMIN_DSN``, or the embedded server's)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def add_commands(commands: Any) -> None:
    """Register ``token`` on the ``effigate`` subparsers."""
    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser(
        "create", help="create a tenant token, or a portal token with --client"
    )
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="id (UUID) of an existing tenant")
    who.add_argument("--new-tenant", metavar="NAME", help="create a tenant of this name first")
    create.add_argument("--currency", default="USD", help="a new tenant's default currency")
    create.add_argument("--client", type=int, default=None, help="portal token of this client")
    create.add_argument("--label", default="")
    create.set_defaults(handler=run_token_create)


def run_token_create(args: argparse.Namespace) -> int:
    """Create a token (and a tenant with --new-tenant) with the owner's DSN."""
    import uuid

    import asyncpg

    from effigate_engine.service.tokens import create_tenant, create_token
    from effigate_engine.store.migrate import migrate
    from effigate_engine.store.settings import require_admin_dsn

    dsn = require_admin_dsn("token create")

    async def go() -> Any:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            if args.new_tenant:
                tenant = await create_tenant(conn, args.new_tenant, args.currency)
            else:
                tenant = uuid.UUID(args.tenant)
            return await create_token(conn, tenant, args.client, args.label)
        finally:
            await conn.close()

    issued = asyncio.run(go())
    kind = f"portal token of client {issued.client_id}" if issued.client_id else "tenant token"
    print(f"tenant {issued.tenant_id}: {kind} {issued.id} (shown once, store it now)")
    print(issued.secret)
    return 0
