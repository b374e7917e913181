"""The firing loop of a server process: announces SLA transitions the moment they are due.

The schedule lives in PostgreSQL (``sla_schedule``, one row per open ticket metric); the loop
keeps in memory only the near horizon: a heap of ``(instant, tenant)`` pairs due within
:attr:`SlaFiring.horizon_seconds`, at most :data:`HEAP_LIMIT` of them, read through the narrow
cross-tenant function (tenants and instants, never a ticket). It sleeps until the earliest, or
until a schedule change is notified (a transition may have become due sooner), or until the
horizon must be read again. At an instant it binds a transaction to each tenant due and fires
that tenant's due rows (:func:`effigate_engine.service.sla_schedule.fire`): the events, and the
next transitions, in one transaction. A restart reads the heap from the table again, and a
transition whose transaction never committed is still due there: nothing is missed, and the
dedupe keys make a transition that did commit impossible to announce twice.

Every :data:`OVERDUE_SWEEP_SECONDS` the loop also sweeps the tenants with an issued invoice past
due (``INVOICE_OVERDUE`` needs time to pass, not a call; docs/events.md).

The clock is injected (:mod:`effigate_engine.service.wall_clock`): tests move it by hand and
call :meth:`SlaFiring.wake`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from effigate_engine.service import invoice_events, sla_schedule, wall_clock
from effigate_engine.store import schedule as stored
from effigate_engine.store.database import Store
from effigate_engine.store.errors import StoreError

log = logging.getLogger("effigate.sla_firing")

#: How far ahead (seconds) the heap holds due instants.
HORIZON_SECONDS = 300.0
#: Most (instant, tenant) pairs held in memory at once: bounds memory whatever the schedule.
HEAP_LIMIT = 10_000
#: Longest sleep (seconds) between two looks at the clock (an injected clock may have moved).
LONGEST_SLEEP_SECONDS = 0.25
#: Rows fired per transaction; a tenant with more due goes round again at once.
ROWS_PER_TRANSACTION = 2_000
#: Seconds between two sweeps for invoices that became overdue (INVOICE_OVERDUE).
OVERDUE_SWEEP_SECONDS = 60.0
#: After a failure (the database away), wait this long (seconds) before trying again.
RETRY_SECONDS = 1.0


class SlaFiring:
    """The firing loop over ``store`` (start with :meth:`start`, stop with :meth:`stop`)."""

    def __init__(
        self,
        store: Store,
        clock: wall_clock.WallClock | None = None,
        horizon_seconds: float = HORIZON_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self.horizon_seconds = horizon_seconds
        self._heap: list[tuple[datetime, UUID]] = []
        self._queued: set[tuple[datetime, UUID]] = set()
        self._read_until: datetime | None = None
        self._stale = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._stopping = False
        #: transitions fired and events appended since start (observability and tests)
        self.rows_fired = 0
        self.events_appended = 0
        #: passes of the loop that found nothing due (tests wait for one after moving the clock)
        self.idle_passes = 0
        self._swept_at: float | None = None
        #: invoices the overdue sweep moved to OVERDUE since start
        self.invoices_overdue = 0

    def now(self) -> datetime:
        return (self._clock or wall_clock).now()

    @property
    def heap_size(self) -> int:
        """(instant, tenant) pairs held in memory."""
        return len(self._heap)

    async def start(self) -> None:
        """Listen for schedule changes and start the loop."""
        try:
            self._listener = await stored.listen(self._store.app_dsn, self._changed)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("schedule listener not started; polling", extra={"error": str(exc)})
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop after the transaction in flight (it commits or rolls back whole)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    def wake(self) -> None:
        """Look at the clock and the schedule again now (after a test moved its clock)."""
        self._stale = True
        self._wake.set()

    def _changed(self, tenant: str) -> None:
        self._stale = True
        self._wake.set()

    async def _refill(self, now: datetime) -> None:
        until = now + timedelta(seconds=self.horizon_seconds)
        async with self._store.connection() as conn:
            pairs = await stored.due_tenants(conn, until, HEAP_LIMIT)
        self._heap = [(at, tenant) for tenant, at in pairs]
        heapq.heapify(self._heap)
        full = len(pairs) >= HEAP_LIMIT
        self._read_until = pairs[-1][1] if full else until
        self._stale = False

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except (StoreError, OSError, asyncpg.PostgresError) as exc:
                log.warning("SLA firing failed; retrying", extra={"error": str(exc)})
                self._stale = True
                await self._sleep(RETRY_SECONDS)

    async def _step(self) -> None:
        now = self.now()
        if self._swept_at is None or time.monotonic() - self._swept_at >= OVERDUE_SWEEP_SECONDS:
            await self._sweep_overdue(now)
        if self._stale or self._read_until is None or now >= self._read_until:
            await self._refill(now)
        due: set[UUID] = set()
        while self._heap and self._heap[0][0] <= now:
            due.add(heapq.heappop(self._heap)[1])
        for tenant in sorted(due):
            if self._stopping:
                return
            await self._fire_tenant(tenant, now)
        if due:
            self._stale = True  # the fired rows have their next instants now
            return
        self.idle_passes += 1
        wait = LONGEST_SLEEP_SECONDS
        if self._heap:
            wait = min(wait, max(0.0, (self._heap[0][0] - now).total_seconds()))
        await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _sweep_overdue(self, now: datetime) -> None:
        """Move every tenant's issued invoices past due to OVERDUE, with their events (the
        reads and MarkOverdue do the same; the event's key keeps it once)."""
        self._swept_at = time.monotonic()
        async with self._store.connection() as conn:
            tenants = await stored.overdue_tenants(conn, now)
        for tenant in tenants:
            if self._stopping:
                return
            async with self._store.connection() as conn, conn.transaction():
                try:
                    await stored.bind_scheduled(conn, tenant)
                except asyncpg.InvalidAuthorizationSpecificationError:
                    continue
                moved = await invoice_events.mark_overdue(conn, now)
            self.invoices_overdue += len(moved)

    async def _fire_tenant(self, tenant: UUID, now: datetime) -> None:
        while not self._stopping:
            started = time.perf_counter()
            async with self._store.connection() as conn, conn.transaction():
                try:
                    await stored.bind_scheduled(conn, tenant)
                except asyncpg.InvalidAuthorizationSpecificationError:
                    return  # nothing pending any more (fired by another process)
                fired = await sla_schedule.fire(conn, tenant, now, ROWS_PER_TRANSACTION)
            self.rows_fired += fired.rows
            self.events_appended += fired.events
            if fired.rows:
                log.debug(
                    "fired",
                    extra={
                        "tenant": str(tenant),
                        "rows": fired.rows,
                        "events": fired.events,
                        "seconds": round(time.perf_counter() - started, 4),
                    },
                )
            if fired.rows < ROWS_PER_TRANSACTION:
                return
