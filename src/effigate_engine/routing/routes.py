"""Routing a batch of tickets: each ticket's first matching rule, its queue, and what the rule
sets on it (Arrow in, :data:`~effigate_engine.routing.schemas.ROUTES` out).

The text patterns are matched column-wise before the kernel runs: subjects casefolded once and
searched for each distinct pattern; requesters' domains worked out once per distinct requester
and compared with each domain. The kernel then sees, per rule with patterns, one boolean per
ticket, and otherwise only small value codes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.errors import BatchError
from effigate_engine.priority import PRIORITIES
from effigate_engine.routing import _route
from effigate_engine.routing.rule_tables import RouteTables, route_tables
from effigate_engine.routing.rules import CHANNELS, RoutingRules
from effigate_engine.routing.schemas import ROUTES
from effigate_engine.routing.ticket_fields import (
    casefolded,
    codes_in,
    level_codes,
    priority_codes,
    read_tickets,
    required,
    string_column,
    ticket_column,
)
from effigate_engine.sla.policy import SUPPORT_LEVELS
from effigate_engine.sla.ticket_columns import value_codes

#: Joins a ticket's tags into one key per tag set; a tag may not contain it.
_TAG_SEPARATOR = "\x00"
_PRIORITY_NAMES = pa.array(PRIORITIES, pa.string())
_LEVEL_NAMES = pa.array(SUPPORT_LEVELS, pa.string())


def route(tickets: pa.Table | pa.RecordBatch | str | Path, rules: RoutingRules) -> pa.Table:
    """Route every ticket (a :data:`~effigate_engine.routing.schemas.ROUTING_TICKETS` table,
    batch or Parquet path): one :data:`ROUTES` row per ticket, in the order given. A bad value
    raises :class:`~effigate_engine.errors.BatchError` naming the field and row."""
    table = read_tickets(tickets)
    if not isinstance(rules, RoutingRules):
        raise TypeError(f"rules: {type(rules).__name__} is not RoutingRules")
    compiled = route_tables(rules)
    required(table, "ticket_id")
    ticket_ids = string_column(table, "ticket_id")
    priority = priority_codes(table)
    level = level_codes(table)
    columns = _route.RouteColumns(
        priority.astype(np.int32),
        level.astype(np.int32),
        _mentioned_codes(table, "job_type", compiled),
        _mentioned_codes(table, "client_id", compiled),
        codes_in(
            string_column(table, "channel"),
            "channel",
            CHANNELS,
            lambda s: s.strip().upper(),
            f"is not one of {', '.join(CHANNELS)}",
        ).astype(np.int32),
        _after_hours(table),
        _pattern_matrix(table, compiled),
    )
    rule = np.empty(table.num_rows, np.int32)
    bad = _route.match_rules(columns, compiled.table, rule)
    if bad >= 0:  # the codes are built against the tables above: this cannot be the caller's
        raise AssertionError(f"routing codes of ticket {bad} lie outside the rule tables")
    action = rule + 1
    set_priority = compiled.set_priority[action]
    out_priority = np.where(set_priority >= 0, set_priority, priority)
    set_level = compiled.set_level[action]
    out_level = np.where(set_level >= 0, set_level, level)
    return pa.Table.from_arrays(
        [
            ticket_ids,
            pa.array(rule, pa.int32()),
            pa.DictionaryArray.from_arrays(
                pa.array(compiled.queue_code[action], pa.int32()),
                pa.array(compiled.queues, pa.string()),
            ),
            pa.DictionaryArray.from_arrays(pa.array(out_priority, pa.int8()), _PRIORITY_NAMES),
            pa.DictionaryArray.from_arrays(
                pa.array(out_level, pa.int8(), mask=out_level < 0), _LEVEL_NAMES
            ),
            _tags(table, compiled, action),
        ],
        schema=ROUTES,
    )


def _mentioned_codes(table: pa.Table, name: str, compiled: RouteTables) -> np.ndarray:
    """Codes of a free-text field among the values the rules mention (-1: null or none)."""
    mentioned = compiled.values[name]
    if not mentioned or name not in table.column_names:
        return np.full(table.num_rows, -1, np.int32)
    return value_codes(string_column(table, name), mentioned).astype(np.int32)


def _after_hours(table: pa.Table) -> np.ndarray:
    after = ticket_column(table, "after_hours")
    if pa.types.is_null(after.type):
        return np.full(table.num_rows, -1, np.int8)
    if not pa.types.is_boolean(after.type):
        raise BatchError("after_hours", 0, str(after.type), "is not a true/false column")
    flags = after.fill_null(False).to_numpy(zero_copy_only=False).astype(np.int8)
    if after.null_count:
        flags[after.is_null().to_numpy(zero_copy_only=False)] = -1
    return flags


def _pattern_matrix(table: pa.Table, compiled: RouteTables) -> np.ndarray:
    """(rules with patterns, tickets): whether each ticket's subject contains one of the rule's
    substrings and its requester's domain is one of the rule's domains (or a subdomain)."""
    n = table.num_rows
    out = np.ones((len(compiled.pattern_rules), n), np.uint8)
    if not compiled.pattern_rules:
        return out
    subject_hits = _subject_hits(table, compiled)
    domain_hits = _domain_hits(table, compiled)
    for row, (subjects, domains) in enumerate(
        zip(compiled.subject_patterns, compiled.domain_patterns, strict=True)
    ):
        ok = out[row].view(bool)
        if subjects is not None:
            ok &= np.logical_or.reduce([subject_hits[p] for p in subjects])
        if domains is not None:
            ok &= np.logical_or.reduce([domain_hits[d] for d in domains])
    return out


def _subject_hits(table: pa.Table, compiled: RouteTables) -> dict[str, np.ndarray]:
    patterns = {p for ps in compiled.subject_patterns if ps is not None for p in ps}
    if not patterns:
        return {}
    subject = string_column(table, "subject")
    folded = casefolded(subject)
    return {
        p: pc.match_substring(folded, p).fill_null(False).to_numpy(zero_copy_only=False)
        for p in patterns
    }


def _domain_hits(table: pa.Table, compiled: RouteTables) -> dict[str, np.ndarray]:
    """Per domain, whether each requester's domain (after its last ``@``, casefolded) is it or
    a subdomain of it. A domain holds no ``@``, so that is: the casefolded address ends with
    ``@domain`` or ``.domain`` and has an ``@`` (looked for only where the end matched)."""
    patterns = {d for ds in compiled.domain_patterns if ds is not None for d in ds}
    if not patterns:
        return {}
    folded = casefolded(string_column(table, "requester"))
    hits = {}
    for d in patterns:
        ends = pc.or_(pc.ends_with(folded, "@" + d), pc.ends_with(folded, "." + d))
        hit = ends.fill_null(False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(hit)
        if rows.size:
            has_at = pc.match_substring(pc.take(folded, pa.array(rows)), "@")
            hit[rows[~has_at.to_numpy(zero_copy_only=False)]] = False
        hits[d] = hit
    return hits


def _tags(table: pa.Table, compiled: RouteTables, action: np.ndarray) -> pa.Array:
    """Per ticket, its tags with the matched rule's added: sorted, no duplicates."""
    rule_tags = pa.array([list(t) for t in compiled.tags], pa.list_(pa.string()))
    tags = ticket_column(table, "tags")
    if pa.types.is_null(tags.type) or tags.null_count == len(tags):
        return pc.take(rule_tags, pa.array(action))
    if not (pa.types.is_list(tags.type) or pa.types.is_large_list(tags.type)):
        raise BatchError("tags", 0, str(tags.type), "is not a list of strings")
    values = pc.list_flatten(tags)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    bad = pc.or_kleene(
        pc.is_null(values),
        pc.or_(pc.equal(pc.utf8_length(values), 0), pc.match_substring(values, _TAG_SEPARATOR)),
    )
    if pc.any(bad).as_py():
        k = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        row = int(pc.list_parent_indices(tags)[k].as_py())
        raise BatchError("tags", row, values[k].as_py(), "is not a tag (a non-empty string)")
    joined = pc.binary_join(tags.cast(pa.list_(pa.string())), _TAG_SEPARATOR)
    encoded = pc.dictionary_encode(joined)
    tag_set = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    sets = [s.split(_TAG_SEPARATOR) if s else [] for s in encoded.dictionary.to_pylist()]
    sets.append([])  # code -1 (null list)
    # One result per (tag set, action) pair that occurs: a small key space, so a lookup table
    # numbers the pairs without sorting the rows.
    actions = len(compiled.tags)
    key = (tag_set % len(sets)) * actions + action
    seen = np.zeros(len(sets) * actions, bool)
    seen[key] = True
    pairs = np.flatnonzero(seen)
    number = np.empty(seen.size, np.int32)
    number[pairs] = np.arange(pairs.size, dtype=np.int32)
    results = [
        sorted(set(sets[int(k // actions)]) | set(compiled.tags[int(k % actions)])) for k in pairs
    ]
    return pc.take(pa.array(results, pa.list_(pa.string())), pa.array(number[key]))


def routed(tickets: pa.Table | pa.RecordBatch | str | Path, routes: pa.Table) -> pa.Table:
    """The tickets as routing left them: ``queue``, ``priority``, ``support_level`` and
    ``tags`` taken from ``routes`` (the :func:`route` result of the same tickets, row for row),
    ready for :func:`~effigate_engine.routing.assign`."""
    table = read_tickets(tickets)
    if routes.num_rows != table.num_rows:
        raise BatchError(
            "routes", 0, routes.num_rows, f"rows do not match the {table.num_rows} tickets"
        )
    for name in ("queue", "priority", "support_level", "tags"):
        column = routes.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table
