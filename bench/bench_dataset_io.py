"""Dataset export and load-back costs: the store → Parquet dataset → store round trip of the
scale-out jobs (``docs/scale-out.md``).

Run: ``python bench/bench_dataset_io.py [--tickets 200000] [--logs 400000] [--repeat 2]``.
Uses ``EFFIGATE_TEST_DSN``, else a server on 127.0.0.1:5432, else the embedded server; works
in a throw-away database (``bench_store.fresh_database``) dropped at the end, even on failure.

The database holds one tenant with one calendar and one SLA policy (the dataset tests'
``office`` hours and ``standard`` policy), four active contracts under that policy, the
tickets (``bench_store``'s generator spread over the contracts, 2026) with their events —
responded, half resolved, a fifth paused and resumed, a tenth of the resolved reopened and
resolved again, some paused still — and the time logs (``bench_store``'s generator) spread
over the contracts; all bulk-ingested through ADBC (``store.bulk.ingest_adbc``, as the other
store benches; the service's SLA schedule is not needed by an export and not written).

Then, in a temporary folder:

1. ``service.datasets.export_dataset`` (best of ``--repeat``; each re-export replaces the
   files), split into its steps by timing the functions it calls: tickets read (SQL),
   folded (Python) and written; time logs read (ADBC), converted and written; the catalog,
   breaches, manifest and pruning are the rest;
2. the SLA job in this process over the dataset (``cluster.sla_jobs.recompute(None, …)``);
3. ``service.datasets.load_sla_results`` twice (the second load is the idempotent rerun of
   the same results), split into reading the parts, checking them, upserting the standings and
   inserting the breaches; after each load ``sla_standings`` must hold exactly the result rows.

Figures are seconds of wall time, rows per second and microseconds per row (to extrapolate
linearly; the export holds one tenant's tickets and logs in memory, see the peak RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench_store import (  # noqa: E402
    HOUR_US,
    drop_database,
    fresh_database,
    service_dsn,
    tickets_table,
    time_logs_table,
)

from effigate_engine.cluster import sla_jobs  # noqa: E402
from effigate_engine.datasets import layout  # noqa: E402
from effigate_engine.service import catalog, contracts, dataset_results, datasets  # noqa: E402
from effigate_engine.service import tickets as service_tickets  # noqa: E402
from effigate_engine.service.context import Principal  # noqa: E402
from effigate_engine.store import standings as standings_store  # noqa: E402
from effigate_engine.store import tickets as stored_tickets  # noqa: E402
from effigate_engine.store.batches import (  # noqa: E402
    STORED_INSTANT,
    STORED_TICKET_EVENTS,
    STORED_TICKETS,
    STORED_TIME_LOGS,
)
from effigate_engine.store.bulk import connect_adbc, ingest_adbc  # noqa: E402
from effigate_engine.store.database import Store  # noqa: E402
from effigate_engine.store.dsn import with_database  # noqa: E402
from effigate_engine.store.settings import resolve_test_dsn  # noqa: E402
from tests.datasets.support import CARD, UTC_HOURS, policy  # noqa: E402

#: The instant the dataset is exported at: after every generated ticket and event (2026).
AS_OF = datetime(2027, 1, 15, tzinfo=UTC)
#: Contracts the tickets and logs are spread over.
CONTRACTS = 4
MINUTE_US = 60 * 1_000_000


def ticket_events(tickets: pa.Table) -> pa.Table:
    """Events of ``bench_store.tickets_table`` tickets (their stored times): every ticket but
    one in seven responded; the resolved half resolved; one in five paused 10 minutes after
    its response and resumed 30 minutes later; one in ten reopened 2 h after resolving and
    resolved again 4 h later; one open ticket in ten paused still."""
    n = tickets.num_rows
    index = np.arange(n)
    ids = np.array(tickets.column("id").to_pylist(), dtype=object)
    response = tickets.column("first_response_at").cast(pa.int64()).to_numpy()
    resolved = (
        tickets.column("resolved_at").cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    )
    is_resolved = index % 2 == 0
    picks = [
        ("r", "RESPONDED", index % 7 != 6, response),
        ("p", "PAUSED", index % 5 == 0, response + 10 * MINUTE_US),
        ("u", "RESUMED", index % 5 == 0, response + 40 * MINUTE_US),
        ("x", "RESOLVED", is_resolved, resolved),
        ("o", "REOPENED", is_resolved & (index % 10 == 0), resolved + 2 * HOUR_US),
        ("y", "RESOLVED", is_resolved & (index % 10 == 0), resolved + 6 * HOUR_US),
        ("q", "PAUSED", index % 10 == 3, response + 20 * MINUTE_US),
    ]
    parts = []
    for suffix, kind, mask, at in picks:
        chosen = ids[mask]
        parts.append(
            pa.table(
                {
                    "id": pa.array([f"{t}-{suffix}" for t in chosen], pa.string()),
                    "ticket_id": pa.array(chosen, pa.string()),
                    "kind": pa.array([kind] * len(chosen), pa.string()),
                    "occurred_at": pa.array(at[mask], pa.int64()).cast(STORED_INSTANT),
                    "actor": pa.nulls(len(chosen), pa.string()),
                    "detail": pa.nulls(len(chosen), pa.string()),
                }
            )
        )
    return pa.concat_tables(parts)


def spread(table: pa.Table, contract_ids: list[int]) -> pa.Table:
    """``table`` with its ``contract_id`` cycling over ``contract_ids``."""
    values = np.array(contract_ids, dtype=np.int64)[np.arange(table.num_rows) % len(contract_ids)]
    at = table.schema.get_field_index("contract_id")
    return table.set_column(at, "contract_id", pa.array(values))


async def catalogued(
    store: Store, principal: Principal, owner_dsn: str, client: int, contract: int
) -> list[int]:
    """The tenant's calendar and policy (the dataset tests' ``office`` and ``standard``), the
    bench database's contract put under them, and ``CONTRACTS - 1`` more active hourly
    contracts under them (through the service); the contract ids."""
    cal = await catalog.create_calendar(store, principal, "office", UTC_HOURS)
    standard = await catalog.create_policy(store, principal, "standard", cal.id, policy("1h", "8h"))
    conn = await asyncpg.connect(owner_dsn)
    try:  # as bench_events attaches its policy to the bench database's contract
        await conn.execute(
            "UPDATE contracts SET calendar_id = $1, sla_policy_id = $2 WHERE id = $3",
            cal.id,
            standard.id,
            contract,
        )
    finally:
        await conn.close()
    card = await contracts.create_rate_card(store, principal, "standard")
    await contracts.publish_rate_card(store, principal, card, CARD)
    made = [contract]
    for _ in range(CONTRACTS - 1):
        record = await contracts.create_contract(
            store,
            principal,
            client_id=client,
            contract_type="HOURLY",
            currency="USD",
            starts_on=date(2026, 1, 1),
            calendar_id=cal.id,
            sla_policy_id=standard.id,
            rate_card_id=card,
        )
        made.append((await contracts.activate_contract(store, principal, record.id)).id)
    return made


def ingest(
    app_dsn: str, principal: Principal, n_tickets: int, n_logs: int, ids: list[int], client: int
) -> dict[str, float]:
    """Bulk-ingest the tickets, their events and the time logs; the seconds of each."""
    tickets = spread(tickets_table(n_tickets, client, ids[0]), ids)
    events = ticket_events(tickets)
    logs = spread(time_logs_table(n_logs, ids[0]), ids)
    seconds = {}
    conn = connect_adbc(app_dsn)
    try:
        for label, spec, table in (
            ("tickets", STORED_TICKETS, tickets),
            ("events", STORED_TICKET_EVENTS, events),
            ("time logs", STORED_TIME_LOGS, logs),
        ):
            begin = time.perf_counter()
            result = ingest_adbc(conn, spec, principal.key, table)
            seconds[label] = time.perf_counter() - begin
            assert result.inserted == table.num_rows, (label, result)
            seconds[f"{label} rows"] = table.num_rows
    finally:
        conn.close()
    return seconds


@contextmanager
def stopwatch(
    targets: list[tuple[object, str, Callable[..., str]]], seconds: dict[str, float]
) -> Iterator[None]:
    """Time every call of each ``(owner, attribute, label_of(args))`` target into
    ``seconds[label]`` while the block runs (the attributes are put back after it)."""
    saved = []
    for owner, name, label_of in targets:
        fn = getattr(owner, name)
        saved.append((owner, name, fn))
        if asyncio.iscoroutinefunction(fn):

            @wraps(fn)
            async def timed_async(*args: Any, _fn: Any = fn, _label: Any = label_of, **kw: Any):
                begin = time.perf_counter()
                try:
                    return await _fn(*args, **kw)
                finally:
                    label = _label(args)
                    seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - begin

            setattr(owner, name, timed_async)
        else:

            @wraps(fn)
            def timed_sync(*args: Any, _fn: Any = fn, _label: Any = label_of, **kw: Any):
                begin = time.perf_counter()
                try:
                    return _fn(*args, **kw)
                finally:
                    label = _label(args)
                    seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - begin

            setattr(owner, name, timed_sync)
    try:
        yield
    finally:
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)


def _label(text: str) -> Callable[..., str]:
    """A label that does not depend on the call's arguments."""
    return lambda args: text


def _written(args: tuple[Any, ...]) -> str:
    """The export step a ``layout.write_table(url, path, table)`` call belongs to."""
    path = str(args[1])
    if f"/{layout.TICKETS}/" in path:
        return "tickets: write parts"
    if f"/{layout.TIME_LOGS}/" in path:
        return "time logs: write parts"
    return "catalog, breaches, manifest, rest"


EXPORT_STEPS = [
    (stored_tickets, "load_histories", _label("tickets: read (SQL)")),
    (service_tickets, "timelines_table", _label("tickets: fold (Python)")),
    (datasets, "with_policies", _label("tickets: fold (Python)")),
    (layout, "write_table", _written),
    (datasets, "read_arrow", _label("time logs: read (ADBC)")),
    (datasets, "time_logs_table", _label("time logs: convert")),
]
LOAD_STEPS = [
    (dataset_results, "_read", _label("read parts")),
    (dataset_results, "standings_of", _label("check + standing rows")),
    (dataset_results, "breach_rows", _label("breach rows")),
    (standings_store, "upsert_standings", _label("upsert standings (SQL)")),
    (dataset_results, "insert_breaches", _label("insert breaches (SQL)")),
]


def with_rest(seconds: dict[str, float], total: float, rest: str) -> dict[str, float]:
    """``seconds`` with ``rest`` holding the part of ``total`` no step accounts for."""
    out = dict(seconds)
    out[rest] = out.get(rest, 0.0) + total - sum(seconds.values())
    return out


def share(seconds: dict[str, float], prefix: str) -> float:
    """Seconds of the steps whose label starts with ``prefix``."""
    return sum(s for label, s in seconds.items() if label.startswith(prefix))


def print_steps(seconds: dict[str, float], total: float) -> None:
    """Each step's seconds and share of ``total`` (seconds)."""
    for label, s in seconds.items():
        print(f"    {label:<36}{s:>9.2f} s {100 * s / total:>5.1f} %")


def folded(url: str) -> str:
    """What the exported tickets hold of their histories (read after the timed exports)."""
    table = pq.read_table(Path(url) / layout.TICKETS, columns=["resolved_at", "pauses"])
    pauses = pc.list_value_length(table.column("pauses")).fill_null(0).to_numpy()
    resolved = table.num_rows - table.column("resolved_at").null_count
    return (
        f"folded histories: {resolved:,} resolved, {int((pauses > 0).sum()):,} with pauses"
        f" ({int(pauses.sum()):,} pauses, reopenings included), {table.num_rows - resolved:,} open"
    )


async def standings_count(owner_dsn: str) -> int:
    """Rows in ``sla_standings`` (every tenant's: the owner's connection)."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sla_standings"))
    finally:
        await conn.close()


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(n_tickets: int, n_logs: int, repeat: int) -> None:
    """Seed a fresh database, measure the export and the load-back, drop the database."""
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    admin = resolve_test_dsn()
    name, key, client, contract = await fresh_database(admin, "dataset_io")
    owner = with_database(admin, name)
    try:
        store = await Store.open(service_dsn(admin, name), adbc_connections=1)
        try:
            principal = Principal(key.tenant_id, actor="bench", token=key.token)
            ids = await catalogued(store, principal, owner, client, contract)
            seeded = ingest(service_dsn(admin, name), principal, n_tickets, n_logs, ids, client)
            print(
                f"server: {admin.split('@')[-1]}  database: {name}\n"
                f"seeded {seeded['tickets rows']:,} tickets ({seeded['tickets']:.1f} s),"
                f" {seeded['events rows']:,} events ({seeded['events']:.1f} s),"
                f" {seeded['time logs rows']:,} time logs ({seeded['time logs']:.1f} s)"
                f" over {len(ids)} contracts, one tenant"
            )
            with tempfile.TemporaryDirectory(prefix="effigate-io-") as folder:
                url = str(Path(folder) / "dataset")
                await measure(store, principal, owner, url, repeat)
        finally:
            await store.close()
    finally:
        await drop_database(admin, name)


async def measure(store: Store, principal: Principal, owner: str, url: str, repeat: int) -> None:
    """The export (best of ``repeat``), the SLA job and the two loads; prints the figures."""
    runs = []
    for _ in range(repeat):
        steps: dict[str, float] = {}
        with stopwatch(EXPORT_STEPS, steps):
            begin = time.perf_counter()
            summary = await datasets.export_dataset(store, url, tenants=[principal], as_of=AS_OF)
            total = time.perf_counter() - begin
        runs.append((total, with_rest(steps, total, "catalog, breaches, manifest, rest"), summary))
    totals = [r[0] for r in runs]
    assert all(r[2].counts == runs[0][2].counts for r in runs), [r[2].counts for r in runs]
    export_s, steps, summary = min(runs, key=lambda r: r[0])
    tickets, logs = summary.counts["tickets"], summary.counts["time_logs"]
    files = sum(1 for _ in Path(url).rglob("*.parquet"))
    # a re-export replaces every part: one file per part and the breaches, never a second copy
    c = summary.counts
    assert files == c["ticket_parts"] + c["time_log_parts"] + 1, (files, c)
    print(f"\n{summary.line()}")
    print(
        f"export, best of {repeat} ({', '.join(f'{t:.2f}' for t in totals)} s):"
        f" {export_s:.2f} s, {tickets / export_s:,.0f} tickets/s, {logs / export_s:,.0f}"
        f" logs/s (both in the same seconds); {files} Parquet files,"
        f" {sum(f.stat().st_size for f in Path(url).rglob('*')) / 2**20:.1f} MiB"
    )
    print_steps(steps, export_s)
    ticket_s, log_s = share(steps, "tickets"), share(steps, "time logs")
    print(
        f"  tickets {ticket_s:.2f} s ({tickets / ticket_s:,.0f} tickets/s),"
        f" time logs {log_s:.2f} s ({logs / log_s:,.0f} logs/s),"
        f" catalog and rest {export_s - ticket_s - log_s:.2f} s;"
        f" peak RSS so far {peak_rss_mib():,.0f} MiB"
    )

    print(f"  {folded(url)}")

    begin = time.perf_counter()
    job = sla_jobs.recompute(None, url, now=AS_OF)
    job_s = time.perf_counter() - begin
    parts = dataset_results.result_parts(url, "sla")
    rows = sum(pq.ParquetFile(p.path).metadata.num_rows for p in parts)
    failures = job.failures.num_rows
    print(
        f"\nSLA job in this process: {job_s:.2f} s, {rows:,} result rows in {len(parts)}"
        f" parts ({rows / job_s:,.0f} rows/s), {failures} tickets left out"
    )
    if failures:
        print(f"  first left out: {job.failures.slice(0, 3).to_pylist()}")
    assert rows > 0

    loads = []
    for label in ("first load", "second load (same results)"):
        steps = {}
        with stopwatch(LOAD_STEPS, steps):
            begin = time.perf_counter()
            loaded = await datasets.load_sla_results(store, url, tenants=[principal])
            seconds = time.perf_counter() - begin
        stored = await standings_count(owner)
        assert loaded.standings == rows, (loaded, rows)
        assert stored == rows, f"{label}: sla_standings holds {stored:,} rows, results {rows:,}"
        loads.append((label, seconds, with_rest(steps, seconds, "transactions, rest"), loaded))
    print()
    for label, seconds, steps, loaded in loads:
        print(
            f"load-back, {label}: {seconds:.2f} s, {rows / seconds:,.0f} result rows/s;"
            f" sla_standings holds {rows:,} rows (= result rows)\n  {loaded.line()}"
        )
        print_steps(steps, seconds)

    first_s = loads[0][1]
    print("\nper row (linear; the 10M/20M column multiplies it out):")
    print(
        f"  export, per ticket (ticket steps)   {1e6 * ticket_s / tickets:>8.1f} µs"
        f"   10M tickets: {1e7 * ticket_s / tickets / 60:>7.1f} min"
    )
    print(
        f"  export, per time log (log steps)    {1e6 * log_s / logs:>8.1f} µs"
        f"   20M logs:    {2e7 * log_s / logs / 60:>7.1f} min"
    )
    print(
        f"  export, whole, per ticket + its logs{1e6 * export_s / tickets:>8.1f} µs"
        f"   10M + 20M:   {1e7 * export_s / tickets / 60:>7.1f} min"
        f" (at this {logs / tickets:.1f} logs per ticket)"
    )
    per_result = first_s / rows
    print(
        f"  load-back, per result row           {1e6 * per_result:>8.1f} µs"
        f"   {2e7:,.0f} rows (10M tickets x 2 metrics): {2e7 * per_result / 60:.1f} min"
    )
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def main() -> None:
    """Parse the sizes and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200_000, help="tickets to export")
    parser.add_argument("--logs", type=int, default=400_000, help="time logs to export")
    parser.add_argument("--repeat", type=int, default=2, help="exports to take the best of")
    args = parser.parse_args()
    asyncio.run(run(args.tickets, args.logs, max(1, args.repeat)))


if __name__ == "__main__":
    main()
