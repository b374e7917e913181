"""A scale-out job's SLA results loaded back into the store (see
:mod:`effigate_engine.service.datasets`).

The job writes, per tenant and part, ``results/<job>/tenant=<t>/<key>=<v>/part-0.parquet``
(``SLA_RESULTS`` columns plus ``tenant_id``) and the part's breach records under
``results/<job>_breaches/`` with the same partition (``BREACH_RECORDS``). Each part is loaded in
one transaction of its tenant: the standings COPYed into a temporary table and upserted into
``sla_standings`` (key: tenant, ticket, metric; a stored standing is replaced only by one
evaluated at the same or a later instant), the breach records inserted as a recompute inserts
them (by breach id ``<ticket>:<metric>``; one already stored is left as it was). Loading the
same results again leaves the same rows; a part that fails (a bad column, a ticket the tenant
does not have) leaves the store as it was and names the file and the field.

The instant a part was evaluated at is its ``evaluated_at`` column when it has one, else the
``effigate.evaluated_at`` metadata of its schema (ISO 8601), else the dataset's as-of instant
(``dataset.json``), which is what the jobs evaluate at unless told otherwise.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine.datasets import catalog as ds_catalog
from effigate_engine.datasets import layout
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.errors import EffigateError
from effigate_engine.service.context import Principal
from effigate_engine.service.dataset_access import TenantRef, principals
from effigate_engine.service.evaluations import Versions, breach_rows
from effigate_engine.sla.schemas import BREACH_RECORDS, INSTANT
from effigate_engine.store import standings as standings_store
from effigate_engine.store.breaches import insert_breaches
from effigate_engine.store.database import Store

#: Schema metadata naming the instant a results part was evaluated at (ISO 8601, with zone).
EVALUATED_AT_KEY = b"effigate.evaluated_at"

#: The results columns a standing is made of, with their types and whether nulls are allowed.
RESULT_COLUMNS: dict[str, tuple[pa.DataType, bool]] = {
    "ticket_id": (pa.string(), False),
    "metric": (pa.string(), False),
    "policy": (pa.string(), False),
    "calendar": (pa.string(), False),
    "status": (pa.string(), False),
    "deadline": (INSTANT, True),
    "elapsed_seconds": (pa.int64(), False),
    "remaining_seconds": (pa.int64(), False),
    "stopped_at": (INSTANT, True),
    "escalation_level": (pa.int64(), False),
}


@dataclass(frozen=True)
class ResultPart:
    """One part of a job's results: its tenant, partition key and value, and its file."""

    tenant: str
    key_name: str
    key: str
    path: str


@dataclass(frozen=True)
class LoadSummary:
    """What a load-back did: parts loaded, standings read, inserted, replaced and kept (a newer
    one was stored), breach records read and new."""

    url: str
    job: str
    parts: int
    standings: int
    inserted: int
    replaced: int
    kept: int
    breaches: int
    new_breaches: int

    def line(self) -> str:
        """One line for the command line."""
        return (
            f"loaded {self.parts} part(s) of results/{self.job} from {self.url}:"
            f" {self.standings:,} standings ({self.inserted:,} new, {self.replaced:,} replaced,"
            f" {self.kept:,} kept: a newer one is stored), {self.breaches:,} breach records"
            f" ({self.new_breaches:,} new)"
        )


def _value(segment: str, name: str | None, path: str) -> tuple[str, str]:
    key, sep, value = segment.partition("=")
    if not sep or not key or not value or (name is not None and key != name):
        wanted = f"{name}=<value>" if name else "<key>=<value>"
        raise DatasetError(f"{path}: {segment!r} is not a {wanted} partition folder")
    return key, value


def result_parts(url: str, job: str) -> list[ResultPart]:
    """The parts of ``results/<job>/`` in the dataset at ``url``, by tenant then key."""
    fs, root = layout.filesystem(url)
    base = posixpath.join(root, layout.RESULTS, job)
    if not fs.exists(base):
        return []
    out = []
    for tenant_dir in sorted(fs.ls(base, detail=False)):
        _, tenant = _value(posixpath.basename(tenant_dir.rstrip("/")), "tenant", tenant_dir)
        for key_dir in sorted(fs.ls(tenant_dir, detail=False)):
            key_name, key = _value(posixpath.basename(key_dir.rstrip("/")), None, key_dir)
            path = posixpath.join(key_dir, layout.PART_FILE)
            if fs.exists(path):
                out.append(ResultPart(tenant, key_name, key, path))
    return out


def _read(url: str, path: str) -> pa.Table:
    fs, _ = layout.filesystem(url)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from exc


def _checked(table: pa.Table, path: str, columns: dict[str, tuple[pa.DataType, bool]]) -> pa.Table:
    """``table``'s ``columns`` cast to their types; a missing column, a value that is not of its
    type or a null where none is allowed is a :class:`DatasetError` naming the file, the column
    and the row."""
    out = {}
    for name, (kind, nullable) in columns.items():
        if name not in table.column_names:
            raise DatasetError(
                f"{path}: column {name!r} is missing (has {', '.join(table.column_names)})"
            )
        try:
            column = pc.cast(table.column(name), kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DatasetError(
                f"{path}.{name}: {table.schema.field(name).type} is not {kind} ({exc})"
            ) from exc
        if not nullable and column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise DatasetError(f"{path}.{name}[{row}]: is null")
        out[name] = column
    return pa.table(out)


def _evaluated_at(table: pa.Table, path: str, default: datetime | None) -> pa.ChunkedArray:
    """The instant each row was evaluated at (see the module's docstring)."""
    n = table.num_rows
    if "evaluated_at" in table.column_names:
        return _checked(table, path, {"evaluated_at": (INSTANT, False)}).column(0)
    text = (table.schema.metadata or {}).get(EVALUATED_AT_KEY)
    at = default
    if text is not None:
        try:
            at = datetime.fromisoformat(text.decode())
        except ValueError:
            raise DatasetError(
                f"{path}: metadata {EVALUATED_AT_KEY.decode()} {text.decode()!r} is not an"
                " ISO 8601 instant"
            ) from None
    if at is None or at.tzinfo is None:
        raise DatasetError(
            f"{path}: evaluated_at: no column, no {EVALUATED_AT_KEY.decode()} metadata with a"
            " time zone and no dataset.json as-of instant to take it from"
        )
    return pa.chunked_array([pa.array([at] * n, INSTANT)])


def standings_of(
    table: pa.Table, part: ResultPart, default: datetime | None
) -> tuple[pa.Table, list[standings_store.StandingRow]]:
    """The checked results of one part and its standings rows."""
    path = part.path
    if "tenant_id" in table.column_names:
        tenants = pc.unique(pc.cast(table.column("tenant_id"), pa.string())).to_pylist()
        other = [t for t in tenants if t != part.tenant]
        if other:
            raise DatasetError(f"{path}.tenant_id: {other[0]!r} is not the part's tenant")
    results = _checked(table, path, RESULT_COLUMNS)
    pairs = pc.binary_join_element_wise(results["ticket_id"], results["metric"], "\x00")
    if len(pc.unique(pairs)) != results.num_rows:
        counts = pc.value_counts(pairs)
        twice = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        ticket, metric = twice.split("\x00")
        raise DatasetError(f"{path}: ticket {ticket!r} metric {metric!r} has more than one row")
    at = _evaluated_at(table, path, default)
    names = [*RESULT_COLUMNS, "evaluated_at"]
    names.remove("calendar")
    values = {n: results.column(n).to_pylist() for n in names if n != "evaluated_at"}
    values["evaluated_at"] = at.to_pylist()
    order = standings_store.STANDING_COLUMNS
    rows = list(zip(*(values[n] for n in order), strict=True))
    return results, rows  # type: ignore[return-value]


async def load_sla_results(
    store: Store, url: str, *, job: str = "sla", tenants: Sequence[TenantRef] | None = None
) -> LoadSummary:
    """Load every part of ``results/<job>/`` (of ``tenants``' when given: principals, or
    tenant ids with the owner's credentials) back into the store, one transaction per part;
    see the module's docstring."""
    parts = result_parts(url, job)
    if not parts:
        raise DatasetError(f"{url}: no results/{job} parts to load (run the job first)")
    try:
        default: datetime | None = datetime.fromisoformat(layout.read_manifest(url)["as_of"])
    except (DatasetError, KeyError, TypeError, ValueError):
        default = None
    wanted = sorted({p.tenant for p in parts})
    if tenants is None:
        refs: list[TenantRef] = []
        for t in wanted:
            try:
                refs.append(UUID(t))
            except ValueError:
                raise DatasetError(f"results/{job}/tenant={t}: not a tenant id (UUID)") from None
    else:
        refs = list(tenants)
    totals = [0] * 6
    loaded = 0
    async with principals(store, refs) as bound:
        by_tenant = {str(p.tenant_id): p for p in bound}
        for part in parts:
            principal = by_tenant.get(part.tenant)
            if principal is None:
                continue
            counts = await _load_part(store, url, job, principal, part, default)
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
            loaded += 1
    return LoadSummary(str(url), job, loaded, *totals)


def _versions(url: str, tenant: str) -> Versions | None:
    """The policy ids and versions and calendar versions of the tenant's exported catalog
    (what breach evidence names), ``None`` when the dataset has none."""
    try:
        cat = ds_catalog.load_catalog(url, tenant)
    except DatasetError:
        return None
    return {p.name: (p.id, p.version) for p in cat.policies}, dict(cat.calendar_versions)


def _breaches(url: str, job: str, part: ResultPart) -> pa.Table:
    """The breach records of ``part`` (none when the job wrote no breaches part)."""
    fs, root = layout.filesystem(url)
    path = posixpath.join(
        root,
        layout.RESULTS,
        f"{job}_breaches",
        f"tenant={part.tenant}",
        f"{part.key_name}={part.key}",
        layout.PART_FILE,
    )
    if not fs.exists(path):
        return BREACH_RECORDS.empty_table()
    columns = {f.name: (f.type, f.nullable) for f in BREACH_RECORDS}
    return _checked(_read(url, path), path, columns).cast(BREACH_RECORDS)


async def _load_part(
    store: Store,
    url: str,
    job: str,
    principal: Principal,
    part: ResultPart,
    default: datetime | None,
) -> list[int]:
    """Load one part in one transaction; its counts (standings read, inserted, replaced,
    kept, breaches read, new)."""
    results, rows = standings_of(_read(url, part.path), part, default)
    breaches = _breaches(url, job, part)
    rows_b = breach_rows(breaches, results, _versions(url, part.tenant))
    try:
        async with store.transaction(principal) as conn:
            done = await standings_store.upsert_standings(conn, rows)
            new = await insert_breaches(conn, rows_b) if rows_b else 0
    except EffigateError as exc:
        raise DatasetError(f"{part.path}: not loaded, nothing of it stored: {exc}") from exc
    return [len(rows), done.inserted, done.replaced, done.kept, len(rows_b), new]


__all__ = [
    "EVALUATED_AT_KEY",
    "LoadSummary",
    "ResultPart",
    "load_sla_results",
    "result_parts",
    "standings_of",
]
