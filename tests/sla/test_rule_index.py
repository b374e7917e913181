"""Rule matching through each policy's decision table (``sla.rule_index``) against a slow
first-match reference and against the compiled first-match scan.

Each generated example draws several policies (1-60 rules each: random subsets of priorities,
support levels, job types and clients, an after-hours requirement or none, some catch-alls)
and tickets (values no rule names, other spellings, nulls, unknown and null policies); every
ticket's matched rule and row count must be the reference's, through the tables, through the
scan and through tables under bounds small enough to send some policies to the scan.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, CalendarSet, Horizon
from effigate_engine.priority import priority_name
from effigate_engine.sla import _evaluate, rule_index
from effigate_engine.sla.evaluation import _match_columns, _ticket_policies, evaluate
from effigate_engine.sla.policy import METRICS, PRIORITIES, Match, MetricTarget, Policy, Rule
from effigate_engine.sla.rule_tables import MATCH_FIELDS, Specs, after_hours_table, flattened

EXAMPLES = int(os.environ.get("EFFIGATE_SLA_EXAMPLES", "300"))
LEVELS = ("L1", "L2", "L3", "SA")
JOBS = ("onsite", "remote", "project", "audit", "install")
CLIENTS = tuple(f"client-{k}" for k in range(12))
CREATED = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def calendar_set() -> CalendarSet:
    return CalendarSet([Calendar.always_open()], Horizon.of(date(2026, 1, 1), date(2026, 7, 1)))


# -- the reference: first match, by definition ----------------------------------------------


def reference_rule(policy: Policy, ticket: dict) -> int | None:
    """The first rule of ``policy`` matching ``ticket``, as evaluation reads tickets: priority
    by its name (any spelling), support level in upper case, job type and client as given, a
    null after-hours flag matching only rules that leave after-hours open."""
    priority = ticket["priority"]
    level = ticket["support_level"]
    values = (
        None if priority is None else priority_name(priority),
        None if level is None else level.upper(),
        ticket["job_type"],
        ticket["client_id"],
    )
    for i, rule in enumerate(policy.rules):
        m = rule.match
        allowed = (m.priorities, m.support_levels, m.job_types, m.clients)
        if all(a is None or v in a for a, v in zip(allowed, values, strict=True)) and (
            m.after_hours is None or ticket["after_hours"] == m.after_hours
        ):
            return i
    return None


def reference(policies: dict[str, Policy], tickets: list[dict]) -> list[tuple[int, int] | None]:
    """Per ticket (policy position, rule index within it), ``None`` when unmatched."""
    names = list(policies)
    out: list[tuple[int, int] | None] = []
    for t in tickets:
        name = names[0] if t["policy"] is None else t["policy"]
        if name not in policies:
            out.append(None)
            continue
        i = reference_rule(policies[name], t)
        out.append(None if i is None else (names.index(name), i))
    return out


# -- the compiled paths ---------------------------------------------------------------------


def _table(tickets: list[dict], dictionary: bool = False) -> pa.Table:
    columns = {
        "ticket_id": pa.array([f"T{i}" for i in range(len(tickets))]),
        "created_at": pa.array([CREATED] * len(tickets), pa.timestamp("s", tz="UTC")),
    }
    for name in ("priority", "support_level", "job_type", "client_id", "policy"):
        column = pa.array([t[name] for t in tickets], pa.string())
        columns[name] = column.dictionary_encode() if dictionary else column
    columns["after_hours"] = pa.array([t["after_hours"] for t in tickets], pa.bool_())
    return pa.table(columns)


def _scan_table(specs: Specs, index: rule_index.RuleIndex | None = None) -> _evaluate.RuleTable:
    tables = [specs.match_tables[name] for name, _, _ in MATCH_FIELDS]
    compiled = (
        None
        if index is None
        else _evaluate.RuleIndex(index.table_base, index.map_offset, index.cell_of, index.decision)
    )
    return _evaluate.RuleTable(
        specs.rule_first, specs.rule_count, *tables, specs.after_required, specs.grid, compiled
    )


def _matched(
    specs: Specs, rules: _evaluate.RuleTable, policies: dict[str, Policy], table: pa.Table
) -> tuple[list[tuple[int, int] | None], list[int]]:
    """Per ticket (policy position, rule index within it) or ``None``, and its row count."""
    columns = _match_columns(table, specs, _ticket_policies(table, policies, True))
    rule_of, rows = _evaluate.match_rules(columns, rules)
    found = [
        None if g < 0 else (int(specs.rule_policy[g]), int(specs.rule_local[g]))
        for g in rule_of.tolist()
    ]
    return found, rows.tolist()


def _rows(policies: dict[str, Policy], expected: list[tuple[int, int] | None]) -> list[int]:
    ordered = list(policies.values())
    return [0 if e is None else len(ordered[e[0]].rules[e[1]].metrics) for e in expected]


# -- generated policies and tickets ---------------------------------------------------------


def _subset(draw: st.DrawFn, values: tuple[str, ...]) -> frozenset[str] | None:
    if draw(st.integers(0, 2)) == 0:
        return None
    return draw(st.frozensets(st.sampled_from(values), min_size=1, max_size=len(values)))


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    metrics = draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=3, unique=True))
    promise = {m: MetricTarget(3600, "24x7") for m in metrics}
    if draw(st.integers(0, 6)) == 0:
        return Rule(Match(), promise)  # a catch-all
    match = Match(
        priorities=_subset(draw, PRIORITIES),
        support_levels=_subset(draw, LEVELS),
        job_types=_subset(draw, JOBS),
        clients=_subset(draw, CLIENTS),
        after_hours=draw(st.sampled_from([None, None, True, False])),
    )
    return Rule(match, promise)


@st.composite
def policy_sets(draw: st.DrawFn) -> dict[str, Policy]:
    count = draw(st.integers(1, 4))
    return {
        f"policy-{p}": Policy(f"policy-{p}", tuple(draw(st.lists(rules(), max_size=60))))
        for p in range(count)
    }


def _ticket(policy_names: list[str]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "priority": st.sampled_from([*PRIORITIES, "P1", "p2", " high ", "URGENT", None]),
            "support_level": st.sampled_from([*LEVELS, "l2", "sa", "L9", None]),
            "job_type": st.sampled_from([*JOBS, "Onsite", "other", None]),
            "client_id": st.sampled_from([*CLIENTS, "client-99", None]),
            "after_hours": st.sampled_from([None, True, False]),
            "policy": st.sampled_from([*policy_names, "unknown", None]),
        }
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_decision_tables_match_the_first_match_reference(
    calendar_set: CalendarSet, data: st.DataObject
) -> None:
    policies = data.draw(policy_sets())
    tickets = data.draw(st.lists(_ticket(list(policies)), min_size=1, max_size=80))
    table = _table(tickets, dictionary=data.draw(st.booleans()))
    specs = flattened(list(policies.values()), calendar_set)
    expected = reference(policies, tickets)
    rows = _rows(policies, expected)

    assert specs.rule_index.indexed.all()  # small policies always get a table
    assert _matched(specs, specs.rule_table, policies, table) == (expected, rows)
    assert _matched(specs, _scan_table(specs), policies, table) == (expected, rows)
    # Bounds small enough that some policies keep the scan beside others' tables.
    fields = [specs.match_tables[name] for name, _, _ in MATCH_FIELDS]
    fields.append(after_hours_table(specs.after_required))
    small = rule_index.rule_index(
        specs.rule_first,
        specs.rule_count,
        fields,
        max_cells=data.draw(st.integers(0, 64)),
        max_painted=data.draw(st.integers(0, 256)),
    )
    assert _matched(specs, _scan_table(specs, small), policies, table) == (expected, rows)


# -- hand-picked cases ----------------------------------------------------------------------


def _promise(*metrics: str) -> dict[str, MetricTarget]:
    return {m: MetricTarget(3600, "24x7") for m in metrics or ("RESOLUTION",)}


def _t(
    priority: str | None = "HIGH",
    level: str | None = None,
    job: str | None = None,
    client: str | None = None,
    after: bool | None = None,
    policy: str | None = None,
) -> dict:
    return {
        "priority": priority,
        "support_level": level,
        "job_type": job,
        "client_id": client,
        "after_hours": after,
        "policy": policy,
    }


def _check(
    policies: dict[str, Policy], tickets: list[dict], calendar_set: CalendarSet
) -> tuple[Specs, list[tuple[int, int] | None]]:
    """Indexed and scanned matching of ``tickets``, checked against the reference; returns
    the specs and the matches."""
    specs = flattened(list(policies.values()), calendar_set)
    table = _table(tickets)
    expected = reference(policies, tickets)
    rows = _rows(policies, expected)
    assert _matched(specs, specs.rule_table, policies, table) == (expected, rows)
    assert _matched(specs, _scan_table(specs), policies, table) == (expected, rows)
    return specs, expected


def _per_client(clients: int, *metrics: str) -> list[Rule]:
    """A rule per client × priority, as an MSP on individual terms writes them."""
    return [
        Rule(
            Match(priorities=frozenset({p}), clients=frozenset({f"client-{k}"})),
            _promise(*metrics),
        )
        for k in range(clients)
        for p in PRIORITIES
    ]


def test_empty_policy_matches_nothing_beside_a_policy_with_rules(calendar_set) -> None:
    policies = {
        "empty": Policy("empty", ()),
        "other": Policy("other", (Rule(Match(), _promise()),)),
    }
    tickets = [_t(), _t(policy="other"), _t(None, "L9", policy="empty")]
    specs, found = _check(policies, tickets, calendar_set)
    assert found == [None, (1, 0), None]
    assert specs.rule_index.indexed.all()


def test_only_a_catch_all_matches_everything_in_one_cell(calendar_set) -> None:
    policies = {"all": Policy("all", (Rule(Match(), _promise("FIRST_RESPONSE", "RESOLUTION")),))}
    tickets = [_t(), _t("URGENT", "l1", "x", "nobody", True), _t(None, None, None, None, None)]
    specs, found = _check(policies, tickets, calendar_set)
    assert found == [(0, 0)] * 3
    assert len(specs.rule_index.decision) == 1


def test_overlapping_sets_keep_first_match_order(calendar_set) -> None:
    rules = (
        Rule(
            Match(priorities=frozenset({"CRITICAL", "HIGH"}), clients=frozenset({"a"})), _promise()
        ),
        Rule(Match(clients=frozenset({"a", "b"})), _promise()),
        Rule(Match(priorities=frozenset({"HIGH"}), job_types=frozenset({"onsite"})), _promise()),
        Rule(Match(priorities=frozenset({"HIGH", "LOW"})), _promise()),
    )
    policies = {"p": Policy("p", rules)}
    tickets = [
        _t("P1", client="a"),  # rule 0
        _t("LOW", client="a"),  # rule 1: a, but not CRITICAL/HIGH
        _t("HIGH", job="onsite", client="b"),  # rule 1 comes before rule 2
        _t("HIGH", job="onsite", client="c"),  # rule 2
        _t("high", job="remote"),  # rule 3
        _t("MEDIUM", client="c"),  # none
        _t(None, client="a"),  # a null priority: rule 1 only
    ]
    _, found = _check(policies, tickets, calendar_set)
    assert found == [(0, 0), (0, 1), (0, 1), (0, 2), (0, 3), None, (0, 1)]


def test_after_hours_only_rules_and_a_null_flag(calendar_set) -> None:
    rules = (
        Rule(Match(after_hours=True), _promise()),
        Rule(Match(after_hours=False), _promise()),
        Rule(Match(), _promise()),
    )
    policies = {"p": Policy("p", rules)}
    tickets = [_t(after=True), _t(after=False), _t(after=None)]
    specs, found = _check(policies, tickets, calendar_set)
    assert found == [(0, 0), (0, 1), (0, 2)]
    assert len(specs.rule_index.decision) == 3  # the flag's three classes, nothing else


def test_values_named_by_the_same_rules_share_one_class(calendar_set) -> None:
    many = frozenset(f"client-{k}" for k in range(300))
    rules = (
        Rule(Match(priorities=frozenset({"CRITICAL"}), clients=many), _promise()),
        Rule(Match(clients=frozenset({"client-7"})), _promise()),
    )
    other = Policy("other", (Rule(Match(clients=frozenset({"client-9"})), _promise()),))
    policies = {"p": Policy("p", rules), "other": other}
    tickets = [_t("P1", client="client-3"), _t("P2", client="client-7"), _t("P1", client="x")]
    specs, found = _check(policies, tickets, calendar_set)
    assert found == [(0, 0), (0, 1), None]
    # p: clients {0..299 but 7}, {7}, the rest; priorities CRITICAL and the rest. other: 2.
    assert len(specs.rule_index.decision) == 3 * 2 + 2


@pytest.mark.parametrize("bound", ["MAX_CELLS", "MAX_PAINTED"])
def test_a_policy_past_the_bounds_keeps_the_scan(
    calendar_set, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    big = (*_per_client(6), Rule(Match(after_hours=True), _promise()))
    small = (Rule(Match(priorities=frozenset({"LOW"})), _promise()),)
    policies = {"big": Policy("big", big), "small": Policy("small", small)}
    tickets = [
        _t(p, client=c, after=a, policy=name)
        for p in (*PRIORITIES, None)
        for c in ("client-0", "client-5", "client-6", None)
        for a in (True, False, None)
        for name in ("big", "small")
    ]
    # big: 5 priority classes x 7 client classes x 2 flag classes (a null and false are
    # alike here) = 70 cells; painting writes 24 cells and 35 for the after-hours rule.
    monkeypatch.setattr(rule_index, bound, 69 if bound == "MAX_CELLS" else 58)
    specs, found = _check(policies, tickets, calendar_set)
    assert specs.rule_index.indexed.tolist() == [False, True]
    assert found.count(None) < len(found)

    monkeypatch.undo()
    fresh = {name: Policy(p.name, p.rules) for name, p in policies.items()}
    specs, again = _check(fresh, tickets, calendar_set)
    assert specs.rule_index.indexed.tolist() == [True, True]
    assert again == found


def test_evaluate_reports_the_rule_the_reference_picks(calendar_set) -> None:
    rules = (*_per_client(50, "FIRST_RESPONSE", "RESOLUTION"), Rule(Match(), _promise()))
    policy = Policy("per-client", rules)
    tickets = [_t(p, client=f"client-{k}") for k in (0, 17, 49, 50) for p in PRIORITIES]
    evaluation = evaluate(_table(tickets), policy, calendar_set, CREATED)
    row_rule = evaluation.results.column("rule").to_numpy()
    expected = [reference_rule(policy, t) for t in tickets]
    assert [int(row_rule[np.flatnonzero(evaluation.row_ticket == i)[0]]) for i in range(16)] == (
        expected
    )
    assert expected[-1] == len(rules) - 1


def test_rule_table_refuses_an_index_past_its_arrays() -> None:
    i64, i32 = np.int64, np.int32
    ok = np.ones((2, 1), np.uint8)
    args = (np.zeros(1, i64), np.full(1, 2, i64), ok, ok, ok, ok, np.full(2, -1, np.int8))
    grid = np.zeros((2, 3), i64)
    offsets = np.zeros((1, 5), i64)
    fine = _evaluate.RuleIndex(np.zeros(1, i64), offsets, np.zeros(3, i32), np.zeros(1, i32))
    _evaluate.RuleTable(*args, grid, fine)
    bad_rule = _evaluate.RuleIndex(np.zeros(1, i64), offsets, np.zeros(3, i32), np.full(1, 2, i32))
    with pytest.raises(ValueError, match="name a rule"):
        _evaluate.RuleTable(*args, grid, bad_rule)
    past = _evaluate.RuleIndex(
        np.zeros(1, i64), offsets, np.array([0, 0, 1], i32), np.zeros(1, i32)
    )
    with pytest.raises(ValueError, match="within decision"):
        _evaluate.RuleTable(*args, grid, past)
    short = _evaluate.RuleIndex(np.zeros(1, i64), offsets, np.zeros(2, i32), np.zeros(1, i32))
    with pytest.raises(ValueError, match="within cell_of"):
        _evaluate.RuleTable(*args, grid, short)
    with pytest.raises(ValueError, match="not be negative"):
        _evaluate.RuleIndex(np.zeros(1, i64), offsets, np.full(3, -1, i32), np.zeros(1, i32))
