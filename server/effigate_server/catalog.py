"""CatalogService: clients, calendars (and the clock over them) and SLA policies."""

from __future__ import annotations

import json

import grpc

from effigate.v1 import catalog_pb2 as pb
from effigate.v1 import catalog_pb2_grpc as rpc
from effigate_engine.errors import EffigateError
from effigate_engine.service import Store, catalog, evaluations
from effigate_engine.service.evaluations import RulesetCache
from effigate_server.convert import body, required_datetime, timestamp
from effigate_server.errors import guarded
from effigate_server.interceptors import current_principal


def _calendar(record: catalog.CalendarRecord) -> pb.CalendarInfo:
    return pb.CalendarInfo(
        id=record.id, name=record.name, body_json=json.dumps(record.body), version=record.version
    )


def _policy(record: catalog.PolicyRecord) -> pb.PolicyInfo:
    return pb.PolicyInfo(
        id=record.id,
        name=record.name,
        calendar_id=record.calendar_id,
        body_json=json.dumps(record.body),
        version=record.version,
    )


class CatalogServicer(rpc.CatalogServiceServicer):
    def __init__(self, store: Store, cache: RulesetCache) -> None:
        self.store = store
        self.cache = cache

    @guarded
    async def CreateClient(
        self, request: pb.CreateClientRequest, context: grpc.aio.ServicerContext
    ) -> pb.Client:
        if not request.name:
            raise EffigateError("name: '' is empty")
        client_id = await catalog.create_client(self.store, current_principal(), request.name)
        return pb.Client(id=client_id, name=request.name)

    @guarded
    async def ListClients(
        self, request: pb.ListClientsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListClientsResponse:
        clients = await catalog.list_clients(self.store, current_principal())
        return pb.ListClientsResponse(clients=[pb.Client(id=i, name=n) for i, n in clients])

    @guarded
    async def CreateCalendar(
        self, request: pb.CreateCalendarRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalendarInfo:
        record = await catalog.create_calendar(
            self.store, current_principal(), request.name, body("body_json", request.body_json)
        )
        return _calendar(record)

    @guarded
    async def GetCalendar(
        self, request: pb.GetCalendarRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalendarInfo:
        return _calendar(
            await catalog.get_calendar(
                self.store, current_principal(), request.calendar_id, request.version or None
            )
        )

    @guarded
    async def ListCalendars(
        self, request: pb.ListCalendarsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCalendarsResponse:
        records = await catalog.list_calendars(self.store, current_principal())
        return pb.ListCalendarsResponse(calendars=[_calendar(r) for r in records])

    @guarded
    async def UpdateCalendar(
        self, request: pb.UpdateCalendarRequest, context: grpc.aio.ServicerContext
    ) -> pb.CalendarInfo:
        record = await catalog.update_calendar(
            self.store, current_principal(), request.name, body("body_json", request.body_json)
        )
        return _calendar(record)

    @guarded
    async def DeleteCalendar(
        self, request: pb.DeleteCalendarRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCalendarResponse:
        await catalog.delete_calendar(self.store, current_principal(), request.calendar_id)
        return pb.DeleteCalendarResponse()

    @guarded
    async def ComputeDeadline(
        self, request: pb.ComputeDeadlineRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeDeadlineResponse:
        if request.business_seconds < 0:
            raise EffigateError(f"business_seconds: {request.business_seconds} is negative")
        start = required_datetime(request, "start")
        deadline = await evaluations.deadline(
            self.store,
            self.cache,
            current_principal(),
            request.calendar_id,
            start,
            int(request.business_seconds),
        )
        if deadline is None:
            raise EffigateError("business_seconds: the deadline falls past the calendar horizon")
        return pb.ComputeDeadlineResponse(deadline=timestamp(deadline))

    @guarded
    async def CreatePolicy(
        self, request: pb.CreatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicyInfo:
        record = await catalog.create_policy(
            self.store,
            current_principal(),
            request.name,
            request.calendar_id,
            body("body_json", request.body_json),
        )
        return _policy(record)

    @guarded
    async def GetPolicy(
        self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicyInfo:
        return _policy(
            await catalog.get_policy(
                self.store, current_principal(), request.policy_id, request.version or None
            )
        )

    @guarded
    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPoliciesResponse:
        records = await catalog.list_policies(self.store, current_principal())
        return pb.ListPoliciesResponse(policies=[_policy(r) for r in records])

    @guarded
    async def UpdatePolicy(
        self, request: pb.UpdatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicyInfo:
        record = await catalog.update_policy(
            self.store,
            current_principal(),
            request.name,
            request.calendar_id or None,
            body("body_json", request.body_json),
        )
        return _policy(record)

    @guarded
    async def DeletePolicy(
        self, request: pb.DeletePolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeletePolicyResponse:
        await catalog.delete_policy(self.store, current_principal(), request.policy_id)
        return pb.DeletePolicyResponse()
