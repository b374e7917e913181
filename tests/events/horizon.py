"""When an event became deliverable: a thread sampling the server's transaction horizon.

An event is deliverable once every transaction older than its own has finished
(``pg_snapshot_xmin`` passed its xid), which any long transaction on the same server — of
another test, another database — can delay. Latency tests measure from the later of the
cause's commit and that moment, sampled here every few milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg


class HorizonSampler:
    """Samples ``pg_snapshot_xmin(pg_current_snapshot())`` on ``dsn`` with monotonic times
    until :meth:`stop`."""

    def __init__(self, dsn: str, every_s: float = 0.002) -> None:
        self.samples: list[tuple[float, int]] = []
        self._dsn = dsn
        self._every = every_s
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(30)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            while not self._stop.is_set():
                await self._sample(conn)
                self._ready.set()
                await asyncio.sleep(self._every)
            # one last sample once stopped: on a loaded machine the thread may sleep through
            # the moment the horizon passed an event a watch already received
            await self._sample(conn)
        finally:
            await conn.close()

    async def _sample(self, conn: asyncpg.Connection) -> None:
        xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        self.samples.append((time.monotonic(), int(xmin)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def deliverable_at(self, xid: int) -> float:
        """The first sampled instant at which the horizon had passed ``xid``."""
        for when, xmin in self.samples:
            if xmin > xid:
                return when
        raise AssertionError(f"the horizon never passed xid {xid} while sampled")
