"""Many tickets' events recorded at once: the SQL of the bulk path other services (routing,
assignment) use to change stored tickets — lock them, append their events, write their
refolded states — in a few statements instead of several per ticket. Every function runs on
a connection inside a tenant-bound transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from effigate_engine.store.tickets import FoldedState, TicketRecord, ticket_record

#: One event to append: ``(event_id, ticket_id, kind, occurred_at, actor, detail)``.
EventRow = tuple[str, str, str, datetime, str, str | None]


async def lock_tickets(conn: asyncpg.Connection, ticket_ids: Sequence[str]) -> list[TicketRecord]:
    """The stored tickets among ``ticket_ids``, locked (``FOR UPDATE``, in id order) until the
    transaction ends."""
    rows = await conn.fetch(
        'SELECT * FROM tickets WHERE id = ANY($1::text[]) ORDER BY id COLLATE "C" FOR UPDATE',
        list(ticket_ids),
    )
    return [ticket_record(r) for r in rows]


async def insert_events(conn: asyncpg.Connection, events: Sequence[EventRow]) -> set[str]:
    """Append ``events`` in one statement; the ids stored (an id already taken is skipped)."""
    if not events:
        return set()
    rows = await conn.fetch(
        """INSERT INTO ticket_events (id, ticket_id, kind, occurred_at, actor, detail)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
               $5::text[], $6::text[])
           ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id""",
        *(list(column) for column in zip(*events, strict=True)),
    )
    return {r["id"] for r in rows}


async def store_states(
    conn: asyncpg.Connection, states: Mapping[str, FoldedState]
) -> dict[str, TicketRecord]:
    """Write each ticket's folded state in one statement; the stored tickets."""
    if not states:
        return {}
    ids = list(states)
    values = [states[i] for i in ids]
    rows = await conn.fetch(
        """UPDATE tickets t SET priority = s.priority, status = s.status,
               first_response_at = s.first_response_at, resolved_at = s.resolved_at,
               support_level = s.support_level, job_type = s.job_type, queue = s.queue,
               assignee = s.assignee,
               tags = coalesce(string_to_array(nullif(s.tags, ''), ','), '{}')
           FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
               $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
               AS s(id, priority, status, first_response_at, resolved_at, support_level,
                    job_type, queue, assignee, tags)
           WHERE t.id = s.id RETURNING t.*""",
        ids,
        [v.priority for v in values],
        [v.status for v in values],
        [v.first_response_at for v in values],
        [v.resolved_at for v in values],
        [v.support_level for v in values],
        [v.job_type for v in values],
        [v.queue for v in values],
        [v.assignee for v in values],
        [",".join(v.tags) for v in values],
    )
    return {r["id"]: ticket_record(r) for r in rows}
