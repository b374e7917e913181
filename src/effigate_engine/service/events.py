"""Watching a tenant's events: what is after a cursor, then each new event as it becomes
deliverable (docs/events.md).

A watch reads pages of the outbox in ``(xid, seq)`` order in short transactions of its own
(no connection is held while it waits), then waits for the outbox's notification of the
caller's tenant (``effigate_events``, sent when events commit), with a poll as a safety net:
every :data:`POLL_SECONDS`, or sooner while committed events are held back by an older
transaction still running (:data:`HELD_BACK_POLL_SECONDS`, doubling up to
:data:`HELD_BACK_LONGEST_SECONDS`: such a read is one indexed statement). A portal principal
watches only its client's events; the database keeps tenants apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from effigate_engine.errors import EffigateError
from effigate_engine.events.cloudevent import cloudevent_json
from effigate_engine.events.cursor import Cursor, CursorError
from effigate_engine.events.types import EVENT_TYPES
from effigate_engine.service.context import Principal
from effigate_engine.store import events as outbox
from effigate_engine.store.database import Store

#: Events read per transaction.
PAGE = 500
#: Seconds between reads when no notification came (the safety net: a notification lost
#: while the listener reconnected).
POLL_SECONDS = 1.0
#: While committed events wait for an older transaction to finish: the first wait before
#: reading again (seconds), doubled up to :data:`HELD_BACK_LONGEST_SECONDS`.
HELD_BACK_POLL_SECONDS = 0.01
HELD_BACK_LONGEST_SECONDS = 0.1


@dataclass(frozen=True)
class DeliveredEvent:
    """An event as a watcher receives it: its ``cursor`` (resume after it), the CloudEvents
    ``id``, type, subject, client (``None``: none), the instant of the transition and the
    whole event as CloudEvents JSON."""

    cursor: str
    id: UUID
    type: str
    subject: str
    client_id: int | None
    occurred_at: datetime
    cloudevent_json: str


@dataclass(frozen=True)
class WatchFilter:
    """What a watch delivers: events after ``after``, of ``types`` (empty: all) and, when
    ``client_id`` is set, of that client only."""

    after: Cursor | None
    types: tuple[str, ...]
    client_id: int | None


def watch_filter(
    principal: Principal,
    after_cursor: str = "",
    types: Sequence[str] = (),
    client_id: int | None = None,
    from_now: bool = False,
) -> WatchFilter:
    """The checked filter of a watch: a cursor that is ``<xid>.<seq>`` (or empty), known
    types, and for a portal principal its own client (another client is refused).
    ``after`` ``None``: start after what is deliverable now (``from_now``)."""
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise EffigateError(f"types: {unknown[0]!r} is not one of {', '.join(EVENT_TYPES)}")
    if from_now and after_cursor:
        raise EffigateError(
            f"from_now: true with after_cursor {after_cursor!r}: give one or the other"
        )
    try:
        after = None if from_now else Cursor.parse(after_cursor)
    except CursorError as exc:
        raise EffigateError(
            f"after_cursor: {after_cursor!r} is not a cursor ('<xid>.<seq>', the cursor of an"
            f" event received; empty: from the first event): {exc}"
        ) from None
    if principal.client_id is not None:
        if client_id is not None:
            principal.require_client(client_id, "client_id")
        client_id = principal.client_id
    return WatchFilter(after, tuple(dict.fromkeys(types)), client_id)


def _delivered(event: outbox.StoredEvent) -> DeliveredEvent:
    return DeliveredEvent(
        cursor=str(event.cursor),
        id=event.id,
        type=event.type,
        subject=event.subject,
        client_id=event.client_id,
        occurred_at=event.occurred_at,
        cloudevent_json=cloudevent_json(
            tenant_id=event.tenant_id,
            event_id=event.id,
            event_type=event.type,
            subject=event.subject,
            occurred_at=event.occurred_at,
            data=event.data,
        ),
    )


async def read_page(
    store: Store, principal: Principal, watch: WatchFilter, after: Cursor, limit: int = PAGE
) -> tuple[list[DeliveredEvent], bool]:
    """One page of the caller's deliverable events after ``after`` (at most ``limit``), and
    whether committed events after the last of them are still held back by an older running
    transaction (then reading again soon delivers them)."""
    async with store.transaction(principal) as conn:
        page = await outbox.read_events(conn, after, watch.types, watch.client_id, limit)
        last = page[-1].cursor if page else after
        held_back = len(page) < limit and await outbox.waiting_events(conn, last)
    return [_delivered(e) for e in page], held_back


async def horizon(store: Store, principal: Principal) -> Cursor:
    """The cursor after every event deliverable now (what ``from_now`` starts from)."""
    async with store.transaction(principal) as conn:
        return await outbox.horizon(conn)


async def watch_events(
    store: Store,
    principal: Principal,
    watch: WatchFilter,
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[DeliveredEvent]:
    """The caller's events after the filter's cursor, then each new one as it becomes
    deliverable, in ``(xid, seq)`` order, each once; ends when ``stopping`` is set (the
    server shuts down) or the caller stops iterating."""
    woken = asyncio.Event()

    def notified(tenant_id: UUID | None) -> None:
        if tenant_id is None or tenant_id == principal.tenant_id:
            woken.set()

    listening = await store.listener(outbox.CHANNEL)
    listening.subscribe(notified)
    try:
        cursor = watch.after if watch.after is not None else await horizon(store, principal)
        held_back_wait = HELD_BACK_POLL_SECONDS
        while stopping is None or not stopping.is_set():
            woken.clear()
            page, held_back = await read_page(store, principal, watch, cursor)
            for event in page:
                yield event
                cursor = Cursor.parse(event.cursor)
            if len(page) == PAGE:
                continue
            if held_back:
                wait = held_back_wait
                held_back_wait = min(held_back_wait * 2, HELD_BACK_LONGEST_SECONDS)
            else:
                wait = POLL_SECONDS
                held_back_wait = HELD_BACK_POLL_SECONDS
            await _wait_any(woken, stopping, wait)
    finally:
        listening.unsubscribe(notified)


async def _wait_any(woken: asyncio.Event, stopping: asyncio.Event | None, seconds: float) -> None:
    """Wait until ``woken`` or ``stopping`` is set, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(woken.wait())]
    if stopping is not None:
        waiters.append(asyncio.ensure_future(stopping.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
