"""Export from the store to a dataset: what each part holds, evaluated single-process under the
exported catalog it gives what the service gives over the store; contracts rebuild equal; each
time log once; a re-export leaves the same files."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from effigate_engine import sla
from effigate_engine.billing.terms_json import tax_components
from effigate_engine.datasets import catalog as ds_catalog
from effigate_engine.datasets import layout
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.ratecard.schemas import TIME_LOGS
from effigate_engine.service import datasets, evaluations
from effigate_engine.service.contracts import load_stored
from effigate_engine.service.invoicing import invoice_inputs
from effigate_engine.service.rulesets import RulesetCache
from effigate_engine.service.timelogs import cycle_period
from effigate_engine.sla.schemas import TICKETS
from effigate_engine.store import tickets as stored_tickets
from effigate_engine.store.database import Store
from tests.datasets.support import AS_OF, DEFAULT_TAX, MARCH, Seeded
from tests.service.support import new_tenant, open_store
from tests.store.helpers import Database

COMPARED = [
    "ticket_id",
    "metric",
    "policy",
    "status",
    "deadline",
    "elapsed_seconds",
    "remaining_seconds",
    "stopped_at",
    "breached_at",
]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def export(db: Database, url: str, seeded: Seeded, **kw: Any) -> datasets.ExportSummary:
    async def go() -> datasets.ExportSummary:
        async with open_store(db) as store:
            return await datasets.export_dataset(
                store, url, tenants=[seeded.principal], as_of=AS_OF, **kw
            )

    return run(go())


def _comparable(results: pa.Table) -> pa.Table:
    table = pa.table({c: results.column(c) for c in COMPARED})
    for name in ("metric", "policy", "status"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.cast(table.column(name), pa.string()))
    return table.sort_by([("ticket_id", "ascending"), ("metric", "ascending")])


def mapping(table: pa.Table, key: str, value: str) -> dict[Any, Any]:
    """``table``'s ``value`` column by its ``key`` column."""
    keys, values = table.column(key).to_pylist(), table.column(value).to_pylist()
    return dict(zip(keys, values, strict=True))


def _tickets(url: str, tenant: str) -> pa.Table:
    parts = layout.parts(url, layout.TICKETS, {tenant})
    return pa.concat_tables([layout.read_part(p, url, TICKETS) for p in parts])


def test_tickets_are_split_by_month_and_name_their_policy(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    summary = export(db, url, seeded)
    tenant = str(seeded.principal.tenant_id)
    parts = layout.parts(url, layout.TICKETS, {tenant})
    assert [p.key for p in parts] == ["2026-02", "2026-03"]
    for part in parts:
        table = layout.read_part(part, url)
        assert set(layout.month_of(table.column("created_at")).to_pylist()) == {part.key}
        assert table.column_names == TICKETS.names  # seconds are stored as ms by Parquet
        assert layout.read_part(part, url, TICKETS).num_rows == table.num_rows
    table = _tickets(url, tenant)
    assert summary.counts["tickets"] == table.num_rows == len(seeded.ticket_ids)
    assert set(table.column("tenant_id").to_pylist()) == {tenant}
    policy = mapping(table, "ticket_id", "policy")
    contract = mapping(table, "ticket_id", "contract_id")
    names = {str(seeded.contracts["A"]): "standard", str(seeded.contracts["B"]): "premium"}
    assert policy == {t: names.get(contract[t]) for t in policy}
    assert policy["T-09"] is None  # no contract: the catalog's first policy
    manifest = layout.read_manifest(url)
    assert manifest["as_of"] == AS_OF.isoformat() and manifest["tenants"] == [tenant]
    assert manifest["counts"] == summary.counts
    assert "exported 1 tenant(s)" in summary.line()


def test_dataset_evaluated_under_its_catalog_equals_the_service(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    export(db, url, seeded)
    tenant = str(seeded.principal.tenant_id)
    cat = ds_catalog.load_catalog(url, tenant)
    compiled = ds_catalog.compiled(cat)
    assert [p.name for p in cat.policies] == ["standard", "premium"]
    table = _tickets(url, tenant)
    dataset = sla.evaluate(table, compiled.policies, compiled.calendars, AS_OF)

    p = seeded.principal
    standard = seeded.policies["standard"]

    async def service() -> tuple[pa.Table, pa.Table]:
        cache = RulesetCache()
        async with open_store(db) as store:
            async with store.transaction(p) as conn:
                histories = await stored_tickets.load_histories(conn, as_of=AS_OF)
                rulesets = {
                    i: await evaluations.ruleset(conn, cache, p, i)
                    for i in seeded.policies.values()
                }
                contract_policy = {
                    seeded.contracts["A"]: standard,
                    seeded.contracts["B"]: seeded.policies["premium"],
                }
            policy_of = {
                h.ticket.id: contract_policy.get(h.ticket.contract_id, standard) for h in histories
            }
            screened = await evaluations.screen_under_their_policies(
                histories, policy_of, rulesets, AS_OF
            )
            recomputed = await evaluations.recompute(store, cache, p, standard, now=AS_OF)
        return screened.evaluation.results, recomputed.evaluation.results

    theirs, recomputed = run(service())
    assert dataset.results.num_rows > 0
    assert _comparable(dataset.results).equals(_comparable(theirs))
    # every ticket under the first policy (the null policy): the service's recompute
    nulls = pa.nulls(table.num_rows, pa.string())
    under_first = table.set_column(table.schema.get_field_index("policy"), "policy", nulls)
    first = sla.evaluate(under_first, compiled.policies, compiled.calendars, AS_OF)
    assert _comparable(first.results).equals(_comparable(recomputed))
    # the events after the export's instant are not in the dataset
    resolved = mapping(table, "ticket_id", "resolved_at")
    assert resolved["T-08"] is None and resolved["T-09"] is not None


def test_contracts_rebuild_equal_with_the_inputs_invoicing_gathers(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    export(db, url, seeded)
    cat = ds_catalog.load_catalog(url, str(seeded.principal.tenant_id))
    assert sorted(int(c.id) for c in cat.contracts) == sorted(seeded.contracts.values())
    p = seeded.principal

    async def check() -> None:
        async with open_store(db) as store, store.transaction(p) as conn:
            for source in cat.contracts:
                stored = await load_stored(conn, int(source.id), p)
                contract = source.contract()
                assert contract == stored.domain()
                period, bounds = cycle_period(stored, MARCH)
                theirs = await invoice_inputs(conn, stored, period, bounds, None)
                ours = source.inputs(contract, period)
                assert set(ours.already_credited) == theirs.already_credited
                assert set(ours.invoiced_items) == theirs.invoiced_items
                assert ours.credit_balance == theirs.credit_balance
                assert ours.unit_counts == theirs.unit_counts
                assert ours.exemption == theirs.exemption
                tax = tax_components(cat.default_tax) if ours.tax is None else ours.tax
                assert tax == tax_components(theirs.tax)

    run(check())
    by_id = {int(c.id): c for c in cat.contracts}
    assert by_id[seeded.contracts["B"]].tax == [{"name": "VAT", "rate_ppm": 200_000}]
    assert (by_id[seeded.contracts["A"]].tax, by_id[seeded.contracts["A"]].tax_given) == ([], False)
    assert (by_id[seeded.contracts["C"]].tax, by_id[seeded.contracts["C"]].tax_given) == ([], True)
    assert cat.default_tax == DEFAULT_TAX


def test_time_log_parts_hold_every_stored_log_once(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    summary = export(db, url, seeded)
    tenant = str(seeded.principal.tenant_id)
    parts = layout.parts(url, layout.TIME_LOGS, {tenant})
    assert [p.key for p in parts] == [str(c) for c in sorted(seeded.contracts.values())]
    tables = []
    for part in parts:
        table = layout.read_part(part, url)
        assert table.column_names == TIME_LOGS.names
        table = table.cast(TIME_LOGS)
        assert set(pc.cast(table.column("contract_id"), pa.string()).to_pylist()) == {part.key}
        starts = table.column("start").to_pylist()
        assert starts == sorted(starts)  # work order
        tables.append(table)
    logs = pa.concat_tables(tables)
    ids = logs.column("log_id").to_pylist()
    assert sorted(ids) == seeded.log_ids and summary.counts["time_logs"] == len(ids)
    approved = mapping(logs, "log_id", "approved")
    assert sum(approved.values()) == 2 * len(parts)  # two approved of each contract's three
    assert "LOW" in pc.cast(logs.column("priority"), pa.string()).to_pylist()  # stored without


def test_breaches_are_the_tenants_recorded_ones(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    summary = export(db, url, seeded)
    breaches = ds_catalog.load_breaches(url, str(seeded.principal.tenant_id))
    assert breaches is not None and breaches.num_rows == summary.counts["breaches"] > 0
    ids = breaches.column("breach_id").to_pylist()
    assert len(set(ids)) == len(ids)
    tickets, metrics = (
        mapping(breaches, "breach_id", "ticket_id"),
        mapping(breaches, "breach_id", "metric"),
    )
    assert all(i == f"{tickets[i]}:{metrics[i]}" for i in ids)


def _files(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def test_exporting_twice_leaves_identical_files(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    export(db, url, seeded)
    first = _files(tmp_path / "ds")
    # a part left by an earlier export of another month is removed
    stale = tmp_path / "ds" / "tickets" / f"tenant={seeded.principal.tenant_id}" / "month=2025-01"
    stale.mkdir()
    (stale / layout.PART_FILE).write_bytes(b"old")
    export(db, url, seeded)
    assert _files(tmp_path / "ds") == first
    assert not any(".tmp" in name for name in first)


def test_tenant_ids_export_with_job_tokens_revoked_after(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")
    tenant = seeded.principal.tenant_id

    async def go() -> datasets.ExportSummary:
        store = await Store.open(db.app, admin_dsn=db.admin, adbc_connections=1)
        try:
            return await datasets.export_dataset(store, url, tenants=[str(tenant)], as_of=AS_OF)
        finally:
            await store.close()

    summary = run(go())
    assert summary.tenants == [str(tenant)]
    assert summary.counts["tickets"] == len(seeded.ticket_ids)

    async def tokens() -> list[Any]:
        conn = await asyncpg.connect(db.admin)
        try:
            return await conn.fetch(
                "SELECT revoked_at FROM api_tokens WHERE tenant_id = $1 AND label = $2",
                tenant,
                datasets.JOB_LABEL,
            )
        finally:
            await conn.close()

    issued = run(tokens())
    assert issued and all(r["revoked_at"] is not None for r in issued)


def test_tenant_ids_without_the_owners_credentials_are_refused(
    db: Database, seeded: Seeded, tmp_path: Path
) -> None:
    async def go() -> None:
        async with open_store(db) as store:
            await datasets.export_dataset(store, str(tmp_path), tenants=["not-a-uuid"])

    with pytest.raises(DatasetError, match=r"tenants\[0\]: 'not-a-uuid'"):
        run(go())

    async def go2() -> None:
        async with open_store(db) as store:
            await datasets.export_dataset(store, str(tmp_path), tenants=[os.urandom(16).hex()])

    with pytest.raises(DatasetError, match="EFFIGATE_ADMIN_DSN"):
        run(go2())


def test_a_tenant_with_nothing_stored_exports_an_empty_catalog(
    db: Database, tmp_path: Path
) -> None:
    url = str(tmp_path / "ds")

    async def go() -> tuple[str, datasets.ExportSummary]:
        async with open_store(db) as store:
            principal = await new_tenant(db, name="Empty MSP")
            summary = await datasets.export_dataset(store, url, tenants=[principal], as_of=AS_OF)
            return str(principal.tenant_id), summary

    tenant, summary = run(go())
    assert summary.counts["tickets"] == summary.counts["time_logs"] == 0
    assert layout.parts(url, layout.TICKETS) == layout.parts(url, layout.TIME_LOGS) == []
    cat = ds_catalog.load_catalog(url, tenant)
    assert (cat.calendars, cat.policies, cat.contracts) == ({}, [], [])
    assert ds_catalog.load_breaches(url, tenant).num_rows == 0
