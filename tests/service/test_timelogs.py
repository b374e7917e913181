"""Time logs through the store: idempotent all-or-nothing ingest, approval, closed periods."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from effigate_engine.errors import EffigateError
from effigate_engine.service import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    invoicing,
    timelogs,
)
from effigate_engine.store.errors import StoreError
from tests.service.support import open_store
from tests.service.test_invoicing import (
    MARCH,
    SEED_SPANS,
    fetch_all,
    log_batch,
    new_contract,
    run,
    setup,
)
from tests.store.helpers import Database


def test_ingest_is_idempotent_and_all_or_nothing(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s)
            batch = log_batch(c.id, SEED_SPANS, f"I{c.id}")
            first = await timelogs.ingest_time_logs(store, p, batch)
            assert (first.received, first.inserted, first.updated) == (6, 6, 0)
            again = await timelogs.ingest_time_logs(store, p, batch)
            assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
            rows = await fetch_all(
                db,
                "SELECT approval_state FROM time_logs WHERE contract_id = $1",
                c.id,
            )
            assert [r["approval_state"] for r in rows] == ["PENDING"] * 6

            # A bad contract id refuses the whole batch: nothing of it is stored.
            bad = log_batch(c.id, SEED_SPANS[:2], f"X{c.id}")
            bad = bad.set_column(1, "contract_id", pa.array([c.id, 10**9], pa.int64()))
            with pytest.raises(StoreError) as err:
                await timelogs.ingest_time_logs(store, p, bad)
            assert err.value.field == "time_logs.contract_id"
            assert not await fetch_all(db, "SELECT 1 FROM time_logs WHERE id LIKE $1", f"X{c.id}-%")

            portal = replace(p, client_id=s.client_id)
            with pytest.raises(PermissionDenied):
                await timelogs.ingest_time_logs(store, portal, batch)

    run(scenario())


def test_approval_counts_changes_and_names_unknown_ids(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s)
            batch = log_batch(c.id, SEED_SPANS, f"A{c.id}")
            await timelogs.ingest_time_logs(store, p, batch)
            ids = batch.column("id").to_pylist()
            assert await timelogs.set_approval(store, p, ids[:4]) == 4
            assert await timelogs.set_approval(store, p, ids) == 2
            assert await timelogs.set_approval(store, p, ids) == 0
            with pytest.raises(NotFound) as err:
                await timelogs.set_approval(store, p, [ids[0], "nope"], "REJECTED")
            assert (err.value.field, err.value.value) == ("log_ids[1]", "nope")
            assert await timelogs.set_approval(store, p, [ids[0]], "REJECTED") == 1
            # Rejected and pending logs stay off the invoice.
            await timelogs.set_approval(store, p, [ids[1]], "PENDING")
            preview = await invoicing.preview_invoice(store, p, c.id, MARCH)
            assert sum(line.quantity for line in preview.lines) == (2 * 7 + 0.5 + 3) * 3600

    run(scenario())


def test_closed_period_refuses_changed_logs(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s)
            batch = log_batch(c.id, SEED_SPANS, f"P{c.id}")
            await timelogs.ingest_time_logs(store, p, batch)
            ids = batch.column("id").to_pylist()
            await timelogs.set_approval(store, p, ids)

            assert (await timelogs.get_period(store, p, c.id, MARCH)).id is None
            period = await timelogs.close_period(store, p, c.id, date(2026, 3, 12))
            assert (period.status, period.starts_on, period.ends_on) == (
                "CLOSED",
                MARCH,
                date(2026, 4, 1),
            )
            assert period.closed_at is not None and period.ordinal == 0
            assert await timelogs.close_period(store, p, c.id, MARCH) == period
            assert await timelogs.get_period(store, p, c.id, MARCH) == period

            # An identical resend is a no-op; a changed one is refused, all or nothing.
            same = await timelogs.ingest_time_logs(
                store, p, batch.append_column("approval_state", pa.array(["APPROVED"] * 6))
            )
            assert same.unchanged == 6
            changed = batch.set_column(
                4, "agent", pc.if_else(pc.equal(batch.column("id"), ids[2]), "ben", "ana")
            ).append_column("approval_state", pa.array(["APPROVED"] * 6))
            with pytest.raises(FailedPrecondition) as err:
                await timelogs.ingest_time_logs(store, p, changed)
            assert err.value.field == "time_logs.agent"
            with pytest.raises(FailedPrecondition):
                await timelogs.set_approval(store, p, [ids[0]], "REJECTED")
            # A late log may still arrive in the closed period (it is then read-only too).
            late = log_batch(c.id, [("2026-03-20T09:00-04:00", "2026-03-20T10:00-04:00")], "LATE")
            assert (await timelogs.ingest_time_logs(store, p, late)).inserted == 1
            # The closed period is still invoiced, from its approved logs.
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            assert (
                inv.billing_period_id == period.id and inv.total_minor == 435_600
            )  # late log pending
            audit = await fetch_all(
                db,
                "SELECT entity_id FROM audit_log WHERE action = 'close_period' AND tenant_id = $1",
                p.tenant_id,
            )
            assert [r["entity_id"] for r in audit] == [str(period.id)]

    run(scenario())


def _instants(batch: pa.Table, name: str, changes: dict[int, object]) -> pa.Table:
    values = batch.column(name).to_pylist()
    for k, v in changes.items():
        values[k] = v
    index = batch.column_names.index(name)
    return batch.set_column(index, name, pa.array(values, batch.schema.field(name).type))


def test_bad_rows_refuse_the_batch_by_name_unless_skipped(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s)
            batch = log_batch(c.id, SEED_SPANS, f"H{c.id}")
            far = datetime(2150, 1, 1, tzinfo=UTC)
            bad = _instants(batch, "ended_at", {1: far})
            bad = _instants(bad, "started_at", {4: datetime(1999, 12, 31, tzinfo=UTC)})
            with pytest.raises(EffigateError) as err:
                await timelogs.ingest_time_logs(store, p, bad)
            text = str(err.value)
            assert "2 rows cannot be stored" in text
            assert "time_logs.ended_at[1]" in text and "2150-01-01" in text
            assert "time_logs.started_at[4]" in text and "1999-12-31" in text
            assert not await fetch_all(db, "SELECT 1 FROM time_logs WHERE id LIKE $1", f"H{c.id}-%")

            kept = await timelogs.ingest_time_logs(store, p, bad, skip_invalid_rows=True)
            assert (kept.received, kept.inserted, kept.rejected.num_rows) == (6, 4, 2)
            assert kept.rejected.column("row").to_pylist() == [1, 4]
            again = await timelogs.ingest_time_logs(store, p, bad, skip_invalid_rows=True)
            assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
            rows = await fetch_all(db, "SELECT id FROM time_logs WHERE id LIKE $1", f"H{c.id}-%")
            assert len(rows) == 4

    run(scenario())
