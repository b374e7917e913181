"""Changes of tenants' catalogs (calendars, SLA policies), as the database announces them.

Migration 0011 notifies channel :data:`CHANNEL` with the tenant's id whenever a calendar or
policy of that tenant is inserted, updated (a new version, a retirement) or deleted; the
notification arrives when the change commits. :class:`CatalogChanges` holds one dedicated
connection per server process listening on that channel and calls its subscribers with each
tenant id. While the connection is down it says so (:attr:`CatalogChanges.epoch` is
``None``) and reconnects in the background; each new connection is a new epoch, so whatever
was known valid in an earlier one (when notifications may have been missed) is not any more.
A connection that stops answering is replaced as one that was lost.

The same listener serves any channel whose payload is a tenant id (``channel``): the event
outbox's ``effigate_events`` (migration 0014) wakes the event watchers this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from uuid import UUID

import asyncpg

#: The channel migration 0011's triggers notify.
CHANNEL = "effigate_catalog"

#: Reconnection delays (seconds): the first retry, and the longest wait between two.
FIRST_RETRY_SECONDS = 0.05
LONGEST_RETRY_SECONDS = 2.0

#: A listening connection that has said nothing for this long (seconds) is asked ``SELECT 1``
#: and, without an answer within :data:`CHECK_TIMEOUT_SECONDS`, replaced: a connection that
#: died silently (no reset ever came) would otherwise hide every change from then on.
CHECK_EVERY_SECONDS = 5.0
CHECK_TIMEOUT_SECONDS = 2.0

#: Under the service's logger ("effigate"), so its lines are the service's JSON lines.
log = logging.getLogger("effigate.store.catalog_changes")

Subscriber = Callable[[UUID | None], None]


class CatalogChanges:
    """The catalog-change listener of one server process (see the module).

    Subscribers are called with a tenant id for each change notified, and with ``None`` when
    every tenant must be assumed changed (the listener reconnected, or closed).
    """

    def __init__(self, dsn: str, channel: str = CHANNEL) -> None:
        self._dsn = dsn
        self.channel = channel
        self._conn: asyncpg.Connection | None = None
        self._epoch: int | None = None
        self._epochs = 0
        self._subscribers: list[Subscriber] = []
        self._lost = asyncio.Event()
        self._watching: asyncio.Task[None] | None = None
        #: the first reconnection delay (seconds); doubled after each failure
        self.first_retry_seconds = FIRST_RETRY_SECONDS
        #: seconds between the checks of a quiet connection, and the wait for its answer
        self.check_every_seconds = CHECK_EVERY_SECONDS
        self.check_timeout_seconds = CHECK_TIMEOUT_SECONDS

    @classmethod
    async def open(cls, dsn: str, channel: str = CHANNEL) -> CatalogChanges:
        """Listen on ``channel`` at ``dsn`` (the service role's); a first failure to connect
        is raised."""
        changes = cls(dsn, channel)
        await changes._listen()
        changes._watching = asyncio.get_running_loop().create_task(changes._watch())
        return changes

    @property
    def epoch(self) -> int | None:
        """The number of the current listening connection, ``None`` while not listening
        (then nothing announces changes: callers must check the database themselves)."""
        return self._epoch

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with each changed tenant's id (``None``: every tenant)."""
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber`` (one that was subscribed)."""
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def changed(self, tenant_id: UUID | None) -> None:
        """Tell the subscribers that ``tenant_id``'s catalog changed (``None``: every
        tenant's); also what a change written by this process calls once it committed, so
        the process's next call sees it without waiting for the notification."""
        for subscriber in list(self._subscribers):
            subscriber(tenant_id)

    async def close(self) -> None:
        """Stop listening (and reconnecting)."""
        self._epoch = None
        watching, self._watching = self._watching, None
        if watching is not None:
            watching.cancel()
            # it stops here, whatever it was doing
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watching
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), timeout=1)
            except Exception:  # a broken connection may fail to say goodbye
                conn.terminate()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._lost.clear()
        self._epochs += 1
        # what was found current before may have missed notifications while nobody listened
        self.changed(None)
        self._epoch = self._epochs

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        try:
            tenant_id = UUID(payload)
        except ValueError:
            log.warning("catalog change with an unexpected payload", extra={"payload": payload})
            tenant_id = None
        self.changed(tenant_id)

    def _terminated(self, conn: object) -> None:
        """The connection ``conn`` ended (asyncpg's termination callback, or a check that
        found it mute): stop vouching at once; :meth:`_watch` reconnects."""
        if self._conn is not conn:
            return
        self._conn = None
        self._epoch = None
        self.changed(None)
        self._lost.set()
        log.warning("catalog change listener lost its connection; reconnecting")

    async def _watch(self) -> None:
        """Reconnect a lost connection (with backoff), and check a quiet one."""
        # None: the first retry after a loss, read when it happens (set after open, it counts)
        delay: float | None = None
        while True:
            conn = self._conn
            if conn is None:
                wait = self.first_retry_seconds if delay is None else delay
                await asyncio.sleep(wait)
                try:
                    await self._listen()
                except Exception as exc:  # the database is not back yet, whatever it says
                    log.info("catalog change listener not back yet", extra={"error": str(exc)})
                    delay = min(wait * 2, LONGEST_RETRY_SECONDS)
                    continue
                log.info("catalog change listener listening again")
                delay = None
                continue
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=self.check_every_seconds)
                continue
            except TimeoutError:
                pass
            try:
                await conn.fetchval("SELECT 1", timeout=self.check_timeout_seconds)
            except Exception as exc:  # no answer, or a broken connection: replace it
                log.warning("catalog change listener does not answer", extra={"error": str(exc)})
                self._terminated(conn)
                conn.terminate()
