"""The event outbox (migration 0014): append events in the transaction of their cause, read
them in ``(xid, seq)`` order from a cursor.

Every function runs on a connection inside a tenant-bound transaction. Writers call
:func:`append_events` in the same transaction as the change that causes the events; a
re-sent change writes nothing new (the dedupe key is unique per tenant). Readers call
:func:`read_events`, which returns only events no running transaction can still precede:
rows of transactions older than the oldest one running (``pg_snapshot_xmin``), so a cursor
never passes a position that a later commit could fill (docs/events.md, "Ordering and
cursors"). Inserting notifies channel :data:`CHANNEL` with the tenant id when the transaction
commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from effigate_engine.events.cursor import START, Cursor

#: The notification channel: payload the tenant id (text), sent when events commit.
CHANNEL = "effigate_events"


@dataclass(frozen=True)
class NewEvent:
    """An event to append. ``dedupe_key``: the transition it announces (exactly once per key
    and tenant); ``subject``: the ticket, contract or invoice id; ``occurred_at``: the instant
    of the transition (timezone-aware); ``data``: the evidence (a JSON object); ``event_id``
    ``None``: the database draws one."""

    type: str
    dedupe_key: str
    subject: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    client_id: int | None = None
    event_id: UUID | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with its position (``cursor``) in the tenant's stream."""

    tenant_id: UUID
    cursor: Cursor
    id: UUID
    dedupe_key: str
    type: str
    client_id: int | None
    subject: str
    occurred_at: datetime
    created_at: datetime
    data: dict[str, Any]


_COLUMNS = """tenant_id, xid::text AS xid, seq, id, dedupe_key, type, client_id, subject,
    occurred_at, created_at, data::text AS data"""


def _stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        tenant_id=row["tenant_id"],
        cursor=Cursor(int(row["xid"]), int(row["seq"])),
        id=row["id"],
        dedupe_key=row["dedupe_key"],
        type=row["type"],
        client_id=row["client_id"],
        subject=row["subject"],
        occurred_at=row["occurred_at"],
        created_at=row["created_at"],
        data=json.loads(row["data"]),
    )


async def append_events(conn: asyncpg.Connection, rows: Sequence[NewEvent]) -> int:
    """Append ``rows`` to the outbox in one statement (one notification); a row whose dedupe
    key the tenant already has (stored before or earlier in ``rows``) is left out. Returns how
    many were inserted."""
    if not rows:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO events (id, dedupe_key, type, client_id, subject, occurred_at, data)
           SELECT coalesce(r.id, gen_random_uuid()), r.dedupe_key, r.type, r.client_id,
                  r.subject, r.occurred_at, r.data::jsonb
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                       $6::timestamptz[], $7::text[])
                WITH ORDINALITY AS r(id, dedupe_key, type, client_id, subject, occurred_at,
                                     data, n)
           ORDER BY r.n
           ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
           RETURNING 1""",
        [r.event_id for r in rows],
        [r.dedupe_key for r in rows],
        [r.type for r in rows],
        [r.client_id for r in rows],
        [r.subject for r in rows],
        [r.occurred_at for r in rows],
        [json.dumps(dict(r.data), sort_keys=True, default=str) for r in rows],
    )
    return len(inserted)


async def read_events(
    conn: asyncpg.Connection,
    after_cursor: Cursor = START,
    types: Sequence[str] | None = None,
    client_id: int | None = None,
    limit: int = 500,
) -> list[StoredEvent]:
    """The tenant's deliverable events after ``after_cursor``, in ``(xid, seq)`` order, at most
    ``limit``: only events of transactions older than the oldest transaction still running
    (a running transaction may yet commit events at a smaller position). ``types`` (empty or
    ``None``: all) and ``client_id`` (``None``: all clients) filter."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM events
            WHERE (xid, seq) > ($1::text::xid8, $2::bigint)
              AND xid < pg_snapshot_xmin(pg_current_snapshot())
              AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[]))
              AND ($4::bigint IS NULL OR client_id = $4::bigint)
            ORDER BY xid, seq
            LIMIT $5""",
        str(after_cursor.xid),
        after_cursor.seq,
        list(types or ()),
        client_id,
        limit,
    )
    return [_stored(row) for row in rows]


async def horizon(conn: asyncpg.Connection) -> Cursor:
    """The cursor before every event not deliverable yet and after every deliverable one:
    what a reader that wants only events from now on starts from."""
    xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
    return Cursor.before_transaction(int(xmin))


async def events_by_key(conn: asyncpg.Connection, dedupe_keys: Sequence[str]) -> list[StoredEvent]:
    """The tenant's stored events with these dedupe keys (committed or written by this
    transaction), in ``(xid, seq)`` order."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM events WHERE dedupe_key = ANY($1::text[])
            ORDER BY xid, seq""",
        list(dedupe_keys),
    )
    return [_stored(row) for row in rows]


async def waiting_events(conn: asyncpg.Connection, after_cursor: Cursor = START) -> bool:
    """Whether the tenant has committed events after ``after_cursor`` that are not deliverable
    yet (a transaction older than theirs is still running somewhere on the server)."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM events
                   WHERE (xid, seq) > ($1::text::xid8, $2::bigint)
                     AND xid >= pg_snapshot_xmin(pg_current_snapshot()))""",
            str(after_cursor.xid),
            after_cursor.seq,
        )
    )
