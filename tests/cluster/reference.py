"""The single-process runs the distributed jobs must equal: one tenant's tickets (the
concatenation of its parts) evaluated in one batch, and the reports over that evaluation."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine import sla
from effigate_engine.cluster.parts import PROPOSED
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import Compiled, compiled, load_catalog
from effigate_engine.sla import BREACH_RECORDS, SLA_RESULTS, Policy
from effigate_engine.sla.screening import Screened, evaluate_rows

#: What the SLA job writes per part.
RESULT_ROWS = SLA_RESULTS.append(pa.field("tenant_id", pa.string()))
SCHEMAS = {"sla": RESULT_ROWS, "sla_breaches": BREACH_RECORDS}


@dataclass(frozen=True)
class Reference:
    screened: Screened
    results: pa.Table
    hit_rates: pa.Table
    percentiles: pa.Table


def tenant_tickets(url: str, tenant: str) -> pa.Table:
    parts = layout.parts(url, layout.TICKETS, {tenant})
    return pa.concat_tables([layout.read_part(p, url) for p in parts])


def catalog_of(url: str, tenant: str) -> Compiled:
    return compiled(load_catalog(url, tenant))


def sla_reference(
    url: str,
    tenant: str,
    now: datetime,
    policy: str | None = None,
    by: Sequence[str] = ("priority",),
    period: str | None = None,
    quantiles: Sequence[float] = (0.5, 0.75, 0.95),
) -> Reference:
    made = catalog_of(url, tenant)
    policies = made.policies if policy is None else made.policy(policy)
    tickets = tenant_tickets(url, tenant)
    screened = evaluate_rows(tickets, policies, made.calendars, now)
    evaluation = screened.evaluation
    # the rows kept evaluate in one batch exactly as evaluate_rows evaluated them
    kept = tickets.take(pa.array(screened.kept))
    assert plain(sla.evaluate(kept, policies, made.calendars, now).results).equals(
        plain(evaluation.results)
    )
    return Reference(
        screened,
        evaluation.results,
        sla.hit_rates(evaluation, list(by), period),
        sla.percentiles(evaluation, list(by), quantiles, period),
    )


def replay_reference(
    url: str,
    tenant: str,
    now: datetime,
    current: str | None,
    proposed: str | dict[str, Any],
    left_out: set[str],
    by: Sequence[str] = ("priority",),
    period: str | None = None,
) -> pa.Table:
    """``sla.replay`` over the tenant's tickets without those either policy cannot evaluate."""
    made = catalog_of(url, tenant)
    tickets = tenant_tickets(url, tenant)
    keep = pc.invert(pc.is_in(tickets.column("ticket_id"), pa.array(sorted(left_out))))
    before = made.policies if current is None else made.policy(current)
    if isinstance(proposed, dict):
        after = Policy.from_json({"name": PROPOSED, **proposed})
    else:
        after = made.policy(proposed)
    return sla.replay(tickets.filter(keep), before, after, made.calendars, now, list(by), period)


def plain(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns decoded (parts' dictionaries differ) in one chunk."""
    fields = [
        pa.field(f.name, f.type.value_type, f.nullable) if pa.types.is_dictionary(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields)).combine_chunks()


def by_ticket(table: pa.Table) -> pa.Table:
    """Rows sorted by (ticket_id, metric)."""
    table = plain(table)
    order = pc.sort_indices(
        pa.table({"t": table.column("ticket_id"), "m": table.column("metric")}),
        sort_keys=[("t", "ascending"), ("m", "ascending")],
    )
    return table.take(order)


def of_tenant(table: pa.Table, tenant: str) -> pa.Table:
    """A combined table's rows of one tenant, without the ``tenant_id`` column."""
    rows = table.filter(pc.equal(table.column("tenant_id"), tenant))
    return rows.drop_columns(["tenant_id"]).combine_chunks()


def result_files(out: str, job: str) -> list[str]:
    """Every file under ``<out>/results/<job>/`` (relative paths, sorted)."""
    fs, root = layout.filesystem(out)
    base = posixpath.join(root, layout.RESULTS, job)
    return sorted(posixpath.relpath(p, base) for p in fs.find(base))


def read_results(out: str, job: str, tenant: str, schema: pa.Schema) -> pa.Table:
    """The rows of every part file of ``job`` for ``tenant`` (cast to ``schema``: Parquet
    keeps instants in milliseconds)."""
    fs, root = layout.filesystem(out)
    base = posixpath.join(root, layout.RESULTS, job, f"tenant={tenant}")
    tables = [pq.read_table(p) for p in sorted(fs.find(base)) if p.endswith(layout.PART_FILE)]
    return pa.concat_tables(tables).cast(schema)
