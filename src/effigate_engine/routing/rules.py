"""Routing rules: which queue a ticket goes to, with the priority, support level and tags the
matched rule sets.

A rule set is an ordered list of rules and a fallback queue; the **first rule that matches a
ticket applies**, and a ticket no rule matches goes to the fallback queue (rule index -1). A
rule matches on any of priority (``CRITICAL``/``HIGH``/``MEDIUM``/``LOW``, aliases
``P1``–``P4``), support level (``L1``/``L2``/``L3``/``SA``), job type, client, channel, the
after-hours flag, substrings of the subject and the requester's e-mail domain; a field left
out matches everything, a list is any-of and a single string is a one-element list. Semantics:
``docs/routing.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effigate_engine.errors import EffigateError
from effigate_engine.priority import PRIORITIES, priority_name
from effigate_engine.sla.policy import SUPPORT_LEVELS

CHANNELS = ("EMAIL", "PORTAL", "PHONE", "CHAT", "MONITORING", "API")
#: The longest tag, job type and queue name accepted (characters).
MAX_NAME = 64
#: The longest subject pattern accepted (characters): a subject holds at most 1,000.
MAX_PATTERN = 1000

_RULE_FIELDS = ("name", "match", "queue", "set_priority", "set_support_level", "tags")
_MATCH_FIELDS = (
    "priority",
    "support_level",
    "job_type",
    "client",
    "channel",
    "after_hours",
    "subject_contains",
    "requester_domain",
)


class RoutingError(EffigateError):
    """A routing definition is invalid: ``field`` is the path of the bad field (like
    ``rules[2].match.priority``), ``value`` its value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Which tickets a rule applies to; ``None`` matches everything.

    ``subject_contains`` holds the patterns as given (matched case-insensitively, by Unicode
    casefold); ``requester_domains`` holds domains casefolded, without a leading ``@``.
    """

    priorities: frozenset[str] | None = None
    support_levels: frozenset[str] | None = None
    job_types: frozenset[str] | None = None
    clients: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    after_hours: bool | None = None
    subject_contains: tuple[str, ...] | None = None
    requester_domains: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """A rule: which tickets (``match``), the queue they go to, and what it sets on them."""

    match: RouteMatch
    queue: str
    name: str = ""
    set_priority: str | None = None
    set_support_level: str | None = None
    tags: tuple[str, ...] = ()  # sorted, no duplicates


@dataclass(frozen=True)
class RoutingRules:
    """An ordered list of rules and the queue of the tickets none matches."""

    fallback_queue: str
    rules: tuple[RoutingRule, ...] = ()

    @property
    def queues(self) -> set[str]:
        """Every queue name the rules can send a ticket to."""
        return {self.fallback_queue} | {r.queue for r in self.rules}

    # JSON ---------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoutingRules:
        """Build a rule set from its JSON object, validating every field
        (:class:`RoutingError` names the first bad one)."""
        if not isinstance(data, Mapping):
            raise RoutingError("routing", data, "is not a JSON object {fallback_queue, rules}")
        for key in data:
            if key not in ("fallback_queue", "rules"):
                raise RoutingError(
                    str(key), data[key], "is not a routing field (fallback_queue, rules)"
                )
        fallback = _name(data.get("fallback_queue"), "fallback_queue", "a queue name")
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise RoutingError("rules", raw_rules, "is not a list of rules")
        rules = tuple(_parse_rule(raw, f"rules[{i}]") for i, raw in enumerate(raw_rules))
        return cls(fallback, rules)

    def to_json(self) -> dict[str, Any]:
        """The rule set as a JSON object that :meth:`from_json` reads back to an equal one."""
        return {"fallback_queue": self.fallback_queue, "rules": [_rule_json(r) for r in self.rules]}

    @classmethod
    def load(cls, path: str | Path) -> RoutingRules:
        """Read a rule set from a JSON file."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: str | Path) -> None:
        """Write the rule set as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _name(value: object, path: str, what: str, limit: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RoutingError(path, value, f"is required ({what}: a non-empty string)")
    if value != value.strip():
        raise RoutingError(path, value, "has surrounding spaces")
    if len(value) > limit:
        raise RoutingError(path, value, f"is longer than {limit} characters")
    return value


def _strings(
    value: object,
    path: str,
    check: Callable[[str, str], str],
    *,
    ints: bool = False,
) -> list[str]:
    """A string or a non-empty list of strings, each passed through ``check(item, path)``."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise RoutingError(path, value, "is an empty list (leave the field out to match all)")
    out = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]" if isinstance(value, list) else path
        if ints and isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            kind = "a string or an integer" if ints else "a string"
            raise RoutingError(item_path, item, f"is not {kind}")
        out.append(check(item, item_path))
    return out


def _vocabulary(allowed: Sequence[str], normalize: Callable[[str], str]) -> Any:
    def check(item: str, path: str) -> str:
        norm = normalize(item)
        if norm not in allowed:
            raise RoutingError(path, item, f"is not one of {', '.join(allowed)}")
        return norm

    return check


def _plain(what: str, limit: int = MAX_NAME) -> Any:
    def check(item: str, path: str) -> str:
        return _name(item, path, what, limit)

    return check


def _pattern(item: str, path: str) -> str:
    if not item:
        raise RoutingError(path, item, "is empty (a pattern must have at least one character)")
    if len(item) > MAX_PATTERN:
        raise RoutingError(path, item, f"is longer than {MAX_PATTERN} characters")
    return item


def _domain(item: str, path: str) -> str:
    domain = item.strip().removeprefix("@").casefold()
    if (
        not domain
        or "@" in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or ".." in domain
        or any(c.isspace() for c in domain)
    ):
        raise RoutingError(path, item, "is not a domain (like example.com)")
    return domain


def _set(value: object, path: str, check: Any, *, ints: bool = False) -> frozenset[str]:
    return frozenset(_strings(value, path, check, ints=ints))


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _parse_match(raw: object, path: str) -> RouteMatch:
    if not isinstance(raw, Mapping):
        raise RoutingError(path, raw, "is not an object")
    for key in raw:
        if key not in _MATCH_FIELDS:
            raise RoutingError(
                f"{path}.{key}", raw[key], f"is not a match field ({', '.join(_MATCH_FIELDS)})"
            )
    after_hours = raw.get("after_hours")
    if after_hours is not None and not isinstance(after_hours, bool):
        raise RoutingError(f"{path}.after_hours", after_hours, "is not true/false")

    def field(key: str, check: Any, *, ints: bool = False) -> frozenset[str] | None:
        return _set(raw[key], f"{path}.{key}", check, ints=ints) if key in raw else None

    return RouteMatch(
        priorities=field("priority", _vocabulary(PRIORITIES, priority_name)),
        support_levels=field(
            "support_level", _vocabulary(SUPPORT_LEVELS, lambda s: s.strip().upper())
        ),
        job_types=field("job_type", _plain("a job type")),
        clients=field("client", _plain("a client id", 200), ints=True),
        channels=field("channel", _vocabulary(CHANNELS, lambda s: s.strip().upper())),
        after_hours=after_hours,
        subject_contains=_unique(
            _strings(raw["subject_contains"], f"{path}.subject_contains", _pattern)
        )
        if "subject_contains" in raw
        else None,
        requester_domains=_unique(
            _strings(raw["requester_domain"], f"{path}.requester_domain", _domain)
        )
        if "requester_domain" in raw
        else None,
    )


def _parse_rule(raw: object, path: str) -> RoutingRule:
    if not isinstance(raw, Mapping):
        raise RoutingError(path, raw, "is not an object {match, queue, …}")
    for key in raw:
        if key not in _RULE_FIELDS:
            raise RoutingError(
                f"{path}.{key}", raw[key], f"is not a rule field ({', '.join(_RULE_FIELDS)})"
            )
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise RoutingError(f"{path}.name", name, "is not a string")
    match = _parse_match(raw.get("match", {}), f"{path}.match")
    queue = _name(raw.get("queue"), f"{path}.queue", "a queue name")
    set_priority = raw.get("set_priority")
    if set_priority is not None:
        if not isinstance(set_priority, str):
            raise RoutingError(f"{path}.set_priority", set_priority, "is not a string")
        set_priority = _vocabulary(PRIORITIES, priority_name)(set_priority, f"{path}.set_priority")
    set_level = raw.get("set_support_level")
    if set_level is not None:
        if not isinstance(set_level, str):
            raise RoutingError(f"{path}.set_support_level", set_level, "is not a string")
        set_level = _vocabulary(SUPPORT_LEVELS, lambda s: s.strip().upper())(
            set_level, f"{path}.set_support_level"
        )
    tags_raw = raw.get("tags", [])
    if not isinstance(tags_raw, list):
        raise RoutingError(f"{path}.tags", tags_raw, "is not a list of tags")
    tags = (
        tuple(sorted(set(_strings(tags_raw, f"{path}.tags", _plain("a tag"))))) if tags_raw else ()
    )
    return RoutingRule(match, queue, name, set_priority, set_level, tags)


def _rule_json(rule: RoutingRule) -> dict[str, Any]:
    m = rule.match
    match: dict[str, Any] = {}
    if m.priorities is not None:
        match["priority"] = sorted(m.priorities, key=PRIORITIES.index)
    if m.support_levels is not None:
        match["support_level"] = sorted(m.support_levels)
    if m.job_types is not None:
        match["job_type"] = sorted(m.job_types)
    if m.clients is not None:
        match["client"] = sorted(m.clients)
    if m.channels is not None:
        match["channel"] = sorted(m.channels, key=CHANNELS.index)
    if m.after_hours is not None:
        match["after_hours"] = m.after_hours
    if m.subject_contains is not None:
        match["subject_contains"] = list(m.subject_contains)
    if m.requester_domains is not None:
        match["requester_domain"] = list(m.requester_domains)
    out: dict[str, Any] = {}
    if rule.name:
        out["name"] = rule.name
    out["match"] = match
    out["queue"] = rule.queue
    if rule.set_priority is not None:
        out["set_priority"] = rule.set_priority
    if rule.set_support_level is not None:
        out["set_support_level"] = rule.set_support_level
    if rule.tags:
        out["tags"] = list(rule.tags)
    return out
