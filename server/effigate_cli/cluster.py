"""``effigate sla --cluster`` and ``effigate replay --cluster``: the SLA recompute and the
policy replay over a dataset (``effigate export`` writes one) on a Dask cluster, instead of
through the service.

``--cluster local:N`` starts a local cluster of N worker processes for the command;
``--cluster tcp://scheduler:8786`` uses a running one (``EFFIGATE_CLUSTER`` is the default).
The dataset is a folder or any fsspec URL; results go to ``--out`` (default: the dataset):
each part's rows under ``results/``, the combined tables beside (``hit_rates.parquet``,
``percentiles.parquet``, ``replay.parquet``). A progress bar goes to standard error.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from effigate_cli.failures import EXIT_USAGE, CommandFailure

#: Failures printed one per line before the rest is only counted.
FAILURES_SHOWN = 5


def add_options(parser: argparse.ArgumentParser, *, by: bool) -> None:
    """``--cluster`` (and ``--by`` when the command has none yet) and ``--period``."""
    from effigate_engine.cluster.connect import ENV_CLUSTER

    parser.add_argument(
        "--cluster",
        default=os.environ.get(ENV_CLUSTER) or None,
        help="run on a Dask cluster over a dataset: local:N (N worker processes here) or"
        f" tcp://scheduler:8786 (default: {ENV_CLUSTER})",
    )
    if by:
        parser.add_argument(
            "--by", action="append", default=None, help="group column (repeatable; --cluster)"
        )
    parser.add_argument(
        "--period", default=None, choices=("day", "week", "month"), help="also group by period"
    )


def _instant(text: str | None, url: str) -> datetime:
    from effigate_engine.cluster.sla_jobs import default_now

    if not text:
        return default_now(url)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise CommandFailure(f"--now {text!r} has no time zone", EXIT_USAGE)
    return value


def _failures(failures: Any, where: str) -> None:
    if not failures.num_rows:
        return
    print(f"\n{failures.num_rows} tickets left out (the engine cannot evaluate them): {where}")
    for message in failures.column("message").to_pylist()[:FAILURES_SHOWN]:
        print(f"  {message}")
    if failures.num_rows > FAILURES_SHOWN:
        print(f"  … and {failures.num_rows - FAILURES_SHOWN} more")


def run_sla(args: argparse.Namespace) -> int:
    """Recompute the SLA of every ticket of the dataset ``args.file`` on the cluster."""
    from effigate_engine.cluster.connect import open_cluster, parse
    from effigate_engine.cluster.sla_jobs import (
        HIT_RATES_FILE,
        PERCENTILES_FILE,
        digests,
        policy_names,
        recompute,
        ticket_parts,
    )
    from effigate_engine.cluster.tasks import progress_bar
    from effigate_server.tables import format_table

    parse(args.cluster)  # a bad --cluster fails before anything starts
    url = str(args.file)
    parts = ticket_parts(url)  # so do a missing dataset and an unknown policy
    policy_names(url, list(digests(url, parts)), args.policy)
    now = _instant(args.now, url)
    out = str(args.out) if args.out else url
    with open_cluster(args.cluster) as client, progress_bar(desc="sla") as progress:
        job = recompute(
            client,
            url,
            now=now,
            out=out,
            policy=args.policy,
            by=args.by or ("priority",),
            period=args.period,
            progress=progress,
        )
    rows = sum(p.rows for p in job.parts)
    print(f"{rows} ticket metrics in {len(job.parts)} parts, at {now.isoformat()}")
    print(format_table(job.counts))
    print()
    print(format_table(job.hit_rates) if job.hit_rates.num_rows else "no ticket metrics")
    _failures(job.failures, f"{out}/results/sla_failures/")
    print(
        f"\nwrote {out}/results/sla/ (and sla_breaches/), {out}/{HIT_RATES_FILE},"
        f" {out}/{PERCENTILES_FILE}"
    )
    return 0


def _proposed(text: str) -> str | dict[str, Any]:
    """A policy JSON file's body, or a catalog policy id or name."""
    from effigate_engine.cluster.parts import policy_body

    path = Path(text)
    if text.endswith(".json") or path.is_file():
        if not path.is_file():
            raise CommandFailure(f"--proposed {text!r}: no such policy file", EXIT_USAGE)
        return policy_body(path.read_text(encoding="utf-8"))
    return text


def run_replay(args: argparse.Namespace) -> int:
    """Replay the dataset ``args.dataset`` under two policies on the cluster."""
    from effigate_engine.cluster.connect import open_cluster, parse
    from effigate_engine.cluster.parts import proposed_policy
    from effigate_engine.cluster.replay_jobs import REPLAY_FILE, replay
    from effigate_engine.cluster.sla_jobs import digests, policy_names, ticket_parts
    from effigate_engine.cluster.tasks import progress_bar
    from effigate_server.tables import format_table

    parse(args.cluster)
    if not args.dataset:
        raise CommandFailure("replay --cluster: give the dataset (a folder or URL)", EXIT_USAGE)
    url = str(args.dataset)
    proposed = _proposed(args.proposed)
    tenants = list(digests(url, ticket_parts(url)))
    policy_names(url, tenants, args.current)
    if isinstance(proposed, dict):
        proposed_policy(proposed)
    else:
        policy_names(url, tenants, proposed)
    now = _instant(args.now, url)
    out = str(args.out) if args.out else url
    with open_cluster(args.cluster) as client, progress_bar(desc="replay") as progress:
        job = replay(
            client,
            url,
            current=args.current,
            proposed=proposed,
            now=now,
            out=out,
            by=args.by or ("priority",),
            period=args.period,
            progress=progress,
        )
    print(f"replayed {len(job.parts)} parts at {now.isoformat()}")
    print(format_table(job.table) if job.table.num_rows else "no tickets")
    _failures(job.failures, "left out of both sides")
    print(f"\nwrote {out}/{REPLAY_FILE}")
    return 0
