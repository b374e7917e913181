"""Tenants and API tokens.

A token is a random secret shown once at creation; the database keeps only its SHA-256
digest. A tenant token acts for staff and integrations; a client-scoped (portal) token sees
only its client's tickets, SLA status, bucket balances and invoices. Resolving a token runs
``effigate_resolve_token`` (the service role cannot read ``api_tokens``); each transaction
then hands the token to the database, which binds it to the token's tenant after checking it.
Tenants and tokens are created with the owner's connection, bound to the tenant by id.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from effigate_engine.service.context import Principal
from effigate_engine.service.errors import NotFound, Unauthenticated
from effigate_engine.store import tokens as stored
from effigate_engine.store.database import Store

TOKEN_PREFIX = "efg_"
#: Seconds a resolved token is remembered by one server process (a revocation takes effect
#: within this time).
RESOLVE_CACHE_SECONDS = 30.0


def digest(secret: str) -> bytes:
    """SHA-256 of a token secret (what the database stores)."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: ``secret`` is shown once and never stored."""

    id: int
    tenant_id: uuid.UUID
    client_id: int | None
    secret: str


async def create_tenant(
    admin: asyncpg.Connection,
    name: str,
    currency: str = "USD",
    default_tax_json: str = "[]",
    tenant_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Create a tenant (the owner's connection, bound to the new tenant while it inserts it)."""
    tenant = tenant_id or uuid.uuid4()
    await stored.insert_tenant(admin, tenant, name, currency, default_tax_json)
    return tenant


async def create_token(
    admin: asyncpg.Connection,
    tenant_id: uuid.UUID,
    client_id: int | None = None,
    label: str = "",
) -> IssuedToken:
    """Create a tenant token, or a portal token when ``client_id`` is given (the owner's
    connection, bound to the tenant so the client reference is checked against that tenant)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = await stored.insert_token(admin, tenant_id, client_id, label, digest(secret))
    if token_id == "tenant_id":
        raise NotFound("tenant_id", str(tenant_id), "is not a tenant")
    if token_id == "client_id":
        raise NotFound("client_id", client_id, "is not a client of this tenant")
    return IssuedToken(int(token_id), tenant_id, client_id, secret)


async def token_is_active(admin: asyncpg.Connection, tenant_id: uuid.UUID, secret: str) -> bool:
    """Whether ``secret`` is an active (unrevoked) token of ``tenant_id`` (the owner's
    connection, bound to the tenant)."""
    return await stored.token_is_active(admin, tenant_id, digest(secret))


async def tenant_row_counts(
    admin: asyncpg.Connection, tenant_id: uuid.UUID
) -> dict[str, int] | None:
    """Rows the tenant holds (``clients``, ``tickets``, ``events``, ``time_logs``,
    ``invoiced``: contracts invoiced); ``None``: no such tenant (the owner's connection)."""
    return await stored.tenant_row_counts(admin, tenant_id)


@asynccontextmanager
async def job_principals(
    admin_dsn: str, tenant_ids: Sequence[uuid.UUID] | None, label: str
) -> AsyncIterator[list[Principal]]:
    """Staff principals of ``tenant_ids`` (every tenant when ``None``) for a job run with the
    owner's credentials (``admin_dsn``): a token labelled ``label`` is issued per tenant, so
    the job's transactions bind through the service role like any caller's, and revoked when
    the block ends (whatever its outcome)."""
    from effigate_engine.store.standings import tenant_ids as stored_tenant_ids

    conn = await asyncpg.connect(admin_dsn)
    issued: list[IssuedToken] = []
    try:
        ids = await stored_tenant_ids(conn) if tenant_ids is None else list(tenant_ids)
        for tenant in ids:
            issued.append(await create_token(conn, tenant, label=label))
        yield [Principal(t.tenant_id, actor=f"job:{label}", token=t.secret) for t in issued]
    finally:
        try:
            for t in issued:
                await stored.revoke_token(conn, t.tenant_id, t.id)
        finally:
            await conn.close()


class TokenResolver:
    """Resolves bearer secrets to principals, remembering answers for a short time."""

    def __init__(self, store: Store, ttl_seconds: float = RESOLVE_CACHE_SECONDS) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def resolve(self, secret: str | None) -> Principal:
        """The principal of ``secret``; :class:`Unauthenticated` when missing or unknown."""
        if not secret:
            raise Unauthenticated("authorization", None, "is missing: send 'Bearer <token>'")
        key = digest(secret)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._store.connection() as conn:
            row = await stored.resolve_token(conn, key)
        if row is None:
            self._cache.pop(key, None)
            shown = secret[:8] + "…" if len(secret) > 8 else secret
            raise Unauthenticated("authorization", shown, "is not a valid or active token")
        principal = Principal(
            row["tenant_id"], row["client_id"], actor=f"token:{row['token_id']}", token=secret
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now + self._ttl, principal)
        return principal
