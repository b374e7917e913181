"""Synthetic datasets for ``bench_scaleout.py``: tickets (``bench_sla``'s generator) and time
logs written in the dataset layout (``effigate_engine.datasets``), with each tenant's
catalog."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_sla  # noqa: E402

from effigate_engine.datasets import layout  # noqa: E402
from effigate_engine.datasets.catalog import PolicySource, TenantCatalog  # noqa: E402

DAY = 86_400
#: The zones whose calendars the bench policies use (``bench_sla.policies``).
ZONES = {zone for zone, _ in bench_sla.ZONES[:3]}


def sla_catalog(tenant: str) -> TenantCatalog:
    """The bench calendars of the policies' zones and the three bench policies."""
    calendars = {
        c.name: c.to_json()
        for c in bench_sla.calendars()
        if c.name.split("/")[0] in ZONES or "/".join(c.name.split("/")[:2]) in ZONES
    }
    policies = [
        PolicySource(i + 1, name, 1, p.to_json())
        for i, (name, p) in enumerate(sorted(bench_sla.policies().items()))
    ]
    return TenantCatalog(
        tenant=tenant,
        as_of=datetime.now(UTC).replace(microsecond=0),
        calendars=calendars,
        calendar_versions={name: 1 for name in calendars},
        policies=policies,
    )


def write_tickets(url: str, tenant: str, n: int, months: int, chunk: int = 1_000_000) -> int:
    """``n`` tickets of ``tenant`` created over the ``months`` months before the bench instant,
    written one part per month; returns the number of parts."""
    now = int(bench_sla.NOW.timestamp())
    span = months * 30 * DAY
    by_month: dict[str, list[pa.Table]] = {}
    for k, lo in enumerate(range(0, n, chunk)):
        size = min(chunk, n - lo)
        table = bench_sla.tickets(size, now - span, span, seed=11 + k)
        ids = pa.array([f"{tenant[:8]}-{lo + i}" for i in range(size)], pa.string())
        table = table.set_column(0, "ticket_id", ids)
        table = table.append_column("tenant_id", pa.array([tenant] * size, pa.string()))
        for month, part in layout.split_by(table, layout.month_of(table["created_at"])):
            by_month.setdefault(month, []).append(part)
    _, root = layout.filesystem(url)
    for month, pieces in by_month.items():
        layout.write_table(
            url, layout.part_path(root, layout.TICKETS, tenant, month), pa.concat_tables(pieces)
        )
    return len(by_month)


def write_logs(url: str, tenant: str, contracts: int, logs: int, seed: int = 7) -> None:
    """``contracts`` contracts of every type (``tests/cluster/billing_dataset``'s, in stored
    form) with ``logs`` time logs between them, January to mid-April 2026, one part per
    contract, and the tenant's catalog."""
    import numpy as np

    from effigate_engine.datasets.catalog import TenantCatalog
    from effigate_engine.ratecard.schemas import TIME_LOGS
    from tests.cluster import billing_dataset as b

    rng = np.random.default_rng(seed)
    _, root = layout.filesystem(url)
    sources = [b.contract_source(tenant, 0, k, "USD") for k in range(contracts)]
    end = int(datetime(2026, 4, 14, tzinfo=UTC).timestamp())
    per = logs // contracts
    ts = pa.timestamp("s", tz="UTC")

    def pick(values: list[str], n: int, p: list[float] | None = None) -> pa.Array:
        codes = rng.choice(len(values), n, p=p).astype(np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(values))

    for k, s in enumerate(sources):
        n = per + (1 if k < logs - per * contracts else 0)
        opens = datetime.combine(max(s.row["starts_on"], date(2026, 1, 3)), time(), UTC)
        first = int(opens.timestamp()) + 86_400  # past local midnight in any zone
        if first >= end:
            continue  # starts after the logged months: no logs
        start = first + rng.integers(0, end - first, n) // 300 * 300
        length = rng.choice([900, 1_800, 3_600, 7_200, 14_400], n)
        table = pa.table(
            {
                "log_id": pa.array(np.char.add(f"L{s.id}-", np.arange(n).astype(str))),
                "contract_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, np.int32)), pa.array([s.id])
                ),
                "ticket_id": pa.nulls(n, pa.string()),
                "task_id": pa.nulls(n, pa.string()),
                "agent_id": pick(["ana", "bo", "chen"], n).cast(pa.string()),
                "support_level": pick(["L1", "L2", "L3"], n),
                "job_type": pick(["support", "network", "devops"], n),
                "priority": pick(["CRITICAL", "HIGH", "MEDIUM", "LOW"], n, [0.1, 0.2, 0.4, 0.3]),
                "start": pa.array(start, ts),
                "end": pa.array(start + length, ts),
                "billable_type": pick(
                    ["BILLABLE", "NON_BILLABLE", "WARRANTY"], n, [0.85, 0.1, 0.05]
                ),
                "approved": pa.array(rng.random(n) < 0.95),
            }
        ).cast(TIME_LOGS)
        layout.write_table(url, layout.part_path(root, layout.TIME_LOGS, tenant, s.id), table)
    TenantCatalog(
        tenant,
        b.AS_OF,
        dict(b.CALENDARS),
        {name: 1 for name in b.CALENDARS},
        [],
        sources,
        [{"name": "GST", "rate_ppm": 100_000}],
    ).save(url)
    layout.write_manifest(url, {"as_of": b.AS_OF.isoformat(), "tenants": 1})
