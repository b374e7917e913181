"""The whole ticket in the store: migration 0012 over tickets in use, the new columns in bulk
(normal form, bad rows named, columns a batch leaves out kept) and the database's own checks."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import pyarrow as pa
import pytest

from effigate_engine.store.arrow_reads import read_arrow_adbc
from effigate_engine.store.batches import (
    STORED_INSTANT,
    STORED_TICKETS,
    BatchRefused,
    split_batch,
)
from effigate_engine.store.bulk import connect_adbc, ingest_adbc
from effigate_engine.store.dsn import APP_ROLE, with_user
from effigate_engine.store.migrate import load_migrations, migrate_connection
from effigate_engine.store.tenant import tenant_transaction
from effigate_engine.store.tickets import load_status_inputs
from tests.store.conftest import app_password
from tests.store.helpers import T0, Database, seed_tenant


def test_tickets_in_use_migrate_with_no_values_and_json_created_events(
    empty_database: str,
) -> None:
    """0012 over tickets stored by 0011: the new columns are null / false / no tags, a CREATED
    event's plain priority becomes {"priority": …} (a JSON one is left as it is), other events
    are untouched, and GetTicketStatus's one-statement read returns the new columns."""

    async def scenario() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            await migrate_connection(conn, [m for m in load_migrations() if m.version < 12])
            seed = await seed_tenant(conn, "Before")
            for ticket, priority in (("OLD-1", "HIGH"), ("OLD-2", "LOW")):
                await conn.execute(
                    "INSERT INTO tickets (tenant_id, id, client_id, priority, status,"
                    " created_at) VALUES ($1, $2, $3, $4, 'OPEN', $5)",
                    seed.tenant_id,
                    ticket,
                    seed.client_id,
                    priority,
                    T0,
                )
            events = [
                ("OLD-1:created", "OLD-1", "CREATED", "HIGH"),
                ("OLD-1:p", "OLD-1", "PRIORITY_CHANGED", "LOW"),
                ("OLD-2:created", "OLD-2", "CREATED", '{"priority":"LOW"}'),
                ("OLD-2:pause", "OLD-2", "PAUSED", "WAITING_ON_CLIENT"),
            ]
            for event_id, ticket, kind, detail in events:
                await conn.execute(
                    "INSERT INTO ticket_events (tenant_id, id, ticket_id, kind, occurred_at,"
                    " detail) VALUES ($1, $2, $3, $4, $5, $6)",
                    seed.tenant_id,
                    event_id,
                    ticket,
                    kind,
                    T0 + timedelta(hours=1),
                    detail,
                )
            assert await migrate_connection(conn, load_migrations()) == [
                m.version for m in load_migrations() if m.version >= 12
            ]
            rows = await conn.fetch(
                "SELECT id, support_level, job_type, after_hours, channel, subject, requester,"
                " queue, assignee, asset, tags FROM tickets ORDER BY id"
            )
            for row in rows:
                assert dict(row) | {"id": None} == {
                    "id": None,
                    "support_level": None,
                    "job_type": None,
                    "after_hours": False,
                    "channel": None,
                    "subject": None,
                    "requester": None,
                    "queue": None,
                    "assignee": None,
                    "asset": None,
                    "tags": [],
                }
            details = dict(
                await conn.fetch("SELECT id, detail FROM ticket_events ORDER BY id")  # type: ignore[arg-type]
            )
            assert json.loads(details["OLD-1:created"]) == {"priority": "HIGH"}
            assert details["OLD-2:created"] == '{"priority":"LOW"}'
            assert details["OLD-1:p"] == "LOW"
            assert details["OLD-2:pause"] == "WAITING_ON_CLIENT"
        finally:
            await conn.close()
        app = await asyncpg.connect(
            with_user(empty_database, APP_ROLE, app_password(empty_database))
        )
        try:
            inputs = await load_status_inputs(app, seed.key, "OLD-1", T0 + timedelta(days=1), None)
            assert inputs.history is not None
            ticket = inputs.history.ticket
            assert (ticket.priority, ticket.support_level, ticket.tags) == ("HIGH", None, ())
            assert len(inputs.history.events) == 2
            async with tenant_transaction(app, seed.key):
                await app.execute(
                    "UPDATE tickets SET support_level = 'L2', tags = '{net,vip}' WHERE id = 'OLD-2'"
                )
        finally:
            await app.close()

    asyncio.run(scenario())


def _tickets(seed, ids: list[str], **columns: list) -> pa.Table:  # type: ignore[no-untyped-def]
    n = len(ids)
    data = {
        "id": ids,
        "client_id": pa.array([seed.client_id] * n, pa.int64()),
        "contract_id": pa.array([None] * n, pa.int64()),
        "priority": ["HIGH"] * n,
        "status": ["OPEN"] * n,
        "created_at": pa.array([T0] * n, STORED_INSTANT),
        "first_response_at": pa.array([None] * n, STORED_INSTANT),
        "resolved_at": pa.array([None] * n, STORED_INSTANT),
    }
    for name, values in columns.items():
        kind = pa.list_(pa.string()) if name == "tags" else None
        data[name] = pa.array(
            values, kind or (pa.bool_() if name == "after_hours" else pa.string())
        )
    return pa.table(data)


def _new_seed(db: Database):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        conn = await asyncpg.connect(db.admin)
        try:
            return await seed_tenant(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_bulk_ticket_fields_are_stored_in_normal_form_and_kept_when_left_out(
    db: Database,
) -> None:
    seed = _new_seed(db)
    batch = _tickets(
        seed,
        ["W-1", "W-2", "W-3"],
        support_level=[" l2 ", None, "sa"],
        job_type=["  network ", "", None],
        after_hours=[True, None, False],
        channel=["email", None, "Chat"],
        subject=["Printer on fire", None, None],
        requester=["ana@it.example.com", None, None],
        queue=["tier1", None, None],
        assignee=[None, "agent-7", None],
        asset=["PC-0042", None, None],
        tags=[["vip", "net", "vip"], None, []],
    )
    conn = connect_adbc(db.app)
    try:
        assert ingest_adbc(conn, STORED_TICKETS, seed.key, batch).inserted == 3
        stored = read_arrow_adbc(conn, STORED_TICKETS, seed.key).sort_by("id")
        rows = stored.select(
            ["id", "support_level", "job_type", "after_hours", "channel", "tags", "queue"]
        ).to_pylist()
        assert rows == [
            {
                "id": "W-1",
                "support_level": "L2",
                "job_type": "network",
                "after_hours": True,
                "channel": "EMAIL",
                "tags": ["net", "vip"],
                "queue": "tier1",
            },
            {
                "id": "W-2",
                "support_level": None,
                "job_type": None,
                "after_hours": False,
                "channel": None,
                "tags": [],
                "queue": None,
            },
            {
                "id": "W-3",
                "support_level": "SA",
                "job_type": None,
                "after_hours": False,
                "channel": "CHAT",
                "tags": [],
                "queue": None,
            },
        ]
        # a batch of the columns of schema 11 changes the priority and keeps the rest
        old_form = _tickets(seed, ["W-1"]).set_column(3, "priority", pa.array(["LOW"]))
        assert ingest_adbc(conn, STORED_TICKETS, seed.key, old_form).updated == 1
        again = read_arrow_adbc(conn, STORED_TICKETS, seed.key).sort_by("id").slice(0, 1)
        assert again.select(["priority", "support_level", "queue", "tags"]).to_pylist() == [
            {"priority": "LOW", "support_level": "L2", "queue": "tier1", "tags": ["net", "vip"]}
        ]
        # re-sending the same rows changes nothing
        assert ingest_adbc(conn, STORED_TICKETS, seed.key, batch.slice(1)).unchanged == 2
    finally:
        conn.close()


def test_bad_ticket_fields_in_bulk_are_rows_named_by_position_and_field(db: Database) -> None:
    seed = _new_seed(db)
    batch = _tickets(
        seed,
        ["B-0", "B-1", "B-2", "B-3", "B-4", "B-5"],
        support_level=["L1", "L9", None, None, None, None],
        channel=[None, None, "FAX", None, None, None],
        requester=[None, None, None, "nobody", None, None],
        tags=[[], [], [], [], ["a,b"], ["ok"]],
        job_type=[None, None, None, None, None, "x" * 65],
    )
    valid, rejected = split_batch(STORED_TICKETS, batch)
    assert valid.column("id").to_pylist() == ["B-0"]
    assert rejected.select(["row", "field"]).to_pylist() == [
        {"row": 1, "field": "tickets.support_level"},
        {"row": 2, "field": "tickets.channel"},
        {"row": 3, "field": "tickets.requester"},
        {"row": 4, "field": "tickets.tags"},
        {"row": 5, "field": "tickets.job_type"},
    ]
    messages = rejected.column("message").to_pylist()
    assert messages[0] == "tickets.support_level[1] (id 'B-1'): 'L9' is not one of L1, L2, L3, SA"
    assert "has a comma" in messages[3]
    assert "longer than 64 characters" in messages[4]
    conn = connect_adbc(db.app)
    try:
        with pytest.raises(BatchRefused) as refused:
            ingest_adbc(conn, STORED_TICKETS, seed.key, batch)
        assert refused.value.field == "tickets.support_level[1]"
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("support_level", "'l2'"),
        ("channel", "'FAX'"),
        ("job_type", "' padded'"),
        ("requester", "'no-at-sign'"),
        ("tags", "'{b,a}'"),
        ("tags", "'{a,a}'"),
        ("tags", "'{\"a,b\"}'"),
        ("tags", "'{\"\"}'"),
        ("tags", "ARRAY[NULL]::text[]"),
    ],
)
def test_the_database_keeps_ticket_fields_in_normal_form(
    db: Database, column: str, value: str
) -> None:
    seed = _new_seed(db)

    async def go() -> None:
        conn = await asyncpg.connect(db.admin)
        try:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(
                    f"INSERT INTO tickets (tenant_id, id, client_id, priority, status, created_at,"
                    f" {column}) VALUES ($1, 'N-1', $2, 'HIGH', 'OPEN', $3, {value})",
                    seed.tenant_id,
                    seed.client_id,
                    T0,
                )
        finally:
            await conn.close()

    asyncio.run(go())
