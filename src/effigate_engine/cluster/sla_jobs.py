"""SLA evaluation / recompute of a dataset on a Dask cluster: one task per ticket part
(a tenant's month), the reports combined exactly.

Each task reads its part, evaluates it at ``now`` with
:func:`~effigate_engine.sla.screening.evaluate_rows` (a ticket the engine cannot evaluate is
left out and named, never failing the part) under each ticket's own policy (its ``policy``
column; null: the catalog's first) or one policy of the catalog, and writes, with fixed file
names (a retried task replaces its files, never adds a copy)::

    <out>/results/sla/tenant=<t>/month=<m>/part-0.parquet            SLA_RESULTS + tenant_id
    <out>/results/sla_breaches/tenant=<t>/month=<m>/part-0.parquet   BREACH_RECORDS
    <out>/results/sla_failures/tenant=<t>/month=<m>/part-0.parquet   REJECTED_ROWS (if any)

It returns counts only (:class:`PartOutcome`): results per (metric, status), hit counts per
group, and elapsed-value counts per group. The driver adds them
(:mod:`~effigate_engine.cluster.combine`): the hit rates and percentiles equal the
single-process :func:`~effigate_engine.sla.reports.hit_rates` / ``percentiles`` over the
tenant's tickets in one batch, per tenant (``tenant_id`` is the first key), and are written to
``<out>/hit_rates.parquet`` and ``<out>/percentiles.parquet``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.cluster import combine
from effigate_engine.cluster.parts import compiled_catalog, tenant_catalog, worker_address
from effigate_engine.cluster.tasks import Progress, run_parts
from effigate_engine.datasets import layout
from effigate_engine.datasets.layout import DatasetError, Part
from effigate_engine.errors import EffigateError
from effigate_engine.sla.breaches import breach_records
from effigate_engine.sla.evaluation import Evaluation
from effigate_engine.sla.reports import (
    HIT_COUNTS,
    check_quantiles,
    hit_counts,
    report_frame,
    report_keys,
    stopped,
    value_counts,
    with_period,
)
from effigate_engine.sla.screening import REJECTED_ROWS, evaluate_rows, unmatched_rows

RESULTS = "sla"
BREACHES = "sla_breaches"
FAILURES = "sla_failures"
HIT_RATES_FILE = "hit_rates.parquet"
PERCENTILES_FILE = "percentiles.parquet"
TENANT = "tenant_id"
#: Result counts per (tenant, metric, status).
COUNTS = pa.schema(
    [
        pa.field(TENANT, pa.string()),
        pa.field("metric", pa.string()),
        pa.field("status", pa.string()),
        pa.field("count", pa.int64()),
    ]
)
#: Rejected tickets of a job: the part's tenant and month, then :data:`REJECTED_ROWS` (``row``
#: is the position in the part's file).
FAILURE_ROWS = pa.schema(
    [pa.field(TENANT, pa.string()), pa.field("month", pa.string()), *REJECTED_ROWS]
)


@dataclass(frozen=True)
class SlaSpec:
    """What every part's task needs: the dataset and output URLs, each tenant's catalog digest,
    the policy per tenant (its name in the tenant's catalog; ``None``: each ticket's own),
    ``now`` (epoch seconds), the report keys (``tenant_id`` first) and ``threads`` per part."""

    url: str
    out: str
    digests: dict[str, str]
    policies: dict[str, str] | None
    now: int
    keys: tuple[str, ...]
    period: str | None
    threads: int | None = 1
    slice_tickets: int = 1 << 16


@dataclass(frozen=True)
class PartOutcome:
    """What a part's task returns: its part, the worker that ran it, how many result rows it
    wrote, its counts (:data:`COUNTS`), hit counts and value counts (keys: ``tenant_id``
    first), and its rejected tickets (:data:`FAILURE_ROWS`)."""

    part: Part
    worker: str | None
    rows: int
    counts: pa.Table
    hits: pa.Table
    values: pa.Table
    failures: pa.Table


@dataclass
class SlaJob:
    """A finished SLA job: counts per (tenant, metric, status), the hit-rate and percentile
    tables (per tenant), the rejected tickets, each part's outcome, and where it wrote."""

    counts: pa.Table
    hit_rates: pa.Table
    percentiles: pa.Table
    failures: pa.Table
    parts: list[PartOutcome] = field(default_factory=list)
    out: str = ""


def result_path(out: str, job: str, tenant: str, month: str) -> str:
    """Path of a part's file of ``job`` (``sla``, ``sla_breaches``, …) under ``out``."""
    _, root = layout.filesystem(out)
    return layout.part_path(root, f"{layout.RESULTS}/{job}", tenant, month, "month")


def constant(value: str, n: int) -> pa.Array:
    """``value`` repeated ``n`` times (a string column), built from its buffers (one
    allocation for the offsets, one for the bytes)."""
    data = value.encode()
    if n * len(data) >= 1 << 31:
        return pa.repeat(pa.scalar(value, pa.large_string()), n).cast(pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(data))
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)]
    )


def part_failures(part: Part, rejected: pa.Table) -> pa.Table:
    """``rejected`` rows (:data:`REJECTED_ROWS`) of ``part`` as :data:`FAILURE_ROWS`."""
    n = rejected.num_rows
    columns = [constant(part.tenant, n), constant(part.key, n)]
    columns += [rejected.column(name) for name in REJECTED_ROWS.names]
    return pa.Table.from_arrays(columns, schema=FAILURE_ROWS)


def report_counts(
    evaluation: Evaluation, tenant: str, keys: Sequence[str], period: str | None
) -> tuple[pa.Table, pa.Table]:
    """An evaluation's hit counts and value counts for ``keys`` (``tenant_id`` first)."""
    attributes = [*keys, "created_at"] if period is not None else list(keys)
    frame = with_period(report_frame(evaluation, attributes), period)
    frame = frame.append_column(TENANT, constant(tenant, frame.num_rows))
    # only what the counts read, before the filter copies it
    frame = frame.select([*keys, "status", "stopped_at", "elapsed_seconds"])
    return hit_counts(frame, keys), value_counts(stopped(frame), keys)


def status_counts(results: pa.Table, tenant: str) -> pa.Table:
    """Result rows per (metric, status) of one tenant (:data:`COUNTS`)."""
    grouped = (
        pa.table(
            {
                "metric": pc.cast(results.column("metric"), pa.string()),
                "status": pc.cast(results.column("status"), pa.string()),
            }
        )
        .group_by(["metric", "status"], use_threads=False)
        .aggregate([([], "count_all")])
    )
    n = grouped.num_rows
    return pa.Table.from_arrays(
        [constant(tenant, n), grouped["metric"], grouped["status"], grouped["count_all"]],
        schema=COUNTS,
    )


def write_or_remove(out: str, path: str, table: pa.Table) -> None:
    """Write ``table`` to ``path``, or remove the file there when ``table`` is empty (a rerun
    that rejects nothing leaves no failures of an earlier run behind)."""
    if table.num_rows:
        layout.write_table(out, path, table)
        return
    fs, _ = layout.filesystem(out)
    if fs.exists(path):
        fs.rm(path)


#: Tickets a task evaluates at a time. A slice's columns stay in the core's cache through the
#: evaluation, the counts and the Parquet encoding: two workers on one machine then do not
#: compete for memory bandwidth (whole parts of 400,000 tickets ran a quarter slower side by
#: side than alone; ``bench/bench_scaleout.py``). Each slice is a row group of the part's
#: result file.
SLICE_TICKETS = 1 << 16


def checked_slice(slice_tickets: int) -> int:
    """``slice_tickets``, or an error naming it when it is not a positive count."""
    if isinstance(slice_tickets, bool) or not isinstance(slice_tickets, int) or slice_tickets < 1:
        raise EffigateError(f"slice_tickets: {slice_tickets!r} is not a positive count")
    return slice_tickets


def evaluate_part(part: Part, spec: SlaSpec) -> PartOutcome:
    """Evaluate one ticket part, a slice at a time, and write its results, breaches and
    failures (a task)."""
    tenant = part.tenant
    made = compiled_catalog(spec.url, tenant, spec.digests[tenant])
    policies = made.policies if spec.policies is None else made.policy(spec.policies[tenant])
    tickets = layout.read_part(part, spec.url)
    rows, statuses, hits, values, rejected = 0, [], [], [], []
    with (
        layout.PartWriter(spec.out, result_path(spec.out, RESULTS, tenant, part.key)) as out,
        layout.PartWriter(spec.out, result_path(spec.out, BREACHES, tenant, part.key)) as bad,
    ):
        for lo in range(0, max(tickets.num_rows, 1), spec.slice_tickets):
            piece = tickets.slice(lo, spec.slice_tickets)
            screened = evaluate_rows(
                piece, policies, made.calendars, spec.now, threads=spec.threads
            )
            evaluation = screened.evaluation
            results = evaluation.results
            out.write(results.append_column(TENANT, constant(tenant, results.num_rows)))
            bad.write(breach_records(evaluation))
            refused = pa.concat_tables([screened.rejected, unmatched_rows(screened)])
            rejected.append(refused.set_column(0, "row", pc.add(refused.column("row"), lo)))
            rows += results.num_rows
            statuses.append(status_counts(results, tenant))
            slice_hits, slice_values = report_counts(evaluation, tenant, spec.keys, spec.period)
            hits.append(slice_hits)
            values.append(slice_values)
    refused = pa.concat_tables(rejected).sort_by("row")
    write_or_remove(spec.out, result_path(spec.out, FAILURES, tenant, part.key), refused)
    return PartOutcome(
        part,
        worker_address(),
        rows,
        combine.add_counts(statuses, ["tenant_id", "metric", "status"]),
        combine.sum_counts(hits, spec.keys, HIT_COUNTS),
        combine.add_counts(values, [*spec.keys, "elapsed_seconds"]),
        part_failures(part, refused),
    )


def instant(now: datetime | int) -> int:
    """``now`` (an aware datetime or epoch seconds) as epoch seconds."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise EffigateError(f"now: {now.isoformat()!r} has no time zone")
        return int(now.timestamp())
    return int(now)


def default_now(url: str) -> datetime:
    """The instant a dataset is evaluated at when none is given: its manifest's ``as_of``
    (the export's instant: later events are not in it), else the current time."""
    try:
        as_of = layout.read_manifest(url).get("as_of")
    except DatasetError:
        as_of = None
    if isinstance(as_of, str) and as_of:
        value = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        if value.tzinfo is not None:
            return value
    return datetime.now(UTC)


def ticket_parts(url: str, tenants: Sequence[str] | None = None) -> list[Part]:
    """The dataset's ticket parts (of ``tenants``), or a :class:`DatasetError` when none."""
    parts = layout.parts(url, layout.TICKETS, set(tenants) if tenants is not None else None)
    if not parts:
        which = f" of tenants {', '.join(tenants)}" if tenants is not None else ""
        raise DatasetError(f"{url}: no ticket parts{which} (tickets/tenant=<t>/month=<m>/)")
    return parts


def digests(url: str, parts: Sequence[Part]) -> dict[str, str]:
    """Each tenant's catalog digest (loading each catalog once, here on the driver)."""
    return {t: tenant_catalog(url, t).digest for t in sorted({p.tenant for p in parts})}


def policy_names(url: str, tenants: Sequence[str], ref: str | int | None) -> dict[str, str] | None:
    """The name of policy ``ref`` (an id or a name) in each tenant's catalog (``None``: each
    ticket's own policy)."""
    if ref is None:
        return None
    return {t: tenant_catalog(url, t).policy_source(ref).name for t in tenants}


def remove_leftovers(out: str, jobs: Sequence[str], tenants: Sequence[str]) -> None:
    """Remove the temporary files a task killed while writing left behind (the job is over:
    no task writes any more)."""
    fs, root = layout.filesystem(out)
    for job in jobs:
        for tenant in tenants:
            pattern = posixpath.join(
                root, layout.RESULTS, job, f"tenant={tenant}", "*", f"{layout.PART_FILE}.tmp-*"
            )
            for path in fs.glob(pattern):
                fs.rm(path)


def write_report(out: str, name: str, table: pa.Table) -> None:
    """Write a combined table to ``<out>/<name>``."""
    _, root = layout.filesystem(out)
    layout.write_table(out, posixpath.join(root, name), table)


def recompute(
    client: object | None,
    url: str,
    *,
    now: datetime | int,
    out: str | None = None,
    policy: str | int | None = None,
    by: str | Sequence[str] = ("priority",),
    period: str | None = None,
    quantiles: Sequence[float] = (0.5, 0.75, 0.95),
    tenants: Sequence[str] | None = None,
    progress: Progress | None = None,
    slice_tickets: int = SLICE_TICKETS,
) -> SlaJob:
    """Evaluate every ticket part of the dataset at ``url`` at ``now``, one task per part on
    ``client``'s cluster (``None``: in this process, part after part), write each part's
    results and the combined hit rates and percentiles under ``out`` (default: the dataset),
    and return the :class:`SlaJob`. ``policy``: a policy id or name of each tenant's catalog
    (default: each ticket's own). ``by``/``period``/``quantiles`` as in
    :func:`~effigate_engine.sla.reports.hit_rates` and ``percentiles``."""
    keys = (TENANT, *report_keys(by, period))
    check_quantiles(quantiles)
    parts = ticket_parts(url, tenants)
    catalogs = digests(url, parts)
    spec = SlaSpec(
        url=str(url),
        out=str(out or url),
        digests=catalogs,
        policies=policy_names(url, list(catalogs), policy),
        now=instant(now),
        keys=keys,
        period=period,
        threads=1 if client is not None else None,
        slice_tickets=checked_slice(slice_tickets),
    )
    outcomes = run_parts(client, evaluate_part, parts, spec, name="sla-part", progress=progress)
    remove_leftovers(spec.out, (RESULTS, BREACHES, FAILURES), list(catalogs))
    job = SlaJob(
        counts=combine.add_counts([o.counts for o in outcomes], [TENANT, "metric", "status"]),
        hit_rates=combine.hit_rates([o.hits for o in outcomes], keys),
        percentiles=combine.percentiles([o.values for o in outcomes], keys, quantiles),
        failures=pa.concat_tables([o.failures for o in outcomes]),
        parts=outcomes,
        out=spec.out,
    )
    write_report(spec.out, HIT_RATES_FILE, job.hit_rates)
    write_report(spec.out, PERCENTILES_FILE, job.percentiles)
    return job
