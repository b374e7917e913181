"""Webhook endpoints and their deliveries: the SQL of outbound webhooks (migration 0016).

Endpoint and delivery functions run on a connection inside a tenant-bound transaction. An
endpoint's secret is written here and never read back (the service role may not select it).
Deliveries are created by the database itself, in the transaction that writes an event; the
delivery worker's functions (:func:`claim_due`, :func:`finish`, :func:`next_due`) run on a
connection bound to no tenant and reach every tenant's due deliveries through the narrow
functions of migration 0016, nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

#: The channel the database notifies when deliveries are created or put back in the queue.
CHANNEL = "effigate_webhooks"


@dataclass(frozen=True)
class EndpointRow:
    """A stored endpoint (never its secret). ``event_types`` empty: every type;
    ``client_id`` ``None``: every client's events; ``previous_expires_at``: until when the
    secret before the last rotation still signs (``None``: it does not)."""

    id: int
    url: str
    format: str
    event_types: tuple[str, ...]
    client_id: int | None
    description: str
    active: bool
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    previous_expires_at: datetime | None


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery of an event to an endpoint: its state (``PENDING``, ``DELIVERED``,
    ``DEAD``), attempts made, when the next is due (``PENDING`` only), the last HTTP status
    (``None``: no answer) and error, when it was delivered, and the event's type."""

    id: int
    endpoint_id: int
    event_id: UUID
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery the worker claimed: attempt number ``attempt`` of at most ``max_attempts``,
    where it goes (``url``, ``format``), the secrets to sign with (current first) and the
    event."""

    tenant_id: UUID
    delivery_id: int
    endpoint_id: int
    attempt: int
    max_attempts: int
    url: str
    format: str
    secrets: tuple[str, ...]
    event_id: UUID
    event_type: str
    subject: str
    client_id: int | None
    occurred_at: datetime
    data: dict[str, Any]


_ENDPOINT_COLUMNS = (
    "id, url, format, event_types, client_id, description, active, max_attempts, created_at,"
    " updated_at, previous_expires_at"
)
_DELIVERY_COLUMNS = (
    "d.id, d.endpoint_id, d.event_id, e.type AS event_type, d.state, d.attempts,"
    " d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,"
    " d.created_at"
)


def _endpoint(row: asyncpg.Record) -> EndpointRow:
    return EndpointRow(
        row["id"],
        row["url"],
        row["format"],
        tuple(row["event_types"]),
        row["client_id"],
        row["description"],
        row["active"],
        row["max_attempts"],
        row["created_at"],
        row["updated_at"],
        row["previous_expires_at"],
    )


def _delivery(row: asyncpg.Record) -> DeliveryRow:
    return DeliveryRow(**dict(row))


async def create_endpoint(
    conn: asyncpg.Connection,
    *,
    url: str,
    secret: str,
    fmt: str,
    event_types: Sequence[str],
    client_id: int | None,
    description: str,
    active: bool,
    max_attempts: int,
) -> EndpointRow:
    """Store a new endpoint of the bound tenant signing with ``secret``."""
    row = await conn.fetchrow(
        "INSERT INTO webhook_endpoints (url, secret, format, event_types, client_id,"
        " description, active, max_attempts) VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8)"
        f" RETURNING {_ENDPOINT_COLUMNS}",
        url,
        secret,
        fmt,
        list(event_types),
        client_id,
        description,
        active,
        max_attempts,
    )
    return _endpoint(row)


async def client_exists(conn: asyncpg.Connection, client_id: int) -> bool:
    """Whether ``client_id`` is a client of the bound tenant."""
    return await conn.fetchval("SELECT 1 FROM clients WHERE id = $1", client_id) is not None


async def list_endpoints(conn: asyncpg.Connection) -> list[EndpointRow]:
    """The bound tenant's endpoints, oldest first."""
    rows = await conn.fetch(f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id")
    return [_endpoint(r) for r in rows]


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: int) -> EndpointRow | None:
    """One endpoint of the bound tenant, or ``None``."""
    row = await conn.fetchrow(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1", endpoint_id
    )
    return None if row is None else _endpoint(row)


#: Columns an update may set, by the name the service uses.
UPDATABLE = ("url", "format", "event_types", "client_id", "description", "active", "max_attempts")


async def update_endpoint(
    conn: asyncpg.Connection, endpoint_id: int, changes: dict[str, Any]
) -> EndpointRow | None:
    """Set ``changes`` (names of :data:`UPDATABLE`) on an endpoint; ``None`` if there is no
    such endpoint. Re-activating one wakes the worker (its pending deliveries resume)."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = [n for n in UPDATABLE if n in changes]
    assignments = ", ".join(
        f"{n} = ${i + 2}" + ("::text[]" if n == "event_types" else "") for i, n in enumerate(names)
    )
    values = [list(changes[n]) if n == "event_types" else changes[n] for n in names]
    row = await conn.fetchrow(
        f"UPDATE webhook_endpoints SET {assignments or 'url = url'} WHERE id = $1"
        f" RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id,
        *values,
    )
    if row is not None and changes.get("active"):
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return None if row is None else _endpoint(row)


async def rotate_secret(
    conn: asyncpg.Connection, endpoint_id: int, secret: str, keep_previous_seconds: float
) -> EndpointRow | None:
    """Give an endpoint the new ``secret``; the old one keeps signing (alongside) for
    ``keep_previous_seconds`` (0: stops at once). ``None`` if there is no such endpoint."""
    row = await conn.fetchrow(
        "UPDATE webhook_endpoints SET secret = $2, previous_expires_at = CASE WHEN $3 > 0"
        " THEN now() + make_interval(secs => $3) END WHERE id = $1"
        f" RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id,
        secret,
        float(keep_previous_seconds),
    )
    return None if row is None else _endpoint(row)


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: int) -> bool:
    """Delete an endpoint and its deliveries; whether it existed."""
    deleted: bool = await conn.fetchval("SELECT effigate_delete_webhook_endpoint($1)", endpoint_id)
    return deleted


async def list_deliveries(
    conn: asyncpg.Connection,
    *,
    endpoint_id: int | None,
    state: str | None,
    event_id: UUID | None,
    after_id: int,
    limit: int,
) -> list[DeliveryRow]:
    """The bound tenant's deliveries matching the filters (``None``: any), by id, after
    ``after_id`` (a page's last id), at most ``limit``."""
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d"
        " JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id"
        " WHERE d.id > $1 AND ($2::bigint IS NULL OR d.endpoint_id = $2)"
        " AND ($3::text IS NULL OR d.state = $3) AND ($4::uuid IS NULL OR d.event_id = $4)"
        " ORDER BY d.id LIMIT $5",
        after_id,
        endpoint_id,
        state,
        event_id,
        limit,
    )
    return [_delivery(r) for r in rows]


async def get_delivery(conn: asyncpg.Connection, delivery_id: int) -> DeliveryRow | None:
    """One delivery of the bound tenant, or ``None``."""
    row = await conn.fetchrow(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d"
        " JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id WHERE d.id = $1",
        delivery_id,
    )
    return None if row is None else _delivery(row)


async def redeliver(conn: asyncpg.Connection, delivery_id: int) -> bool:
    """Put a DEAD or DELIVERED delivery back in the queue, due now, with its attempts counted
    from zero (its webhook-id stays the event's); whether it was one. Wakes the worker."""
    done = await conn.fetchval(
        "UPDATE webhook_deliveries SET state = 'PENDING', attempts = 0, next_attempt_at = now()"
        " WHERE id = $1 AND state IN ('DEAD', 'DELIVERED') RETURNING id",
        delivery_id,
    )
    if done is None:
        return False
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return True


async def claim_due(
    conn: asyncpg.Connection, batch: int, lease_seconds: float
) -> list[ClaimedDelivery]:
    """Claim up to ``batch`` due deliveries of every tenant's active endpoints (each counts an
    attempt and is leased for ``lease_seconds``); on a connection bound to no tenant."""
    rows = await conn.fetch(
        "SELECT * FROM effigate_claim_webhook_deliveries($1, $2)", batch, float(lease_seconds)
    )
    return [
        ClaimedDelivery(**{**dict(r), "secrets": tuple(r["secrets"]), "data": _data(r["data"])})
        for r in rows
    ]


async def finish(
    conn: asyncpg.Connection,
    claimed: ClaimedDelivery,
    *,
    delivered: bool,
    status: int | None,
    error: str | None,
    retry_seconds: float,
) -> str | None:
    """Record the outcome of ``claimed``'s attempt: the state written (``DELIVERED``,
    ``PENDING`` again in ``retry_seconds``, or ``DEAD``), ``None`` when the attempt was no
    longer the delivery's latest (nothing written)."""
    result: str | None = await conn.fetchval(
        "SELECT effigate_finish_webhook_delivery($1, $2, $3, $4, $5, $6, $7)",
        claimed.tenant_id,
        claimed.delivery_id,
        claimed.attempt,
        delivered,
        status,
        error,
        float(retry_seconds),
    )
    return result


async def next_due(conn: asyncpg.Connection) -> float | None:
    """Seconds until the next delivery of an active endpoint falls due, by the database's
    clock (0 or less: due now; ``None``: none pending)."""
    seconds = await conn.fetchval(
        "SELECT extract(epoch FROM effigate_next_webhook_due() - clock_timestamp())"
    )
    return None if seconds is None else float(seconds)


def _data(value: object) -> dict[str, Any]:
    if isinstance(value, str):
        loaded = json.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return dict(value) if isinstance(value, dict) else {}
