"""Tenants and API tokens: their SQL.

The service role cannot read ``api_tokens``; it resolves a token's digest with
``effigate_resolve_token``. Tenants and tokens are written with the owner's connection, bound to
the tenant by id (:meth:`~effigate_engine.store.tenant.TenantKey.for_owner`).
"""

from __future__ import annotations

import uuid

import asyncpg

from effigate_engine.store.tenant import TenantKey, bind


async def insert_tenant(
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
    name: str,
    currency: str,
    default_tax_json: str,
) -> None:
    """Store a tenant (the owner's connection, bound to the new tenant while it inserts it)."""
    async with admin.transaction():
        await bind(admin, TenantKey.for_owner(tenant_id))
        await admin.execute(
            "INSERT INTO tenants (id, name, default_currency, default_tax)"
            " VALUES ($1, $2, $3, $4::jsonb)",
            tenant_id,
            name,
            currency,
            default_tax_json,
        )


async def insert_token(
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
    client_id: int | None,
    label: str,
    digest: bytes,
) -> int | str:
    """Store a token's SHA-256 ``digest`` for the tenant (a portal token with ``client_id``);
    its id, or the name of the reference that does not exist (``"tenant_id"``,
    ``"client_id"``), nothing stored."""
    async with admin.transaction():
        await bind(admin, TenantKey.for_owner(tenant_id))
        if not await admin.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id):
            return "tenant_id"
        if client_id is not None and not await admin.fetchval(
            "SELECT 1 FROM clients WHERE tenant_id = $1 AND id = $2", tenant_id, client_id
        ):
            return "client_id"
        return int(
            await admin.fetchval(
                "INSERT INTO api_tokens (tenant_id, client_id, label, token_sha256)"
                " VALUES ($1, $2, $3, $4) RETURNING id",
                tenant_id,
                client_id,
                label,
                digest,
            )
        )


async def token_is_active(admin: asyncpg.Connection, tenant_id: uuid.UUID, digest: bytes) -> bool:
    """Whether ``digest`` is an active (unrevoked) token's of ``tenant_id`` (the owner's
    connection)."""
    async with admin.transaction():
        await bind(admin, TenantKey.for_owner(tenant_id))
        found = await admin.fetchval(
            "SELECT 1 FROM api_tokens WHERE tenant_id = $1 AND token_sha256 = $2"
            " AND revoked_at IS NULL",
            tenant_id,
            digest,
        )
    return bool(found)


async def resolve_token(conn: asyncpg.Connection, digest: bytes) -> asyncpg.Record | None:
    """``(token_id, tenant_id, client_id)`` of the active token of SHA-256 ``digest`` (any
    connection of the service role, bound to no tenant)."""
    return await conn.fetchrow("SELECT * FROM effigate_resolve_token($1)", digest)


async def tenant_row_counts(
    admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> dict[str, int] | None:
    """Rows the tenant holds: ``clients``, ``tickets``, ``events``, ``time_logs`` and
    ``invoiced`` (contracts with an invoice); ``None`` when there is no such tenant (the
    owner's connection)."""
    async with admin.transaction():
        await bind(admin, TenantKey.for_owner(tenant_id))
        if not await admin.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id):
            return None
        row = await admin.fetchrow(
            "SELECT (SELECT count(*) FROM clients) AS clients,"
            " (SELECT count(*) FROM tickets) AS tickets,"
            " (SELECT count(*) FROM ticket_events) AS events,"
            " (SELECT count(*) FROM time_logs) AS time_logs,"
            " (SELECT count(DISTINCT contract_id) FROM invoices) AS invoiced"
        )
    return {k: int(v) for k, v in row.items()}


async def revoke_token(admin: asyncpg.Connection, tenant_id: uuid.UUID, token_id: int) -> bool:
    """Revoke the tenant's token ``token_id`` (the owner's connection); whether it was
    active."""
    async with admin.transaction():
        await bind(admin, TenantKey.for_owner(tenant_id))
        revoked = await admin.fetchval(
            "UPDATE api_tokens SET revoked_at = now()"
            " WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
            tenant_id,
            token_id,
        )
    return revoked is not None
