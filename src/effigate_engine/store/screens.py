"""What the operations screens read that no other aggregate reads: the open tickets of a tenant,
their events and their contract's SLA policy, in two statements. Every function runs on a
connection inside a tenant-bound transaction (``Store.transaction(principal)``), so the
database keeps tenants apart."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from effigate_engine.store.tickets import Event, TicketHistory, ticket_record


async def open_histories(
    conn: asyncpg.Connection, as_of: datetime
) -> list[tuple[TicketHistory, int | None]]:
    """The tenant's tickets not resolved and created by ``as_of``, by id, each with its events
    up to ``as_of`` and its contract's SLA policy id (``None``: no contract or no policy).

    The open tickets are selected by a join, not by a list of ids: a long id array matched
    row by row costs seconds on a large tenant."""
    tickets = await conn.fetch(
        """SELECT t.*, c.sla_policy_id AS contract_sla_policy_id
            FROM tickets t
            LEFT JOIN contracts c ON c.tenant_id = t.tenant_id AND c.id = t.contract_id
            WHERE t.status <> 'RESOLVED' AND t.created_at <= $1
            ORDER BY t.id""",
        as_of,
    )
    events = await conn.fetch(
        """SELECT e.ticket_id, e.id, e.kind, e.occurred_at, e.detail
            FROM ticket_events e
            JOIN tickets t ON t.tenant_id = e.tenant_id AND t.id = e.ticket_id
            WHERE t.status <> 'RESOLVED' AND t.created_at <= $1 AND e.occurred_at <= $1
            ORDER BY e.ticket_id""",
        as_of,
    )
    by_ticket: dict[str, list[Event]] = {}
    for e in events:
        by_ticket.setdefault(e["ticket_id"], []).append(
            (e["id"], e["kind"], e["occurred_at"], e["detail"])
        )
    return [
        (TicketHistory(ticket_record(t), by_ticket.get(t["id"], [])), t["contract_sla_policy_id"])
        for t in tickets
    ]
