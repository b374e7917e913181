"""``effigate sla --cluster`` and ``effigate replay --cluster`` as a user runs them: a local
cluster started by the command, the summary printed, the Parquet written (the same tables as
the jobs run in this process); a bad ``--cluster`` is one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from effigate_cli.failures import EXIT_USAGE
from effigate_engine.cluster import replay_jobs, sla_jobs
from effigate_engine.cluster.connect import ENV_CLUSTER
from tests.cluster import synthetic
from tests.cluster.reference import result_files

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ("EFFIGATE_ADDRESS", "EFFIGATE_TOKEN", "EFFIGATE_DEBUG", ENV_CLUSTER)


def effigate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m effigate_cli`` with ``env`` (and none of this process's Effigate settings)."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    paths = [str(ROOT / "src"), str(ROOT / "server"), str(ROOT / "clients/python/src")]
    base["PYTHONPATH"] = os.pathsep.join([*paths, base.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "effigate_cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> synthetic.Synthetic:
    return synthetic.write_dataset(str(tmp_path_factory.mktemp("dataset")), count=150, seed=3)


def test_sla_on_a_local_cluster_prints_the_summary_and_writes_parquet(dataset, tmp_path) -> None:
    out = tmp_path / "out"
    done = effigate(
        "sla", dataset.url, "--cluster", "local:2", "--out", str(out), "--by", "priority",
        "--by", "assignee",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = sla_jobs.recompute(
        None, dataset.url, now=dataset.now, out=str(tmp_path / "here"), by=("priority", "assignee")
    )
    rows = sum(p.rows for p in job.parts)
    assert f"{rows} ticket metrics in {len(job.parts)} parts, at {dataset.now.isoformat()}" in (
        done.stdout
    )
    assert "hit_rate" in done.stdout and "BREACHED" in done.stdout
    assert f"ticket {dataset.bad[dataset.tenants[0]]!r}: first_response_at" in done.stdout
    written = pq.read_table(out / sla_jobs.HIT_RATES_FILE)
    assert written.cast(job.hit_rates.schema).equals(job.hit_rates)
    percentiles = pq.read_table(out / sla_jobs.PERCENTILES_FILE)
    assert percentiles.cast(job.percentiles.schema).equals(job.percentiles)
    assert result_files(str(out), "sla") == result_files(str(tmp_path / "here"), "sla")


def test_replay_on_a_local_cluster_takes_a_policy_file(dataset, tmp_path) -> None:
    policy = tmp_path / "proposed.json"
    policy.write_text(json.dumps(synthetic.PROPOSED))
    done = effigate(
        "replay", dataset.url, "--current", "standard", "--proposed", str(policy),
        "--out", str(tmp_path), "--now", "2026-05-01T00:00:00Z",
        **{ENV_CLUSTER: "local:1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "hit_rate_change" in done.stdout
    job = replay_jobs.replay(
        None,
        dataset.url,
        current="standard",
        proposed=synthetic.PROPOSED,
        now=datetime(2026, 5, 1, tzinfo=UTC),
        out=str(tmp_path / "here"),
    )
    written = pq.read_table(tmp_path / replay_jobs.REPLAY_FILE)
    assert written.cast(job.table.schema).equals(job.table)


def test_a_bad_cluster_is_one_line_naming_it(dataset) -> None:
    for spec, done in (
        ("bogus", effigate("sla", dataset.url, "--cluster", "bogus")),
        (
            "local:0",
            effigate("replay", dataset.url, "--proposed", "premium", EFFIGATE_CLUSTER="local:0"),
        ),
    ):
        assert done.returncode == EXIT_USAGE
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"effigate: --cluster {spec!r}: ")


def test_an_unknown_policy_is_one_line_before_the_cluster_starts(dataset) -> None:
    done = effigate("sla", dataset.url, "--cluster", "local:2", "--policy", "gold")
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().startswith("effigate: policy 'gold': not in tenant")
