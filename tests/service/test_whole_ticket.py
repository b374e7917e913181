"""The whole ticket through the service: the fold of the new events (as of any instant), the
contract's scope on create, events and bulk rows, event idempotency and ``apply_events`` inside
a caller's transaction."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effigate_engine.errors import EffigateError
from effigate_engine.service import catalog, contracts, tickets
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition
from effigate_engine.store.batches import STORED_INSTANT, BatchRefused
from effigate_engine.store.database import Store
from tests.service.support import new_tenant, open_store
from tests.store.helpers import Database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


async def _client_and_scoped_contract(store: Store, principal: Principal) -> tuple[int, int]:
    client = await catalog.create_client(store, principal, "Contoso")
    contract = await contracts.create_contract(
        store,
        principal,
        client_id=client,
        contract_type="HOURLY",
        currency="USD",
        starts_on=date(2026, 1, 1),
        terms={"scope": {"support_levels": ["L1", "L2"], "job_types": ["network", "support"]}},
    )
    return client, contract.id


def _row(table: pa.Table) -> dict:
    (row,) = table.select(["priority", "support_level", "job_type", "assignee"]).to_pylist()
    return row


def test_a_fold_as_of_an_instant_gives_the_values_known_then(db: Database) -> None:
    """Created L1/network/queue q1/agent a1 at 09:00; L2 at 10:00, job type database at 11:00,
    reassigned at 12:00, queue and tags changed at 13:00, HIGH at 14:00. Timelines as of each
    instant carry the values then; the stored row carries the latest."""

    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client, _ = await _client_and_scoped_contract(store, principal)
            fields = tickets.ticket_fields_of(
                support_level="l1",
                job_type="network",
                queue="q1",
                assignee="a1",
                tags=["x"],
                after_hours=True,
            )
            await tickets.create_ticket(store, principal, "F-1", client, "LOW", T0, None, fields)
            changes = [
                ("SUPPORT_LEVEL_CHANGED", T0 + H, {"support_level": "L2"}),
                ("JOB_TYPE_CHANGED", T0 + 2 * H, {"job_type": "database"}),
                ("ASSIGNED", T0 + 3 * H, {"assignee": "a2"}),
                ("QUEUE_CHANGED", T0 + 4 * H, {"queue": "q2"}),
                ("TAGS_CHANGED", T0 + 4 * H, {"tags": ["z", "y", "z"]}),
                ("PRIORITY_CHANGED", T0 + 5 * H, {"priority": "P1"}),
            ]
            for n, (kind, at, extra) in enumerate(changes):
                record = await tickets.record_event(
                    store, principal, f"F-1/{n}", "F-1", kind, at, **extra
                )
            assert (record.priority, record.support_level, record.job_type) == (
                "CRITICAL",
                "L2",
                "database",
            )
            assert (record.queue, record.assignee, record.tags) == ("q2", "a2", ("y", "z"))
            expected = [
                (T0, ("LOW", "L1", "network", "a1")),
                (T0 + H - timedelta(seconds=1), ("LOW", "L1", "network", "a1")),
                (T0 + H, ("LOW", "L2", "network", "a1")),
                (T0 + 2 * H, ("LOW", "L2", "database", "a1")),
                (T0 + 3 * H, ("LOW", "L2", "database", "a2")),
                (T0 + 5 * H, ("CRITICAL", "L2", "database", "a2")),
            ]
            for at, (priority, level, job, assignee) in expected:
                async with store.transaction(principal) as conn:
                    table = await tickets.load_timelines(
                        conn, principal, ticket_ids=["F-1"], as_of=at
                    )
                assert _row(table) == {
                    "priority": priority,
                    "support_level": level,
                    "job_type": job,
                    "assignee": assignee,
                }, at
                assert table.column("after_hours").to_pylist() == [True]

    asyncio.run(go())


def test_the_created_event_carries_the_initial_values_as_json(db: Database) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client = await catalog.create_client(store, principal, "Contoso")
            fields = tickets.ticket_fields_of(support_level="L3", tags=["b", "a"])
            await tickets.create_ticket(store, principal, "J-1", client, "P2", T0, None, fields)
            async with store.transaction(principal) as conn:
                events = await tickets.stored.load_events(conn, "J-1")
        ((_, kind, _, detail),) = events
        assert kind == "CREATED"
        assert json.loads(detail) == {"priority": "HIGH", "support_level": "L3", "tags": ["a", "b"]}

    asyncio.run(go())


def test_a_plain_created_detail_is_the_priority_and_the_rest_comes_from_the_row() -> None:
    record = tickets.TicketRecord(
        "L-1", 1, None, "LOW", "OPEN", T0, None, None, support_level="L2", job_type="net"
    )
    line = tickets.fold([("L-1:created", "CREATED", T0, "HIGH")], record)
    assert (line.priority, line.support_level, line.job_type) == ("HIGH", "L2", "net")
    json_line = tickets.fold([("L-1:created", "CREATED", T0, '{"priority":"HIGH"}')], record)
    assert (json_line.priority, json_line.support_level, json_line.job_type) == (
        "HIGH",
        None,
        None,
    )


def test_a_change_at_the_creation_instant_is_applied_after_the_created_event() -> None:
    record = tickets.TicketRecord("A-1", 1, None, "LOW", "OPEN", T0, None, None)
    events = [
        ("A-0", "SUPPORT_LEVEL_CHANGED", T0, "L3"),  # sorts before "A-1:created" by id
        ("A-1:created", "CREATED", T0, '{"priority":"LOW","support_level":"L1"}'),
    ]
    assert tickets.fold(events, record).support_level == "L3"


def test_values_outside_the_contract_scope_are_refused_on_create_and_events(
    db: Database,
) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client, contract = await _client_and_scoped_contract(store, principal)
            with pytest.raises(FailedPrecondition) as refused:
                await tickets.create_ticket(
                    store,
                    principal,
                    "S-1",
                    client,
                    "HIGH",
                    T0,
                    contract,
                    tickets.ticket_fields_of(support_level="L3"),
                )
            assert str(refused.value) == (
                f"support_level: 'L3' is not allowed by contract {contract} (allowed: L1, L2)"
            )
            with pytest.raises(FailedPrecondition, match="job_type: 'devops' is not allowed"):
                await tickets.create_ticket(
                    store,
                    principal,
                    "S-1",
                    client,
                    "HIGH",
                    T0,
                    contract,
                    tickets.ticket_fields_of(job_type="devops"),
                )
            ok = tickets.ticket_fields_of(support_level="L1", job_type="network")
            await tickets.create_ticket(store, principal, "S-1", client, "HIGH", T0, contract, ok)
            with pytest.raises(FailedPrecondition, match="'SA' is not allowed by contract"):
                await tickets.record_event(
                    store, principal, "S-1/1", "S-1", "SUPPORT_LEVEL_CHANGED", T0 + H,
                    support_level="sa",
                )  # fmt: skip
            with pytest.raises(FailedPrecondition, match="'devops' is not allowed by contract"):
                await tickets.record_event(
                    store, principal, "S-1/2", "S-1", "JOB_TYPE_CHANGED", T0 + H, job_type="devops"
                )
            record = await tickets.record_event(
                store, principal, "S-1/3", "S-1", "SUPPORT_LEVEL_CHANGED", T0 + H,
                support_level="L2",
            )  # fmt: skip
            assert record.support_level == "L2"
            async with store.transaction(principal) as conn:
                assert len(await tickets.stored.load_events(conn, "S-1")) == 2
            # a ticket without a contract carries any level
            await tickets.create_ticket(
                store, principal, "S-2", client, "HIGH", T0, None,
                tickets.ticket_fields_of(support_level="L3"),
            )  # fmt: skip

    asyncio.run(go())


def _bulk_tickets(client: int, contract: int, levels: list[str | None]) -> pa.Table:
    n = len(levels)
    return pa.table(
        {
            "id": [f"BK-{i}" for i in range(n)],
            "client_id": pa.array([client] * n, pa.int64()),
            "contract_id": pa.array([contract] * n, pa.int64()),
            "priority": ["HIGH"] * n,
            "status": ["OPEN"] * n,
            "created_at": pa.array([T0] * n, STORED_INSTANT),
            "first_response_at": pa.array([None] * n, STORED_INSTANT),
            "resolved_at": pa.array([None] * n, STORED_INSTANT),
            "support_level": pa.array(levels, pa.string()),
            "job_type": pa.array(["network"] * (n - 1) + ["devops"], pa.string()),
        }
    )


def test_bulk_rows_outside_the_contract_scope_are_invalid_rows(db: Database) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client, contract = await _client_and_scoped_contract(store, principal)
            batch = _bulk_tickets(client, contract, ["L1", "l3", None, "L2"])
            with pytest.raises(BatchRefused) as refused:
                await tickets.ingest_rows(store, principal, "tickets", batch, False)
            rejected = refused.value.rejected.to_pylist()
            assert [(r["row"], r["field"]) for r in rejected] == [
                (1, "tickets.support_level"),
                (3, "tickets.job_type"),
            ]
            assert rejected[0]["message"] == (
                f"tickets.support_level[1] (id 'BK-1'): 'L3' is not allowed by contract"
                f" {contract} (allowed: L1, L2)"
            )
            # contract ids sent as text are read as the batch reads them
            as_text = batch.set_column(2, "contract_id", pc.cast(batch["contract_id"], pa.string()))
            with pytest.raises(BatchRefused) as refused:
                await tickets.ingest_rows(store, principal, "tickets", as_text, False)
            assert refused.value.rejected.num_rows == 2
            result = await tickets.ingest_rows(store, principal, "tickets", batch, True)
            assert (result.inserted, result.rejected.num_rows) == (2, 2)
            events = pa.table(
                {
                    "id": ["e-0", "e-1", "e-2", "e-3"],
                    "ticket_id": ["BK-0", "BK-0", "BK-2", "BK-2"],
                    "kind": ["SUPPORT_LEVEL_CHANGED", "SUPPORT_LEVEL_CHANGED", "JOB_TYPE_CHANGED",
                             "SUPPORT_LEVEL_CHANGED"],
                    "occurred_at": pa.array([T0 + H] * 4, STORED_INSTANT),
                    "actor": pa.array([None] * 4, pa.string()),
                    "detail": ["L2", "L3", "devops", "bogus"],
                }
            )  # fmt: skip
            with pytest.raises(BatchRefused) as refused:
                await tickets.ingest_rows(store, principal, "events", events, False)
            rows = refused.value.rejected.to_pylist()
            assert [(r["row"], r["field"]) for r in rows] == [
                (1, "ticket_events.detail"),
                (2, "ticket_events.detail"),
                (3, "ticket_events.detail"),
            ]
            assert "(support_level) is not allowed by contract" in rows[0]["message"]
            assert "(support_level) is not one of L1, L2, L3, SA" in rows[2]["message"]
            stored = await tickets.ingest_rows(store, principal, "events", events, True)
            assert stored.inserted == 1

    asyncio.run(go())


def test_events_are_idempotent_by_id_and_a_changed_resend_is_refused(db: Database) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client = await catalog.create_client(store, principal, "Contoso")
            await tickets.create_ticket(store, principal, "I-1", client, "HIGH", T0)
            for _ in range(2):
                record = await tickets.record_event(
                    store, principal, "I-1/a", "I-1", "ASSIGNED", T0 + H, assignee="agent-1"
                )
                assert record.assignee == "agent-1"
            with pytest.raises(FailedPrecondition, match="another ticket, kind, time or detail"):
                await tickets.record_event(
                    store, principal, "I-1/a", "I-1", "ASSIGNED", T0 + H, assignee="agent-2"
                )
            record = await tickets.record_event(
                store, principal, "I-1/b", "I-1", "ASSIGNED", T0 + 2 * H, assignee=""
            )
            assert record.assignee is None
            with pytest.raises(EffigateError, match="support_level: is required"):
                await tickets.record_event(
                    store, principal, "I-1/c", "I-1", "SUPPORT_LEVEL_CHANGED", T0 + H
                )
            with pytest.raises(EffigateError, match=r"tags\[0\]: 'a,b' has a comma"):
                await tickets.record_event(
                    store, principal, "I-1/d", "I-1", "TAGS_CHANGED", T0 + H, tags=["a,b"]
                )
            async with store.transaction(principal) as conn:
                assert len(await tickets.stored.load_events(conn, "I-1")) == 3

    asyncio.run(go())


def test_apply_events_records_and_refolds_inside_the_callers_transaction(db: Database) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client, contract = await _client_and_scoped_contract(store, principal)
            await tickets.create_ticket(store, principal, "R-1", client, "LOW", T0, contract)
            batch = [
                ("R-1/q", "QUEUE_CHANGED", T0 + H, "network"),
                ("R-1/p", "PRIORITY_CHANGED", T0 + H, "P1"),
                ("R-1/l", "SUPPORT_LEVEL_CHANGED", T0 + H, "l2"),
                ("R-1/t", "TAGS_CHANGED", T0 + H, "vip,net"),
            ]
            async with store.transaction(principal) as conn:
                record = await tickets.apply_events(conn, principal, "R-1", batch)
            assert (record.queue, record.priority, record.support_level, record.tags) == (
                "network",
                "CRITICAL",
                "L2",
                ("net", "vip"),
            )
            async with store.transaction(principal) as conn:
                again = await tickets.apply_events(conn, principal, "R-1", batch)
                assert again == record
                assert len(await tickets.stored.load_events(conn, "R-1")) == 5
            # one refused event refuses the call; the caller's transaction rolls back
            with pytest.raises(FailedPrecondition, match="'L3' is not allowed by contract"):
                async with store.transaction(principal) as conn:
                    await tickets.apply_events(
                        conn,
                        principal,
                        "R-1",
                        [
                            ("R-1/a", "ASSIGNED", T0 + 2 * H, "agent-9"),
                            ("R-1/x", "SUPPORT_LEVEL_CHANGED", T0 + 2 * H, "L3"),
                        ],
                    )
            with pytest.raises(EffigateError, match=r"events\[0\].kind: 'CREATED' is not one of"):
                async with store.transaction(principal) as conn:
                    await tickets.apply_events(
                        conn, principal, "R-1", [("R-1/c", "CREATED", T0, "")]
                    )
            assert (await tickets.get_ticket(store, principal, "R-1")).assignee is None

    asyncio.run(go())


_VALUE_KINDS = {
    "SUPPORT_LEVEL_CHANGED": ("support_level", ["L1", "L2", "L3", "SA"]),
    "JOB_TYPE_CHANGED": ("job_type", ["network", "database"]),
    "ASSIGNED": ("assignee", ["a1", "a2", None]),
    "QUEUE_CHANGED": ("queue", ["q1", "q2", None]),
    "PRIORITY_CHANGED": ("priority", ["LOW", "HIGH"]),
}


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(sorted(_VALUE_KINDS)),
            st.integers(0, 20),  # minutes after creation: ties are common
            st.integers(0, 5),  # which value
            st.text("abc", min_size=1, max_size=3),  # event id
        ),
        max_size=25,
        unique_by=lambda e: e[3],
    ),
    cut=st.integers(0, 21),
    initial_level=st.sampled_from([None, "L1", "SA"]),
)
@settings(max_examples=300, deadline=None)
def test_the_fold_takes_the_latest_event_of_each_kind_known_then(
    events: list, cut: int, initial_level: str | None
) -> None:
    """Whatever the order events arrive in, the fold of those known at an instant gives, for
    each field, the value of the latest (by time, then id) event of its kind, else the initial
    value the CREATED event carries."""
    record = tickets.TicketRecord("H-1", 1, None, "LOW", "OPEN", T0, None, None)
    created = (
        "H-1:created",
        "CREATED",
        T0,
        tickets.created_detail("MEDIUM", initial_level, "endpoint", None, "a0"),
    )
    sent = [created]
    for kind, minutes, which, event_id in events:
        values = _VALUE_KINDS[kind][1]
        sent.append((event_id, kind, T0 + timedelta(minutes=minutes), values[which % len(values)]))
    known = [e for e in sent if e[2] <= T0 + timedelta(minutes=cut)]
    line = tickets.fold(reversed(known), record)
    expected = {
        "priority": "MEDIUM",
        "support_level": initial_level,
        "job_type": "endpoint",
        "assignee": "a0",
        "queue": None,
    }
    for kind, (name, _) in _VALUE_KINDS.items():
        mine = [e for e in known if e[1] == kind]
        if mine:
            expected[name] = max(mine, key=lambda e: (e[2], e[0]))[3]
    assert {name: getattr(line, name) for name in expected} == expected
