"""A rule change's effect and its price, together: a dataset's tickets replayed under the
current and a proposed SLA policy (hit rates and breaches per group, and the differences), and
what each rule set costs to evaluate (rules, compile time, tickets per second on one thread).

The outcome is the replay of :func:`effigate_engine.sla.reports.replay_evaluations` over each
tenant's tickets in one batch (``tenant_id`` is the first key, as the cluster's replay gives
it); a ticket either policy cannot evaluate is left out of both sides and named
(:func:`effigate_engine.sla.screening.screen_both`). The cost is measured in this process on the
tickets both sides evaluate:

- ``rules``: the rules of the policies a side evaluates under (each ticket's own policy: all of
  the catalog's policies; one policy: its rules);
- ``compile_ms``: the rules flattened into the kernel's tables
  (:func:`effigate_engine.sla.rule_tables.flattened` of fresh copies of the policies, so no
  cached tables are reused), best of ``repeat``;
- ``first_evaluate_ms``: the first evaluation of fresh copies (compile included);
- ``evaluate_ms`` and ``tickets_per_s``: :func:`effigate_engine.sla.evaluate` of the tickets
  on one thread, best of ``repeat`` (rules compiled).

The two sides take turns in each round of timings, so a change in the machine's load (other
processes) falls on both alike.

No SQL: the dataset is read through :mod:`effigate_engine.datasets`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from effigate_engine.cluster.parts import proposed_policy
from effigate_engine.cluster.sla_jobs import TENANT, instant, ticket_parts
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import Compiled, compiled, load_catalog
from effigate_engine.errors import EffigateError
from effigate_engine.sla.evaluation import evaluate
from effigate_engine.sla.policy import Policy
from effigate_engine.sla.reports import replay_evaluations
from effigate_engine.sla.rule_tables import flattened
from effigate_engine.sla.screening import screen_both

#: Evaluations timed per side when none is said (the best counts).
REPEAT = 3
SIDES = ("current", "proposed")
#: One row per tenant and side.
COSTS = pa.schema(
    [
        pa.field(TENANT, pa.string(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("policies", pa.int64(), nullable=False),
        pa.field("rules", pa.int64(), nullable=False),
        pa.field("tickets", pa.int64(), nullable=False),
        pa.field("ticket_metrics", pa.int64(), nullable=False),
        pa.field("compile_ms", pa.float64(), nullable=False),
        pa.field("first_evaluate_ms", pa.float64(), nullable=False),
        pa.field("evaluate_ms", pa.float64(), nullable=False),
        pa.field("tickets_per_s", pa.float64(), nullable=False),
    ]
)
LEFT_OUT = pa.schema(
    [
        pa.field(TENANT, pa.string(), nullable=False),
        pa.field("ticket_id", pa.string()),
        pa.field("field", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)

PolicySet = Policy | Mapping[str, Policy]


@dataclass(frozen=True)
class RuleBench:
    """The replay table (per tenant, group and metric: both sides and the differences), the
    cost of each side per tenant (:data:`COSTS`), the tickets left out of both sides
    (:data:`LEFT_OUT`), the instant evaluated at and the timings' repeat."""

    replay: pa.Table
    costs: pa.Table
    left_out: pa.Table
    now: datetime | int
    repeat: int


def _policy_list(policies: PolicySet) -> list[Policy]:
    return [policies] if isinstance(policies, Policy) else list(policies.values())


def _fresh(policies: PolicySet) -> PolicySet:
    """Copies of the policies (equal, not the same objects: compiled tables are cached by
    identity, so a copy is compiled again)."""
    if isinstance(policies, Policy):
        return Policy.from_json(policies.to_json())
    return {name: Policy.from_json(p.to_json()) for name, p in policies.items()}


def best_of(works: Sequence[Callable[[], object]], repeat: int) -> list[float]:
    """Each work's best time (milliseconds) over ``repeat`` rounds, the works taking turns in a
    round: a change in the machine's load falls on every side alike."""
    best = [float("inf")] * len(works)
    for _ in range(repeat):
        for k, work in enumerate(works):
            started = time.perf_counter()
            work()
            best[k] = min(best[k], time.perf_counter() - started)
    return [b * 1000.0 for b in best]


def rule_costs(
    tickets: pa.Table,
    sides: Sequence[PolicySet],
    made: Compiled,
    now: datetime | int,
    *,
    repeat: int = REPEAT,
) -> list[dict[str, Any]]:
    """The cost of evaluating ``tickets`` under each of ``sides`` (rows of :data:`COSTS` but
    the tenant and side): compile and first evaluation of fresh copies, then the best of
    ``repeat`` evaluations on one thread (milliseconds; tickets per second), the sides taking
    turns."""
    if repeat < 1:
        raise EffigateError(f"repeat: {repeat!r} is not a positive number of evaluations")
    copies = [iter([_policy_list(_fresh(p)) for _ in range(repeat)]) for p in sides]
    compile_ms = best_of([lambda c=c: flattened(next(c), made.calendars) for c in copies], repeat)
    evaluations = []
    first_ms = []
    for policies in sides:
        first = _fresh(policies)
        started = time.perf_counter()
        evaluations.append(evaluate(tickets, first, made.calendars, now, threads=1))
        first_ms.append((time.perf_counter() - started) * 1000.0)
    evaluate_ms = best_of(
        [lambda p=p: evaluate(tickets, p, made.calendars, now, threads=1) for p in sides], repeat
    )
    out = []
    for k, policies in enumerate(sides):
        listed = _policy_list(policies)
        out.append(
            {
                "policies": len(listed),
                "rules": sum(len(p.rules) for p in listed),
                "tickets": tickets.num_rows,
                "ticket_metrics": evaluations[k].results.num_rows,
                "compile_ms": compile_ms[k],
                "first_evaluate_ms": first_ms[k],
                "evaluate_ms": evaluate_ms[k],
                "tickets_per_s": tickets.num_rows / (evaluate_ms[k] / 1000.0)
                if evaluate_ms[k] > 0
                else 0.0,
            }
        )
    return out


def tenant_tickets(url: str, tenant: str) -> pa.Table:
    """All of a tenant's ticket parts, month after month, in one table."""
    parts = ticket_parts(url, [tenant])
    return pa.concat_tables([layout.read_part(p, url) for p in parts])


def _with_tenant(table: pa.Table, tenant: str) -> pa.Table:
    return table.add_column(0, TENANT, pa.array([tenant] * table.num_rows, pa.string()))


def bench_rules(
    url: str,
    *,
    proposed: str | int | dict[str, Any],
    now: datetime | int,
    current: str | int | None = None,
    by: str | Sequence[str] = ("priority",),
    period: str | None = None,
    tenants: Sequence[str] | None = None,
    repeat: int = REPEAT,
) -> RuleBench:
    """Replay every tenant's tickets of the dataset at ``url`` at ``now`` under ``current``
    (a policy id or name of each tenant's catalog; default: each ticket's own) and
    ``proposed`` (an id or name, or a policy JSON body), and time each side's evaluation."""
    parts = ticket_parts(url, tenants)
    at = instant(now)
    body = proposed_policy(proposed) if isinstance(proposed, dict) else None
    replays, costs, left_out = [], [], []
    for tenant in sorted({p.tenant for p in parts}):
        made = compiled(load_catalog(url, tenant))
        before: PolicySet = made.policies if current is None else made.policy(current)
        after: PolicySet = body if body is not None else made.policy(proposed)  # type: ignore[arg-type]
        tickets = tenant_tickets(url, tenant)
        screened_before, screened_after, failures = screen_both(
            tickets, before, after, made.calendars, at, threads=1
        )
        table = replay_evaluations(
            screened_before.evaluation, screened_after.evaluation, by, period
        )
        replays.append(_with_tenant(table, tenant))
        left_out.append(_with_tenant(failures.drop_columns(["row"]), tenant).cast(LEFT_OUT))
        kept = screened_after.evaluation.tickets
        measured = rule_costs(kept, (before, after), made, at, repeat=repeat)
        costs += [
            {TENANT: tenant, "side": side, **m} for side, m in zip(SIDES, measured, strict=True)
        ]
    return RuleBench(
        replay=pa.concat_tables(replays),
        costs=pa.Table.from_pylist(costs, schema=COSTS),
        left_out=pa.concat_tables(left_out) if left_out else LEFT_OUT.empty_table(),
        now=now,
        repeat=repeat,
    )


#: The measures :func:`cost_comparison` sets side by side, in order.
MEASURES = (
    "policies",
    "rules",
    "tickets",
    "ticket_metrics",
    "compile_ms",
    "first_evaluate_ms",
    "evaluate_ms",
    "tickets_per_s",
)


def cost_comparison(costs: pa.Table, measures: Sequence[str] = MEASURES) -> pa.Table:
    """The costs side by side (``measures``: columns of ``costs``): per tenant and measure,
    current, proposed, the change (proposed − current) and the ratio (proposed / current;
    null when current is 0)."""
    rows = costs.to_pylist()
    by_key = {(r[TENANT], r["side"]): r for r in rows}
    out = []
    for tenant in dict.fromkeys(r[TENANT] for r in rows):
        before, after = by_key[(tenant, "current")], by_key[(tenant, "proposed")]
        for measure in measures:
            a, b = float(before[measure]), float(after[measure])
            out.append(
                {
                    TENANT: tenant,
                    "measure": measure,
                    "current": a,
                    "proposed": b,
                    "change": b - a,
                    "ratio": b / a if a else None,
                }
            )
    return pa.Table.from_pylist(
        out,
        schema=pa.schema(
            [
                pa.field(TENANT, pa.string()),
                pa.field("measure", pa.string()),
                pa.field("current", pa.float64()),
                pa.field("proposed", pa.float64()),
                pa.field("change", pa.float64()),
                pa.field("ratio", pa.float64()),
            ]
        ),
    )
