"""The month-end billing run on a cluster: every contract of every tenant in the dataset
invoiced for its period holding a day, in tasks of whole contracts.

Partitioning (``docs/scale-out.md``, *Billing*): a contract is never split. Its bucket or
included hours are drawn down in work order over all of its logs, and its invoice needs every
one of its lines, so a task takes whole contracts of one tenant: their time-log parts (one per
contract), a :class:`~effigate_engine.ratecard.book.ContractBook` of them,
``classify(evidence=True)`` of their logs and :func:`~effigate_engine.billing.run.billing_run`
with the tenant's breach records, each contract's invoice inputs and the tenant's default tax.
Contracts without logs are billed too (recurring fees, milestones, credits). Tasks are balanced
by the bytes of their contracts' log parts (a proxy of log rows, read from one listing per
tenant, never by opening the parts), about :data:`TASKS_PER_WORKER` tasks per worker over the
whole dataset and at least one per tenant.

Each task writes its ``lines`` and ``invoices`` to
``results/bill_run_lines/tenant=<t>/batch=<k>/part-0.parquet`` and
``results/bill_run_invoices/…`` of the dataset (fixed names: a task run again after its worker
died replaces its parts) and returns its invoices. The driver orders the invoices of a tenant
by contract id (string order, as ``billing_run`` does), renumbers ``invoice``, reorders the
lines to match, and writes ``<out>/invoices.parquet`` and ``<out>/lines.parquet``: the tables
of ``billing_run`` over one book of all the tenant's contracts, tenant after tenant, with a
leading ``tenant_id`` column (``invoice`` counts from 0 within each tenant). Money is int64
minor units throughout; nothing is summed in floating point.
"""

from __future__ import annotations

import heapq
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine.billing.run import billing_run
from effigate_engine.billing.schemas import RUN_INVOICES, RUN_LINES
from effigate_engine.billing.terms_json import tax_components
from effigate_engine.cluster.parts import compiled_catalog
from effigate_engine.cluster.tasks import Progress, run_parts, worker_count
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import (
    ContractSource,
    TenantCatalog,
    contract_periods,
    load_breaches,
    load_catalog,
)
from effigate_engine.ratecard.book import ContractBook, book_horizon
from effigate_engine.ratecard.classify import classify

RESULT_LINES = "bill_run_lines"
RESULT_INVOICES = "bill_run_invoices"
BATCH_KEY = "batch"
INVOICES_FILE = "invoices.parquet"
LINES_FILE = "lines.parquet"
#: Tasks per worker process over the whole run: enough that a slow or lost task does not hold
#: the run up, few enough that each task's book and classification amortise.
TASKS_PER_WORKER = 3
#: What a contract weighs besides its log bytes (its term lines, its inputs), in bytes.
CONTRACT_WEIGHT = 4_096
TENANT_ID = pa.field("tenant_id", pa.string(), nullable=False)


@dataclass(frozen=True)
class Batch:
    """One task: contracts of one tenant (ids in string order) and the time-log parts of
    those that have logs; ``weight`` is what it was balanced by (bytes)."""

    tenant: str
    number: int
    contract_ids: tuple[str, ...]
    parts: tuple[layout.Part, ...]
    weight: int


@dataclass(frozen=True)
class TenantBill:
    """A tenant's invoices in the run: counts, ``totals`` per currency (Σ invoice totals,
    minor units) and the batches it ran in."""

    tenant: str
    invoices: int
    lines: int
    batches: int
    totals: dict[str, int]


@dataclass(frozen=True)
class BillRun:
    """What :func:`bill_run` did: the day billed, each tenant's summary, and where the
    combined tables went (``invoices`` / ``lines``: URLs or paths)."""

    day: date
    tenants: tuple[TenantBill, ...]
    invoices: str
    lines: str
    batches: int = 0
    totals: dict[str, int] = field(default_factory=dict)


def billable(source: ContractSource) -> bool:
    """Whether a stored contract is invoiced by a run: any but a ``DRAFT`` (never activated,
    no frozen card to price by)."""
    return str(source.row.get("status", "DRAFT")) != "DRAFT"


# Planning -----------------------------------------------------------------------------------


def plan(url: str, catalogs: Mapping[str, TenantCatalog], tasks: int) -> list[Batch]:
    """The batches of a run over the tenants of ``catalogs``: about ``tasks`` in all (at
    least one per tenant, at most one per contract), each tenant's contracts spread over its
    batches by weight, heaviest first onto the lightest batch."""
    by_tenant: dict[str, dict[str, layout.Part]] = {t: {} for t in catalogs}
    for part in layout.parts(url, layout.TIME_LOGS, set(catalogs)):
        by_tenant[part.tenant][part.key] = part
    weights: dict[str, dict[str, int]] = {}
    for tenant, catalog in catalogs.items():
        known = {c.id: c for c in catalog.contracts}
        for cid, part in by_tenant[tenant].items():
            if cid not in known:
                raise layout.DatasetError(
                    f"{part.path}: contract {cid} has time logs but is not in tenant {tenant}'s"
                    " catalog"
                )
        sizes = _sizes(url, [p.path for p in by_tenant[tenant].values()])
        weights[tenant] = {
            c.id: CONTRACT_WEIGHT + sizes.get(by_tenant[tenant][c.id].path, 0)
            if c.id in by_tenant[tenant]
            else CONTRACT_WEIGHT
            for c in catalog.contracts
            if billable(c)
        }
    whole = sum(sum(w.values()) for w in weights.values()) or 1
    batches: list[Batch] = []
    for tenant in sorted(catalogs):
        w = weights[tenant]
        if not w:
            continue
        count = max(1, min(len(w), round(max(1, tasks) * sum(w.values()) / whole)))
        bins: list[list[str]] = [[] for _ in range(count)]
        loads = [(0, b) for b in range(count)]
        for cid in sorted(w, key=lambda c: (-w[c], c)):
            load, b = heapq.heappop(loads)
            bins[b].append(cid)
            heapq.heappush(loads, (load + w[cid], b))
        ordered = sorted((sorted(ids) for ids in bins if ids), key=lambda ids: ids[0])
        for k, ids in enumerate(ordered):
            batches.append(
                Batch(
                    tenant,
                    k,
                    tuple(ids),
                    tuple(by_tenant[tenant][c] for c in ids if c in by_tenant[tenant]),
                    sum(w[c] for c in ids),
                )
            )
    return batches


def _sizes(url: str, paths: Sequence[str]) -> dict[str, int]:
    """Sizes (bytes) of ``paths``: one listing of their common folder, not a call per file."""
    if not paths:
        return {}
    fs, _ = layout.filesystem(url)
    base = posixpath.commonpath(list(paths)) if len(paths) > 1 else posixpath.dirname(paths[0])
    listed = fs.find(base, detail=True)
    return {p: int(listed[p]["size"]) if p in listed else int(fs.size(p)) for p in paths}


# The task -----------------------------------------------------------------------------------


def read_logs(url: str, parts: Sequence[layout.Part]) -> pa.Table | None:
    """The time logs of ``parts`` as one table (part order; ``None`` when there are none)."""
    tables = [t for t in (layout.read_part(p, url) for p in parts) if t.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default").unify_dictionaries().combine_chunks()


def batch_path(url: str, table: str, tenant: str, number: int) -> str:
    """Path of a batch's part of ``table`` (:data:`RESULT_LINES` or :data:`RESULT_INVOICES`)."""
    _, root = layout.filesystem(url)
    return layout.part_path(
        posixpath.join(root, layout.RESULTS), table, tenant, str(number), BATCH_KEY
    )


def bill_batch(batch: Batch, url: str, digests: dict[str, str], day: date) -> pa.Table:
    """Run one batch: invoice each of its contracts started by ``day`` for its period holding
    ``day``, write the run's lines and invoices as the batch's parts, return the invoices
    (:data:`~effigate_engine.billing.schemas.RUN_INVOICES`, ``invoice`` within the batch)."""
    # the domain contracts are built once per worker and catalog
    made = compiled_catalog(url, batch.tenant, digests[batch.tenant])
    sources = [made.sources[cid] for cid in batch.contract_ids]
    contracts = {cid: made.contracts[cid] for cid in batch.contract_ids}
    periods = contract_periods(sources, contracts, day)
    logs = read_logs(url, batch.parts)
    until = max((p.end for p in periods.values()), default=day)
    members = list(contracts.values())
    book = ContractBook(members, book_horizon(members, until, logs))
    classification = classify(book, logs, evidence=True) if logs is not None else None
    breaches = load_breaches(url, batch.tenant)
    if breaches is not None:
        mine = pc.is_in(breaches.column("contract_id"), pa.array(list(batch.contract_ids)))
        breaches = breaches.filter(pc.fill_null(mine, False))
    run = billing_run(
        book,
        classification,
        periods,
        breaches=breaches,
        inputs={cid: made.sources[cid].inputs(contracts[cid], p) for cid, p in periods.items()},
        tax=tax_components(made.catalog.default_tax),
        threads=1,
    )
    layout.write_table(url, batch_path(url, RESULT_LINES, batch.tenant, batch.number), run.lines)
    layout.write_table(
        url, batch_path(url, RESULT_INVOICES, batch.tenant, batch.number), run.invoices
    )
    return run.invoices


# The driver ---------------------------------------------------------------------------------


def bill_run(
    client: Any,
    url: str,
    day: date,
    *,
    out: str | None = None,
    progress: Progress | None = None,
    tasks: int | None = None,
) -> BillRun:
    """Invoice every billable contract of every tenant of the dataset at ``url`` for its
    period holding local date ``day``, on the cluster of ``client`` (``None``: in this
    process, one batch per tenant unless ``tasks`` says otherwise). Writes the batches' parts
    (see the module) and ``<out>/invoices.parquet`` / ``<out>/lines.parquet`` (``out``
    defaults to the dataset's ``results`` folder); ``progress(done, total)`` after each task.
    ``tasks``: about how many tasks in all (default :data:`TASKS_PER_WORKER` per worker)."""
    layout.read_manifest(url)
    catalogs = {t: load_catalog(url, t) for t in layout.tenants(url)}
    wanted = (
        tasks
        if tasks is not None
        else (1 if client is None else TASKS_PER_WORKER * worker_count(client))
    )
    batches = plan(url, catalogs, wanted)
    digests = {tenant: catalog.digest for tenant, catalog in catalogs.items()}
    results = run_parts(
        client, bill_batch, batches, url, digests, day, name="bill-run", progress=progress
    )
    target = out if out is not None else _join(url, layout.RESULTS)
    bills = _combine(url, target, batches, results)
    for tenant in catalogs:
        _remove_stale(url, tenant, {b.number for b in batches if b.tenant == tenant})
    totals: dict[str, int] = {}
    for bill in bills:
        for currency, amount in bill.totals.items():
            totals[currency] = totals.get(currency, 0) + amount
    return BillRun(
        day,
        tuple(bills),
        _join(target, INVOICES_FILE),
        _join(target, LINES_FILE),
        len(batches),
        dict(sorted(totals.items())),
    )


def _join(url: str, name: str) -> str:
    return f"{str(url).rstrip('/')}/{name}"


def combine_tenant(
    invoices: Sequence[pa.Table], lines: Sequence[pa.Table]
) -> tuple[pa.Table, pa.Table]:
    """One tenant's batches (each batch's invoices and lines, as ``billing_run`` gave them)
    as one run: invoices by contract id (string order), ``invoice`` renumbered from 0, lines
    reordered to match (line numbers kept)."""
    heads = pa.concat_tables([t.cast(RUN_INVOICES) for t in invoices])
    rows = pa.concat_tables([t.cast(RUN_LINES) for t in lines])
    counts = heads.column("lines").to_numpy().astype(np.int64)
    if int(counts.sum()) != rows.num_rows:
        raise layout.DatasetError(
            f"bill run: the batches' invoices count {int(counts.sum())} lines, their line"
            f" parts hold {rows.num_rows}"
        )
    ids = heads.column("contract_id").to_pylist()
    order = np.array(sorted(range(len(ids)), key=ids.__getitem__), np.int64)
    first = np.zeros(counts.size, np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    sizes = counts[order]
    within = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(sizes) - sizes, sizes
    )
    take = np.repeat(first[order], sizes) + within
    numbers = pa.array(np.arange(order.size, dtype=np.int32))
    heads = heads.take(pa.array(order)).set_column(0, RUN_INVOICES.field(0), numbers)
    rows = rows.take(pa.array(take)).set_column(
        0, RUN_LINES.field(0), pa.array(np.repeat(np.arange(order.size, dtype=np.int32), sizes))
    )
    return heads, rows


def _read(url: str, path: str, schema: pa.Schema) -> pa.Table:
    fs, _ = layout.filesystem(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f).cast(schema)


def _with_tenant(table: pa.Table, tenant: str) -> pa.Table:
    return table.add_column(0, TENANT_ID, pa.array([tenant] * table.num_rows, pa.string()))


def _combine(
    url: str, out: str, batches: Sequence[Batch], results: Sequence[pa.Table]
) -> list[TenantBill]:
    """Write ``<out>/invoices.parquet`` and ``<out>/lines.parquet`` tenant by tenant (one
    tenant's lines in memory at a time) and sum each tenant's totals per currency."""
    fs, root = layout.filesystem(out)
    fs.makedirs(root, exist_ok=True)
    paths = {name: posixpath.join(root, name) for name in (INVOICES_FILE, LINES_FILE)}
    token = np.random.default_rng().integers(1 << 62)
    temp = {name: f"{path}.tmp-{token:x}" for name, path in paths.items()}
    schemas = {
        INVOICES_FILE: pa.schema([TENANT_ID, *RUN_INVOICES]),
        LINES_FILE: pa.schema([TENANT_ID, *RUN_LINES]),
    }
    bills = []
    with (
        fs.open(temp[INVOICES_FILE], "wb") as fi,
        fs.open(temp[LINES_FILE], "wb") as fl,
        pq.ParquetWriter(fi, schemas[INVOICES_FILE], compression="zstd") as wi,
        pq.ParquetWriter(fl, schemas[LINES_FILE], compression="zstd") as wl,
    ):
        for tenant in sorted({b.tenant for b in batches}):
            mine = [i for i, b in enumerate(batches) if b.tenant == tenant]
            lines = [
                _read(url, batch_path(url, RESULT_LINES, tenant, batches[i].number), RUN_LINES)
                for i in mine
            ]
            heads, rows = combine_tenant([results[i] for i in mine], lines)
            wi.write_table(_with_tenant(heads, tenant))
            wl.write_table(_with_tenant(rows, tenant))
            bills.append(
                TenantBill(tenant, heads.num_rows, rows.num_rows, len(mine), totals_of(heads))
            )
    for name, path in paths.items():
        fs.mv(temp[name], path)
    return bills


def totals_of(invoices: pa.Table) -> dict[str, int]:
    """Σ ``total`` of ``invoices`` per currency (minor units, summed as Python integers: exact
    at any size), by currency code."""
    totals: dict[str, int] = {}
    currencies = invoices.column("currency").to_pylist()
    for code, total in zip(currencies, invoices.column("total").to_pylist(), strict=True):
        totals[code] = totals.get(code, 0) + total
    return dict(sorted(totals.items()))


def _remove_stale(url: str, tenant: str, numbers: set[int]) -> None:
    """Drop what an earlier run left in the tenant's result folders that this run did not
    write: batches beyond this run's count, and temporary files of writes cut short."""
    fs, root = layout.filesystem(url)
    for table in (RESULT_LINES, RESULT_INVOICES):
        folder = posixpath.join(root, layout.RESULTS, table, f"tenant={tenant}")
        if not fs.exists(folder):
            continue
        for entry in fs.ls(folder, detail=False):
            name = posixpath.basename(entry.rstrip("/"))
            key = name.removeprefix(f"{BATCH_KEY}=")
            if not (key.isdigit() and int(key) in numbers):
                fs.rm(entry, recursive=True)
                continue
            for inner in fs.ls(entry, detail=False):
                if posixpath.basename(inner.rstrip("/")) != layout.PART_FILE:
                    fs.rm(inner, recursive=True)
