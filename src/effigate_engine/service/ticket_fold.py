"""A ticket's state as a fold of its events.

Events are applied in time order; at one instant ``CREATED`` comes first, then the others by
event id. The first ``RESPONDED`` stops first response, the first ``PLAN_PROVIDED`` the
resolution plan, each ``PAUSED`` … ``RESUMED`` (or ``RESOLVED`` … ``REOPENED``) is a pause, the
last ``RESOLVED`` not followed by a reopen stops resolution. The latest ``PRIORITY_CHANGED``,
``SUPPORT_LEVEL_CHANGED``, ``JOB_TYPE_CHANGED``, ``ASSIGNED``, ``QUEUE_CHANGED`` and
``TAGS_CHANGED`` give the current priority, support level, job type, assignee, queue and tags.

``CREATED`` carries the ticket's initial values: its detail is a JSON object
(:func:`created_detail`) whose members ``priority``, ``support_level``, ``job_type``, ``queue``,
``assignee`` and ``tags`` are the values at creation (a member left out: null, or no tags; a
missing ``priority`` keeps the stored one), so a fold of the events known at an instant gives
the values then. A plain-text detail (tickets stored before schema 12, or bulk events written
that way) is the initial priority alone; the other values then start from the stored row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from effigate_engine import ticket_fields
from effigate_engine.store.tickets import Event, FoldedState, TicketRecord

EVENT_KINDS = (
    "CREATED",
    "RESPONDED",
    "PLAN_PROVIDED",
    "PAUSED",
    "RESUMED",
    "RESOLVED",
    "REOPENED",
    "PRIORITY_CHANGED",
    "SUPPORT_LEVEL_CHANGED",
    "JOB_TYPE_CHANGED",
    "ASSIGNED",
    "QUEUE_CHANGED",
    "TAGS_CHANGED",
)
#: Events that re-target the whole ticket (the current values' rule applies from creation).
RETARGETING = frozenset({"PRIORITY_CHANGED", "SUPPORT_LEVEL_CHANGED", "JOB_TYPE_CHANGED"})
DEFAULT_PAUSE_STATUS = "WAITING_ON_CLIENT"
#: The members of a ``CREATED`` detail besides ``priority`` (``tags`` a list).
CREATED_MEMBERS = ("support_level", "job_type", "queue", "assignee")


@dataclass
class Timeline:
    """A ticket's state folded from its events (see the module docstring)."""

    priority: str
    status: str = "OPEN"
    first_response_at: datetime | None = None
    resolution_plan_at: datetime | None = None
    resolved_at: datetime | None = None
    pauses: list[tuple[datetime, datetime | None, str]] = field(default_factory=list)
    support_level: str | None = None
    job_type: str | None = None
    queue: str | None = None
    assignee: str | None = None
    tags: tuple[str, ...] = ()

    def state(self) -> FoldedState:
        """What the stored row keeps of it."""
        return FoldedState(
            self.priority,
            self.status,
            self.first_response_at,
            self.resolved_at,
            self.support_level,
            self.job_type,
            self.queue,
            self.assignee,
            self.tags,
        )


def created_detail(
    priority: str,
    support_level: str | None = None,
    job_type: str | None = None,
    queue: str | None = None,
    assignee: str | None = None,
    tags: Iterable[str] = (),
) -> str:
    """The detail of a ``CREATED`` event: the initial values as a JSON object (keys sorted,
    null members and an empty tag set left out)."""
    body: dict[str, object] = {"priority": priority}
    for name, value in zip(
        CREATED_MEMBERS, (support_level, job_type, queue, assignee), strict=True
    ):
        if value is not None:
            body[name] = value
    tag_list = list(tags)
    if tag_list:
        body["tags"] = tag_list
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _created(line: Timeline, detail: str | None) -> None:
    """Apply a ``CREATED`` detail (JSON object or legacy plain priority) to ``line``."""
    if not detail:
        return
    body = None
    if detail.startswith("{"):
        try:
            body = json.loads(detail)
        except ValueError:
            body = None
    if not isinstance(body, dict):
        line.priority = detail
        return
    if isinstance(body.get("priority"), str) and body["priority"]:
        line.priority = body["priority"]
    for name in CREATED_MEMBERS:
        value = body.get(name)
        setattr(line, name, value if isinstance(value, str) and value else None)
    tags = body.get("tags")
    line.tags = tuple(sorted({t for t in tags if isinstance(t, str) and t})) if tags else ()


def _order(event: Event) -> tuple[datetime, bool, str]:
    return (event[2], event[1] != "CREATED", event[0])


def fold(events: Iterable[Event], ticket: TicketRecord | str) -> Timeline:
    """Fold ``(event_id, kind, occurred_at, detail)`` events into a :class:`Timeline`.

    ``ticket`` is the stored ticket (its values are those before any event: a ``CREATED``
    event replaces them) or, for a bare fold, the priority before any event.
    """
    if isinstance(ticket, str):
        line = Timeline(ticket)
    else:
        line = Timeline(
            ticket.priority,
            support_level=ticket.support_level,
            job_type=ticket.job_type,
            queue=ticket.queue,
            assignee=ticket.assignee,
            tags=tuple(ticket.tags),
        )
    open_pause: tuple[datetime, str] | None = None
    for _, kind, at, detail in sorted(events, key=_order):
        if kind == "CREATED":
            _created(line, detail)
        elif kind == "PRIORITY_CHANGED" and detail:
            line.priority = detail
        elif kind == "SUPPORT_LEVEL_CHANGED":
            line.support_level = detail or None
        elif kind == "JOB_TYPE_CHANGED":
            line.job_type = detail or None
        elif kind == "ASSIGNED":
            line.assignee = detail or None
        elif kind == "QUEUE_CHANGED":
            line.queue = detail or None
        elif kind == "TAGS_CHANGED":
            line.tags = tuple(ticket_fields.tags_of_detail(detail))
        elif kind == "RESPONDED":
            line.first_response_at = line.first_response_at or at
        elif kind == "PLAN_PROVIDED":
            line.resolution_plan_at = line.resolution_plan_at or at
        elif kind == "PAUSED" and open_pause is None and line.status != "RESOLVED":
            open_pause = (at, detail or DEFAULT_PAUSE_STATUS)
            line.status = open_pause[1]
        elif kind == "RESUMED" and open_pause is not None and line.status != "RESOLVED":
            line.pauses.append((open_pause[0], at, open_pause[1]))
            open_pause = None
            line.status = "OPEN"
        elif kind == "RESOLVED" and line.status != "RESOLVED":
            if open_pause is not None:
                line.pauses.append((open_pause[0], at, open_pause[1]))
                open_pause = None
            line.resolved_at = at
            line.status = "RESOLVED"
        elif kind == "REOPENED" and line.status == "RESOLVED" and line.resolved_at is not None:
            line.pauses.append((line.resolved_at, at, "RESOLVED"))
            line.resolved_at = None
            line.status = "OPEN"
    if open_pause is not None:
        line.pauses.append((open_pause[0], None, open_pause[1]))
    return line
