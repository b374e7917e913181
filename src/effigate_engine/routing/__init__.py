"""Routing and assignment engine: rules send tickets to queues, agents are balanced by load.

routes = routing.route(tickets, rules)                  # Arrow in, ROUTES out
assigned, workload = routing.assign(tickets, queues, agents, calendars, state)
routing.workload(open_tickets)                          # agents' load from their open tickets

Semantics: ``docs/routing.md``.
"""

from effigate_engine.routing.agents import Agent, Queue, check_roster
from effigate_engine.routing.assignment import AT_RISK, assign
from effigate_engine.routing.routes import route, routed
from effigate_engine.routing.rules import (
    CHANNELS,
    RouteMatch,
    RoutingError,
    RoutingRule,
    RoutingRules,
)
from effigate_engine.routing.schemas import (
    AGENT_WORKLOAD,
    ASSIGNMENTS,
    REASONS,
    ROUTES,
    ROUTING_TICKETS,
)
from effigate_engine.routing.workload import (
    PRIORITY_WEIGHTS,
    URGENCY_STEPS,
    AgentLoad,
    Workload,
    work_weights,
    workload,
)

__all__ = [
    "AGENT_WORKLOAD",
    "ASSIGNMENTS",
    "AT_RISK",
    "CHANNELS",
    "PRIORITY_WEIGHTS",
    "REASONS",
    "ROUTES",
    "ROUTING_TICKETS",
    "URGENCY_STEPS",
    "Agent",
    "AgentLoad",
    "Queue",
    "RouteMatch",
    "RoutingError",
    "RoutingRule",
    "RoutingRules",
    "Workload",
    "assign",
    "check_roster",
    "route",
    "routed",
    "work_weights",
    "workload",
]
