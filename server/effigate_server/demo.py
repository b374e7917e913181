"""The demo MSP, created entirely through the Python client.

Northwind Managed Services has four clients in three time zones (Sydney business hours, a New
York overnight NOC, a London 24x7 desk), contracts of all five types, a month (October 2026) of
tickets with pauses, priority changes and reopenings, and time logs across business hours,
evenings and weekends. The demo recomputes every ticket's SLA status, prints the compliance
table, routes and assigns the open tickets to its queues and agents (``demo_routing``) and
prints queue depth and workload, generates the month's invoices and prints one. Data is
seeded, so runs agree.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from effigate.v1 import billing_pb2, catalog_pb2, common_pb2, sla_pb2, tickets_pb2
from effigate_client import AsyncClient, to_timestamp
from effigate_client.client import ipc_bytes, ipc_table
from effigate_server import demo_routing

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
PERIOD = "2026-10-01"
TENANT_NAME = "Northwind Managed Services"
POLICY_NAME = "standard-msp"
SAMPLE_TICKET = "INC-100000"
#: The contracts the demo creates, in the order their invoices are generated and printed.
CONTRACT_KINDS = ("HOURLY", "BUCKET", "RECURRING", "FIXED_PRICE", "SCOPE")
#: Namespace of the demo tenants' fixed ids (see :func:`demo_tenant_id`).
DEMO_NAMESPACE = uuid.UUID("3b1f6a52-8d0e-4f4c-9c57-2f0e6e8a41d7")
DEMO_ENV_FILE = "demo.env"
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
        ("support_level", pa.string()),
        ("job_type", pa.string()),
        ("channel", pa.string()),
    ]
)
CHANNELS = (("EMAIL", 0.4), ("PORTAL", 0.25), ("PHONE", 0.2), ("MONITORING", 0.1), ("CHAT", 0.05))
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
    routing: demo_routing.RoutingSummary | None = None
    invoices: list[Any] = field(default_factory=list)
    sample_ticket: str = ""
    sample_contract: int = 0
    period_start: str = PERIOD
    timings: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        """The compliance table, the invoices' totals and one invoice, as text."""
        from effigate_server.tables import format_table

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
        if self.routing is not None:
            out.extend(self.routing.report())
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
            name=POLICY_NAME,
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
    # the tickets' descriptive fields draw from their own sequence, so the events and logs
    # (and every figure computed from them) are those of the same seed without them
    described = random.Random(f"demo-ticket-fields-{n_tickets}")

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
        if kind == "SCOPE":  # within the contract's scope: L2/L3/SA project work
            level, job = described.choice(("L2", "L3", "SA")), "project"
        else:
            level, job = _pick(described, LEVELS), described.choice(JOBS)
        tickets["support_level"].append(level)
        tickets["job_type"].append(job)
        tickets["channel"].append(_pick(described, CHANNELS))
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


Progress = Callable[[str], None]


def _print_progress(line: str) -> None:
    print(line, flush=True)


async def load_demo_async(
    address: str,
    token: str,
    n_tickets: int = 20_000,
    progress: Progress | None = _print_progress,
) -> DemoSummary:
    """Create the demo MSP through the client at ``address`` and run its month; ``progress``
    gets one line per stage, with its counts and its time in seconds."""
    s = DemoSummary()
    clock = time.perf_counter()

    def done(name: str, detail: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        s.timings[name] = now - clock
        clock = now
        if progress is not None:
            progress(f"demo: {name}: {detail} ({s.timings[name]:.1f} s)")

    async with AsyncClient(address, token, timeout=600) as c:
        setup = await _setup(c, s)
        done("setup", f"{s.clients} clients, {len(s.contracts)} contracts, 3 calendars, 1 policy")
        tickets, events, logs = _work(random.Random(2026), n_tickets, setup["contracts"])
        s.tickets, s.events, s.time_logs = tickets.num_rows, events.num_rows, logs.num_rows
        s.sample_ticket = tickets["id"][0].as_py()
        s.sample_contract = s.contracts["HOURLY"]
        done("generate", f"{s.tickets:,} tickets, {s.events:,} events, {s.time_logs:,} time logs")
        await _stream(c.tickets.IngestTickets, _slices(tickets))
        await _stream(c.tickets.IngestTicketEvents, _slices(events))
        done("ingest tickets", f"{s.tickets:,} tickets and {s.events:,} events stored")
        await _stream(c.time_logs.IngestTimeLogStream, _slices(logs))
        ids = logs.filter(pc.equal(logs["billable_type"], "BILLABLE"))["id"].to_pylist()
        ids += logs.filter(pc.not_equal(logs["billable_type"], "BILLABLE"))["id"].to_pylist()
        for i in range(0, len(ids), 20_000):
            await c.time_logs.ApproveTimeLogs(
                billing_pb2.ApproveTimeLogsRequest(log_ids=ids[i : i + 20_000])
            )
        done("ingest time logs", f"{s.time_logs:,} stored and approved")
        s.recompute = await c.sla.Recompute(
            sla_pb2.RecomputeRequest(policy_id=s.policy_id, now=to_timestamp(NOW))
        )
        done("SLA recompute", f"{s.recompute.new_breaches:,} breach records")
        s.compliance = await _compliance(c, s.policy_id)
        done("compliance", f"{s.compliance.num_rows} rows")
        await demo_routing.setup(c, setup["contracts"]["RECURRING"][1])
        open_ids = tickets.filter(pc.equal(tickets["status"], "OPEN"))["id"].to_pylist()
        assigned = await demo_routing.route_and_assign(c, open_ids, NOW)
        s.routing = await demo_routing.summary(c, NOW)
        done("routing", f"{len(open_ids):,} open tickets routed, {assigned:,} assigned")
        for kind in CONTRACT_KINDS:
            invoice = await c.billing.GenerateInvoice(
                billing_pb2.PeriodRequest(contract_id=s.contracts[kind], period_start=PERIOD)
            )
            s.invoices.append(invoice)
        done("invoices", f"{len(s.invoices)} drafts for October 2026")
    return s


async def _compliance(c: AsyncClient, policy_id: int) -> pa.Table:
    report = await c.reports.Compliance(
        sla_pb2.ReportRequest(
            policy_id=policy_id, now=to_timestamp(NOW), group_by=["client_id", "priority"]
        )
    )
    return ipc_table(report.arrow_ipc)


async def _leave_out_live_tickets(c: AsyncClient, s: DemoSummary) -> None:
    """Take the live SLA tickets of earlier runs (``demo_live``: their client, each ticket and
    its creation event) out of the demo's counts, so every run reports the same demo."""
    from effigate_server.demo_live import CLIENT_NAME

    listed = await c.catalog.ListClients(catalog_pb2.ListClientsRequest())
    live = [k.id for k in listed.clients if k.name == CLIENT_NAME]
    if not live:
        return
    count, after = 0, ""
    while True:
        page = await c.tickets.ListTickets(
            tickets_pb2.ListTicketsRequest(client_id=live[0], limit=10_000, after_id=after)
        )
        count += len(page.tickets)
        if len(page.tickets) < 10_000:
            break
        after = page.tickets[-1].id
    s.clients -= len(live)
    s.tickets -= count
    s.events -= count


async def summarise_demo_async(address: str, token: str, counts: dict[str, int]) -> DemoSummary:
    """The summary of a demo MSP loaded by an earlier run, read back through the client
    (nothing is written); ``counts`` are the stored rows of :func:`prepare_demo_tenant`."""
    s = DemoSummary(
        clients=counts["clients"],
        tickets=counts["tickets"],
        events=counts["events"],
        time_logs=counts["time_logs"],
        sample_ticket=SAMPLE_TICKET,
    )
    started = time.perf_counter()
    async with AsyncClient(address, token, timeout=120) as c:
        await _leave_out_live_tickets(c, s)
        contracts = await c.contracts.ListContracts(billing_pb2.ListContractsRequest())
        # the demo's contract of each kind is its first (live tickets have one of their own)
        by_kind = {k.contract_type: k.id for k in sorted(contracts.contracts, key=lambda k: -k.id)}
        s.contracts = {kind: by_kind[kind] for kind in CONTRACT_KINDS if kind in by_kind}
        s.sample_contract = s.contracts["HOURLY"]
        policies = await c.catalog.ListPolicies(catalog_pb2.ListPoliciesRequest())
        s.policy_id = min(p.id for p in policies.policies if p.name == POLICY_NAME)
        s.compliance = await _compliance(c, s.policy_id)
        s.routing = await demo_routing.summary(c, NOW)
        listed = await c.billing.ListInvoices(billing_pb2.ListInvoicesRequest())
        invoices = {i.contract_id: i for i in listed.invoices if i.period_start == PERIOD}
        for kind in CONTRACT_KINDS:
            invoice = invoices[s.contracts[kind]]
            if not s.invoices:  # the first is printed in full: its lines too
                invoice = await c.billing.GetInvoice(
                    billing_pb2.InvoiceRequest(invoice_id=invoice.id)
                )
            s.invoices.append(invoice)
    s.timings["read back"] = time.perf_counter() - started
    return s


@dataclass
class DemoTenant:
    """The demo MSP's tenant in this database, its staff token, and whether an earlier run
    loaded it completely (``counts``: its stored clients, tickets, events and time logs)."""

    tenant_id: uuid.UUID
    token: str
    loaded: bool
    counts: dict[str, int]
    abandoned: list[uuid.UUID]


def demo_tenant_id(attempt: int) -> uuid.UUID:
    """The id of the demo tenant of load ``attempt`` (0, then 1, 2, … after interrupted loads):
    fixed, so every run finds the tenants of earlier runs."""
    return uuid.uuid5(DEMO_NAMESPACE, f"demo-msp/{attempt}")


def demo_env_path() -> Path:
    """The demo's settings file: ``demo.env`` beside the embedded server's data directory
    (``.effigate/demo.env`` by default)."""
    from effigate_engine.store.embedded import data_dir

    return data_dir().parent / DEMO_ENV_FILE


def read_demo_env(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of a demo settings file (empty if there is none)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            values[name.strip()] = value.strip()
    return values


def write_demo_env(path: Path, values: dict[str, str]) -> None:
    """Write the demo settings (they include a token: mode 0600, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# The demo MSP of `effigate serve --demo`, rewritten by each run. Holds a token: keep\n"
        "# it private (mode 0600). Use it with `source "
        + str(path)
        + "`.\n"
        + "".join(f"export {name}={value}\n" for name, value in values.items())
    )
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.replace(temporary, path)


async def prepare_demo_tenant(admin_dsn: str, saved_token: str | None) -> DemoTenant:
    """The demo MSP's tenant: the first of :func:`demo_tenant_id` that an earlier run loaded
    completely (its last step, the month's invoices, is stored), else a new one after any
    left half-loaded by an interrupted run (those are kept, unused). ``saved_token`` is kept
    while it is an active token of that tenant, else a new token is issued."""
    import asyncpg

    from effigate_engine.service.tokens import (
        create_tenant,
        create_token,
        tenant_row_counts,
        token_is_active,
    )

    conn = await asyncpg.connect(admin_dsn)
    try:
        abandoned: list[uuid.UUID] = []
        for attempt in itertools.count():
            tenant = demo_tenant_id(attempt)
            counts = await tenant_row_counts(conn, tenant)
            if counts is None:
                tax = json.dumps([{"name": "GST", "rate_ppm": 100_000}])
                await create_tenant(conn, TENANT_NAME, "USD", tax, tenant_id=tenant)
                loaded = False
                break
            if counts["invoiced"] >= len(CONTRACT_KINDS):
                loaded = True
                break
            abandoned.append(tenant)
        if saved_token and await token_is_active(conn, tenant, saved_token):
            token = saved_token
        else:
            token = (await create_token(conn, tenant, label="demo")).secret
    finally:
        await conn.close()
    return DemoTenant(tenant, token, loaded, counts or {}, abandoned)


async def demo_portal_token(
    admin_dsn: str, tenant_id: uuid.UUID, client_id: int, saved_token: str | None
) -> str:
    """A portal token of the demo's ``client_id``: ``saved_token`` while it is an active token
    of the demo tenant, else a new one."""
    import asyncpg

    from effigate_engine.service.tokens import create_token, token_is_active

    conn = await asyncpg.connect(admin_dsn)
    try:
        if saved_token and await token_is_active(conn, tenant_id, saved_token):
            return saved_token
        return (await create_token(conn, tenant_id, client_id, label="demo portal")).secret
    finally:
        await conn.close()


async def demo_token(admin_dsn: str) -> str:
    """A new tenant for the demo MSP (GST 10 %) and a staff token for it."""
    import asyncpg

    from effigate_engine.service.tokens import create_tenant, create_token

    conn = await asyncpg.connect(admin_dsn)
    try:
        tax = json.dumps([{"name": "GST", "rate_ppm": 100_000}])
        tenant = await create_tenant(conn, TENANT_NAME, "USD", tax)
        issued = await create_token(conn, tenant, label="demo")
    finally:
        await conn.close()
    return issued.secret


def run_demo(address: str | None, n_tickets: int) -> int:
    """Run the demo against ``address``, or a service started here on a free loopback port
    over ``EFFIGATE_DSN`` and ``EFFIGATE_ADMIN_DSN`` (the tenant is created with the owner's
    credentials) / the embedded PostgreSQL."""
    from effigate_engine.service import Store
    from effigate_engine.store.settings import require_admin_dsn, resolve_dsn
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
