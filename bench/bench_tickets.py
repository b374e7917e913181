"""Bulk ticket ingest with and without the descriptive columns (schema 12).

Ingests ``--rows`` new tickets through ADBC (the service's path) into a fresh database, once
with the columns of schema 11 only and once with every descriptive column filled (support
level, job type, after hours, channel, subject, requester, queue, assignee, asset, and 0-3
tags), already in normal form or with about half of the values and tag lists not (so the
normalisation does work), each ``--rounds`` times alternately, and prints rows per second
and the seconds of each step (``prepare`` holds the checks and normalisation).

    python bench/bench_tickets.py --rows 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import pyarrow as pa
from bench_store import drop_database, fresh_database, load_average, service_dsn
from bench_store import tickets_table as base_tickets

from effigate_engine.store.batches import STORED_TICKETS
from effigate_engine.store.bulk import connect_adbc, ingest_adbc
from effigate_engine.store.settings import resolve_test_dsn


def described(table: pa.Table, seed: int = 5, normal: bool = False) -> pa.Table:
    """``table`` with every descriptive ticket column (unless ``normal``, about half of the
    values and of the tag lists not in normal form)."""
    rows = table.num_rows
    rng = np.random.default_rng(seed)

    def pick(values: list[str | None]) -> pa.Array:
        return pa.array(np.array(values, dtype=object)[rng.integers(0, len(values), rows)])

    tags = [
        sorted(set(rng.choice(["vip", "outage", "onsite", "printer"], size=k)))
        for k in rng.integers(0, 4, rows)
    ]
    columns = {
        "support_level": pick(["L1", "L2" if normal else "l2", "L3", "SA", None]),
        "job_type": pick(["network", "database" if normal else " database ", "endpoint", None]),
        "after_hours": pa.array(rng.integers(0, 2, rows).astype(bool)),
        "channel": pick(["EMAIL", "PORTAL" if normal else "portal", "PHONE", "CHAT", None]),
        "subject": pick(["VPN down", "Printer jam", "New starter laptop", None]),
        "requester": pick(["ana@acme.example", "bo@it.acme.example", None]),
        "queue": pick(["triage", "network", None]),
        "assignee": pick(["agent-1", "agent-2", None]),
        "asset": pick(["PC-0042", None]),
        "tags": pa.array([t if normal else t[::-1] for t in tags], pa.list_(pa.string())),
    }
    for name, values in columns.items():
        table = table.append_column(name, values)
    return table


async def run(rows: int, rounds: int) -> None:
    admin = resolve_test_dsn()
    print(f"load average: {' '.join(load_average())}; {rows:,} new tickets per ingest")
    forms = {
        "schema 11 columns": lambda t: t,
        "every column, normal form": lambda t: described(t, normal=True),
        "every column, half not": described,
    }
    for n in range(rounds):
        for label, form in forms.items():
            name, key, client, contract = await fresh_database(admin, f"tk{n}")
            try:
                table = form(base_tickets(rows, client, contract))
                conn = connect_adbc(service_dsn(admin, name))
                try:
                    steps: dict[str, float] = {}
                    start = time.perf_counter()
                    result = ingest_adbc(conn, STORED_TICKETS, key, table, steps)
                    seconds = time.perf_counter() - start
                finally:
                    conn.close()
                assert result.inserted == rows
                shown = ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
                print(f"round {n + 1} {label:<27} {rows / seconds:>10,.0f} rows/s  ({shown})")
            finally:
                await drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.rounds))


if __name__ == "__main__":
    main()
