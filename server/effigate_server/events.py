"""EventService: a caller's events, streamed live from a cursor (docs/events.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from effigate.v1 import events_pb2 as pb
from effigate.v1 import events_pb2_grpc as rpc
from effigate_engine.service import Store
from effigate_engine.service import events as service
from effigate_server.convert import timestamp
from effigate_server.errors import guarded
from effigate_server.interceptors import DRAINING, current_principal


def _event_message(event: service.DeliveredEvent) -> pb.Event:
    return pb.Event(
        cursor=event.cursor,
        id=str(event.id),
        type=pb.EventType.Value(event.type),
        subject=event.subject,
        client_id=event.client_id or 0,
        occurred_at=timestamp(event.occurred_at),
        cloudevent_json=event.cloudevent_json,
    )


class EventServicer(rpc.EventServiceServicer):
    """Streams the caller's events. ``stopping`` is set when the server begins to shut down:
    every watch then ends with ``UNAVAILABLE`` (the caller resumes from its last cursor,
    on another server), so a waiting stream never holds up the shutdown."""

    def __init__(self, store: Store, stopping: asyncio.Event) -> None:
        self.store = store
        self.stopping = stopping

    @guarded
    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Event]:
        principal = current_principal()
        watch = service.watch_filter(
            principal,
            request.after_cursor,
            [pb.EventType.Name(t) for t in request.types if t != pb.EVENT_TYPE_UNSPECIFIED],
            request.client_id if request.HasField("client_id") else None,
            request.from_now,
        )
        events = service.watch_events(self.store, principal, watch, self.stopping)
        try:
            async for event in events:
                yield _event_message(event)
        finally:
            await events.aclose()
        await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING)
