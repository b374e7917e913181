"""SLA policies flattened for the kernels: every (policy, rule, metric) promise, the tables
rule matching reads (per-rule acceptance tables and each policy's decision table, see
:mod:`~effigate_engine.sla.rule_index`), the escalation ladders, remembered per calendar set."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.priority import priority_name
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import (
    METRICS,
    RESOLVED,
    MetricTarget,
    Policy,
)
from effigate_engine.sla.rule_index import RuleIndex, after_hours_table, rule_index

#: Pause statuses get bit positions below this; any other status never pauses anything.
OTHER_STATUS = 63


@dataclass(frozen=True)
class Specs:
    """Every (policy, rule, metric) promise flattened for the kernels."""

    rule_first: np.ndarray  # per policy: index of its first rule among all rules
    rule_count: np.ndarray
    rule_policy: np.ndarray  # per global rule
    rule_local: np.ndarray  # its index within its policy
    grid: np.ndarray  # (rules, metrics) -> spec index or -1
    targets: list[MetricTarget]
    cal: np.ndarray
    target: np.ndarray
    warning: np.ndarray
    mask: np.ndarray
    ladder: np.ndarray
    ladder_offsets: np.ndarray
    step_numerator: np.ndarray
    step_denominator: np.ndarray
    step_offset: np.ndarray
    notify: list[str]
    status_bit: dict[str, int]
    #: per matched field: the values rules mention (sorted) and which rule accepts which
    #: value (``_accepts``); an empty list when no rule constrains the field
    match_values: dict[str, list[str]]
    match_tables: dict[str, np.ndarray]
    after_required: np.ndarray  # per rule: -1 any, 0 / 1 the after-hours flag it requires
    #: per policy its decision table (``rule_index.indexed``: which policies have one; the
    #: others are matched by the first-match scan)
    rule_index: RuleIndex
    spec_rule: np.ndarray  # per spec: its global rule
    #: the same, grouped for the kernels: rule matching and metric promises
    rule_table: _evaluate.RuleTable
    spec_table: _evaluate.SpecTable


#: The ticket fields rules match on: (field, the rule's accepted values, normalisation).
MATCH_FIELDS = (
    ("priority", lambda m: m.priorities, priority_name),
    ("support_level", lambda m: m.support_levels, str.upper),
    ("job_type", lambda m: m.job_types, None),
    ("client_id", lambda m: m.clients, None),
)


_FLATTENED: weakref.WeakKeyDictionary[CalendarSet, list[tuple[list[Policy], Specs]]] = (
    weakref.WeakKeyDictionary()
)


def flattened(policy_list: list[Policy], calendars: CalendarSet) -> Specs:
    """:func:`_flatten`, remembered per calendar set for the last few policy lists (a service
    evaluates the same policies over and over; flattening costs a quarter of a millisecond)."""
    entries = _FLATTENED.setdefault(calendars, [])
    for policies, specs in entries:
        if len(policies) == len(policy_list) and all(
            a is b for a, b in zip(policies, policy_list, strict=True)
        ):
            return specs
    specs = _flatten(policy_list, calendars)
    entries.append((list(policy_list), specs))
    del entries[:-8]
    return specs


def _promises(
    policy_list: list[Policy], rules: list[tuple[int, int, Any]], calendars: CalendarSet
) -> tuple[np.ndarray, list[MetricTarget]]:
    """The (rules, metrics) grid of spec indexes (-1: the rule does not define the metric)
    and the specs' metric targets, each checked to name a calendar of the set."""
    grid = np.full((len(rules), len(METRICS)), -1, np.int64)
    targets: list[MetricTarget] = []
    for g, (p, i, rule) in enumerate(rules):
        for m, metric in enumerate(METRICS):
            if metric in rule.metrics:
                t = rule.metrics[metric]
                if t.calendar not in calendars.names:
                    raise EffigateError(
                        f"policy {policy_list[p].name!r} rules[{i}].metrics.{metric}.calendar: "
                        f"{t.calendar!r} is not in the calendar set ({sorted(calendars.names)})"
                    )
                grid[g, m] = len(targets)
                targets.append(t)
    return grid, targets


def _status_bits(targets: list[MetricTarget]) -> dict[str, int]:
    """A bit position per pausing status of the targets."""
    # RESOLVED always has a bit: a resolution reopened after ``now`` is a stop (as known then).
    statuses = sorted({s for t in targets for s in t.pausing_statuses} | {RESOLVED})
    if len(statuses) > OTHER_STATUS:
        raise EffigateError(f"policies: {len(statuses)} pausing statuses; at most 63 are supported")
    return {s: i for i, s in enumerate(statuses)}


class _Ladders(NamedTuple):
    ladder: np.ndarray  # per spec: its ladder, -1 none
    offsets: np.ndarray  # per ladder: its first step; one more entry
    numerator: np.ndarray  # per step: fraction of the target (0 for an offset step)
    denominator: np.ndarray
    offset: np.ndarray  # per step: seconds after the deadline, -1 for a fraction step
    notify: list[str]


def _ladders(targets: list[MetricTarget]) -> _Ladders:
    """The escalation ladders of the targets, flattened into steps."""
    ladder = np.full(len(targets), -1, np.int64)
    offsets, num, den, off, notify = [0], [], [], [], []
    for k, t in enumerate(targets):
        if not t.escalation:
            continue
        ladder[k] = len(offsets) - 1
        for step in t.escalation:
            fraction = step.fraction
            num.append(0 if fraction is None else fraction.numerator)
            den.append(1 if fraction is None else fraction.denominator)
            off.append(-1 if fraction is not None else int(step.offset or 0))
            notify.append(step.notify)
        offsets.append(len(num))
    return _Ladders(
        ladder,
        np.array(offsets, np.int64),
        np.array(num, np.int64),
        np.array(den, np.int64),
        np.array(off, np.int64),
        notify,
    )


def _flatten(policy_list: list[Policy], calendars: CalendarSet) -> Specs:
    rules = [
        (p, i, rule) for p, policy in enumerate(policy_list) for i, rule in enumerate(policy.rules)
    ]
    counts = np.array([len(p.rules) for p in policy_list], np.int64)
    first = np.zeros(len(policy_list), np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    grid, targets = _promises(policy_list, rules, calendars)
    bit = _status_bits(targets)
    ladder, ladder_offsets, step_numerator, step_denominator, step_offset, notify = _ladders(
        targets
    )
    match = _match_tables([rule for _, _, rule in rules])
    tables = match["match_tables"]
    cal = np.array([calendars.names[t.calendar] for t in targets], np.int64)
    target = np.array([t.target for t in targets], np.int64)
    warning = np.array([t.warning_threshold for t in targets], np.int64)
    mask = np.array([sum(1 << bit[s] for s in t.pausing_statuses) for t in targets], np.uint64)
    rule_policy = np.array([p for p, _, _ in rules], np.int32)
    rule_local = np.array([i for _, i, _ in rules], np.int32)
    spec_rule = _spec_rules(grid, len(targets))
    fields = [tables[name] for name, _, _ in MATCH_FIELDS]
    index = rule_index(first, counts, [*fields, after_hours_table(match["after_required"])])
    return Specs(
        rule_first=first,
        rule_count=counts,
        rule_policy=rule_policy,
        rule_local=rule_local,
        grid=grid,
        targets=targets,
        cal=cal,
        target=target,
        warning=warning,
        mask=mask,
        ladder=ladder,
        ladder_offsets=ladder_offsets,
        step_numerator=step_numerator,
        step_denominator=step_denominator,
        step_offset=step_offset,
        notify=notify,
        status_bit=bit,
        **match,
        rule_index=index,
        spec_rule=spec_rule,
        rule_table=_evaluate.RuleTable(
            first,
            counts,
            tables["priority"],
            tables["support_level"],
            tables["job_type"],
            tables["client_id"],
            match["after_required"],
            grid,
            _evaluate.RuleIndex(index.table_base, index.map_offset, index.cell_of, index.decision),
        ),
        spec_table=_evaluate.SpecTable(
            grid,
            cal,
            target,
            warning,
            mask,
            ladder,
            np.ascontiguousarray(rule_policy[spec_rule]),
            np.ascontiguousarray(rule_local[spec_rule]),
            ladder_offsets,
            step_numerator,
            step_denominator,
            step_offset,
            bit[RESOLVED],
        ),
    )


def _spec_rules(grid: np.ndarray, n_specs: int) -> np.ndarray:
    spec_rule = np.zeros(n_specs, np.int64)
    for g in range(grid.shape[0]):
        for k in grid[g]:
            if k >= 0:
                spec_rule[k] = g
    return spec_rule


def _match_tables(all_rules: list[Any]) -> dict[str, Any]:
    values: dict[str, list[str]] = {}
    tables: dict[str, np.ndarray] = {}
    for name, pick, _ in MATCH_FIELDS:
        mentioned = sorted(
            {v for r in all_rules if pick(r.match) is not None for v in pick(r.match)}
        )
        values[name] = mentioned
        tables[name] = (
            accepts_table(all_rules, mentioned, pick)
            if mentioned
            else np.ones((len(all_rules), 1), np.uint8)
        )
    after_required = np.array(
        [-1 if r.match.after_hours is None else int(r.match.after_hours) for r in all_rules],
        np.int8,
    )
    return {"match_values": values, "match_tables": tables, "after_required": after_required}


def accepts_table(rules: Sequence[Any], values: Sequence[Any], pick: Any) -> np.ndarray:
    """(rules, values + 1) table: does rule g accept value code c (column c + 1; 0 = null)?

    ``pick`` gives a rule's ``match`` the allowed values (``None``: any, null included).
    Shared by every first-match rule table (SLA policies, routing rules)."""
    table = np.ones((len(rules), len(values) + 1), np.uint8)
    column = {v: c + 1 for c, v in enumerate(values)}
    for g, rule in enumerate(rules):
        allowed = pick(rule.match)
        if allowed is not None:
            table[g] = 0
            table[g, [column[v] for v in allowed if v in column]] = 1
    return table
