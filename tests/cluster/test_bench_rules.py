"""``effigate bench-rules``: a rule change's outcome (the replay table, equal to ``sla.replay``
over the same tickets) and the cost of each rule set, printed side by side; a policy reference
no catalog has is one line naming it. ``--billing``: the money per client under a proposed card
equals ``billing_run`` over contracts built with that card (a copy of the dataset), and both
sides' pricing costs are printed."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from effigate_cli.failures import EXIT_USAGE
from effigate_engine.cluster import billing_bench, rule_bench
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import load_catalog
from effigate_engine.money import currency
from effigate_engine.ratecard.model import RateCard
from effigate_server.tables import format_table
from tests.cluster import billing_dataset, synthetic
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
        assert c["first_evaluate_ms"] > 0 and c["compile_ms"] > 0
        assert c["ticket_metrics"] > 0
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


# Billing -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def billing_url(tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("billing"))
    billing_dataset.write_dataset(url)
    return url


def client_totals(url: str, tenant: str) -> dict[tuple[str, str], int]:
    """The oracle's invoice totals (``billing_run`` over one book of the tenant's contracts)
    summed per client and currency."""
    clients = {s.id: str(s.row["client_id"]) for s in load_catalog(url, tenant).contracts}
    sums: dict[tuple[str, str], int] = {}
    for r in billing_dataset.single_process(url, tenant).invoices.to_pylist():
        key = (clients[r["contract_id"]], r["currency"])
        sums[key] = sums.get(key, 0) + r["total"]
    return sums


def priced_by(url: str, into: str, card: dict) -> None:
    """A copy of the dataset at ``url`` in ``into`` whose contracts of the card's currency are
    priced by ``card`` from their start (frozen card replaced, card amendments dropped)."""
    shutil.copytree(url, into)
    digest = RateCard.from_json(card).content_hash()
    for tenant in layout.tenants(url):
        catalog = load_catalog(url, tenant)
        sources = [
            replace(
                s,
                row={**s.row, "frozen_rate_card": card, "frozen_rate_card_sha256": digest},
                amendments=[a for a in s.amendments if a["kind"] != "RATE_CARD"],
            )
            if s.row["currency"] == card["currency"]
            else s
            for s in catalog.contracts
        ]
        replace(catalog, contracts=sources).save(into)


def test_billing_prints_the_money_per_client_and_both_costs(billing_url, tmp_path) -> None:
    card = billing_dataset.card("USD", bump=7)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    out = tmp_path / "out"
    done = effigate(
        "bench-rules", billing_url, "--billing", "--period", billing_dataset.DAY.isoformat(),
        "--proposed-card", str(path), "--repeat", "1", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    priced_by(billing_url, str(tmp_path / "proposed"), card)
    by_client = pq.read_table(out / "billing_by_client.parquet").to_pylist()
    moved = 0
    for tenant in layout.tenants(billing_url):
        current = client_totals(billing_url, tenant)
        proposed = client_totals(str(tmp_path / "proposed"), tenant)
        rows = [r for r in by_client if r["tenant_id"] == tenant]
        assert {(r["client_id"], r["currency"]): r["current"] for r in rows} == current
        assert {(r["client_id"], r["currency"]): r["proposed"] for r in rows} == proposed
        for r in rows:
            assert r["change"] == r["proposed"] - r["current"]
            moved += r["change"] != 0
            assert r["change"] == 0 or r["currency"] == "USD"
        for measure in ("classify_ms", "assemble_ms", "logs_per_s"):
            current_cost, proposed_cost = cost_row(done.stdout, tenant, measure)[:2]
            assert float(current_cost.replace(",", "")) > 0, measure
            assert float(proposed_cost.replace(",", "")) > 0, measure
    assert moved  # the card moves money
    sums: dict[str, list[int]] = {}
    for r in by_client:
        pair = sums.setdefault(r["currency"], [0, 0])
        pair[0] += r["current"]
        pair[1] += r["proposed"]
    usd = currency("USD")
    a, b = sums["USD"]
    assert (
        f"all clients USD: current {usd.format(a)}, proposed {usd.format(b)},"
        f" change {usd.format(b - a)}"
    ) in done.stdout
    assert "pricing cost (classify + billing_run, threads=1, best of 1)" in done.stdout


def test_billing_terms_apply_to_the_contracts_named(billing_url) -> None:
    """Proposed SLA credit terms on one contract: only its client's money can move, and a
    section for another type is left alone."""
    catalog = load_catalog(billing_url, layout.tenants(billing_url)[0])
    target = next(s for s in catalog.contracts if s.row["contract_type"] == "HOURLY")
    terms = {
        "sla_credits": {"per_breach": {"CRITICAL": "900.00", "HIGH": "300.00"}},
        "bucket": {"size_hours": 1},
    }
    bench = billing_bench.bench_billing(
        billing_url,
        billing_dataset.DAY,
        billing_bench.Proposal(terms=terms, contracts=frozenset({target.id})),
        tenants=[catalog.tenant],
        repeat=1,
    )
    assert bench.changed == {catalog.tenant: 1}
    changed = [r for r in bench.totals.to_pylist() if r["total_change"]]
    assert {r["contract_id"] for r in changed} <= {target.id}
    lines = bench.lines.to_pylist()
    assert lines and {r["contract_id"] for r in lines} == {target.id}
    assert {r["kind"] for r in lines} == {"SLA_CREDIT"}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--proposed-card", "no-such-card.json"), "--proposed-card 'no-such-card.json'"),
        (("--period", "2026-13-01", "--proposed-card", "x.json"), "--period '2026-13-01'"),
    ],
)
def test_billing_bad_input_is_one_line_naming_it(billing_url, args, named) -> None:
    base = ("--period", "2026-03-31") if "--period" not in args else ()
    done = effigate("bench-rules", billing_url, "--billing", *base, *args)
    assert done.returncode == EXIT_USAGE
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr


def test_billing_a_bad_card_names_its_field(billing_url, tmp_path) -> None:
    card = billing_dataset.card("USD")
    card["base_rates"][0]["support_level"] = ""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(card))
    done = effigate(
        "bench-rules", billing_url, "--billing", "--period", "2026-03-31",
        "--proposed-card", str(path),
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1
    assert "proposed_card.base_rates[0].support_level" in done.stderr


def test_billing_the_same_card_on_both_sides_moves_nothing(billing_url) -> None:
    card = billing_dataset.card("EUR", bump=3)
    tenant = layout.tenants(billing_url)[1]
    bench = billing_bench.bench_billing(
        billing_url,
        billing_dataset.DAY,
        billing_bench.Proposal(card=card, current_card=card),
        tenants=[tenant],
        repeat=1,
    )
    assert bench.changed[tenant] > 0
    assert bench.by_client.num_rows and not any(bench.by_client.column("change").to_pylist())
    assert bench.lines.num_rows == 0
