"""Shared setup for the store tests: tenants, contracts, invoices, connections."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pyarrow as pa

from effigate_engine.store.batches import STORED_INSTANT
from effigate_engine.store.tenant import TenantKey

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FROZEN_CARD = {"currency": "USD", "base": {"*": {"*": 12000}}, "conditions": {}}


@dataclass(frozen=True)
class Database:
    """A migrated test database: its name, a superuser DSN and the service-role DSN."""

    name: str
    admin: str
    app: str


@dataclass(frozen=True)
class Seed:
    """One tenant with a client and an active hourly contract (ids), and a bearer token of the
    tenant (what the service role binds its transactions with)."""

    tenant_id: uuid.UUID
    client_id: int
    contract_id: int
    token: str

    @property
    def key(self) -> TenantKey:
        """Binds a service-role transaction to this tenant."""
        return TenantKey(self.tenant_id, self.token)


async def seed_tenant(admin: asyncpg.Connection, name: str = "Northwind MSP") -> Seed:
    """Create a tenant with a token, a client and an ACTIVE hourly contract (admin connection)."""
    tenant = uuid.uuid4()
    token = f"seed-{uuid.uuid4().hex}"
    await admin.execute(
        "INSERT INTO tenants (id, name, default_currency) VALUES ($1, $2, 'USD')", tenant, name
    )
    await admin.execute(
        "INSERT INTO api_tokens (tenant_id, token_sha256, label) VALUES ($1, $2, 'seed')",
        tenant,
        hashlib.sha256(token.encode()).digest(),
    )
    client = await admin.fetchval(
        "INSERT INTO clients (tenant_id, name) VALUES ($1, 'Contoso') RETURNING id", tenant
    )
    contract = await admin.fetchval(
        """INSERT INTO contracts (tenant_id, client_id, contract_type, currency, time_zone,
               starts_on) VALUES ($1, $2, 'HOURLY', 'USD', 'America/New_York', '2026-01-01')
           RETURNING id""",
        tenant,
        client,
    )
    await activate(admin, contract)
    return Seed(tenant, client, contract, token)


async def activate(admin: asyncpg.Connection, contract_id: int) -> None:
    """Activate a draft contract, freezing a copy of the rate card."""
    body = json.dumps(FROZEN_CARD, sort_keys=True)
    await admin.execute(
        """UPDATE contracts SET status = 'ACTIVE', frozen_rate_card = $2::jsonb,
               frozen_rate_card_text = $4, frozen_rate_card_version = 1,
               frozen_rate_card_sha256 = $3
           WHERE id = $1""",
        contract_id,
        body,
        hashlib.sha256(body.encode()).hexdigest(),
        body,
    )


async def add_time_log(
    admin: asyncpg.Connection, seed: Seed, log_id: str, start: datetime = T0, hours: float = 1
) -> None:
    """Insert one approved billable time log of ``hours`` hours from ``start``."""
    await admin.execute(
        """INSERT INTO time_logs (tenant_id, id, contract_id, agent, support_level, job_type,
               started_at, ended_at, billable_type, approval_state)
           VALUES ($1, $2, $3, 'ana', 'L2', 'network', $4, $5, 'BILLABLE', 'APPROVED')""",
        seed.tenant_id,
        log_id,
        seed.contract_id,
        start,
        start + timedelta(hours=hours),
    )


async def draft_invoice(
    admin: asyncpg.Connection,
    seed: Seed,
    amounts: tuple[int, ...] = (342_000, 54_000),
    log_ids: tuple[str, ...] = (),
    tax_minor: int = 0,
) -> int:
    """A DRAFT invoice with one line per amount (minor units); logs go on the first line."""
    subtotal = sum(amounts)
    invoice = await admin.fetchval(
        """INSERT INTO invoices (tenant_id, contract_id, currency, subtotal_minor, tax_minor,
               total_minor) VALUES ($1, $2, 'USD', $3, $4, $5) RETURNING id""",
        seed.tenant_id,
        seed.contract_id,
        subtotal,
        tax_minor,
        subtotal + tax_minor,
    )
    line_ids = []
    for position, amount in enumerate(amounts):
        line_ids.append(
            await admin.fetchval(
                """INSERT INTO invoice_lines (tenant_id, invoice_id, position, kind,
                       amount_minor) VALUES ($1, $2, $3, 'TIME', $4) RETURNING id""",
                seed.tenant_id,
                invoice,
                position,
                amount,
            )
        )
    for log_id in log_ids:
        await admin.execute(
            """INSERT INTO invoice_line_time_logs (tenant_id, invoice_id, invoice_line_id,
                   time_log_id, billed_seconds) VALUES ($1, $2, $3, $4, 3600)""",
            seed.tenant_id,
            invoice,
            line_ids[0],
            log_id,
        )
    return invoice


async def issue(conn: asyncpg.Connection, invoice_id: int) -> int:
    """Issue an invoice; returns the number the database assigned."""
    return await conn.fetchval(
        "UPDATE invoices SET status = 'ISSUED' WHERE id = $1 RETURNING number", invoice_id
    )


def time_log_batch(contract_id: int, ids: list[str], hours: float = 1.0) -> pa.Table:
    """An Arrow batch of approved billable time logs, one hour apart, ``hours`` long."""
    starts = [T0 + timedelta(hours=2 * i) for i in range(len(ids))]
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "contract_id": pa.array([contract_id] * len(ids), pa.int64()),
            "ticket_id": pa.array([None] * len(ids), pa.string()),
            "task_ref": pa.array([None] * len(ids), pa.string()),
            "agent": pa.array(["ana"] * len(ids)),
            "support_level": pa.array(["L2"] * len(ids)),
            "job_type": pa.array(["network"] * len(ids)),
            "priority": pa.array(["P2"] * len(ids)),
            "started_at": pa.array(starts, STORED_INSTANT),
            "ended_at": pa.array([s + timedelta(hours=hours) for s in starts], STORED_INSTANT),
            "billable_type": pa.array(["BILLABLE"] * len(ids)),
            "approval_state": pa.array(["APPROVED"] * len(ids)),
        }
    )
