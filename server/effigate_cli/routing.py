"""``effigate queues | workload | route | assign | routing-rules``: routing from the command line.

They talk to a running service at ``--address`` (``EFFIGATE_ADDRESS``) with the staff token in
``--token`` (``EFFIGATE_TOKEN``), like the other client commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from effigate_cli.client import _client_args, _token


def add_commands(commands: Any) -> None:
    """Register the routing commands on the ``effigate`` subparsers."""
    queues = commands.add_parser(
        "queues", help="queue depth: open and unassigned tickets per queue, and the oldest waiting"
    )
    _client_args(queues)
    queues.set_defaults(handler=run_queues)

    workload = commands.add_parser(
        "workload", help="agents' workload: open tickets, weighted load, at risk and breached"
    )
    _client_args(workload)
    workload.set_defaults(handler=run_workload)

    route = commands.add_parser("route", help="route stored tickets with the current rules")
    route.add_argument("ticket_ids", nargs="+", metavar="TICKET")
    _client_args(route)
    route.set_defaults(handler=run_route)

    assign = commands.add_parser("assign", help="assign stored tickets (or a queue's) to agents")
    which = assign.add_mutually_exclusive_group(required=True)
    which.add_argument("--queue", help="the queue whose open unassigned tickets to assign")
    which.add_argument("--tickets", nargs="+", metavar="TICKET", help="these tickets")
    assign.add_argument("--limit", type=int, default=0, help="with --queue: at most (default 100)")
    _client_args(assign)
    assign.set_defaults(handler=run_assign)

    rules = commands.add_parser("routing-rules", help="store or show the tenant's routing rules")
    actions = rules.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", help="store a rules JSON file as the next version")
    put.add_argument("file", type=Path)
    _client_args(put)
    put.set_defaults(handler=run_rules_put)
    get = actions.add_parser("get", help="print the current rules (or --version N)")
    get.add_argument("--version", type=int, default=0)
    _client_args(get)
    get.set_defaults(handler=run_rules_get)


def run_queues(args: argparse.Namespace) -> int:
    """Print each queue's open and unassigned tickets and its oldest unassigned ticket."""
    from effigate_client import Client, routing_pb2

    with Client(args.address, _token(args)) as client:
        depth = client.routing.QueueDepth(routing_pb2.QueueDepthRequest())
        oldest = client.routing.OldestUnassigned(routing_pb2.OldestUnassignedRequest())
    waiting = {row.queue: row for row in oldest.queues}
    print(f"{'queue':<20} {'open':>7} {'unassigned':>10}  oldest unassigned")
    for row in depth.queues:
        first = waiting.get(row.queue)
        since = f"{first.ticket_id} ({_age(first.waiting_seconds)})" if first else "-"
        print(f"{row.queue:<20} {row.open_tickets:>7} {row.unassigned:>10}  {since}")
    return 0


def _age(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def run_workload(args: argparse.Namespace) -> int:
    """Print each agent's open tickets, weighted load, tickets at risk and breached."""
    from effigate_client import Client, routing_pb2

    with Client(args.address, _token(args)) as client:
        reply = client.routing.AgentWorkload(routing_pb2.AgentWorkloadRequest())
    print(
        f"{'agent':<16} {'name':<20} {'open':>5} {'capacity':>8} {'load':>6}"
        f" {'at risk':>7} {'breached':>8}"
    )
    for a in reply.agents:
        name = a.name if a.active else f"{a.name} (inactive)"
        print(
            f"{a.agent_id:<16} {name:<20} {a.open_tickets:>5} {a.capacity:>8} {a.load:>6}"
            f" {a.at_risk:>7} {a.breached:>8}"
        )
    if reply.failed_count:
        print(f"{reply.failed_count} open tickets could not be evaluated (counted as no SLA)")
    return 0


def run_route(args: argparse.Namespace) -> int:
    """Route tickets and print where each went."""
    from effigate_client import Client, routing_pb2

    with Client(args.address, _token(args)) as client:
        reply = client.routing.Route(routing_pb2.RouteRequest(ticket_ids=args.ticket_ids))
    for r in reply.results:
        rule = "fallback" if r.rule < 0 else f"rule {r.rule}"
        moved = f"{r.previous_queue or '-'} -> {r.queue}"
        note = "" if r.changed else "  (unchanged)"
        print(f"{r.ticket_id:<16} {moved:<32} {rule:<9} {r.priority:<8}{note}")
    print(f"routing rules version {reply.rule_version}")
    return 0


def run_assign(args: argparse.Namespace) -> int:
    """Assign tickets and print who took each."""
    from effigate_client import Client, routing_pb2

    request = routing_pb2.AssignRequest(
        ticket_ids=args.tickets or [], queue=args.queue or "", limit=args.limit
    )
    with Client(args.address, _token(args)) as client:
        reply = client.routing.Assign(request)
    for r in reply.results:
        who = r.assignee or "-"
        escalated = " escalated" if r.escalated else ""
        print(f"{r.ticket_id:<16} {r.queue or '-':<16} {who:<16} {r.reason}{escalated}")
    assigned = sum(1 for r in reply.results if r.assignee and r.recorded)
    print(f"{assigned} of {len(reply.results)} tickets assigned")
    return 0


def run_rules_put(args: argparse.Namespace) -> int:
    """Store a rules file as the tenant's next routing-rules version."""
    from effigate_client import Client, routing_pb2

    text = args.file.read_text(encoding="utf-8")
    with Client(args.address, _token(args)) as client:
        reply = client.routing.PutRoutingRules(routing_pb2.PutRoutingRulesRequest(body_json=text))
    print(f"routing rules version {reply.version}")
    return 0


def run_rules_get(args: argparse.Namespace) -> int:
    """Print the tenant's routing rules (current, or ``--version``)."""
    from effigate_client import Client, routing_pb2

    with Client(args.address, _token(args)) as client:
        reply = client.routing.GetRoutingRules(
            routing_pb2.GetRoutingRulesRequest(version=args.version)
        )
    print(f"# version {reply.version}")
    print(json.dumps(json.loads(reply.body_json), indent=2))
    return 0
