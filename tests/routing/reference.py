"""Slow reference for routing and assignment: docs/routing.md applied ticket by ticket, in plain
Python over dicts, with nothing shared with the engine but the parsed rule and roster objects.

Routing walks the rules in order and tests each field of the rule against the ticket as the
spec words it (casefolded substring, the domain after the last ``@`` equal to or ending in
``.domain``). Assignment sorts the tickets by (assign instant, id), and for each one scans
every agent for eligibility and picks the minimum by (load, last assigned, id bytes); shifts
come from a caller's ``on_shift(calendar name, instant)`` (the tests pass the minute-walking
reference clock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from effigate_engine.routing.agents import Agent, Queue
from effigate_engine.routing.rules import RoutingRules

PRIORITY_ALIAS = {"P1": "CRITICAL", "P2": "HIGH", "P3": "MEDIUM", "P4": "LOW"}
PRIORITY_WEIGHT = {"CRITICAL": 8, "HIGH": 4, "MEDIUM": 2, "LOW": 1}


def _priority(value: str) -> str:
    key = value.strip().upper()
    return PRIORITY_ALIAS.get(key, key)


def _upper(value: str | None) -> str | None:
    return None if value is None else value.strip().upper()


def _domain(requester: str | None) -> str | None:
    if requester is None or "@" not in requester:
        return None
    return requester.rsplit("@", 1)[1].casefold()


def rule_matches(rule: Any, ticket: Mapping[str, Any]) -> bool:
    """Whether one rule matches one ticket, field by field."""
    m = rule.match
    if m.priorities is not None and _priority(ticket["priority"]) not in m.priorities:
        return False
    level = _upper(ticket.get("support_level"))
    if m.support_levels is not None and level not in m.support_levels:
        return False
    if m.job_types is not None and ticket.get("job_type") not in m.job_types:
        return False
    client = ticket.get("client_id")
    if m.clients is not None and (client is None or str(client) not in m.clients):
        return False
    if m.channels is not None and _upper(ticket.get("channel")) not in m.channels:
        return False
    if m.after_hours is not None and ticket.get("after_hours") is not m.after_hours:
        return False
    if m.subject_contains is not None:
        subject = ticket.get("subject")
        if subject is None or not any(
            p.casefold() in subject.casefold() for p in m.subject_contains
        ):
            return False
    if m.requester_domains is not None:
        domain = _domain(ticket.get("requester"))
        if domain is None or not any(
            domain == d or domain.endswith("." + d) for d in m.requester_domains
        ):
            return False
    return True


def route_one(ticket: Mapping[str, Any], rules: RoutingRules) -> dict[str, Any]:
    """The ROUTES row of one ticket."""
    index, queue, priority, level = -1, rules.fallback_queue, None, None
    added: tuple[str, ...] = ()
    for i, rule in enumerate(rules.rules):
        if rule_matches(rule, ticket):
            index, queue = i, rule.queue
            priority, level, added = rule.set_priority, rule.set_support_level, rule.tags
            break
    return {
        "ticket_id": ticket["ticket_id"],
        "rule": index,
        "queue": queue,
        "priority": priority or _priority(ticket["priority"]),
        "support_level": level or _upper(ticket.get("support_level")),
        "tags": sorted(set(ticket.get("tags") or []) | set(added)),
    }


def route(tickets: Sequence[Mapping[str, Any]], rules: RoutingRules) -> list[dict[str, Any]]:
    """ROUTES rows, in ticket order."""
    return [route_one(t, rules) for t in tickets]


def weight(priority: str, remaining: int | None) -> int:
    """Work weight: priority weight × urgency (docs/routing.md)."""
    if remaining is None:
        urgency = 1
    elif remaining <= 0:
        urgency = 4
    elif remaining <= 3600:
        urgency = 3
    elif remaining <= 14400:
        urgency = 2
    else:
        urgency = 1
    return PRIORITY_WEIGHT[_priority(priority)] * urgency


def assign(
    tickets: Sequence[Mapping[str, Any]],
    queues: Sequence[Queue],
    agents: Sequence[Agent],
    on_shift: Callable[[str, int], bool],
    state: Mapping[str, tuple[int, int, int]] | None = None,
    sequence: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int, int]], int]:
    """ASSIGNMENTS rows in ticket order, the agents' (open_count, load, last_assigned) after,
    and the next sequence number. ``assign_at`` is epoch seconds."""
    by_name = {q.name: q for q in queues}
    loads = {a.id: list((state or {}).get(a.id, (0, 0, -1))) for a in agents}
    rows: dict[int, dict[str, Any]] = {}
    order = sorted(
        range(len(tickets)),
        key=lambda i: (tickets[i]["assign_at"], tickets[i]["ticket_id"].encode()),
    )
    for i in order:
        t = tickets[i]
        w = weight(t["priority"], t.get("remaining_seconds"))
        row = {
            "ticket_id": t["ticket_id"],
            "queue": t.get("queue"),
            "assignee": None,
            "escalated": False,
            "reason": None,
            "weight": w,
            "sequence": None,
        }
        rows[i] = row
        if t.get("queue") is None:
            row["reason"] = "NO_QUEUE"
            continue
        queue_name = t["queue"]
        tried = []
        while True:
            tried.append(queue_name)
            queue = by_name.get(queue_name)
            working = [a for a in agents if a.active and queue_name in a.queues]
            fitting = []
            for a in working:
                level = _upper(t.get("support_level"))
                if level is not None and level not in a.support_levels:
                    continue
                job = t.get("job_type")
                if job is not None and a.skills is not None and job not in a.skills:
                    continue
                calendar = a.calendar or (queue.calendar if queue else None)
                if calendar is not None and not on_shift(calendar, t["assign_at"]):
                    continue
                fitting.append(a)
            free = [a for a in fitting if loads[a.id][0] < a.capacity]
            if free:
                best = min(free, key=lambda a: (loads[a.id][1], loads[a.id][2], a.id.encode()))
                loads[best.id][0] += 1
                loads[best.id][1] += w
                loads[best.id][2] = sequence
                row.update(
                    queue=queue_name,
                    assignee=best.id,
                    escalated=len(tried) > 1,
                    reason="ESCALATED_AND_ASSIGNED" if len(tried) > 1 else "ASSIGNED",
                    sequence=sequence,
                )
                sequence += 1
                break
            at_risk = t.get("sla_status") in ("WARNING", "BREACHED")
            nxt = queue.escalation_queue if queue else None
            if at_risk and nxt is not None and nxt not in tried:
                queue_name = nxt
                continue
            row.update(
                queue=queue_name,
                escalated=len(tried) > 1,
                reason="NO_AGENT_IN_QUEUE"
                if not working
                else "ALL_AT_CAPACITY"
                if fitting
                else "NO_ELIGIBLE_AGENT",
            )
            break
    after = {k: (v[0], v[1], v[2]) for k, v in loads.items()}
    return [rows[i] for i in range(len(tickets))], after, sequence
