"""The bulk path of ticket events (``ticket_changes.apply_changes``) stores and folds exactly
what ``tickets.apply_events`` does one ticket at a time, refuses what it refuses (nothing of
the batch stored), and records a re-sent batch once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from effigate_engine.errors import EffigateError
from effigate_engine.service import tickets
from effigate_engine.service.errors import FailedPrecondition
from effigate_engine.service.ticket_changes import apply_changes
from tests.service.support import new_tenant, open_store
from tests.service.test_whole_ticket import _client_and_scoped_contract
from tests.store.helpers import Database

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)

#: Per ticket (suffix), its events as (id suffix, kind, hours after T0, detail).
CHANGES = {
    "1": [
        ("q", "QUEUE_CHANGED", 1, "network"),
        ("p", "PRIORITY_CHANGED", 1, "P1"),
        ("a", "ASSIGNED", 2, "ana"),
        ("t", "TAGS_CHANGED", 2, "vip,b"),
    ],
    "2": [
        ("l", "SUPPORT_LEVEL_CHANGED", 1, "l2"),
        ("q1", "QUEUE_CHANGED", 1, "desk"),
        ("q2", "QUEUE_CHANGED", 1, "oncall"),  # the same instant: the later id wins
        ("a", "ASSIGNED", 3, None),
    ],
    "3": [("j", "JOB_TYPE_CHANGED", 4, "support"), ("r", "RESOLVED", 5, None)],
}


def _events(prefix: str, suffix: str) -> list[tuple[str, str, datetime, str | None]]:
    return [
        (f"{prefix}{suffix}:{n}", kind, T0 + hours * H, detail)
        for n, kind, hours, detail in CHANGES[suffix]
    ]


def test_the_bulk_path_stores_and_folds_what_apply_events_does(db: Database) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client, contract = await _client_and_scoped_contract(store, principal)
            fields = tickets.ticket_fields_of(support_level="L1", job_type="network")
            for prefix in ("A", "B"):
                for suffix in CHANGES:
                    await tickets.create_ticket(
                        store,
                        principal,
                        f"{prefix}{suffix}",
                        client,
                        "MEDIUM",
                        T0,
                        contract,
                        fields,
                    )
            async with store.transaction(principal) as conn:
                one_by_one = {
                    s: await tickets.apply_events(conn, principal, f"A{s}", _events("A", s))
                    for s in CHANGES
                }
            async with store.transaction(principal) as conn:
                bulk = await apply_changes(
                    conn, principal, {f"B{s}": _events("B", s) for s in CHANGES}
                )
                # sent again: nothing new stored, nothing refolded
                assert (
                    await apply_changes(
                        conn, principal, {f"B{s}": _events("B", s) for s in CHANGES}
                    )
                    == {}
                )
            for s in CHANGES:
                assert dataclasses.replace(bulk[f"B{s}"], id=f"A{s}") == one_by_one[s]
            assert one_by_one["2"].queue == "oncall" and one_by_one["2"].assignee is None
            assert one_by_one["1"].priority == "CRITICAL" and one_by_one["1"].tags == ("b", "vip")
            async with store.transaction(principal) as conn:
                stored = {
                    r["id"].replace("B", "A", 1): (r["kind"], r["occurred_at"], r["detail"])
                    for r in await conn.fetch(
                        "SELECT id, kind, occurred_at, detail FROM ticket_events"
                        " WHERE ticket_id LIKE 'B%' AND kind <> 'CREATED'"
                    )
                }
                expected = {
                    r["id"]: (r["kind"], r["occurred_at"], r["detail"])
                    for r in await conn.fetch(
                        "SELECT id, kind, occurred_at, detail FROM ticket_events"
                        " WHERE ticket_id LIKE 'A%' AND kind <> 'CREATED'"
                    )
                }
            assert stored == expected and len(stored) == 10

    asyncio.run(go())


def test_a_refused_event_stores_nothing_of_the_batch(db: Database) -> None:
    async def go() -> None:
        principal = await new_tenant(db)
        async with open_store(db) as store:
            client, contract = await _client_and_scoped_contract(store, principal)
            for ticket_id in ("C1", "C2"):
                await tickets.create_ticket(
                    store, principal, ticket_id, client, "LOW", T0, contract
                )
            good = [("C1:q", "QUEUE_CHANGED", T0 + H, "desk")]
            for bad, refusal, match in (
                ([("C2:l", "SUPPORT_LEVEL_CHANGED", T0 + H, "L3")], FailedPrecondition, "L3"),
                ([("C2:e", "QUEUE_CHANGED", T0 - H, "desk")], EffigateError, "before the ticket"),
                ([("C2:k", "CREATED", T0 + H, None)], EffigateError, "events\\[0\\].kind"),
            ):
                with pytest.raises(refusal, match=match):
                    async with store.transaction(principal) as conn:
                        await apply_changes(conn, principal, {"C1": good, "C2": bad})
            async with store.transaction(principal) as conn:
                assert (
                    await conn.fetchval(
                        "SELECT count(*) FROM ticket_events WHERE kind <> 'CREATED'"
                    )
                    == 0
                )
                await apply_changes(conn, principal, {"C1": good})
            with pytest.raises(FailedPrecondition, match="C1:q"):
                async with store.transaction(principal) as conn:
                    await apply_changes(
                        conn, principal, {"C1": [("C1:q", "QUEUE_CHANGED", T0 + H, "other")]}
                    )

    asyncio.run(go())
