"""What-if billing over a dataset: the current side of a replay equals the single-process
billing run; a proposal moves exactly the contracts it touches."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest

from effigate_engine.billing.run import billing_run
from effigate_engine.billing.terms_json import tax_components
from effigate_engine.cluster.billing_replay import replay_billing_dataset
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import load_breaches, load_catalog
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.schemas import TIME_LOGS
from tests.cluster.billing_dataset import DAY, TENANTS, WIDE, single_process, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("whatif") / "dataset")
    write_dataset(url)
    return url


def test_current_side_equals_the_billing_run_and_a_proposal_moves_credits(dataset: str) -> None:
    tenant = next(iter(TENANTS))
    run = single_process(dataset, tenant)
    replay = replay_billing_dataset(
        dataset, tenant, day_from=DAY, day_to=DAY, proposed_terms={"sla_credits": None}
    )
    totals = {r["contract_id"]: r for r in replay.totals.to_pylist()}
    billed = {r["contract_id"]: r["total"] for r in run.invoices.to_pylist()}
    assert {cid: r["current_total"] for cid, r in totals.items()} == {
        cid: billed[cid] for cid in totals
    }
    # the proposed side: the same run over the contracts without their credit terms
    catalog = load_catalog(dataset, tenant)
    bare = {s.id: replace(s.contract(), sla_credits=None) for s in catalog.contracts}
    book = ContractBook(list(bare.values()), WIDE)
    parts = layout.parts(dataset, layout.TIME_LOGS, {tenant})
    logs = [layout.read_part(p, dataset, TIME_LOGS) for p in parts]
    batch = pa.concat_tables(logs).unify_dictionaries().combine_chunks()
    proposed = billing_run(
        book,
        classify(book, batch, evidence=True),
        {cid: bare[cid].cycle.period_of(DAY) for cid in totals},
        breaches=load_breaches(dataset, tenant),
        inputs={
            s.id: s.inputs(bare[s.id], bare[s.id].cycle.period_of(DAY))
            for s in catalog.contracts
            if s.id in totals
        },
        tax=tax_components(catalog.default_tax),
    )
    want = {r["contract_id"]: r["total"] for r in proposed.invoices.to_pylist()}
    assert {cid: r["proposed_total"] for cid, r in totals.items()} == want
    assert any(r["total_change"] for r in totals.values())
    kinds = {r["kind"] for r in replay.lines.to_pylist()}
    assert kinds <= {"SLA_CREDIT", "CREDIT_BALANCE"} and "SLA_CREDIT" in kinds


def test_unknown_contracts_are_refused(dataset: str) -> None:
    tenant = next(iter(TENANTS))
    with pytest.raises(DatasetError, match="contract_ids"):
        replay_billing_dataset(
            dataset, tenant, day_from=DAY, day_to=DAY, proposed_terms={}, contract_ids=[1]
        )
