"""RoutingService: queues, agents, routing rules, routing and assignment of stored tickets,
and the reports on queues and agents' workload (staff only)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from effigate.v1 import common_pb2
from effigate.v1 import routing_pb2 as pb
from effigate.v1 import routing_pb2_grpc as rpc
from effigate_engine import routing
from effigate_engine.errors import EffigateError
from effigate_engine.service import Store
from effigate_engine.service import routing as service
from effigate_engine.service import routing_setup as setup
from effigate_engine.service.evaluations import RulesetCache
from effigate_engine.sla.policy import SUPPORT_LEVELS
from effigate_server.convert import body, optional_datetime, read_ipc, timestamp, write_ipc
from effigate_server.errors import guarded
from effigate_server.interceptors import current_principal
from effigate_server.sla_results import ticket_failures


def _queue_json(q: pb.Queue) -> dict[str, Any]:
    out: dict[str, Any] = {"name": q.name}
    if q.HasField("calendar"):
        out["calendar"] = q.calendar
    if q.HasField("escalation_queue"):
        out["escalation_queue"] = q.escalation_queue
    return out


def _agent_json(a: pb.Agent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.id,
        "name": a.name,
        "support_levels": list(a.support_levels) or list(SUPPORT_LEVELS),
        "queues": list(a.queues),
        "capacity": a.capacity,
        "active": a.active if a.HasField("active") else True,
    }
    if a.HasField("skills"):
        out["skills"] = list(a.skills.job_types)
    if a.HasField("calendar"):
        out["calendar"] = a.calendar
    return out


def _queue_message(row: service.QueueRow) -> pb.Queue:
    message = pb.Queue(name=row.name)
    if row.calendar is not None:
        message.calendar = row.calendar
    if row.escalation_queue is not None:
        message.escalation_queue = row.escalation_queue
    return message


def _agent_message(row: service.AgentRow) -> pb.Agent:
    message = pb.Agent(
        id=row.id,
        name=row.name,
        support_levels=list(row.support_levels),
        queues=list(row.queues),
        capacity=row.capacity,
        active=row.active,
    )
    if row.skills is not None:
        message.skills.job_types.extend(row.skills)
    if row.calendar is not None:
        message.calendar = row.calendar
    return message


def _rules_message(row: service.RulesRow) -> pb.RoutingRules:
    return pb.RoutingRules(
        version=row.version, body_json=json.dumps(row.body), created_at=timestamp(row.created_at)
    )


class RoutingServicer(rpc.RoutingServiceServicer):
    def __init__(self, store: Store, cache: RulesetCache) -> None:
        self.store = store
        self.cache = cache

    @guarded
    async def PutQueues(
        self, request: pb.PutQueuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueueList:
        queues = [
            routing.Queue.from_json(_queue_json(q), f"queues[{i}]")
            for i, q in enumerate(request.queues)
        ]
        rows = await setup.put_queues(self.store, current_principal(), queues)
        return pb.QueueList(queues=[_queue_message(r) for r in rows])

    @guarded
    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueueList:
        rows = await setup.list_queues(self.store, current_principal())
        return pb.QueueList(queues=[_queue_message(r) for r in rows])

    @guarded
    async def PutAgents(
        self, request: pb.PutAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AgentList:
        agents = [
            routing.Agent.from_json(_agent_json(a), f"agents[{i}]")
            for i, a in enumerate(request.agents)
        ]
        rows = await setup.put_agents(self.store, current_principal(), agents)
        return pb.AgentList(agents=[_agent_message(r) for r in rows])

    @guarded
    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AgentList:
        rows = await setup.list_agents(self.store, current_principal())
        return pb.AgentList(agents=[_agent_message(r) for r in rows])

    @guarded
    async def PutRoutingRules(
        self, request: pb.PutRoutingRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RoutingRules:
        row = await setup.put_rules(
            self.store, current_principal(), body("body_json", request.body_json)
        )
        return _rules_message(row)

    @guarded
    async def GetRoutingRules(
        self, request: pb.GetRoutingRulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RoutingRules:
        row = await setup.get_rules(self.store, current_principal(), request.version or None)
        return _rules_message(row)

    @guarded
    async def Route(
        self, request: pb.RouteRequest, context: grpc.aio.ServicerContext
    ) -> pb.RouteResponse:
        if not request.ticket_ids:
            raise EffigateError("ticket_ids: is empty (name the tickets to route)")
        version, outcomes = await service.route(
            self.store,
            current_principal(),
            list(request.ticket_ids),
            optional_datetime(request, "at"),
        )
        return pb.RouteResponse(
            rule_version=version,
            results=[
                pb.RouteResult(
                    ticket_id=o.ticket_id,
                    rule=o.rule,
                    queue=o.queue,
                    previous_queue=o.previous_queue or "",
                    priority=o.priority,
                    support_level=o.support_level or "",
                    tags=list(o.tags),
                    changed=o.changed,
                )
                for o in outcomes
            ],
        )

    @guarded
    async def RouteBatch(
        self,
        request: AsyncIterator[common_pb2.ArrowChunk],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[common_pb2.ArrowChunk]:
        rules = None
        position = 0
        async for chunk in request:
            if rules is None:
                rules = await service.current_rules(self.store, current_principal())
            table = read_ipc(f"chunk[{position}].arrow_ipc", chunk.arrow_ipc)
            try:
                routes = routing.route(table, rules)
            except EffigateError as exc:
                raise EffigateError(f"chunk[{position}].{exc}") from None
            position += 1
            yield common_pb2.ArrowChunk(arrow_ipc=write_ipc(routes))

    @guarded
    async def Assign(
        self, request: pb.AssignRequest, context: grpc.aio.ServicerContext
    ) -> pb.AssignResponse:
        outcomes = await service.assign(
            self.store,
            self.cache,
            current_principal(),
            list(request.ticket_ids),
            request.queue,
            request.limit,
            optional_datetime(request, "at"),
        )
        return pb.AssignResponse(
            results=[
                pb.AssignResult(
                    ticket_id=o.ticket_id,
                    queue=o.queue or "",
                    assignee=o.assignee or "",
                    escalated=o.escalated,
                    reason=o.reason,
                    weight=o.weight,
                    recorded=o.recorded,
                )
                for o in outcomes
            ]
        )

    @guarded
    async def QueueDepth(
        self, request: pb.QueueDepthRequest, context: grpc.aio.ServicerContext
    ) -> pb.QueueDepthResponse:
        rows = await service.queue_depth(self.store, current_principal())
        return pb.QueueDepthResponse(
            queues=[pb.QueueDepthRow(queue=q, open_tickets=n, unassigned=u) for q, n, u in rows]
        )

    @guarded
    async def AgentWorkload(
        self, request: pb.AgentWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.AgentWorkloadResponse:
        rows, now, failures = await service.agent_workload(
            self.store, self.cache, current_principal(), optional_datetime(request, "now")
        )
        return pb.AgentWorkloadResponse(
            agents=[
                pb.AgentWorkloadRow(
                    agent_id=r.agent_id,
                    name=r.name,
                    open_tickets=r.open_tickets,
                    load=r.load,
                    at_risk=r.at_risk,
                    breached=r.breached,
                    capacity=r.capacity,
                    active=r.active,
                )
                for r in rows
            ],
            now=timestamp(now),
            failed_count=failures.num_rows,
            failed=ticket_failures(failures),
        )

    @guarded
    async def OldestUnassigned(
        self, request: pb.OldestUnassignedRequest, context: grpc.aio.ServicerContext
    ) -> pb.OldestUnassignedResponse:
        rows = await service.oldest_unassigned(
            self.store, current_principal(), optional_datetime(request, "now")
        )
        return pb.OldestUnassignedResponse(
            queues=[
                pb.OldestUnassignedRow(
                    queue=q,
                    ticket_id=t,
                    created_at=timestamp(created),
                    waiting_seconds=waited,
                    unassigned=n,
                )
                for q, t, created, waited, n in rows
            ]
        )

    @guarded
    async def ReplayRouting(
        self, request: pb.ReplayRoutingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayRoutingResponse:
        proposed = (
            body("proposed_rules_json", request.proposed_rules_json)
            if request.proposed_rules_json
            else None
        )
        replay = await service.replay_routing(
            self.store,
            current_principal(),
            proposed,
            request.proposed_version or None,
            optional_datetime(request, "start"),
            optional_datetime(request, "end"),
        )
        return pb.ReplayRoutingResponse(
            tickets=replay.tickets,
            moved=replay.moved,
            moves=[
                pb.QueueMove(from_queue=f or "", to_queue=t, tickets=n) for f, t, n in replay.moves
            ],
        )
