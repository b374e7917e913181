"""Scale-out on Dask: the SLA recompute and the billing run over a dataset, on a local cluster
of 1 and of 2 worker processes, in the same run.

Writes (once, kept between runs under ``--dir``) a dataset of ``--tickets`` tickets (one
tenant, one part per month over two years, ``bench_sla``'s generator: three policies, fifteen
calendars, two pauses per ticket on average) and one of ``--logs`` time logs over
``--contracts`` contracts of every type. Then, for 1 and 2 workers alternately (``--rounds``
rounds; a fresh cluster each round): the SLA recompute (evaluate every part at one instant,
write its results and breach records, combine hit rates and exact percentiles) and the billing
run (classify, draw down and assemble every contract's invoice, write lines and invoices). The
first job of a cluster is "cold" (each worker loads and compiles the catalog); the best of the
later ones is "warm". Prints seconds, rows/s and the 2-worker speed-up, and the per-part cost
that extrapolates to a larger cluster.

    python bench/bench_scaleout.py [--tickets 10000000] [--logs 20000000] [--rounds 2]
                                   [--dir /tmp/effigate-scaleout]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_sla  # noqa: E402
import scaleout_data  # noqa: E402

from effigate_engine.cluster.billing_jobs import bill_run  # noqa: E402
from effigate_engine.cluster.connect import open_cluster  # noqa: E402
from effigate_engine.cluster.sla_jobs import recompute  # noqa: E402
from effigate_engine.datasets import layout  # noqa: E402

TENANT = "00000000-0000-4000-8000-0000000000aa"
RUN_DAY = date(2026, 3, 31)


def dataset(folder: Path, stamp: dict, make) -> str:
    """``folder`` holding the dataset described by ``stamp``, written by ``make`` when absent
    or different."""
    marker = folder / "bench-stamp.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return str(folder)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    started = time.perf_counter()
    make(str(folder))
    marker.write_text(json.dumps(stamp))
    print(f"  wrote {folder} in {time.perf_counter() - started:.0f} s")
    return str(folder)


def sla_dataset(root: Path, tickets: int) -> str:
    def make(url: str) -> None:
        scaleout_data.sla_catalog(TENANT).save(url)
        scaleout_data.write_tickets(url, TENANT, tickets, 24)

    return dataset(root / f"sla-{tickets}", {"tickets": tickets, "months": 24}, make)


def billing_dataset(root: Path, contracts: int, logs: int) -> str:
    def make(url: str) -> None:
        scaleout_data.write_logs(url, TENANT, contracts, logs)

    return dataset(root / f"bill-{contracts}-{logs}", {"contracts": contracts, "logs": logs}, make)


def timed(job, client) -> float:
    started = time.perf_counter()
    job(client)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000_000)
    parser.add_argument("--logs", type=int, default=20_000_000)
    parser.add_argument("--contracts", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warm", type=int, default=2, help="warm jobs per cluster and job")
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()) / "effigate-scaleout"
    )
    parser.add_argument("--skip-billing", action="store_true")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    print("datasets:")
    sla_url = sla_dataset(args.dir, args.tickets)
    bill_url = None if args.skip_billing else billing_dataset(args.dir, args.contracts, args.logs)
    parts = len(layout.parts(sla_url, layout.TICKETS))
    print(f"  {args.tickets:,} tickets in {parts} parts; ", end="")
    print(
        "no billing"
        if bill_url is None
        else f"{args.logs:,} logs over {args.contracts:,} contracts"
    )
    out = tempfile.mkdtemp(prefix="effigate-scaleout-out-")

    def sla_job(client) -> None:
        recompute(client, sla_url, now=bench_sla.NOW, out=out)

    def bill_job(client) -> None:
        bill_run(client, bill_url, RUN_DAY, out=os.path.join(out, "bill"))

    jobs = {"sla": sla_job} if bill_url is None else {"sla": sla_job, "bill-run": bill_job}
    cold: dict[tuple[str, int], list[float]] = {}
    warm: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for workers in (1, 2):
            with open_cluster(f"local:{workers}") as client:
                for name, job in jobs.items():
                    cold.setdefault((name, workers), []).append(timed(job, client))
                    for _ in range(args.warm):
                        warm.setdefault((name, workers), []).append(timed(job, client))

    print(f"\nload average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sizes = {"sla": (args.tickets, "tickets"), "bill-run": (args.logs, "logs")}
    for name in jobs:
        rows, unit = sizes[name]
        print(f"\n{name} ({rows:,} {unit}):")
        for kind, table in (("cold", cold), ("warm", warm)):
            one, two = min(table[(name, 1)]), min(table[(name, 2)])
            print(
                f"  {kind}: 1 worker {one:6.1f} s ({rows / one:>12,.0f} {unit}/s)   "
                f"2 workers {two:6.1f} s ({rows / two:>12,.0f} {unit}/s)   "
                f"speed-up {one / two:.2f}x"
            )
        one = min(warm[(name, 1)])
        n_parts = parts if name == "sla" else args.contracts
        print(f"  per part (1 worker, warm): {one / n_parts * 1000:.0f} ms over {n_parts} parts")


if __name__ == "__main__":
    main()
