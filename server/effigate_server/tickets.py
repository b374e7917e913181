"""TicketService: tickets, their events and their SLA status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from effigate.v1 import common_pb2
from effigate.v1 import tickets_pb2 as pb
from effigate.v1 import tickets_pb2_grpc as rpc
from effigate_engine.errors import EffigateError
from effigate_engine.service import Store, tickets
from effigate_engine.service.evaluations import (
    RulesetCache,
    ticket_status_metrics,
    ticket_timeline,
)
from effigate_server.convert import optional_datetime, required_datetime, timestamp
from effigate_server.errors import guarded
from effigate_server.fields import page_limit
from effigate_server.interceptors import current_principal
from effigate_server.sla_results import metric_messages
from effigate_server.streams import gather_stream, ingest_summary


def ticket_message(record: tickets.TicketRecord) -> pb.Ticket:
    """The proto of a stored ticket."""
    message = pb.Ticket(
        id=record.id,
        client_id=record.client_id,
        priority=record.priority,
        status=record.status,
        created_at=timestamp(record.created_at),
    )
    if record.contract_id is not None:
        message.contract_id = record.contract_id
    if record.first_response_at is not None:
        message.first_response_at.CopyFrom(timestamp(record.first_response_at))
    if record.resolved_at is not None:
        message.resolved_at.CopyFrom(timestamp(record.resolved_at))
    for name in _OPTIONAL_TEXT:
        value = getattr(record, name)
        if value is not None:
            setattr(message, name, value)
    message.after_hours = record.after_hours
    message.tags.extend(record.tags)
    return message


#: The ticket's optional text fields, named alike in the record and the message.
_OPTIONAL_TEXT = (
    "support_level",
    "job_type",
    "channel",
    "subject",
    "requester",
    "queue",
    "assignee",
    "asset",
)


class TicketServicer(rpc.TicketServiceServicer):
    def __init__(self, store: Store, cache: RulesetCache) -> None:
        self.store = store
        self.cache = cache

    @guarded
    async def CreateTicket(
        self, request: pb.CreateTicketRequest, context: grpc.aio.ServicerContext
    ) -> pb.Ticket:
        record = await tickets.create_ticket(
            self.store,
            current_principal(),
            request.id,
            request.client_id,
            request.priority,
            required_datetime(request, "created_at"),
            contract_id=request.contract_id if request.HasField("contract_id") else None,
            fields=tickets.ticket_fields_of(
                support_level=request.support_level,
                job_type=request.job_type,
                after_hours=request.after_hours,
                channel=request.channel,
                subject=request.subject,
                requester=request.requester,
                queue=request.queue,
                assignee=request.assignee,
                asset=request.asset,
                tags=request.tags,
            ),
        )
        return ticket_message(record)

    @guarded
    async def RecordEvent(
        self, request: pb.RecordEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.Ticket:
        if request.kind == pb.EVENT_KIND_UNSPECIFIED:
            raise EffigateError("kind: EVENT_KIND_UNSPECIFIED is not an event kind")
        record = await tickets.record_event(
            self.store,
            current_principal(),
            request.event_id,
            request.ticket_id,
            pb.EventKind.Name(request.kind),
            required_datetime(request, "occurred_at"),
            status=request.status,
            priority=request.priority,
            actor=request.actor,
            support_level=request.support_level,
            job_type=request.job_type,
            assignee=request.assignee,
            queue=request.queue,
            tags=request.tags,
        )
        return ticket_message(record)

    @guarded
    async def GetTicket(
        self, request: pb.GetTicketRequest, context: grpc.aio.ServicerContext
    ) -> pb.Ticket:
        return ticket_message(
            await tickets.get_ticket(self.store, current_principal(), request.ticket_id)
        )

    @guarded
    async def GetTicketStatus(
        self, request: pb.GetTicketStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.TicketStatus:
        status = await ticket_status_metrics(
            self.store,
            self.cache,
            current_principal(),
            request.ticket_id,
            request.policy_id if request.HasField("policy_id") else None,
            optional_datetime(request, "at"),
        )
        rules = status.rules
        response = pb.TicketStatus(ticket=ticket_message(status.ticket))
        metric_messages(
            status.rows, rules.policy_version, rules.calendar_versions, response.metrics
        )
        return response

    @guarded
    async def GetTicketTimeline(
        self, request: pb.GetTicketTimelineRequest, context: grpc.aio.ServicerContext
    ) -> pb.TicketTimeline:
        record, timeline = await ticket_timeline(
            self.store,
            self.cache,
            current_principal(),
            request.ticket_id,
            request.policy_id if request.HasField("policy_id") else None,
            optional_datetime(request, "until"),
        )
        return pb.TicketTimeline(
            ticket=ticket_message(record),
            entries=[
                pb.TimelineEntry(
                    at=timestamp(e["at"]),
                    metric=e["metric"],
                    status=e["status"],
                    deadline=timestamp(e["deadline"]),
                    escalation_level=e["escalation_level"],
                    elapsed_seconds=e["elapsed_seconds"],
                )
                for e in timeline.to_pylist()
            ],
        )

    @guarded
    async def ListTickets(
        self, request: pb.ListTicketsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTicketsResponse:
        records = await tickets.list_tickets(
            self.store,
            current_principal(),
            request.client_id if request.HasField("client_id") else None,
            page_limit("limit", request.limit),
            request.after_id,
        )
        return pb.ListTicketsResponse(tickets=[ticket_message(r) for r in records])

    async def _ingest(
        self, kind: str, request_iterator: AsyncIterator[common_pb2.ArrowChunk]
    ) -> common_pb2.IngestSummary:
        principal = current_principal()
        principal.require_staff("bulk-ingest tickets")
        table, skip = await gather_stream(request_iterator)
        return ingest_summary(await tickets.ingest_rows(self.store, principal, kind, table, skip))

    @guarded
    async def IngestTickets(
        self,
        request_iterator: AsyncIterator[common_pb2.ArrowChunk],
        context: grpc.aio.ServicerContext,
    ) -> common_pb2.IngestSummary:
        return await self._ingest("tickets", request_iterator)

    @guarded
    async def IngestTicketEvents(
        self,
        request_iterator: AsyncIterator[common_pb2.ArrowChunk],
        context: grpc.aio.ServicerContext,
    ) -> common_pb2.IngestSummary:
        return await self._ingest("events", request_iterator)
