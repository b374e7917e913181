"""The SLA and replay jobs on a LocalCluster of 2 worker processes (one for the module): the
same results, reports and replay differences as the single-process engine; catalogs compiled
once per worker; a worker killed mid-job changes nothing (Dask runs its tasks again, each part
file exists once); a rerun leaves the same files."""

from __future__ import annotations

import os
import signal

import pyarrow.parquet as pq
import pytest

from effigate_engine.cluster import replay_jobs, sla_jobs
from effigate_engine.cluster.connect import open_cluster
from effigate_engine.cluster.parts import compile_counts
from effigate_engine.errors import EffigateError
from effigate_engine.sla import BREACH_RECORDS
from tests.cluster import synthetic
from tests.cluster.reference import (
    RESULT_ROWS,
    by_ticket,
    of_tenant,
    read_results,
    replay_reference,
    result_files,
    sla_reference,
)


@pytest.fixture(scope="module")
def client():
    with open_cluster("local:2") as client:
        client.wait_for_workers(2)
        yield client


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> synthetic.Synthetic:
    return synthetic.write_dataset(str(tmp_path_factory.mktemp("dataset")), count=300)


def assert_sla_job_matches(job, data, out, policy=None, by=("priority",), period=None) -> None:
    """Results row for row, breaches, hit rates, percentiles and failures of every tenant as
    the single-process engine gives them over the tenant's tickets in one batch."""
    for tenant in data.tenants:
        ref = sla_reference(data.url, tenant, data.now, policy, by, period)
        written = read_results(out, "sla", tenant, RESULT_ROWS)
        assert written.column("tenant_id").unique().to_pylist() == [tenant]
        assert by_ticket(written.drop_columns(["tenant_id"])).equals(by_ticket(ref.results))
        breaches = read_results(out, "sla_breaches", tenant, BREACH_RECORDS)
        assert by_ticket(breaches).equals(by_ticket(sla_breach_records(ref)))
        assert of_tenant(job.hit_rates, tenant).equals(ref.hit_rates)
        assert of_tenant(job.percentiles, tenant).equals(ref.percentiles)
        rejected = ref.screened.rejected.column("ticket_id").to_pylist()
        assert data.bad[tenant] in rejected
        failed = of_tenant(job.failures, tenant).column("ticket_id").to_pylist()
        assert set(rejected) <= set(failed)
    hit_rates = pq.read_table(f"{out}/{sla_jobs.HIT_RATES_FILE}")
    assert hit_rates.cast(job.hit_rates.schema).equals(job.hit_rates)
    percentiles = pq.read_table(f"{out}/{sla_jobs.PERCENTILES_FILE}")
    assert percentiles.cast(job.percentiles.schema).equals(job.percentiles)


def sla_breach_records(ref):
    from effigate_engine import sla

    return sla.breach_records(ref.screened.evaluation)


def test_distributed_sla_equals_single_process(client, dataset, tmp_path) -> None:
    out = str(tmp_path)
    by, period = ("priority", "client_id"), "month"
    job = sla_jobs.recompute(client, dataset.url, now=dataset.now, out=out, by=by, period=period)
    assert len(job.parts) == len(set(p.part for p in job.parts)) >= 8
    assert {p.worker for p in job.parts} == set(client.scheduler_info()["workers"])
    assert_sla_job_matches(job, dataset, out, None, by, period)
    total = job.counts.column("count").to_pylist()
    assert sum(total) == sum(p.rows for p in job.parts)


def test_distributed_sla_under_one_catalog_policy(client, dataset, tmp_path) -> None:
    out = str(tmp_path)
    job = sla_jobs.recompute(client, dataset.url, now=dataset.now, out=out, policy="premium")
    assert_sla_job_matches(job, dataset, out, "premium")


def test_calendars_compiled_once_per_worker(client, dataset, tmp_path) -> None:
    job = sla_jobs.recompute(client, dataset.url, now=dataset.now, out=str(tmp_path))
    runs: dict[tuple[str | None, str], int] = {}
    for outcome in job.parts:
        key = (outcome.worker, outcome.part.tenant)
        runs[key] = runs.get(key, 0) + 1
    assert max(runs.values()) >= 2  # some worker ran several parts of one tenant …
    compiled = client.run(compile_counts)
    for worker in {outcome.worker for outcome in job.parts}:
        counts = compiled[worker]  # … and compiled each catalog once
        assert counts and set(counts.values()) == {1}, (worker, counts)


@pytest.mark.parametrize(
    ("current", "proposed"), [(None, synthetic.PROPOSED), ("standard", "premium")]
)
def test_distributed_replay_equals_single_process(
    client, dataset, tmp_path, current, proposed
) -> None:
    by = ("priority", "assignee")
    job = replay_jobs.replay(
        client,
        dataset.url,
        current=current,
        proposed=proposed,
        now=dataset.now,
        out=str(tmp_path),
        by=by,
    )
    for tenant in dataset.tenants:
        left_out = set(of_tenant(job.failures, tenant).column("ticket_id").to_pylist())
        assert dataset.bad[tenant] in left_out
        expected = replay_reference(
            dataset.url, tenant, dataset.now, current, proposed, left_out, by
        )
        assert of_tenant(job.table, tenant).equals(expected)
    written = pq.read_table(tmp_path / replay_jobs.REPLAY_FILE)
    assert written.cast(job.table.schema).equals(job.table)


def test_a_worker_killed_mid_job_changes_nothing(client, tmp_path_factory) -> None:
    # tenants of their own: new catalogs, so every worker compiles while the first part ends
    data = synthetic.write_dataset(
        str(tmp_path_factory.mktemp("killed")), count=300, seed=11, first=5
    )
    out = str(tmp_path_factory.mktemp("killed-out"))
    pids = client.run(os.getpid)
    killed: list[tuple[str, tuple[str, ...]]] = []

    def kill_a_busy_worker(done: int, total: int) -> None:
        if killed:
            return
        for worker, keys in client.processing().items():
            if keys and worker in pids:
                os.kill(pids[worker], signal.SIGKILL)
                killed.append((worker, tuple(keys)))
                return

    job = sla_jobs.recompute(client, data.url, now=data.now, out=out, progress=kill_a_busy_worker)
    assert killed and killed[0][1]  # a worker died with parts on it …
    dead, lost = killed[0]
    for key in lost:  # … and Dask ran them again on another worker (keys end in the index)
        assert job.parts[int(key.rsplit("-", 1)[1])].worker != dead
    client.wait_for_workers(2, timeout=60)  # the nanny starts it again
    assert_sla_job_matches(job, data, out)
    parts = [f"tenant={p.part.tenant}/month={p.part.key}/part-0.parquet" for p in job.parts]
    assert result_files(out, "sla") == sorted(parts)  # each once, no temporary leftovers
    assert result_files(out, "sla_breaches") == sorted(parts)


def test_a_rerun_leaves_the_same_files(client, dataset, tmp_path) -> None:
    out = str(tmp_path)
    first = sla_jobs.recompute(client, dataset.url, now=dataset.now, out=out)
    files = {job: result_files(out, job) for job in ("sla", "sla_breaches", "sla_failures")}
    second = sla_jobs.recompute(client, dataset.url, now=dataset.now, out=out)
    assert {job: result_files(out, job) for job in files} == files
    assert len(files["sla"]) == len(first.parts)
    assert second.hit_rates.equals(first.hit_rates)
    assert_sla_job_matches(second, dataset, out)


def test_parts_evaluated_a_slice_at_a_time_change_nothing(client, dataset, tmp_path) -> None:
    """Slices of 7 tickets (every part cut into many; a slice of the bad ticket too): the
    same results, reports and failures as the single-process engine, each failure naming its
    ticket's row in the part file; and the replay's differences unchanged."""
    out = str(tmp_path / "sla")
    by, period = ("priority", "assignee"), "week"
    job = sla_jobs.recompute(
        client, dataset.url, now=dataset.now, out=out, by=by, period=period, slice_tickets=7
    )
    assert_sla_job_matches(job, dataset, out, None, by, period)
    assert job.failures.num_rows
    for failure in job.failures.to_pylist():
        part = next(
            p.part
            for p in job.parts
            if (p.part.tenant, p.part.key) == (failure["tenant_id"], failure["month"])
        )
        tickets = pq.read_table(part.path, columns=["ticket_id"]).column("ticket_id")
        assert tickets[failure["row"]].as_py() == failure["ticket_id"]
    whole = replay_jobs.replay(
        client, dataset.url, proposed=synthetic.PROPOSED, now=dataset.now, out=str(tmp_path)
    )
    sliced = replay_jobs.replay(
        None,
        dataset.url,
        proposed=synthetic.PROPOSED,
        now=dataset.now,
        out=str(tmp_path),
        slice_tickets=5,
    )
    assert sliced.table.equals(whole.table)
    assert sliced.failures.equals(whole.failures)


def test_a_slice_size_that_is_not_a_count_is_refused(dataset, tmp_path) -> None:
    with pytest.raises(EffigateError, match="slice_tickets: 0 is not a positive count"):
        sla_jobs.recompute(None, dataset.url, now=dataset.now, out=str(tmp_path), slice_tickets=0)
