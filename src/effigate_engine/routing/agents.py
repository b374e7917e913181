"""Queues and the agents who work them, with their JSON forms.

A queue may name a calendar (its business hours: agents without their own calendar are on shift
when it is open) and an escalation queue (where a ticket at risk goes when nobody in the queue
can take it). An agent takes tickets of the support levels it has, of the job types it is
skilled in (``None``: any), from the queues it works, up to ``capacity`` open tickets at a
time, while on shift: its own calendar, else the queue's, else always.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from effigate_engine.routing.rules import MAX_NAME, RoutingError
from effigate_engine.sla.policy import SUPPORT_LEVELS

#: The longest agent id and name accepted (characters).
MAX_AGENT_ID = 200


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue: ``calendar`` names a calendar of the :class:`~effigate_engine.CalendarSet`
    used at assignment (``None``: always open); ``escalation_queue`` names another queue."""

    name: str
    calendar: str | None = None
    escalation_queue: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str = "queue") -> Queue:
        """A queue from its JSON object ``{name, calendar?, escalation_queue?}``."""
        _fields(data, path, ("name", "calendar", "escalation_queue"))
        return cls(
            _text(data.get("name"), f"{path}.name", MAX_NAME),
            _optional_text(data.get("calendar"), f"{path}.calendar"),
            _optional_text(data.get("escalation_queue"), f"{path}.escalation_queue"),
        )

    def to_json(self) -> dict[str, Any]:
        """The queue as a JSON object :meth:`from_json` reads back."""
        out: dict[str, Any] = {"name": self.name}
        if self.calendar is not None:
            out["calendar"] = self.calendar
        if self.escalation_queue is not None:
            out["escalation_queue"] = self.escalation_queue
        return out


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent: ``capacity`` is the most open assigned tickets it holds at once;
    ``skills`` ``None`` takes any job type; ``calendar`` ``None`` follows the queue's."""

    id: str
    name: str = ""
    support_levels: frozenset[str] = frozenset(SUPPORT_LEVELS)
    skills: frozenset[str] | None = None
    queues: frozenset[str] = frozenset()
    capacity: int = 0
    calendar: str | None = None
    active: bool = True

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str = "agent") -> Agent:
        """An agent from its JSON object ``{id, name?, support_levels?, skills?, queues,
        capacity, calendar?, active?}`` (``support_levels`` defaults to all four levels,
        ``skills`` to any job type, ``active`` to true)."""
        _fields(
            data,
            path,
            ("id", "name", "support_levels", "skills", "queues", "capacity", "calendar", "active"),
        )
        name = data.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_AGENT_ID:
            raise RoutingError(f"{path}.name", name, f"is not a string of at most {MAX_AGENT_ID}")
        levels = data.get("support_levels", list(SUPPORT_LEVELS))
        skills = data.get("skills")
        capacity = data.get("capacity")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise RoutingError(f"{path}.capacity", capacity, "is not an integer >= 0")
        active = data.get("active", True)
        if not isinstance(active, bool):
            raise RoutingError(f"{path}.active", active, "is not true/false")
        return cls(
            id=_text(data.get("id"), f"{path}.id", MAX_AGENT_ID),
            name=name,
            support_levels=frozenset(
                _level(v, p) for v, p in _items(levels, f"{path}.support_levels")
            ),
            skills=None
            if skills is None
            else frozenset(_text(v, p, MAX_NAME) for v, p in _items(skills, f"{path}.skills")),
            queues=frozenset(
                _text(v, p, MAX_NAME) for v, p in _items(data.get("queues"), f"{path}.queues")
            ),
            capacity=capacity,
            calendar=_optional_text(data.get("calendar"), f"{path}.calendar"),
            active=active,
        )

    def to_json(self) -> dict[str, Any]:
        """The agent as a JSON object :meth:`from_json` reads back."""
        out: dict[str, Any] = {"id": self.id}
        if self.name:
            out["name"] = self.name
        out["support_levels"] = sorted(self.support_levels, key=SUPPORT_LEVELS.index)
        if self.skills is not None:
            out["skills"] = sorted(self.skills)
        out["queues"] = sorted(self.queues)
        out["capacity"] = self.capacity
        if self.calendar is not None:
            out["calendar"] = self.calendar
        out["active"] = self.active
        return out


def check_roster(queues: Sequence[Queue], agents: Sequence[Agent]) -> None:
    """Refuse a roster that cannot be assigned from: a queue or agent given twice, an escalation
    queue or agent queue that is not among ``queues``, an agent field out of its vocabulary.
    :class:`RoutingError` names the field path (``agents[3].queues``)."""
    names: dict[str, int] = {}
    for i, queue in enumerate(queues):
        if not isinstance(queue, Queue):
            raise RoutingError(f"queues[{i}]", queue, "is not a Queue")
        if queue.name in names:
            raise RoutingError(f"queues[{i}].name", queue.name, "is given twice")
        names[queue.name] = i
    for i, queue in enumerate(queues):
        if queue.escalation_queue is not None and queue.escalation_queue not in names:
            raise RoutingError(
                f"queues[{i}].escalation_queue",
                queue.escalation_queue,
                f"is not a queue ({', '.join(sorted(names))})",
            )
    ids: set[str] = set()
    for i, agent in enumerate(agents):
        if not isinstance(agent, Agent):
            raise RoutingError(f"agents[{i}]", agent, "is not an Agent")
        if agent.id in ids:
            raise RoutingError(f"agents[{i}].id", agent.id, "is given twice")
        ids.add(agent.id)
        for queue_name in sorted(agent.queues):
            if queue_name not in names:
                raise RoutingError(
                    f"agents[{i}].queues",
                    queue_name,
                    f"is not a queue ({', '.join(sorted(names))})",
                )
        for level in sorted(agent.support_levels):
            if level not in SUPPORT_LEVELS:
                raise RoutingError(
                    f"agents[{i}].support_levels",
                    level,
                    f"is not one of {', '.join(SUPPORT_LEVELS)}",
                )
        if isinstance(agent.capacity, bool) or not isinstance(agent.capacity, int):
            raise RoutingError(f"agents[{i}].capacity", agent.capacity, "is not an integer")
        if agent.capacity < 0:
            raise RoutingError(f"agents[{i}].capacity", agent.capacity, "is negative")


def _fields(data: object, path: str, known: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise RoutingError(path, data, "is not a JSON object")
    for key in data:
        if key not in known:
            raise RoutingError(f"{path}.{key}", data[key], f"is not a field ({', '.join(known)})")


def _text(value: object, path: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RoutingError(path, value, "is required (a non-empty string)")
    if value != value.strip():
        raise RoutingError(path, value, "has surrounding spaces")
    if len(value) > limit:
        raise RoutingError(path, value, f"is longer than {limit} characters")
    return value


def _optional_text(value: object, path: str) -> str | None:
    return None if value is None else _text(value, path, MAX_NAME)


def _items(value: object, path: str) -> Iterable[tuple[object, str]]:
    if not isinstance(value, list):
        raise RoutingError(path, value, "is not a list")
    return ((v, f"{path}[{i}]") for i, v in enumerate(value))


def _level(value: object, path: str) -> str:
    level = value.strip().upper() if isinstance(value, str) else value
    if level not in SUPPORT_LEVELS:
        raise RoutingError(path, value, f"is not one of {', '.join(SUPPORT_LEVELS)}")
    return str(level)
