"""The demo MSP, created entirely through the Python client.

Northwind Managed Services has four clients in three time zones (Sydney business hours, a New
York overnight NOC, a London 24x7 desk), contracts of all five types, a month (October 2026) of
tickets with pauses, priority changes and reopenings, and time logs across business hours,
evenings and weekends. The demo recomputes every ticket's SLA status, prints the compliance
table, generates the month's invoices and prints one. Data is seeded, so runs agree.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from effigate.v1 import billing_pb2, catalog_pb2, common_pb2, sla_pb2
from effigate_client import AsyncClient, to_timestamp
from effigate_client.client import ipc_bytes, ipc_table

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
PERIOD = "2026-10-01"
PRIORITIES = (("CRITICAL", 0.05), ("HIGH", 0.15), ("MEDIUM", 0.5), ("LOW", 0.3))
LEVELS = (("L1", 0.5), ("L2", 0.3), ("L3", 0.15), ("SA", 0.05))
JOBS = ("support", "maintenance", "project", "security")
AGENTS = ("ana", "ben", "chloe", "dev", "emeka", "fatima", "gus", "hana")

RATE_CARD = {
    "currency": "USD",
    "base_rates": [
        {"support_level": "L1", "job_type": "*", "amount": "95.00"},
        {"support_level": "L2", "job_type": "*", "amount": "120.00"},
        {"support_level": "L3", "job_type": "*", "amount": "150.00"},
        {"support_level": "SA", "job_type": "*", "amount": "210.00"},
        {"support_level": "*", "job_type": "*", "amount": "120.00"},
    ],
    "rules": {
        "AFTER_HOURS": {"multiplier_bp": 15_000},
        "WEEKEND": {"multiplier_bp": 15_000},
        "HOLIDAY": {"multiplier_bp": 20_000},
        "HIGH_PRIORITY": {"multiplier_bp": 12_500},
        "ADDITIONAL_HOURS": {"amount": "135.00"},
        "OUT_OF_SCOPE": {"amount": "165.00"},
    },
    "stacking": "max",
    "increment_seconds": 900,
    "minimum_seconds": 900,
}

TICKET_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("client_id", pa.int64()),
        ("contract_id", pa.int64()),
        ("priority", pa.string()),
        ("status", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("first_response_at", pa.timestamp("us", tz="UTC")),
        ("resolved_at", pa.timestamp("us", tz="UTC")),
    ]
)
EVENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("ticket_id", pa.string()),
        ("kind", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("actor", pa.string()),
        ("detail", pa.string()),
    ]
)
LOG_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("contract_id", pa.int64()),
        ("ticket_id", pa.string()),
        ("task_ref", pa.string()),
        ("agent", pa.string()),
        ("support_level", pa.string()),
        ("job_type", pa.string()),
        ("priority", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("ended_at", pa.timestamp("us", tz="UTC")),
        ("billable_type", pa.string()),
        ("approval_state", pa.string()),
    ]
)


@dataclass
class DemoSummary:
    """What the demo created and computed, and how long each step took (seconds)."""

    clients: int = 0
    contracts: dict[str, int] = field(default_factory=dict)
    tickets: int = 0
    events: int = 0
    time_logs: int = 0
    policy_id: int = 0
    recompute: Any = None
    compliance: pa.Table | None = None
    invoices: list[Any] = field(default_factory=list)
    sample_ticket: str = ""
    sample_contract: int = 0
    period_start: str = PERIOD
    timings: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        """The compliance table, the invoices' totals and one invoice, as text."""
        from effigate_server.cli import format_table

        out = [
            f"Demo MSP: {self.clients} clients, {len(self.contracts)} contracts"
            f" ({', '.join(self.contracts)}), {self.tickets:,} tickets, {self.events:,} ticket"
            f" events, {self.time_logs:,} time logs",
        ]
        if self.recompute is not None:
            out.append(
                f"\nSLA recompute at {NOW.isoformat()}: {self.recompute.tickets:,} tickets,"
                f" {self.recompute.new_breaches:,} new breach records"
            )
        if self.compliance is not None:
            out.append("\nSLA compliance by client and priority (October 2026):")
            out.append(format_table(self.compliance))
        if self.invoices:
            out.append("\nInvoices for October 2026:")
            for inv in self.invoices:
                out.append(
                    f"  contract {inv.contract_id:>4}  {inv.status:<7} {len(inv.lines):>3} lines"
                    f"  total {inv.total_minor / 100:>12,.2f} {inv.currency}"
                )
            out.append("")
            out.append(self.invoices[0].text)
        out.append("\nTimings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))
        return "\n".join(out)


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def _instant(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(span // 60) * 60)


async def _stream(method: Any, tables: list[pa.Table]) -> Any:
    async def chunks() -> Any:
        for table in tables:
            yield common_pb2.ArrowChunk(arrow_ipc=ipc_bytes(table))

    return await method(chunks(), timeout=None)


def _slices(table: pa.Table, rows: int = 50_000) -> list[pa.Table]:
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)] or [table]


async def _setup(c: AsyncClient, s: DemoSummary) -> dict[str, Any]:
    """Clients, calendars, the policy, the rate card and the five contracts."""
    calendars = {}
    for name in ("sydney-business-hours", "new-york-noc-overnight", "london-24x7"):
        body = (SAMPLES / "calendars" / f"{name}.json").read_text()
        info = await c.catalog.CreateCalendar(
            catalog_pb2.CreateCalendarRequest(name=name, body_json=body)
        )
        calendars[name] = info.id
    policy = await c.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name="standard-msp",
            calendar_id=calendars["sydney-business-hours"],
            body_json=(SAMPLES / "policies" / "standard-msp.json").read_text(),
        )
    )
    s.policy_id = policy.id
    clients = {}
    for name in ("Contoso Pty Ltd", "Fabrikam Inc", "Tailspin Toys Ltd", "Woodgrove Bank"):
        clients[name] = (
            await c.catalog.CreateClient(catalog_pb2.CreateClientRequest(name=name))
        ).id
    s.clients = len(clients)
    card = await c.rate_cards.CreateRateCard(
        billing_pb2.CreateRateCardRequest(name="standard-2026")
    )
    await c.rate_cards.PublishRateCard(
        billing_pb2.PublishRateCardRequest(rate_card_id=card.id, body_json=json.dumps(RATE_CARD))
    )
    specs = [
        (
            "HOURLY",
            "Contoso Pty Ltd",
            "sydney-business-hours",
            {
                "sla_credits": {
                    "per_breach": {"CRITICAL": "500.00", "HIGH": "200.00"},
                    "cap": "2000.00",
                }
            },
        ),
        (
            "BUCKET",
            "Fabrikam Inc",
            "new-york-noc-overnight",
            {
                "bucket": {
                    "size_hours": 400,
                    "low_balance_hours": [40, 10],
                    "burn_factors": {"AFTER_HOURS": "1.5", "WEEKEND": "2"},
                }
            },
        ),
        (
            "RECURRING",
            "Tailspin Toys Ltd",
            "london-24x7",
            {
                "anchor_day": 1,
                "recurring": {
                    "base_fee": "4500.00",
                    "unit_prices": {"workstation": "35.00", "server": "120.00"},
                    "included_hours": 40,
                },
                "sla_credits": {"percent_bp": 500, "cap": "900.00"},
            },
        ),
        ("FIXED_PRICE", "Woodgrove Bank", "new-york-noc-overnight", {}),
        (
            "SCOPE",
            "Contoso Pty Ltd",
            "sydney-business-hours",
            {
                "scope": {
                    "support_levels": ["L2", "L3", "SA"],
                    "job_types": ["project"],
                    "out_of_scope": "PRICE",
                }
            },
        ),
    ]
    contracts = {}
    for kind, client, calendar, terms in specs:
        contract = await c.contracts.CreateContract(
            billing_pb2.CreateContractRequest(
                client_id=clients[client],
                contract_type=kind,
                currency="USD",
                starts_on="2026-01-01",
                calendar_id=calendars[calendar],
                sla_policy_id=policy.id,
                rate_card_id=card.id,
                terms_json=json.dumps(terms),
            )
        )
        contracts[kind] = (contract.id, clients[client], calendar)
    woodgrove = contracts["FIXED_PRICE"][0]
    for name, amount in (("Discovery", 333_334), ("Migration", 333_333), ("Cut-over", 333_333)):
        item = await c.contracts.AddMilestone(
            billing_pb2.AddItemRequest(contract_id=woodgrove, name=name, amount_minor=amount)
        )
        if name != "Cut-over":
            await c.contracts.ApproveMilestone(
                billing_pb2.CompleteItemRequest(id=item.id, on="2026-10-15")
            )
    scope = contracts["SCOPE"][0]
    for name, amount in (("Network redesign", 1_250_000), ("Firewall rollout", 850_000)):
        item = await c.contracts.AddDeliverable(
            billing_pb2.AddItemRequest(contract_id=scope, name=name, amount_minor=amount)
        )
        if name == "Network redesign":
            await c.contracts.SignOffDeliverable(
                billing_pb2.CompleteItemRequest(id=item.id, on="2026-10-28")
            )
    for kind, (contract_id, _, _) in contracts.items():
        await c.contracts.ActivateContract(
            billing_pb2.ActivateContractRequest(contract_id=contract_id)
        )
        s.contracts[kind] = contract_id
    tailspin = contracts["RECURRING"][0]
    for unit, count in (("workstation", 42), ("server", 6)):
        await c.contracts.RecordUnitCount(
            billing_pb2.RecordUnitCountRequest(
                contract_id=tailspin, unit_type=unit, effective_on="2026-10-01", count=count
            )
        )
    return {"contracts": contracts, "calendars": calendars}


def _work(rng: random.Random, n_tickets: int, contracts: dict[str, Any]) -> tuple[pa.Table, ...]:
    """Seeded tickets, their events and time logs for October 2026."""
    ticketed = [k for k in ("HOURLY", "BUCKET", "RECURRING", "SCOPE") if k in contracts]
    tickets: dict[str, list[Any]] = {n: [] for n in TICKET_SCHEMA.names}
    events: dict[str, list[Any]] = {n: [] for n in EVENT_SCHEMA.names}
    logs: dict[str, list[Any]] = {n: [] for n in LOG_SCHEMA.names}

    def event(ticket: str, kind: str, at: datetime, detail: str | None = None) -> None:
        events["id"].append(f"{ticket}:{len(events['id'])}")
        events["ticket_id"].append(ticket)
        events["kind"].append(kind)
        events["occurred_at"].append(at)
        events["actor"].append(rng.choice(AGENTS))
        events["detail"].append(detail)

    def log(ticket: str, contract: int, priority: str, start: datetime, minutes: int) -> None:
        logs["id"].append(f"LOG-{len(logs['id']):07d}")
        logs["contract_id"].append(contract)
        logs["ticket_id"].append(ticket)
        logs["task_ref"].append(None)
        logs["agent"].append(rng.choice(AGENTS))
        logs["support_level"].append(_pick(rng, LEVELS))
        logs["job_type"].append(rng.choice(JOBS))
        logs["priority"].append(priority)
        logs["started_at"].append(start)
        logs["ended_at"].append(start + timedelta(minutes=minutes))
        logs["billable_type"].append(
            rng.choices(["BILLABLE", "NON_BILLABLE", "WARRANTY"], [0.9, 0.07, 0.03])[0]
        )
        logs["approval_state"].append("PENDING")

    for i in range(n_tickets):
        kind = rng.choice(ticketed)
        contract_id, client_id, _ = contracts[kind]
        ticket = f"INC-{100_000 + i}"
        priority = _pick(rng, PRIORITIES)
        created = _instant(rng, MONTH_START, MONTH_END - timedelta(hours=6))
        if rng.random() < 0.6:  # most tickets arrive in working hours
            created = created.replace(hour=rng.randrange(0, 8) if kind == "HOURLY" else 14)
        event(ticket, "CREATED", created, priority)
        t = created
        responded = t + timedelta(minutes=rng.randrange(5, 600))
        first_response = responded if responded < NOW else None
        if first_response:
            event(ticket, "RESPONDED", responded)
            t = responded
            if priority == "CRITICAL" and rng.random() < 0.9:  # a plan for the critical ones
                t = t + timedelta(minutes=rng.randrange(15, 480))
                event(ticket, "PLAN_PROVIDED", t)
        if rng.random() < 0.1:
            changed = t + timedelta(minutes=rng.randrange(5, 240))
            priority = rng.choice(["CRITICAL", "HIGH", "MEDIUM"])
            event(ticket, "PRIORITY_CHANGED", changed, priority)
            t = changed
        if rng.random() < 0.3:
            paused = t + timedelta(minutes=rng.randrange(10, 600))
            event(ticket, "PAUSED", paused, "WAITING_ON_CLIENT")
            t = paused + timedelta(minutes=rng.randrange(30, 3000))
            if rng.random() < 0.85:
                event(ticket, "RESUMED", t)
        resolved = None
        if rng.random() < 0.85:
            resolved = t + timedelta(minutes=rng.randrange(30, 4000))
            if resolved < NOW:
                event(ticket, "RESOLVED", resolved)
                if rng.random() < 0.05:
                    reopened = resolved + timedelta(hours=rng.randrange(2, 72))
                    event(ticket, "REOPENED", reopened)
                    resolved = reopened + timedelta(hours=rng.randrange(1, 24))
                    event(ticket, "RESOLVED", resolved)
            else:
                resolved = None
        tickets["id"].append(ticket)
        tickets["client_id"].append(client_id)
        tickets["contract_id"].append(contract_id)
        tickets["priority"].append(priority)
        tickets["status"].append("RESOLVED" if resolved else "OPEN")
        tickets["created_at"].append(created)
        tickets["first_response_at"].append(first_response)
        tickets["resolved_at"].append(resolved)
        for _ in range(rng.choices([0, 1, 2], [0.55, 0.37, 0.08])[0]):
            start = _instant(rng, created, min(created + timedelta(days=3), MONTH_END))
            if rng.random() < 0.15:  # an evening or weekend call-out
                start = start.replace(hour=rng.choice([19, 21, 23]))
            if start + timedelta(hours=4) < MONTH_END:
                log(
                    ticket,
                    contract_id,
                    priority,
                    start,
                    rng.choice([10, 15, 30, 45, 60, 90, 120, 180]),
                )
    return (
        pa.table(tickets, schema=TICKET_SCHEMA),
        pa.table(events, schema=EVENT_SCHEMA),
        pa.table(logs, schema=LOG_SCHEMA),
    )


async def load_demo_async(address: str, token: str, n_tickets: int = 20_000) -> DemoSummary:
    """Create the demo MSP through the client at ``address`` and run its month."""
    s = DemoSummary()
    steps = tqdm(total=7, desc="demo", unit="step", leave=False)
    clock = time.perf_counter()

    def done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        s.timings[name] = now - clock
        clock = now
        steps.set_postfix_str(name)
        steps.update()

    async with AsyncClient(address, token, timeout=600) as c:
        setup = await _setup(c, s)
        done("setup")
        tickets, events, logs = _work(random.Random(2026), n_tickets, setup["contracts"])
        s.tickets, s.events, s.time_logs = tickets.num_rows, events.num_rows, logs.num_rows
        s.sample_ticket = tickets["id"][0].as_py()
        s.sample_contract = s.contracts["HOURLY"]
        done("generate")
        await _stream(c.tickets.IngestTickets, _slices(tickets))
        await _stream(c.tickets.IngestTicketEvents, _slices(events))
        done("ingest tickets")
        await _stream(c.time_logs.IngestTimeLogStream, _slices(logs))
        ids = logs.filter(pc.equal(logs["billable_type"], "BILLABLE"))["id"].to_pylist()
        ids += logs.filter(pc.not_equal(logs["billable_type"], "BILLABLE"))["id"].to_pylist()
        for i in range(0, len(ids), 20_000):
            await c.time_logs.ApproveTimeLogs(
                billing_pb2.ApproveTimeLogsRequest(log_ids=ids[i : i + 20_000])
            )
        done("ingest time logs")
        s.recompute = await c.sla.Recompute(
            sla_pb2.RecomputeRequest(policy_id=s.policy_id, now=to_timestamp(NOW))
        )
        done("SLA recompute")
        report = await c.reports.Compliance(
            sla_pb2.ReportRequest(
                policy_id=s.policy_id, now=to_timestamp(NOW), group_by=["client_id", "priority"]
            )
        )
        s.compliance = ipc_table(report.arrow_ipc)
        done("compliance")
        for kind in ("HOURLY", "BUCKET", "RECURRING", "FIXED_PRICE", "SCOPE"):
            invoice = await c.billing.GenerateInvoice(
                billing_pb2.PeriodRequest(contract_id=s.contracts[kind], period_start=PERIOD)
            )
            s.invoices.append(invoice)
        done("invoices")
    steps.close()
    return s


async def demo_token(admin_dsn: str) -> str:
    """A new tenant for the demo MSP (GST 10 %) and a staff token for it."""
    import asyncpg

    from effigate_engine.service.tokens import create_tenant, create_token

    conn = await asyncpg.connect(admin_dsn)
    try:
        tax = json.dumps([{"name": "GST", "rate_ppm": 100_000}])
        tenant = await create_tenant(conn, "Northwind Managed Services", "USD", tax)
        issued = await create_token(conn, tenant, label="demo")
    finally:
        await conn.close()
    return issued.secret


def run_demo(address: str | None, n_tickets: int) -> int:
    """Run the demo against ``address``, or a service started here on a free loopback port
    over ``EFFIGATE_DSN`` and ``EFFIGATE_ADMIN_DSN`` (the tenant is created with the owner's
    credentials) / the embedded PostgreSQL."""
    from effigate_engine.service.context import Store
    from effigate_engine.store.dsn import require_admin_dsn, resolve_dsn
    from effigate_server.app import Server

    async def go() -> DemoSummary:
        if address is not None:
            import os

            token = os.environ.get("EFFIGATE_TOKEN")
            if not token:
                raise SystemExit("effigate demo --address needs EFFIGATE_TOKEN")
            return await load_demo_async(address, token, n_tickets)
        admin_dsn = require_admin_dsn("demo")
        store = await Store.open(resolve_dsn(), admin_dsn=admin_dsn)
        server = await Server.start(store, "127.0.0.1:0")
        try:
            token = await demo_token(admin_dsn)
            return await load_demo_async(f"127.0.0.1:{server.port}", token, n_tickets)
        finally:
            await server.stop(5)

    print(asyncio.run(go()).report())
    return 0
