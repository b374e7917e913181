"""What the operations screens read that no other aggregate reads: the open tickets of a tenant
with their contract's SLA policy. Every function runs on a connection inside a tenant-bound
transaction (``Store.transaction(principal)``), so the database keeps tenants apart."""

from __future__ import annotations

from typing import Any

import asyncpg


async def open_tickets(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The tenant's tickets not resolved, by id: ``id``, ``client_id``, ``priority``,
    ``assignee`` (``None``: unassigned) and their contract's ``sla_policy_id`` (``None``: no
    contract or no policy)."""
    rows = await conn.fetch(
        """SELECT t.id, t.client_id, t.priority, t.assignee, c.sla_policy_id
            FROM tickets t
            LEFT JOIN contracts c ON c.tenant_id = t.tenant_id AND c.id = t.contract_id
            WHERE t.status <> 'RESOLVED'
            ORDER BY t.id COLLATE "C\""""
    )
    return [dict(r) for r in rows]
