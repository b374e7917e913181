"""``effigate bench-rules``: a rule change's outcome (the replay table, equal to ``sla.replay``
over the same tickets) and the cost of each rule set, printed side by side; a policy reference
no catalog has is one line naming it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from effigate_cli.failures import EXIT_USAGE
from effigate_engine.cluster import rule_bench
from effigate_server.tables import format_table
from tests.cluster import synthetic
from tests.cluster.reference import replay_reference
from tests.cluster.test_cli import effigate

NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> synthetic.Synthetic:
    return synthetic.write_dataset(str(tmp_path_factory.mktemp("dataset")), count=60, seed=5)


def expected_replay(dataset, current, proposed, by=("priority",)) -> pa.Table:
    """``sla.replay`` of each tenant's tickets (without the one the engine cannot evaluate),
    with the tenant as the first column, tenant after tenant."""
    tables = []
    for tenant in dataset.tenants:
        table = replay_reference(
            dataset.url, tenant, NOW, current, proposed, {dataset.bad[tenant]}, by
        )
        tables.append(table.add_column(0, "tenant_id", pa.array([tenant] * table.num_rows)))
    return pa.concat_tables(tables)


def cost_row(stdout: str, tenant: str, measure: str) -> list[str]:
    """The cells of the cost line of ``tenant`` and ``measure``: current, proposed, change,
    ratio."""
    for line in stdout.splitlines():
        cells = line.split()
        if cells[:2] == [tenant, measure]:
            return cells[2:]
    raise AssertionError(f"no {measure} line for {tenant} in:\n{stdout}")


def test_the_command_prints_the_replay_and_both_costs(dataset, tmp_path) -> None:
    policy = tmp_path / "proposed.json"
    policy.write_text(json.dumps(synthetic.PROPOSED))
    done = effigate(
        "bench-rules", dataset.url, "--current", "standard", "--proposed", str(policy),
        "--now", NOW.isoformat(), "--repeat", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = expected_replay(dataset, "standard", synthetic.PROPOSED)
    assert expected.num_rows and "breached_change" in expected.column_names
    assert format_table(expected) in done.stdout
    assert "threads=1, best of 2" in done.stdout
    rules = (len(synthetic.STANDARD["rules"]), len(synthetic.PROPOSED["rules"]))
    for tenant in dataset.tenants:
        assert cost_row(done.stdout, tenant, "rules")[:2] == [str(n) for n in rules]
        tickets = cost_row(done.stdout, tenant, "tickets")
        assert tickets[0] == tickets[1] != "0"
        for measure in ("compile_ms", "evaluate_ms", "tickets_per_s"):
            current, proposed = cost_row(done.stdout, tenant, measure)[:2]
            assert float(current.replace(",", "")) > 0, measure
            assert float(proposed.replace(",", "")) > 0, measure
        assert f"ticket {dataset.bad[tenant]!r}: first_response_at" in done.stdout


def test_the_bench_replays_each_tickets_own_policy_against_a_catalog_policy(dataset) -> None:
    by = ("priority", "assignee")
    bench = rule_bench.bench_rules(dataset.url, proposed="premium", now=NOW, by=by, repeat=1)
    assert bench.replay.equals(expected_replay(dataset, None, "premium", by))
    assert set(bench.left_out.column("ticket_id").to_pylist()) == set(dataset.bad.values())
    costs = bench.costs.to_pylist()
    assert [(c["tenant_id"], c["side"]) for c in costs] == [
        (t, side) for t in dataset.tenants for side in rule_bench.SIDES
    ]
    both = len(synthetic.STANDARD["rules"]) + len(synthetic.PREMIUM["rules"])
    for c in costs:
        assert (c["policies"], c["rules"]) == (
            (2, both) if c["side"] == "current" else (1, len(synthetic.PREMIUM["rules"]))
        )
        assert c["tickets_per_s"] == pytest.approx(c["tickets"] / (c["evaluate_ms"] / 1000))
        assert c["first_evaluate_ms"] >= c["evaluate_ms"] * 0.5 > 0
    comparison = rule_bench.cost_comparison(bench.costs)
    assert comparison.num_rows == len(dataset.tenants) * len(rule_bench.MEASURES)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--proposed", "gold"), "policy 'gold'"),
        (("--current", "bronze", "--proposed", "premium"), "policy 'bronze'"),
        (("--proposed", "missing-policy.json"), "'missing-policy.json'"),
    ],
)
def test_a_bad_policy_reference_is_one_line_naming_it(dataset, args, named) -> None:
    done = effigate("bench-rules", dataset.url, *args)
    assert done.returncode == EXIT_USAGE
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("effigate: ") and named in lines[0]
    assert not done.stdout
