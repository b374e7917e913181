"""Routing rules flattened for the kernel: per matched field the values the rules mention and
which rule accepts which, the text patterns, and each rule's actions as codes — remembered
per rule set."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from effigate_engine.priority import PRIORITIES
from effigate_engine.routing import _route
from effigate_engine.routing.rules import CHANNELS, RouteMatch, RoutingRules
from effigate_engine.sla.policy import SUPPORT_LEVELS
from effigate_engine.sla.rule_tables import accepts_table

#: The fields matched through value codes: (field, the rule's accepted values, the fixed
#: vocabulary of the field or ``None`` when the values the rules mention are the vocabulary).
CODED_FIELDS: tuple[tuple[str, Callable[[RouteMatch], Any], Sequence[str] | None], ...] = (
    ("priority", lambda m: m.priorities, PRIORITIES),
    ("support_level", lambda m: m.support_levels, SUPPORT_LEVELS),
    ("job_type", lambda m: m.job_types, None),
    ("client_id", lambda m: m.clients, None),
    ("channel", lambda m: m.channels, CHANNELS),
)


@dataclass(frozen=True)
class RouteTables:
    """A rule set compiled: ``values[field]`` are the codes' values (a fixed vocabulary, or
    the values the rules mention, sorted); the kernel's :class:`_route.RouteTable`; per rule
    index + 1 (0: the fallback) the queue code, priority and support level set (-1: kept)
    and tags; ``queues`` the queue names the codes index."""

    rules: RoutingRules
    values: dict[str, list[str]]
    table: _route.RouteTable
    pattern_rules: list[int]  # the rules with patterns, in pattern-matrix row order
    subject_patterns: list[tuple[str, ...] | None]  # per pattern row: casefolded substrings
    domain_patterns: list[tuple[str, ...] | None]  # per pattern row: domains
    queues: list[str]
    queue_code: np.ndarray  # int32, per rule + 1
    set_priority: np.ndarray  # int8, per rule + 1
    set_level: np.ndarray  # int8, per rule + 1
    tags: list[tuple[str, ...]]  # per rule + 1


_COMPILED: weakref.WeakKeyDictionary[RoutingRules, RouteTables] = weakref.WeakKeyDictionary()


def route_tables(rules: RoutingRules) -> RouteTables:
    """:func:`_compile`, remembered per rule set (a service routes with the same set again and
    again)."""
    try:
        return _COMPILED[rules]
    except KeyError:
        compiled = _COMPILED[rules] = _compile(rules)
        return compiled


def _compile(rules: RoutingRules) -> RouteTables:
    all_rules = rules.rules
    values: dict[str, list[str]] = {}
    tables: dict[str, np.ndarray] = {}
    for name, pick, vocabulary in CODED_FIELDS:
        mentioned = (
            list(vocabulary)
            if vocabulary is not None
            else sorted({v for r in all_rules if pick(r.match) is not None for v in pick(r.match)})
        )
        values[name] = mentioned
        tables[name] = accepts_table(all_rules, mentioned, pick)
    after_required = np.array(
        [-1 if r.match.after_hours is None else int(r.match.after_hours) for r in all_rules],
        np.int8,
    )
    pattern_rules = [
        g
        for g, r in enumerate(all_rules)
        if r.match.subject_contains is not None or r.match.requester_domains is not None
    ]
    pattern_row = np.full(len(all_rules), -1, np.int32)
    pattern_row[pattern_rules] = np.arange(len(pattern_rules), dtype=np.int32)
    subjects = [
        None
        if all_rules[g].match.subject_contains is None
        else tuple(dict.fromkeys(p.casefold() for p in all_rules[g].match.subject_contains))
        for g in pattern_rules
    ]
    domains = [all_rules[g].match.requester_domains for g in pattern_rules]
    queues = sorted(rules.queues)
    queue_index = {q: i for i, q in enumerate(queues)}
    return RouteTables(
        rules=rules,
        values=values,
        table=_route.RouteTable(
            tables["priority"],
            tables["support_level"],
            tables["job_type"],
            tables["client_id"],
            tables["channel"],
            after_required,
            pattern_row,
        ),
        pattern_rules=pattern_rules,
        subject_patterns=subjects,
        domain_patterns=domains,
        queues=queues,
        queue_code=np.array(
            [queue_index[rules.fallback_queue]] + [queue_index[r.queue] for r in all_rules],
            np.int32,
        ),
        set_priority=np.array(
            [-1]
            + [
                -1 if r.set_priority is None else PRIORITIES.index(r.set_priority)
                for r in all_rules
            ],
            np.int8,
        ),
        set_level=np.array(
            [-1]
            + [
                -1 if r.set_support_level is None else SUPPORT_LEVELS.index(r.set_support_level)
                for r in all_rules
            ],
            np.int8,
        ),
        tags=[()] + [r.tags for r in all_rules],
    )
