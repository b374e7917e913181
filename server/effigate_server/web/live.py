"""Live news for the screens: ``GET /live/events``, the signed-in caller's events as
Server-Sent Events (docs/screens.md, *Live updates*).

Each event is one SSE message ``id: <cursor>`` / ``event: <type>`` / ``data: <CloudEvents
JSON>``; a comment line every :data:`HEARTBEAT_SECONDS` keeps proxies from closing a quiet
stream. The stream starts after what is deliverable when the request arrives (or after the
``Last-Event-ID`` a reconnecting browser sends), and ends when the server shuts down or the
browser goes away. A portal token gets only its client's events (the service filters them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from effigate_engine.errors import EffigateError
from effigate_engine.events.types import EVENT_TYPES
from effigate_engine.service import events as service
from effigate_server.web.context import WebContext
from effigate_server.web.render import environment
from effigate_server.web.session import principal_of

#: Seconds between heartbeat comments on a quiet stream.
HEARTBEAT_SECONDS = 15.0
#: Milliseconds a browser waits before reconnecting a dropped stream.
RETRY_MILLISECONDS = 5_000

# pages list the event names for live.js (an SSE message named by ``event:`` reaches only the
# listeners of that name)
environment.globals["live_event_types"] = " ".join(EVENT_TYPES)


def message(event: service.DeliveredEvent) -> str:
    """One SSE message of ``event`` (the data on one line)."""
    data = json.dumps(json.loads(event.cloudevent_json), separators=(",", ":"))
    return f"id: {event.cursor}\nevent: {event.type}\ndata: {data}\n\n"


async def _pump(
    events: AsyncIterator[service.DeliveredEvent], queue: asyncio.Queue[str | None]
) -> None:
    try:
        async for event in events:
            await queue.put(message(event))
    finally:
        await queue.put(None)


def routes(ctx: WebContext) -> list[BaseRoute]:
    """``/live/events``."""

    async def stream(request: Request) -> Response:
        principal = await principal_of(ctx, request)
        if principal is None:
            return PlainTextResponse(
                "sign in first: no valid session cookie or bearer token", status_code=401
            )
        resume = request.headers.get("last-event-id", "").strip()
        try:
            after = resume or str(await service.horizon(ctx.store, principal))
            watch = service.watch_filter(principal, after)
        except EffigateError:
            # an unusable Last-Event-ID: start from what is deliverable now
            watch = service.watch_filter(
                principal, str(await service.horizon(ctx.store, principal))
            )

        async def body() -> AsyncIterator[str]:
            queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=256)
            events = service.watch_events(ctx.store, principal, watch, ctx.stopping)
            pump = asyncio.ensure_future(_pump(events, queue))
            stopping = asyncio.ensure_future(ctx.stopping.wait()) if ctx.stopping else None
            try:
                yield f"retry: {RETRY_MILLISECONDS}\n: connected\n\n"
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    waiters = {getter} | ({stopping} if stopping else set())
                    done, _ = await asyncio.wait(
                        waiters, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        if stopping is not None and stopping in done:
                            return
                        yield ": heartbeat\n\n"
                        continue
                    item = getter.result()
                    if item is None:
                        return
                    yield item
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
                with contextlib.suppress(Exception):
                    await events.aclose()
                if stopping is not None:
                    stopping.cancel()

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [Route("/live/events", stream)]
