"""What a client sees on its portal: its tickets with their SLA status, one ticket's SLA
timeline and events, its prepaid buckets with their history, and its invoices with the
evidence behind each line.

Every function takes the calling :class:`Principal` and goes through the same service
functions as the API (``tickets``, ``evaluations``, ``buckets``, ``invoicing``,
``contracts``), which scope a portal principal to its own client: another client's ticket,
contract or invoice is :class:`~effigate_engine.service.errors.NotFound`, never shown. Nothing
here prices anything: amounts are the stored invoice's, balances the bucket statement's.
Instants are timezone-aware UTC, durations whole (burn-weighted for buckets) seconds, money
integer minor units of the contract's currency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from effigate_engine.billing.buckets import bucket_statement
from effigate_engine.errors import EffigateError
from effigate_engine.ratecard.classify import ContractBook, classify
from effigate_engine.ratecard.grants import GRANT_PERIOD, GRANT_TOP_UP, contract_grants
from effigate_engine.service import buckets, catalog, contracts, invoicing, tickets
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import NotFound
from effigate_engine.service.evaluations import (
    RulesetCache,
    ruleset,
    ticket_status,
    ticket_timeline,
)
from effigate_engine.service.invoice_evidence import horizon
from effigate_engine.sla.screening import evaluate_rows
from effigate_engine.store import portal_views as stored
from effigate_engine.store import tickets as stored_tickets
from effigate_engine.store.database import Store
from effigate_engine.store.portal_views import BreachRecord, LineLog

#: Invoice states a client sees: a draft (or one in review) may still change.
ISSUED_STATES = ("ISSUED", "OVERDUE", "PAID", "VOID")
#: Ticket statuses that are closed (every other status is open, paused ones included).
CLOSED_STATUSES = ("RESOLVED", "CLOSED", "CANCELLED")
#: Tickets read per page when listing a client's tickets.
PAGE = 10_000


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) if now is None else now


async def client_name(store: Store, principal: Principal) -> str:
    """The name of the portal principal's client."""
    names = dict(await catalog.list_clients(store, principal))
    return names.get(principal.client_id or 0, f"client {principal.client_id}")


# Tickets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricView:
    """One SLA metric of a ticket: its status (``ON_TRACK`` … ``BREACHED``), deadline, and
    when it stopped (met or resolved) or was breached."""

    metric: str
    status: str
    deadline: datetime | None
    stopped_at: datetime | None
    breached_at: datetime | None
    remaining_seconds: int | None = None

    @property
    def running(self) -> bool:
        """Whether its clock still runs toward the deadline (a live countdown is meaningful)."""
        return self.stopped_at is None and self.deadline is not None


@dataclass(frozen=True)
class TicketRow:
    """A ticket on the portal's list with its metrics by name."""

    ticket: Any
    metrics: dict[str, MetricView] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        """True unless resolved or closed."""
        return self.ticket.status not in CLOSED_STATUSES


def _metric_views(results: pa.Table) -> dict[str, dict[str, MetricView]]:
    """SLA result rows by ticket and metric."""
    out: dict[str, dict[str, MetricView]] = {}
    for r in results.to_pylist():
        out.setdefault(r["ticket_id"], {})[r["metric"]] = MetricView(
            r["metric"],
            r["status"],
            r["deadline"],
            r["stopped_at"],
            r["breached_at"],
            r["remaining_seconds"],
        )
    return out


def _next_deadline(row: TicketRow) -> tuple[int, datetime]:
    running = [m.deadline for m in row.metrics.values() if m.running and m.deadline]
    return (0, min(running)) if running else (1, datetime.max.replace(tzinfo=UTC))


async def ticket_rows(
    store: Store, cache: RulesetCache, principal: Principal, now: datetime | None = None
) -> list[TicketRow]:
    """The caller's tickets (a portal principal: its client's, every one) with their SLA
    metrics at ``now`` under each ticket's contract policy: open tickets first, the nearest
    running deadline first, then the closed ones, newest first. A ticket without a contract
    policy, or one the engine cannot evaluate, is listed without metrics."""
    at = _now(now)
    records: list[Any] = []
    after = ""
    while True:
        page = await tickets.list_tickets(store, principal, None, PAGE, after)
        records.extend(page)
        if len(page) < PAGE:
            break
        after = page[-1].id
    listed = await contracts.list_contracts(store, principal)
    policy_of = {c.id: c.sla_policy_id for c in listed if c.sla_policy_id is not None}
    by_policy: dict[int, list[str]] = {}
    for t in records:
        policy = policy_of.get(t.contract_id) if t.contract_id is not None else None
        if policy is not None:
            by_policy.setdefault(policy, []).append(t.id)
    metrics: dict[str, dict[str, MetricView]] = {}
    async with store.transaction(principal) as conn:
        inputs = []
        for policy_id, ids in by_policy.items():
            rules = await ruleset(conn, cache, principal, policy_id)
            table = await tickets.load_timelines(conn, principal, ticket_ids=ids, as_of=at)
            inputs.append((rules, table))
    for rules, table in inputs:
        screened = await asyncio.to_thread(evaluate_rows, table, rules.policy, rules.calendars, at)
        metrics.update(_metric_views(screened.evaluation.results))
    rows = [TicketRow(t, metrics.get(t.id, {})) for t in records]
    open_rows = sorted(
        (r for r in rows if r.is_open), key=lambda r: (_next_deadline(r), r.ticket.id)
    )
    closed = sorted(
        (r for r in rows if not r.is_open), key=lambda r: r.ticket.created_at, reverse=True
    )
    return open_rows + closed


@dataclass(frozen=True)
class TimelineEntry:
    """A change of one SLA metric's status (``GetTicketTimeline``'s entries)."""

    at: datetime
    metric: str
    status: str
    deadline: datetime | None
    escalation_level: int
    elapsed_seconds: int


@dataclass(frozen=True)
class TicketEvent:
    """A recorded event of the ticket: its kind, instant and detail (a pause's reason, a
    new priority); a metric's breach is listed as kind ``BREACHED`` with the metric as
    detail."""

    id: str
    kind: str
    at: datetime
    detail: str | None


@dataclass(frozen=True)
class TicketPage:
    """One ticket: its metrics now, its SLA timeline and its events in time order."""

    ticket: Any
    metrics: list[MetricView]
    timeline: list[TimelineEntry]
    events: list[TicketEvent]
    problem: str | None = None


async def ticket_page(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    ticket_id: str,
    now: datetime | None = None,
) -> TicketPage:
    """Ticket ``ticket_id`` (another client's: :class:`NotFound`) with its SLA metrics and
    timeline at ``now`` (as ``GetTicketStatus`` and ``GetTicketTimeline`` give them) and its
    events. A ticket without an SLA policy, or one the engine cannot evaluate, has no metrics
    and ``problem`` says why."""
    at = _now(now)
    ticket = await tickets.get_ticket(store, principal, ticket_id)
    async with store.transaction(principal) as conn:
        raw = await stored_tickets.load_events(conn, ticket_id)
    events = sorted(
        (TicketEvent(i, kind, when, detail) for i, kind, when, detail in raw),
        key=lambda e: (e.at, e.kind != "CREATED", e.id),
    )
    try:
        _, evaluation = await ticket_status(store, cache, principal, ticket_id, None, at)
        _, timeline = await ticket_timeline(store, cache, principal, ticket_id, None, at)
    except NotFound:
        raise
    except EffigateError as exc:
        return TicketPage(ticket, [], [], events, str(exc))
    metrics = list(_metric_views(evaluation.results).get(ticket_id, {}).values())
    breaches = [
        TicketEvent(f"{ticket_id}:{m.metric}", "BREACHED", m.breached_at, m.metric)
        for m in metrics
        if m.breached_at is not None
    ]
    events = sorted(events + breaches, key=lambda e: (e.at, e.kind != "CREATED", e.id))
    entries = [
        TimelineEntry(
            e["at"],
            e["metric"],
            e["status"],
            e["deadline"],
            e["escalation_level"],
            e["elapsed_seconds"],
        )
        for e in timeline.to_pylist()
    ]
    return TicketPage(ticket, metrics, entries, events)


# Buckets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BucketEntry:
    """A movement of a bucket: ``kind`` ``PURCHASE`` / ``PERIOD_GRANT`` / ``TOP_UP`` (seconds
    added), ``DRAWDOWN`` (seconds drawn by the work of local ``day``, ``logs`` time-log parts;
    ``overage`` seconds beyond the balance) or ``EXPIRY`` (seconds lapsed). ``at`` is its
    instant (a drawdown's: the day's first work), ``day`` that instant's date in the
    contract's zone, ``balance_seconds`` the balance just after it."""

    at: datetime
    kind: str
    seconds: int
    logs: int = 0
    overage_seconds: int = 0
    day: date | None = None
    balance_seconds: int = 0


@dataclass(frozen=True)
class BucketView:
    """A prepaid bucket contract of the client: its balance now (``GetBucketBalance``) and
    its history, oldest first."""

    contract: Any
    balance: buckets.BucketBalance
    history: list[BucketEntry]


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def bucket_history(stored_contract: Any, logs: pa.Table | None, at: datetime) -> list[BucketEntry]:
    """The movements of a ``BUCKET`` contract's balance up to ``at`` from its drawing logs
    (:func:`effigate_engine.service.buckets.drawing_logs`): its grants, its drawdowns per
    local day of work (what the classification's drawdown covered and left as overage) and
    what expired when (the bucket statement's expired seconds, instant by instant). CPU work:
    run it in a worker thread."""
    contract = stored_contract.contract
    limit = int(at.timestamp())
    periods = contract.cycle.periods_until(max(at.date(), contract.start))
    grants = sorted(contract_grants(contract, periods))
    zone = contract.zone
    entries: list[BucketEntry] = []
    for start, _, seconds, kind in grants:
        if start > limit:
            continue
        name = {GRANT_TOP_UP: "TOP_UP", GRANT_PERIOD: "PERIOD_GRANT"}.get(kind, "PURCHASE")
        entries.append(BucketEntry(_utc(start), name, seconds))
    classification = None
    if logs is not None and logs.num_rows:
        book = ContractBook([contract], horizon(contract, at.date(), logs))
        classification = classify(book, logs)
        c = book.index[contract.id]
        p = classification.parts
        mine = np.flatnonzero(
            (p["log_contract"][p["part_log"]] == c)
            & ((p["covered"] > 0) | (p["overage"] > 0))
            & (p["part_start"] < limit)
        )
        days: dict[Any, list[int]] = {}
        for k in mine.tolist():
            start = int(p["part_start"][k])
            day = _utc(start).astimezone(zone).date()
            slot = days.setdefault(day, [start, 0, 0, 0])
            slot[0] = min(slot[0], start)
            slot[1] += int(p["covered"][k])
            slot[2] += int(p["overage"][k])
            slot[3] += 1
        for first, covered, overage, count in days.values():
            entries.append(BucketEntry(_utc(first), "DRAWDOWN", covered, count, overage))
    instants = sorted(
        {g[1] for g in grants if g[1] <= limit} | {g[0] for g in grants if g[0] <= limit}
    )
    expired = 0
    for t in instants:
        now_expired = bucket_statement(contract, classification, t).expired_seconds
        if now_expired > expired:
            entries.append(BucketEntry(_utc(t), "EXPIRY", now_expired - expired))
        expired = max(expired, now_expired)
    order = {"PURCHASE": 0, "PERIOD_GRANT": 0, "TOP_UP": 1, "EXPIRY": 2, "DRAWDOWN": 3}
    balance = 0
    out = []
    for e in sorted(entries, key=lambda e: (e.at, order[e.kind])):
        balance += e.seconds if e.kind in ("PURCHASE", "PERIOD_GRANT", "TOP_UP") else -e.seconds
        out.append(replace(e, day=e.at.astimezone(zone).date(), balance_seconds=balance))
    return out


async def bucket_views(
    store: Store, principal: Principal, now: datetime | None = None
) -> list[BucketView]:
    """The caller's active ``BUCKET`` contracts, each with its balance at ``now`` and its
    history."""
    at = _now(now)
    out = []
    for record in await contracts.list_contracts(store, principal):
        if record.contract_type != "BUCKET" or record.status == "DRAFT":
            continue
        balance = await buckets.bucket_balance(store, principal, record.id, at)
        async with store.transaction(principal) as conn:
            stored_contract = await contracts.load_stored(conn, record.id, principal)
            logs = await buckets.drawing_logs(conn, stored_contract, at)
        history = await asyncio.to_thread(bucket_history, stored_contract, logs, at)
        out.append(BucketView(record, balance, history))
    return out


# Invoices -----------------------------------------------------------------------------------


async def issued_invoices(store: Store, principal: Principal) -> list[Any]:
    """The caller's issued invoices (``ISSUED_STATES``), newest number first."""
    records = await invoicing.list_invoices(store, principal)
    shown = [r for r in records if r.status in ISSUED_STATES]
    return sorted(shown, key=lambda r: r.number or 0, reverse=True)


@dataclass(frozen=True)
class InvoicePage:
    """An issued invoice with the evidence of its lines: ``logs`` the time-log parts each
    line prices (by line id), ``breaches`` the breach records its SLA credit lines settle (by
    breach id), ``contract`` the contract it bills (its terms name the credit rule)."""

    invoice: Any
    contract: Any
    logs: dict[int, list[LineLog]]
    breaches: dict[str, BreachRecord]


async def invoice_page(store: Store, principal: Principal, invoice_id: int) -> InvoicePage:
    """Issued invoice ``invoice_id`` of the caller's client with its evidence; a draft, or
    another client's invoice, is :class:`NotFound`."""
    record = await invoicing.get_invoice(store, principal, invoice_id)
    if record.status not in ISSUED_STATES:
        raise NotFound("invoice_id", invoice_id, "is not an issued invoice of this client")
    contract = await contracts.get_contract(store, principal, record.contract_id)
    ids = [b for line in record.lines for b in line.evidence.get("breach_ids", ())]
    async with store.transaction(principal) as conn:
        await invoicing.fetch_invoice(conn, invoice_id, principal)
        line_logs = await stored.invoice_line_logs(conn, invoice_id)
        breach_rows = await stored.breach_records(conn, ids)
    logs: dict[int, list[LineLog]] = {}
    for log in line_logs:
        logs.setdefault(log.line_id, []).append(log)
    return InvoicePage(record, contract, logs, {b.id: b for b in breach_rows})


def credit_rule(terms: dict[str, Any]) -> list[str]:
    """The contract's SLA-credit rule (``terms.sla_credits``) as sentences, amounts as the
    terms state them (major units)."""
    credits = terms.get("sla_credits") or {}
    out = []
    for priority, amount in sorted((credits.get("per_breach") or {}).items()):
        out.append(f"{priority}: {amount} per breach")
    for priority, bp in sorted((credits.get("percent_per_priority") or {}).items()):
        out.append(f"{priority}: {int(bp) / 100:g}% of the cycle's covered fee per breach")
    if credits.get("percent_bp"):
        out.append(f"{int(credits['percent_bp']) / 100:g}% of the cycle's covered fee per breach")
    if credits.get("cap") is not None:
        out.append(f"at most {credits['cap']} per invoice")
    if credits.get("cap_percent_bp") is not None:
        out.append(f"at most {int(credits['cap_percent_bp']) / 100:g}% of the covered fee")
    return out


__all__: Sequence[str] = (
    "BucketEntry",
    "BucketView",
    "InvoicePage",
    "MetricView",
    "TicketPage",
    "TicketRow",
    "bucket_history",
    "bucket_views",
    "client_name",
    "credit_rule",
    "invoice_page",
    "issued_invoices",
    "ticket_page",
    "ticket_rows",
)
