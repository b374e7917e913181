"""Loading a job's SLA results back: standings upserted by (ticket, metric), breaches inserted
once, loading twice leaves the same rows, an older result never replaces a newer one, and a
bad part fails alone leaving the store as it was with an error naming the file and field."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from effigate_engine import sla
from effigate_engine.datasets import catalog as ds_catalog
from effigate_engine.datasets import layout
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.service import datasets
from effigate_engine.service.dataset_results import EVALUATED_AT_KEY
from effigate_engine.sla.schemas import TICKETS
from effigate_engine.store import standings as standings_store
from tests.datasets.support import AS_OF, Seeded
from tests.service.support import open_store
from tests.store.helpers import Database


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def write_results(url: str, tenant: str, *, metadata: dict[bytes, bytes] | None = None) -> int:
    """Evaluate each tickets part under the catalog and write the SLA results parts the jobs
    write (SLA_RESULTS + tenant_id, and the part's breach records); the results' row count."""
    compiled = ds_catalog.compiled(ds_catalog.load_catalog(url, tenant))
    _, root = layout.filesystem(url)
    rows = 0
    for part in layout.parts(url, layout.TICKETS, {tenant}):
        evaluation = sla.evaluate(
            layout.read_part(part, url, TICKETS), compiled.policies, compiled.calendars, AS_OF
        )
        results = evaluation.results.append_column(
            "tenant_id", pa.array([tenant] * evaluation.results.num_rows, pa.string())
        )
        if metadata is not None:
            results = results.replace_schema_metadata(metadata)
        layout.write_table(
            url, layout.part_path(root, "results/sla", tenant, part.key, "month"), results
        )
        layout.write_table(
            url,
            layout.part_path(root, "results/sla_breaches", tenant, part.key, "month"),
            sla.breach_records(evaluation),
        )
        rows += results.num_rows
    return rows


def load(db: Database, url: str, seeded: Seeded) -> datasets.LoadSummary:
    async def go() -> Any:
        async with open_store(db) as store:
            return await datasets.load_sla_results(store, url, tenants=[seeded.principal])

    return run(go())


def stored(db: Database, seeded: Seeded) -> tuple[list[Any], list[str]]:
    """The tenant's standings and breach record ids."""

    async def go() -> tuple[list[Any], list[str]]:
        async with open_store(db) as store, store.transaction(seeded.principal) as conn:
            rows = await standings_store.load_standings(conn)
            breaches = await standings_store.tenant_breaches(conn, None)
        return [tuple(r) for r in rows], [b["id"] for b in breaches]

    return run(go())


@pytest.fixture
def exported(db: Database, seeded: Seeded, tmp_path: Path) -> str:
    url = str(tmp_path / "ds")

    async def go() -> None:
        async with open_store(db) as store:
            await datasets.export_dataset(store, url, tenants=[seeded.principal], as_of=AS_OF)

    run(go())
    return url


def test_loading_twice_leaves_the_same_rows(db: Database, seeded: Seeded, exported: str) -> None:
    tenant = str(seeded.principal.tenant_id)
    n = write_results(exported, tenant)
    _, breaches_before = stored(db, seeded)
    first = load(db, exported, seeded)
    assert (first.parts, first.standings) == (2, n)
    standings, breaches = stored(db, seeded)
    assert len(standings) == n == first.inserted + first.replaced + first.kept
    assert {s[9] for s in standings} == {AS_OF}  # evaluated at the dataset's as-of instant
    assert len(set(breaches)) == len(breaches) and set(breaches_before) <= set(breaches)
    assert len(breaches) - len(breaches_before) == first.new_breaches
    second = load(db, exported, seeded)
    assert (second.inserted, second.replaced, second.kept) == (0, n, 0)
    assert second.new_breaches == 0 and second.breaches == first.breaches > 0
    assert stored(db, seeded) == (standings, breaches)
    assert "standings" in second.line()
    by_key = {(s[0], s[1]): s for s in standings}
    assert {s[2] for s in by_key.values()} <= set(sla.schemas.STATUSES)


def test_an_older_result_does_not_replace_a_newer_one(
    db: Database, seeded: Seeded, exported: str
) -> None:
    tenant = str(seeded.principal.tenant_id)
    write_results(exported, tenant)
    load(db, exported, seeded)
    before = stored(db, seeded)
    earlier = (AS_OF - timedelta(days=1)).isoformat().encode()
    n = write_results(exported, tenant, metadata={EVALUATED_AT_KEY: earlier})
    summary = load(db, exported, seeded)
    assert (summary.inserted, summary.replaced, summary.kept) == (0, 0, n)
    assert stored(db, seeded) == before


def test_a_part_with_an_unknown_ticket_fails_alone(
    db: Database, seeded: Seeded, exported: str
) -> None:
    tenant = str(seeded.principal.tenant_id)
    later = (AS_OF + timedelta(hours=1)).isoformat().encode()
    write_results(exported, tenant, metadata={EVALUATED_AT_KEY: later})
    before, breaches_before = stored(db, seeded)
    _, root = layout.filesystem(exported)
    path = layout.part_path(root, "results/sla", tenant, "2026-03", "month")
    part = layout.read_part(layout.Part("results", tenant, "2026-03", path), exported)
    ids = part.column("ticket_id").to_pylist()
    ids[-1] = "NO-SUCH-TICKET"
    layout.write_table(exported, path, part.set_column(0, "ticket_id", pa.array(ids)))
    with pytest.raises(DatasetError) as caught:
        load(db, exported, seeded)
    message = str(caught.value)
    assert "month=2026-03/part-0.parquet" in message and "ticket_id" in message
    assert "nothing of it stored" in message
    assert "sla_standings.ticket_id: 'NO-SUCH-TICKET' is not a ticket of this tenant" in message
    # parts load in order: February's committed (evaluated later), March's left nothing
    february = _february(exported, tenant)
    standings, breaches = stored(db, seeded)
    assert {s[9] for s in standings if s[0] in february} == {AS_OF + timedelta(hours=1)}
    march = [s for s in standings if s[0] not in february]
    assert march == [s for s in before if s[0] not in february]
    assert {b for b in breaches if b.split(":")[0] not in february} == {
        b for b in breaches_before if b.split(":")[0] not in february
    }


def _february(url: str, tenant: str) -> set[str]:
    parts = layout.parts(url, layout.TICKETS, {tenant})
    return set(layout.read_part(parts[0], url).column("ticket_id").to_pylist())


def test_bad_input_names_the_path_and_field(
    db: Database, seeded: Seeded, exported: str, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match=r"no results/sla parts"):
        load(db, str(tmp_path / "nothing"), seeded)
    tenant = str(seeded.principal.tenant_id)
    write_results(exported, tenant)
    _, root = layout.filesystem(exported)
    path = layout.part_path(root, "results/sla", tenant, "2026-02", "month")
    part = layout.read_part(layout.Part("results", tenant, "2026-02", path), exported)
    layout.write_table(exported, path, part.drop_columns(["remaining_seconds"]))
    before = stored(db, seeded)
    with pytest.raises(DatasetError, match=r"month=2026-02/part-0.parquet: column 'remaining_"):
        load(db, exported, seeded)
    layout.write_table(exported, path, part.set_column(0, "ticket_id", pa.nulls(len(part))))
    with pytest.raises(DatasetError, match=r"part-0.parquet.ticket_id\[0\]: is null"):
        load(db, exported, seeded)
    assert stored(db, seeded) == before
    shutil.rmtree(Path(exported) / "results")
    with pytest.raises(DatasetError, match="no results/sla parts"):
        load(db, exported, seeded)
