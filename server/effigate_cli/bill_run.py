"""``effigate bill-run DATASET --period YYYY-MM-DD [--cluster SPEC] [--out DIR]``: the
month-end billing run over a dataset (``effigate export``'s Parquet), on a Dask cluster.

Every billable contract of every tenant is invoiced for its period holding ``--period`` (a
local date), in tasks of whole contracts (:mod:`effigate_engine.cluster.billing_jobs`).
``--cluster local:N`` starts N worker processes here, ``--cluster tcp://host:8786`` uses a
running scheduler, and without it (nor ``EFFIGATE_CLUSTER``) the run is in this process. A
progress bar goes to standard error; per tenant the number of invoices and lines and the
totals per currency (major units; exact sums of the invoices' minor units) go to standard
output, then where the Parquet went (``<out>/invoices.parquet``, ``<out>/lines.parquet``;
``--out`` defaults to the dataset's ``results`` folder).
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from typing import Any

from effigate_cli.failures import EXIT_USAGE, CommandFailure


def add_commands(commands: Any) -> None:
    """Register ``effigate bill-run`` on the ``effigate`` subparsers."""
    from effigate_engine.cluster.connect import ENV_CLUSTER

    run = commands.add_parser(
        "bill-run", help="invoice every contract of a dataset for a period, on a Dask cluster"
    )
    run.add_argument("dataset", metavar="DATASET", help="the dataset's folder or fsspec URL")
    run.add_argument(
        "--period",
        required=True,
        metavar="YYYY-MM-DD",
        help="a local date: each contract is billed for its period holding it",
    )
    run.add_argument(
        "--cluster",
        default=os.environ.get(ENV_CLUSTER),
        metavar="SPEC",
        help=f"local:N or tcp://scheduler:8786 (default: {ENV_CLUSTER}, else in this process)",
    )
    run.add_argument("--out", default=None, metavar="DIR", help="where the combined Parquet goes")
    run.add_argument(
        "--tasks", type=int, default=None, help="about how many tasks (default: 3 per worker)"
    )
    run.set_defaults(handler=run_bill_run)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandFailure(
            f"--period {text!r}: not a date (YYYY-MM-DD, e.g. 2026-03-31)", EXIT_USAGE
        ) from None


def _money(totals: dict[str, int]) -> str:
    from effigate_engine.money import currency

    if not totals:
        return "nothing"
    return ", ".join(f"{code} {currency(code).format(minor)}" for code, minor in totals.items())


def run_bill_run(args: argparse.Namespace) -> int:
    """Run the billing job and print what it billed."""
    from contextlib import nullcontext

    from effigate_engine.cluster.billing_jobs import bill_run
    from effigate_engine.cluster.connect import open_cluster
    from effigate_engine.cluster.tasks import progress_bar

    day = _day(args.period)
    where = open_cluster(args.cluster) if args.cluster else nullcontext(None)
    with where as client, progress_bar("task", "bill-run") as progress:
        run = bill_run(client, args.dataset, day, out=args.out, progress=progress, tasks=args.tasks)
    print(f"bill run for {day.isoformat()}: {run.batches} tasks")
    for t in run.tenants:
        print(
            f"tenant {t.tenant}: {t.invoices} invoices, {t.lines} lines, total {_money(t.totals)}"
        )
    print(f"all tenants: total {_money(run.totals)}")
    print(f"invoices: {run.invoices}")
    print(f"lines: {run.lines}")
    return 0
