"""Replay of a dataset's tickets under two policies on a Dask cluster: one task per ticket
part, the difference table combined exactly.

Each task evaluates its part under the current policy (a policy of the tenant's catalog, or
each ticket's own) and the proposed one (a policy of the catalog, or a policy JSON body), as the
service's replay does: a ticket either policy cannot evaluate is left out of both and named. It
returns both sides' hit counts; the driver adds them and builds the table
:func:`~effigate_engine.sla.reports.replay_evaluations` gives for the tenant's tickets in one
batch (per tenant: ``tenant_id`` is the first key), written to ``<out>/replay.parquet``. No
per-ticket rows are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.cluster import combine
from effigate_engine.cluster.parts import compiled_catalog, proposed_policy, worker_address
from effigate_engine.cluster.sla_jobs import (
    SLICE_TICKETS,
    TENANT,
    checked_slice,
    digests,
    instant,
    part_failures,
    policy_names,
    report_counts,
    ticket_parts,
    write_report,
)
from effigate_engine.cluster.tasks import Progress, run_parts
from effigate_engine.datasets import layout
from effigate_engine.datasets.layout import Part
from effigate_engine.sla.reports import HIT_COUNTS, report_keys
from effigate_engine.sla.screening import screen_both

REPLAY_FILE = "replay.parquet"


@dataclass(frozen=True)
class ReplaySpec:
    """What every part's task needs: the dataset, each tenant's catalog digest, the current
    policy per tenant (``None``: each ticket's own) and the proposed one per tenant (a policy
    name) or as a JSON body, ``now`` (epoch seconds), the keys and ``threads`` per part."""

    url: str
    digests: dict[str, str]
    current: dict[str, str] | None
    proposed: dict[str, str] | dict[str, Any]
    proposed_is_body: bool
    now: int
    keys: tuple[str, ...]
    period: str | None
    threads: int | None = 1
    slice_tickets: int = 1 << 16


@dataclass(frozen=True)
class ReplayOutcome:
    """A part's replay: both sides' hit counts, the rejected tickets, and who ran it."""

    part: Part
    worker: str | None
    current: pa.Table
    proposed: pa.Table
    failures: pa.Table


@dataclass
class ReplayJob:
    """A finished replay: the difference table (per tenant), the rejected tickets, each part's
    outcome, and where the table was written."""

    table: pa.Table
    failures: pa.Table
    parts: list[ReplayOutcome] = field(default_factory=list)
    out: str = ""


def replay_part(part: Part, spec: ReplaySpec) -> ReplayOutcome:
    """Evaluate one ticket part under both policies and count (a task)."""
    tenant = part.tenant
    made = compiled_catalog(spec.url, tenant, spec.digests[tenant])
    current = made.policies if spec.current is None else made.policy(spec.current[tenant])
    proposed = (
        proposed_policy(spec.proposed)
        if spec.proposed_is_body
        else made.policy(spec.proposed[tenant])
    )
    tickets = layout.read_part(part, spec.url)
    current_hits, proposed_hits, rejected = [], [], []
    # a slice at a time, as the SLA job (sla_jobs.SLICE_TICKETS)
    for lo in range(0, max(tickets.num_rows, 1), spec.slice_tickets):
        before, after, failures = screen_both(
            tickets.slice(lo, spec.slice_tickets),
            current,
            proposed,
            made.calendars,
            spec.now,
            spec.threads,
        )
        current_hits.append(report_counts(before.evaluation, tenant, spec.keys, spec.period)[0])
        proposed_hits.append(report_counts(after.evaluation, tenant, spec.keys, spec.period)[0])
        rejected.append(failures.set_column(0, "row", pc.add(failures.column("row"), lo)))
    return ReplayOutcome(
        part,
        worker_address(),
        combine.sum_counts(current_hits, spec.keys, HIT_COUNTS),
        combine.sum_counts(proposed_hits, spec.keys, HIT_COUNTS),
        part_failures(part, pa.concat_tables(rejected).sort_by("row")),
    )


def replay(
    client: object | None,
    url: str,
    *,
    proposed: str | int | dict[str, Any],
    now: datetime | int,
    current: str | int | None = None,
    out: str | None = None,
    by: str | Sequence[str] = ("priority",),
    period: str | None = None,
    tenants: Sequence[str] | None = None,
    progress: Progress | None = None,
    slice_tickets: int = SLICE_TICKETS,
) -> ReplayJob:
    """Replay every ticket part of the dataset at ``url`` at ``now`` under ``current`` (a
    policy id or name of each tenant's catalog; default: each ticket's own) and ``proposed``
    (a policy id or name, or a policy JSON body), one task per part on ``client``'s cluster
    (``None``: in this process), and write the difference table to ``<out>/replay.parquet``
    (``out`` defaults to the dataset)."""
    keys = (TENANT, *report_keys(by, period))
    parts = ticket_parts(url, tenants)
    catalogs = digests(url, parts)
    is_body = isinstance(proposed, dict)
    if is_body:
        proposed_policy(proposed)  # a bad body fails here, not in every task
    spec = ReplaySpec(
        url=str(url),
        digests=catalogs,
        current=policy_names(url, list(catalogs), current),
        proposed=proposed if is_body else policy_names(url, list(catalogs), proposed),  # type: ignore[arg-type]
        proposed_is_body=is_body,
        now=instant(now),
        keys=keys,
        period=period,
        threads=1 if client is not None else None,
        slice_tickets=checked_slice(slice_tickets),
    )
    outcomes = run_parts(client, replay_part, parts, spec, name="replay-part", progress=progress)
    job = ReplayJob(
        table=combine.replay([o.current for o in outcomes], [o.proposed for o in outcomes], keys),
        failures=pa.concat_tables([o.failures for o in outcomes]),
        parts=outcomes,
        out=str(out or url),
    )
    write_report(job.out, REPLAY_FILE, job.table)
    return job
