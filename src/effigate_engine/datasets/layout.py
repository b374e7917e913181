"""Where the parts of a dataset live, and reading and writing them.

A dataset is a folder (a local path or any fsspec URL, e.g. ``s3://bucket/prefix``)::

    dataset.json                                  the manifest (format, as-of instant, counts)
    tickets/tenant=<t>/month=<YYYY-MM>/part-0.parquet      TICKETS, by month of created_at (UTC)
    time_logs/tenant=<t>/contract=<c>/part-0.parquet       TIME_LOGS, all of a contract's logs
    catalog/tenant=<t>/catalog.json               calendars, policies, contracts, billing inputs
    catalog/tenant=<t>/breaches.parquet           BREACH_RECORDS recorded for the tenant
    results/<job>/tenant=<t>/<key>=<v>/part-0.parquet      what a job wrote for one part

Every part is one file with a fixed name, so writing a part again (a task retried after a
worker died, an export re-run) replaces it instead of adding a second copy. Partition values
are written as they are (tenant ids are UUIDs, contract ids integers, months ``YYYY-MM``);
the partition columns are not stored inside the files.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine.errors import EffigateError

FORMAT = "effigate-dataset/1"
MANIFEST = "dataset.json"
TICKETS = "tickets"
TIME_LOGS = "time_logs"
CATALOG = "catalog"
RESULTS = "results"
PART_FILE = "part-0.parquet"

#: The partition key under each tenant, per table.
PARTITION_KEY = {TICKETS: "month", TIME_LOGS: "contract"}


class DatasetError(EffigateError):
    """A dataset is missing, malformed or of another format: names the path."""


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path within it (a plain path: local)."""
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path.rstrip("/") or "/"


@dataclass(frozen=True, order=True)
class Part:
    """One partition of a table: its tenant and key value (a month ``YYYY-MM`` for tickets, a
    contract id for time logs), and the file's path within the dataset's file system."""

    table: str
    tenant: str
    key: str
    path: str

    @property
    def name(self) -> str:
        """``<table>/tenant=<t>/<key>=<v>``: the part's name (stable across runs)."""
        key_name = PARTITION_KEY.get(self.table, "part")
        return f"{self.table}/tenant={self.tenant}/{key_name}={self.key}"


def part_path(root: str, table: str, tenant: str, key: str, key_name: str | None = None) -> str:
    """Path of the file of one part (``key_name`` defaults to the table's partition key)."""
    key_name = key_name or PARTITION_KEY[table]
    return posixpath.join(root, table, f"tenant={tenant}", f"{key_name}={key}", PART_FILE)


def _value(segment: str, name: str, path: str) -> str:
    prefix = f"{name}="
    if not segment.startswith(prefix) or len(segment) == len(prefix):
        raise DatasetError(f"{path}: {segment!r} is not a {name}=<value> partition folder")
    return segment[len(prefix) :]


def parts(url: str, table: str, tenants: set[str] | None = None) -> list[Part]:
    """The parts of ``table`` (``tickets`` or ``time_logs``), sorted by tenant then key (months
    in calendar order; contract ids numerically when they are numbers)."""
    fs, root = filesystem(url)
    base = posixpath.join(root, table)
    if not fs.exists(base):
        return []
    key_name = PARTITION_KEY[table]
    out = []
    for tenant_dir in sorted(fs.ls(base, detail=False)):
        tenant = _value(posixpath.basename(tenant_dir.rstrip("/")), "tenant", tenant_dir)
        if tenants is not None and tenant not in tenants:
            continue
        for key_dir in sorted(fs.ls(tenant_dir, detail=False)):
            key = _value(posixpath.basename(key_dir.rstrip("/")), key_name, key_dir)
            path = posixpath.join(key_dir, PART_FILE)
            if fs.exists(path):
                out.append(Part(table, tenant, key, path))
    return sorted(out, key=lambda p: (p.tenant, _sort_key(p.key)))


def _sort_key(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def tenants(url: str) -> list[str]:
    """The tenants with a catalog in the dataset, sorted."""
    fs, root = filesystem(url)
    base = posixpath.join(root, CATALOG)
    if not fs.exists(base):
        return []
    return sorted(
        _value(posixpath.basename(d.rstrip("/")), "tenant", d) for d in fs.ls(base, detail=False)
    )


def read_part(part: Part, url: str, schema: pa.Schema | None = None) -> pa.Table:
    """The rows of one part (cast to ``schema`` when given)."""
    fs, _ = filesystem(url)
    with fs.open(part.path, "rb") as f:
        table = pq.read_table(f)
    return table.cast(schema) if schema is not None else table


#: Text columns whose values (nearly) never repeat: written plain, not dictionary-encoded.
UNIQUE_TEXT = frozenset({"ticket_id", "log_id", "breach_id", "description"})


def _repeating(schema: pa.Schema) -> list[str]:
    """The columns written dictionary-encoded: dictionary columns and text columns other than
    :data:`UNIQUE_TEXT` (statuses, priorities, tenants, policies, calendars repeat; ids and
    instants do not, and trying a dictionary on them costs a fifth of the write)."""
    return [
        f.name
        for f in schema
        if pa.types.is_dictionary(f.type)
        or (pa.types.is_string(f.type) and f.name not in UNIQUE_TEXT)
    ]


def write_table(url: str, path: str, table: pa.Table) -> None:
    """Write ``table`` to ``path`` of the dataset's file system, replacing what was there:
    written to a temporary name first and moved into place, so a reader never sees half a
    file and a retried writer leaves one copy."""
    fs, _ = filesystem(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{np.random.default_rng().integers(1 << 62):x}"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd", use_dictionary=_repeating(table.schema))
    fs.mv(tmp, path)


class PartWriter:
    """A part written a table at a time (each one a row group), then moved into place as
    :func:`write_table` does: ``with PartWriter(url, path) as w: w.write(t1); w.write(t2)``.
    The first table fixes the schema; on an error the temporary file is removed and the
    part is left as it was."""

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        self.fs, _ = filesystem(url)
        self.tmp = f"{path}.tmp-{np.random.default_rng().integers(1 << 62):x}"
        self._file: Any = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
            self._file = self.fs.open(self.tmp, "wb")
            self._writer = pq.ParquetWriter(
                self._file,
                table.schema,
                compression="zstd",
                use_dictionary=_repeating(table.schema),
            )
        self._writer.write_table(table)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
        if kind is not None:
            if self._writer is not None and self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)
            return
        if self._writer is None:
            raise DatasetError(f"{self.path}: nothing was written to the part")
        self.fs.mv(self.tmp, self.path)


def month_of(created_at: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``YYYY-MM`` (UTC) of each instant."""
    return pc.strftime(created_at.cast(pa.timestamp("s", tz="UTC")), format="%Y-%m")


def split_by(table: pa.Table, keys: pa.Array | pa.ChunkedArray) -> Iterator[tuple[str, pa.Table]]:
    """``table``'s rows grouped by ``keys`` (strings), each group in input order."""
    if table.num_rows == 0:
        return
    encoded = pc.dictionary_encode(pa.chunked_array(keys) if isinstance(keys, pa.Array) else keys)
    encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(encoded.dictionary))
    starts = np.concatenate([[0], np.cumsum(counts)])
    ordered = table.take(pa.array(order))
    for code, value in enumerate(encoded.dictionary.to_pylist()):
        yield str(value), ordered.slice(int(starts[code]), int(counts[code]))


def read_manifest(url: str) -> dict[str, Any]:
    """The dataset's manifest (:data:`MANIFEST`)."""
    fs, root = filesystem(url)
    path = posixpath.join(root, MANIFEST)
    if not fs.exists(path):
        raise DatasetError(f"{url}: no {MANIFEST}; not a dataset (effigate export writes one)")
    with fs.open(path, "r") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    return manifest


def write_manifest(url: str, manifest: dict[str, Any]) -> None:
    """Write the manifest (``format`` is set to :data:`FORMAT`)."""
    fs, root = filesystem(url)
    fs.makedirs(root, exist_ok=True)
    with fs.open(posixpath.join(root, MANIFEST), "w") as f:
        json.dump({**manifest, "format": FORMAT}, f, indent=2, sort_keys=True)


def write_tickets(url: str, tenant: str, tickets: pa.Table) -> list[str]:
    """Write a tenant's tickets (:data:`~effigate_engine.sla.schemas.TICKETS` rows), one part
    per month of ``created_at`` (UTC), each replacing the part of that month; the months
    written, in the order met."""
    _, root = filesystem(url)
    months = []
    for month, part in split_by(tickets, month_of(tickets.column("created_at"))):
        write_table(url, part_path(root, TICKETS, tenant, month), part)
        months.append(month)
    return months


def write_time_logs(url: str, tenant: str, logs: pa.Table) -> list[str]:
    """Write a tenant's time logs (:data:`~effigate_engine.ratecard.schemas.TIME_LOGS` rows),
    one part per contract holding all of its logs, each replacing that contract's part; the
    contract ids written."""
    _, root = filesystem(url)
    contracts = []
    for contract_id, part in split_by(logs, logs.column("contract_id")):
        write_table(url, part_path(root, TIME_LOGS, tenant, contract_id), part)
        contracts.append(contract_id)
    return contracts
