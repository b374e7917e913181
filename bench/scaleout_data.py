"""Synthetic datasets for ``bench_scaleout.py``: tickets (``bench_sla``'s generator) and time
logs written in the dataset layout (``effigate_engine.datasets``), with each tenant's
catalog."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
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
