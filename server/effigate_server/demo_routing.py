"""The demo MSP's queues, agents and routing rules, and its open tickets routed and assigned
through the routing service (``effigate_server.demo`` calls these)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from effigate.v1 import routing_pb2
from effigate_client import AsyncClient, to_timestamp

#: Route and assign ids in requests of at most this many (a repeated field's limit).
BATCH = 10_000


def queues() -> list[routing_pb2.Queue]:
    """The service desk (Sydney hours) escalating to the overnight NOC, the NOC escalating to
    major incidents (24x7), and Tailspin's own desk (24x7)."""
    return [
        routing_pb2.Queue(
            name="service-desk", calendar="sydney-business-hours", escalation_queue="noc"
        ),
        routing_pb2.Queue(
            name="noc", calendar="new-york-noc-overnight", escalation_queue="major-incident"
        ),
        routing_pb2.Queue(name="major-incident", calendar="london-24x7"),
        routing_pb2.Queue(name="tailspin-desk", calendar="london-24x7"),
    ]


def agents() -> list[routing_pb2.Agent]:
    """Eight agents across the queues (one away: inactive)."""

    def agent(agent_id: str, name: str, works: Sequence[str], capacity: int, **kw: Any) -> Any:
        return routing_pb2.Agent(id=agent_id, name=name, queues=works, capacity=capacity, **kw)

    return [
        agent("ana", "Ana Silva", ["service-desk"], 40, support_levels=["L1", "L2"]),
        agent("ben", "Ben Okafor", ["service-desk"], 40, support_levels=["L1", "L2"]),
        agent(
            "chloe", "Chloe Martin", ["noc"], 30, skills=routing_pb2.Skills(job_types=["security"])
        ),
        agent("dev", "Dev Patel", ["noc", "major-incident"], 30),
        agent("emeka", "Emeka Eze", ["major-incident"], 20, support_levels=["L3", "SA"]),
        agent("fatima", "Fatima Khan", ["tailspin-desk"], 60),
        agent("gus", "Gus Berg", ["service-desk", "tailspin-desk"], 40),
        agent("hana", "Hana Sato", ["service-desk"], 40, active=False),
    ]


def rules(tailspin_client: int) -> dict[str, Any]:
    """Critical tickets to major incidents, Tailspin's to its desk, high ones and security work
    to the NOC, the rest to the service desk."""
    return {
        "fallback_queue": "service-desk",
        "rules": [
            {"name": "critical", "match": {"priority": "CRITICAL"}, "queue": "major-incident"},
            {"name": "tailspin", "match": {"client": [tailspin_client]}, "queue": "tailspin-desk"},
            {"name": "high", "match": {"priority": "HIGH"}, "queue": "noc"},
            {"name": "security", "match": {"job_type": "security"}, "queue": "noc"},
        ],
    }


@dataclass
class RoutingSummary:
    """Queue depth and agents' workload after routing and assignment."""

    routed: int = 0
    assigned: int = 0
    depth: list[Any] = field(default_factory=list)
    workload: list[Any] = field(default_factory=list)

    def report(self) -> list[str]:
        """Lines of text: each queue's open and unassigned tickets, each agent's workload."""
        out = ["", "Queues (open tickets, unassigned):"]
        out += [f"  {q.queue:<16} {q.open_tickets:>6} {q.unassigned:>6}" for q in self.depth]
        out.append("Agents (open tickets / capacity, weighted load, at risk, breached):")
        out += [
            f"  {a.agent_id:<8} {a.open_tickets:>4} / {a.capacity:<4} {a.load:>6}"
            f" {a.at_risk:>5} {a.breached:>5}"
            for a in self.workload
        ]
        return out


async def setup(c: AsyncClient, tailspin_client: int) -> None:
    """Store the demo's queues, agents and routing rules."""
    await c.routing.PutQueues(routing_pb2.PutQueuesRequest(queues=queues()))
    await c.routing.PutAgents(routing_pb2.PutAgentsRequest(agents=agents()))
    await c.routing.PutRoutingRules(
        routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(rules(tailspin_client)))
    )


async def route_and_assign(c: AsyncClient, open_ids: Sequence[str], at: datetime) -> int:
    """Route the open tickets and assign every queue's unassigned ones at ``at``; how many
    were assigned."""
    for i in range(0, len(open_ids), BATCH):
        await c.routing.Route(
            routing_pb2.RouteRequest(ticket_ids=open_ids[i : i + BATCH], at=to_timestamp(at))
        )
    assigned = 0
    for queue in queues():
        reply = await c.routing.Assign(
            routing_pb2.AssignRequest(queue=queue.name, limit=BATCH, at=to_timestamp(at))
        )
        assigned += sum(1 for r in reply.results if r.assignee and r.recorded)
    return assigned


async def summary(c: AsyncClient, now: datetime) -> RoutingSummary:
    """Queue depth and the agents' workload at ``now``."""
    depth = await c.routing.QueueDepth(routing_pb2.QueueDepthRequest())
    workload = await c.routing.AgentWorkload(
        routing_pb2.AgentWorkloadRequest(now=to_timestamp(now))
    )
    return RoutingSummary(depth=list(depth.queues), workload=list(workload.agents))
