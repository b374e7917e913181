"""The billing run on a LocalCluster of two worker processes against the single-process
``billing_run`` over one book of all of a tenant's contracts (``billing_dataset``): the same
invoice lines and invoices, totals to the minor unit; a worker killed after a task wrote its
parts and before it reported (Dask runs the task again) changes nothing and leaves one copy of
every part; a rerun leaves the same files; ``effigate bill-run`` prints the same totals."""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from effigate_engine.billing.run import BillingRun
from effigate_engine.cluster import billing_jobs
from effigate_engine.cluster.billing_jobs import BillRun, bill_run
from effigate_engine.cluster.connect import open_cluster
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.money import currency
from tests.cluster.billing_dataset import DAY, PER_TENANT, TENANTS, single_process, write_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("billing") / "dataset")
    write_dataset(url)
    return url


@pytest.fixture(scope="module")
def oracle(dataset: str) -> dict[str, BillingRun]:
    """Each tenant's single-process run (made before the cluster starts: the kernels are
    compiled and cached once, then loaded by the workers)."""
    return {tenant: single_process(dataset, tenant) for tenant in TENANTS}


@pytest.fixture(scope="module")
def billing_cluster(oracle: dict[str, BillingRun]) -> Iterator[Any]:
    with open_cluster("local:2") as client:
        yield client


def totals(run: BillingRun) -> dict[str, int]:
    """Σ invoice totals per currency, straight from the oracle's invoices."""
    out: dict[str, int] = {}
    for row in run.invoices.select(["currency", "total"]).to_pylist():
        out[row["currency"]] = out.get(row["currency"], 0) + row["total"]
    return out


def assert_equals_oracle(run: BillRun, oracle: dict[str, BillingRun]) -> None:
    """The combined Parquet, tenant by tenant, is the single-process run's tables."""
    invoices, lines = pq.read_table(run.invoices), pq.read_table(run.lines)
    tenants = invoices.column("tenant_id").to_pylist()
    assert tenants == sorted(tenants)
    assert [t.tenant for t in run.tenants] == sorted(TENANTS)
    for bill in run.tenants:
        want = oracle[bill.tenant]
        mine = pc.equal(invoices.column("tenant_id"), bill.tenant)
        got_invoices = invoices.filter(mine).drop_columns(["tenant_id"])
        got_lines = lines.filter(pc.equal(lines.column("tenant_id"), bill.tenant))
        got_lines = got_lines.drop_columns(["tenant_id"])
        assert got_invoices.schema == want.invoices.schema
        assert got_lines.schema == want.lines.schema
        assert got_invoices.equals(want.invoices)
        assert got_lines.equals(want.lines)
        assert (bill.invoices, bill.lines) == (want.invoices.num_rows, want.lines.num_rows)
        assert bill.totals == totals(want)
    every: dict[str, int] = {}
    for want in oracle.values():
        for code, amount in totals(want).items():
            every[code] = every.get(code, 0) + amount
    assert run.totals == dict(sorted(every.items()))


def result_files(url: str) -> dict[str, pa.Table]:
    """Every file under the run's part folders, by path relative to the dataset."""
    out = {}
    for table in (billing_jobs.RESULT_LINES, billing_jobs.RESULT_INVOICES):
        base = Path(url) / "results" / table
        for path in sorted(base.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(url))] = pq.read_table(path)
    return out


def assert_one_part_per_batch(url: str, run: BillRun, oracle: dict[str, BillingRun]) -> None:
    """Each batch has exactly one part per table and nothing else is left; each invoiced
    contract is in exactly one batch."""
    files = result_files(url)
    expected = {
        posixpath.join("results", table, f"tenant={t.tenant}", f"batch={k}", "part-0.parquet")
        for t in run.tenants
        for k in range(t.batches)
        for table in (billing_jobs.RESULT_LINES, billing_jobs.RESULT_INVOICES)
    }
    assert set(files) == expected
    for t in run.tenants:
        ids = [
            cid
            for name, table in files.items()
            if billing_jobs.RESULT_INVOICES in name and f"tenant={t.tenant}" in name
            for cid in table.column("contract_id").to_pylist()
        ]
        assert sorted(ids) == oracle[t.tenant].contract_ids


def test_distributed_run_equals_the_single_process_run(
    billing_cluster: Any, dataset: str, oracle: dict[str, BillingRun], tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    run = bill_run(
        billing_cluster, dataset, DAY, out=str(tmp_path / "out"), progress=lambda *a: seen.append(a)
    )
    # both tenants split over several tasks (three per worker in all), whole contracts each
    assert run.batches == len(seen) == seen[-1][1] >= 4
    assert [done for done, _ in seen] == list(range(1, run.batches + 1))
    assert all(t.batches >= 2 for t in run.tenants)
    assert_equals_oracle(run, oracle)
    assert_one_part_per_batch(dataset, run, oracle)
    # a rerun writes the same parts under the same names, and the same combined tables
    before = result_files(dataset)
    again = bill_run(billing_cluster, dataset, DAY, out=str(tmp_path / "out"))
    after = result_files(dataset)
    assert again == run
    assert set(after) == set(before)
    assert all(after[name].equals(before[name]) for name in before)
    assert_equals_oracle(again, oracle)


def test_in_process_run_with_more_batches_equals_it_too(
    dataset: str, oracle: dict[str, BillingRun], tmp_path: Path
) -> None:
    """One task per contract, run here; then one per tenant: the parts of the earlier run's
    extra batches are removed, not mixed in."""
    many = bill_run(None, dataset, DAY, out=str(tmp_path / "many"), tasks=100)
    assert many.batches == PER_TENANT * len(TENANTS)  # the ones not started yet too
    assert_equals_oracle(many, oracle)
    assert_one_part_per_batch(dataset, many, oracle)
    one = bill_run(None, dataset, DAY, out=str(tmp_path / "one"))
    assert [t.batches for t in one.tenants] == [1, 1]
    assert_equals_oracle(one, oracle)
    assert_one_part_per_batch(dataset, one, oracle)


class KillAfterWrite(WorkerPlugin):
    """A worker plugin that ends its worker process the first time (over all workers: a
    marker file) a bill-run task finishes: its parts are written, its result not yet reported,
    so the scheduler loses it and runs it again on a worker still alive."""

    name = "kill-after-write"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if str(key).startswith("bill-run") and (start, finish) == ("executing", "memory"):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(key).encode())
            os.close(fd)
            os._exit(1)


def test_a_worker_killed_mid_job_changes_nothing(
    billing_cluster: Any, dataset: str, oracle: dict[str, BillingRun], tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    before = set(billing_cluster.scheduler_info()["workers"])
    billing_cluster.register_plugin(KillAfterWrite(str(marker)), name=KillAfterWrite.name)
    try:
        run = bill_run(billing_cluster, dataset, DAY, out=str(tmp_path / "out"))
    finally:
        billing_cluster.unregister_worker_plugin(KillAfterWrite.name)
    killed = marker.read_text()  # the key of the task whose worker died
    assert killed.startswith("bill-run")
    story = billing_cluster.run_on_scheduler(
        lambda dask_scheduler: [t[2] for t in dask_scheduler.story(killed)]
    )
    assert story.count("memory") == 1 and story.count("processing") >= 2  # it ran again
    assert_equals_oracle(run, oracle)
    assert_one_part_per_batch(dataset, run, oracle)
    billing_cluster.wait_for_workers(2, timeout=60)
    assert set(billing_cluster.scheduler_info()["workers"]) != before  # a new worker process


def test_the_cli_prints_the_totals_and_writes_parquet(
    dataset: str, oracle: dict[str, BillingRun], tmp_path: Path
) -> None:
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT / "server"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    out = tmp_path / "cli"
    args = ["bill-run", dataset, "--cluster", "local:2", "--period", DAY.isoformat()]
    done = subprocess.run(
        [sys.executable, "-m", "effigate_cli", *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    for tenant, want in oracle.items():
        money = ", ".join(f"{c} {currency(c).format(v)}" for c, v in sorted(totals(want).items()))
        line = (
            f"tenant {tenant}: {want.invoices.num_rows} invoices, {want.lines.num_rows} lines, "
            f"total {money}"
        )
        assert line in printed
    assert f"invoices: {out / 'invoices.parquet'}" in printed
    invoices = pq.read_table(out / "invoices.parquet")
    for tenant, want in oracle.items():
        mine = invoices.filter(pc.equal(invoices.column("tenant_id"), tenant))
        assert mine.drop_columns(["tenant_id"]).equals(want.invoices)
    assert pq.read_table(out / "lines.parquet").num_rows == sum(
        o.lines.num_rows for o in oracle.values()
    )


def test_the_cli_refuses_a_bad_period(dataset: str, capsys: pytest.CaptureFixture[str]) -> None:
    from effigate_cli.main import main

    assert main(["bill-run", dataset, "--period", "31/03/2026"]) == 2
    assert "--period '31/03/2026'" in capsys.readouterr().err


def test_logs_of_a_contract_missing_from_the_catalog_are_refused(
    dataset: str, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    tenant = sorted(TENANTS)[0]
    some = next((copy / "time_logs" / f"tenant={tenant}").iterdir())
    stray = copy / "time_logs" / f"tenant={tenant}" / "contract=5555"
    shutil.copytree(some, stray)
    with pytest.raises(DatasetError, match=r"contract=5555.*not in tenant"):
        bill_run(None, str(copy), DAY)
