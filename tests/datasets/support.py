"""A small tenant for the dataset tests, seeded through the service: a default tax, one
calendar, two policies, three contracts (A under one policy paying the default tax, B under
the other with its own tax, C with ``"tax": []``: none) and a draft, tickets of two months with
events (some after the export's instant, one ticket raised after it), one ticket without a
contract, time logs (approved and pending), a draft invoice and recorded breaches."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pyarrow as pa

from effigate_engine.service import catalog, contracts, evaluations, invoicing, tickets, timelogs
from effigate_engine.service.context import Principal
from effigate_engine.service.rulesets import RulesetCache
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_engine.store.batches import STORED_INSTANT
from effigate_engine.store.database import Store
from tests.store.helpers import Database

UTC_HOURS = {
    "timezone": "UTC",
    "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
}
CARD = {
    "currency": "USD",
    "base_rates": [{"support_level": "*", "job_type": "*", "amount": "120.00"}],
    "rules": {"AFTER_HOURS": {"amount": "180.00"}},
    "increment_seconds": 900,
}


def policy(response: str, resolution: str) -> dict:
    return {
        "rules": [
            {
                "match": {"priority": ["CRITICAL", "HIGH"]},
                "metrics": {
                    "FIRST_RESPONSE": {"target": response, "calendar": "office"},
                    "RESOLUTION": {"target": resolution, "calendar": "office"},
                },
            },
            {
                "match": {},
                "metrics": {
                    "FIRST_RESPONSE": {"target": "8h", "calendar": "office"},
                    "RESOLUTION": {"target": "40h", "calendar": "office"},
                },
            },
        ]
    }


#: The export's instant: events after it are not in the dataset.
AS_OF = datetime(2026, 3, 20, 12, tzinfo=UTC)
MARCH = date(2026, 3, 1)


@dataclass(frozen=True)
class Seeded:
    principal: Principal
    policies: dict[str, int]
    contracts: dict[str, int]
    ticket_ids: list[str]
    log_ids: list[str]


def _logs(contract_id: int, prefix: str, starts: list[datetime]) -> pa.Table:
    n = len(starts)
    return pa.table(
        {
            "id": [f"{prefix}-{i}" for i in range(n)],
            "contract_id": pa.array([contract_id] * n, pa.int64()),
            "ticket_id": pa.array([None] * n, pa.string()),
            "task_ref": pa.array([None] * n, pa.string()),
            "agent": ["ana"] * n,
            "support_level": ["L2"] * n,
            "job_type": ["support"] * n,
            "priority": pa.array(["HIGH", None] * (n // 2) + ["HIGH"] * (n % 2), pa.string()),
            "started_at": pa.array(starts, STORED_INSTANT),
            "ended_at": pa.array([s + timedelta(hours=2) for s in starts], STORED_INSTANT),
            "billable_type": ["BILLABLE"] * n,
        }
    )


#: The tenant's default tax: contract A (no tax of its own) pays it, C (``"tax": []``) none.
DEFAULT_TAX = [{"name": "GST", "rate_ppm": 100_000}]


async def _tenant(db: Database) -> Principal:
    """A tenant with :data:`DEFAULT_TAX` and a staff token of it (the owner's connection)."""
    conn = await asyncpg.connect(db.admin)
    try:
        name = f"Datasets {hashlib.sha1(os.urandom(8)).hexdigest()[:6]}"
        tenant = await create_tenant(conn, name, "USD", json.dumps(DEFAULT_TAX))
        token = await create_token(conn, tenant, label="test")
    finally:
        await conn.close()
    return Principal(tenant, actor="test", token=token.secret)


async def seed(store: Store, db: Database) -> Seeded:
    """The tenant described in the module's docstring."""
    p = await _tenant(db)
    client = await catalog.create_client(store, p, "Contoso")
    cal = await catalog.create_calendar(store, p, "office", UTC_HOURS)
    standard = await catalog.create_policy(store, p, "standard", cal.id, policy("1h", "8h"))
    premium = await catalog.create_policy(store, p, "premium", cal.id, policy("30m", "4h"))
    card = await contracts.create_rate_card(store, p, "standard")
    await contracts.publish_rate_card(store, p, card, CARD)
    made = {}
    for name, pol, terms in (
        ("A", standard.id, {"sla_credits": {"per_breach": {"HIGH": "50.00"}}}),
        ("B", premium.id, {"tax": [{"name": "VAT", "rate_ppm": 200_000}]}),
        ("C", standard.id, {"tax": []}),
    ):
        record = await contracts.create_contract(
            store,
            p,
            client_id=client,
            contract_type="HOURLY",
            currency="USD",
            starts_on=date(2026, 2, 1),
            calendar_id=cal.id,
            sla_policy_id=pol,
            rate_card_id=card,
            terms=terms,
        )
        made[name] = (await contracts.activate_contract(store, p, record.id)).id
    await contracts.create_contract(  # a draft: not in the catalog
        store, p, client_id=client, contract_type="HOURLY", currency="USD",
        starts_on=date(2026, 4, 1), calendar_id=cal.id, rate_card_id=card,
    )  # fmt: skip
    ids = []
    base = datetime(2026, 2, 23, 8, tzinfo=UTC)
    for i in range(11):  # T-10 is raised after the export's instant
        ticket_id = f"T-{i:02d}"
        created = base + timedelta(days=2 * i, hours=i) if i < 10 else AS_OF + timedelta(days=5)
        contract = None if i == 9 else made["A" if i % 2 == 0 else "B"]
        priority = ("CRITICAL", "HIGH", "MEDIUM", "LOW")[i % 4]
        await tickets.create_ticket(store, p, ticket_id, client, priority, created, contract)
        if i % 3 == 0:
            await tickets.record_event(
                store, p, f"{ticket_id}-r", ticket_id, "RESPONDED", created + timedelta(hours=2)
            )
        if i % 4 == 1:
            await tickets.record_event(
                store, p, f"{ticket_id}-x", ticket_id, "RESOLVED", created + timedelta(days=2)
            )
        if created <= AS_OF:
            ids.append(ticket_id)
    # resolved after the export's instant: open in the dataset
    await tickets.record_event(store, p, "T-08-x", "T-08", "RESOLVED", AS_OF + timedelta(days=1))
    logs = []
    for name, contract_id in made.items():
        starts = [datetime(2026, 3, 2 + d, 10, tzinfo=UTC) for d in range(3)]
        batch = _logs(contract_id, f"L{name}", starts)
        await timelogs.ingest_time_logs(store, p, batch)
        batch_ids = batch.column("id").to_pylist()
        await timelogs.set_approval(store, p, batch_ids[:2])
        logs += batch_ids
    await invoicing.generate_invoice(store, p, made["A"], MARCH)
    await evaluations.recompute(store, RulesetCache(), p, standard.id, now=AS_OF)
    return Seeded(p, {"standard": standard.id, "premium": premium.id}, made, ids, sorted(logs))
