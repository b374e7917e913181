"""What the operations dashboard shows, read for a staff principal at one instant: the SLA
standing of every open ticket, compliance over a date range, the burn-down of prepaid buckets
and the invoices by state.

Every figure is computed by the functions the API's services use (the SLA engine under each
contract's policy, :func:`~effigate_engine.service.evaluations.compliance`,
:func:`~effigate_engine.service.buckets.statement`, :func:`~effigate_engine.service.invoicing.
list_invoices`), so a page and the API always agree. Seconds are business seconds where the
SLA engine measures them; instants are aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.errors import EffigateError
from effigate_engine.service import buckets, catalog, contracts, evaluations, invoicing
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import NotFound
from effigate_engine.service.rulesets import RulesetCache
from effigate_engine.store import screens as stored
from effigate_engine.store.database import Store

#: The SLA statuses in the order the dashboard lists them.
STATUSES = ("ON_TRACK", "WARNING", "PAUSED", "MET", "BREACHED")
#: Statuses that put an open metric on the at-risk list.
AT_RISK = ("BREACHED", "WARNING")


@dataclass(frozen=True)
class Standing:
    """One SLA metric of an open ticket at an instant: its status, the wall-clock
    ``deadline`` (``None`` while paused), the business seconds left (negative once breached)
    and whether the metric has stopped (met or breached for good)."""

    ticket_id: str
    client_id: int
    priority: str
    assignee: str | None
    metric: str
    status: str
    deadline: datetime | None
    remaining_seconds: int
    stopped: bool


@dataclass(frozen=True)
class Standings:
    """The metrics of every open ticket with an SLA policy at ``at``, and how many open
    tickets were read (``tickets``), had no SLA policy (``without_policy``) or could not be
    evaluated (``failed``)."""

    at: datetime
    metrics: list[Standing]
    tickets: int
    without_policy: int
    failed: int

    def counts(self) -> dict[str, int]:
        """Metrics by status (every status of :data:`STATUSES` present, 0 when none)."""
        seen = Counter(m.status for m in self.metrics)
        return {s: seen.get(s, 0) for s in STATUSES}

    def at_risk(self) -> list[Standing]:
        """Open metrics breached or in warning, most overdue first: breached ones by deadline
        (longest overdue first), then warnings by deadline (least time left first)."""
        risky = [m for m in self.metrics if m.status in AT_RISK and not m.stopped]
        far = self.at + timedelta(days=36_500)
        return sorted(
            risky,
            key=lambda m: (AT_RISK.index(m.status), m.deadline or far, m.ticket_id, m.metric),
        )


async def check_instant(
    store: Store, cache: RulesetCache, principal: Principal, at: datetime, name: str = "at"
) -> None:
    """Refuse an instant outside the horizon of the tenant's compiled calendars (no SLA can be
    measured there), naming the parameter ``name``; a tenant without calendars has no SLA to
    measure, and any instant will do."""
    if at.tzinfo is None:
        raise EffigateError(f"{name}: {at.isoformat()!r} has no time zone")
    async with store.transaction(principal) as conn:
        try:
            calendars = await cache.calendars(conn, principal.tenant_id)
        except NotFound:
            return
    horizon = calendars.horizon
    if not horizon.start <= int(at.timestamp()) <= horizon.end:
        shown = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise EffigateError(f"{name}: {shown!r} is outside the calendars' horizon {horizon}")


async def open_standings(
    store: Store, cache: RulesetCache, principal: Principal, at: datetime
) -> Standings:
    """The SLA metrics at ``at`` of every ticket not resolved (and raised by ``at``), each under
    its contract's policy, from its events up to ``at``: one read of the open tickets and one
    of their events, evaluated in one batch by the compiled engine (in a worker thread). A
    ticket the engine cannot evaluate is counted in ``failed``."""
    principal.require_staff("read every client's SLA standing")
    if at.tzinfo is None:
        raise EffigateError(f"at: {at.isoformat()!r} has no time zone")
    async with store.transaction(principal) as conn:
        held = await stored.open_histories(conn, at)
        policy_ids = sorted({int(p) for _, p in held if p is not None})
        rulesets = {p: await evaluations.ruleset(conn, cache, principal, p) for p in policy_ids}
    histories = [h for h, p in held if p is not None]
    without_policy = len(held) - len(histories)
    if not histories:
        return Standings(at, [], len(held), without_policy, 0)
    policy_of = {h.ticket.id: int(p) for h, p in held if p is not None}
    screened = await evaluations.screen_under_their_policies(histories, policy_of, rulesets, at)
    results = screened.evaluation.results
    tickets = {h.ticket.id: h.ticket for h in histories}
    metrics = []
    for ticket_id, metric, status, deadline, remaining, stopped_at in zip(
        results["ticket_id"].to_pylist(),
        pc.cast(results["metric"], pa.string()).to_pylist(),
        pc.cast(results["status"], pa.string()).to_pylist(),
        results["deadline"].to_pylist(),
        results["remaining_seconds"].to_pylist(),
        results["stopped_at"].to_pylist(),
        strict=True,
    ):
        t = tickets[ticket_id]
        metrics.append(
            Standing(
                ticket_id,
                t.client_id,
                t.priority,
                t.assignee,
                metric,
                status,
                deadline,
                int(remaining),
                stopped_at is not None,
            )
        )
    return Standings(at, metrics, len(held), without_policy, screened.rejected.num_rows)


@dataclass(frozen=True)
class ComplianceRow:
    """Metrics of the tickets of one group created in the range: decided as met or breached,
    still open, and the hit rate ``met / (met + breached)`` (``None``: nothing decided)."""

    key: str
    met: int
    breached: int
    open: int

    @property
    def hit_rate(self) -> float | None:
        decided = self.met + self.breached
        return None if decided == 0 else self.met / decided


@dataclass(frozen=True)
class Compliance:
    """Compliance of the tickets created in ``[start, end]`` (UTC dates, inclusive) under the
    stored policy ``policy_id`` evaluated at ``at``, by priority and by client id."""

    policy_id: int
    start: date
    end: date
    at: datetime
    by_priority: list[ComplianceRow]
    by_client: list[ComplianceRow]
    failed: int


def _summed(table: pa.Table, key: str, start: date, end: date) -> list[ComplianceRow]:
    low = datetime.combine(start, time(), UTC)
    high = datetime.combine(end + timedelta(days=1), time(), UTC)
    totals: dict[str, list[int]] = {}
    for row in table.to_pylist():
        if not low <= row["period"] < high:
            continue
        group = totals.setdefault(str(row[key]), [0, 0, 0])
        group[0] += row["met"]
        group[1] += row["breached"]
        group[2] += row["open"]
    return [ComplianceRow(k, *v) for k, v in sorted(totals.items())]


async def compliance(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    start: date,
    end: date,
    at: datetime,
) -> Compliance:
    """Met and breached metrics of the tickets created from ``start`` to ``end`` (UTC dates,
    inclusive), by priority and by client: the API's compliance report (``Compliance``,
    grouped by client, priority and day) summed over the days of the range."""
    if end < start:
        raise EffigateError(f"to: {end.isoformat()!r} is before from ({start.isoformat()})")
    report = await evaluations.compliance(
        store, cache, principal, policy_id, ["client_id", "priority"], "day", at
    )
    table = report.table
    return Compliance(
        policy_id,
        start,
        end,
        at,
        _summed(table, "priority", start, end),
        _summed(table, "client_id", start, end),
        report.failures.num_rows,
    )


async def default_policy(store: Store, principal: Principal) -> int | None:
    """The SLA policy the dashboard reports on unless asked for another: the lowest policy id
    an active contract uses, else the tenant's lowest policy id (``None``: no policy)."""
    records = await contracts.list_contracts(store, principal)
    used = sorted(
        r.sla_policy_id for r in records if r.sla_policy_id is not None and r.status == "ACTIVE"
    )
    if used:
        return used[0]
    policies = await catalog.list_policies(store, principal)
    return min((p.id for p in policies), default=None)


@dataclass(frozen=True)
class BurnDown:
    """A prepaid bucket's remaining (burn-weighted) seconds at each of ``points`` (instant,
    seconds), the last at the dashboard's instant; purchased plus top-ups at that instant."""

    contract_id: int
    client_id: int
    funded_seconds: int
    points: list[tuple[datetime, int]]


#: Most points of a burn-down chart (the samples are spread evenly, a day apart at least).
BURN_DOWN_POINTS = 60


def _samples(start: datetime, at: datetime) -> list[datetime]:
    """Instants from ``start`` to ``at`` (the last one ``at``), at most
    :data:`BURN_DOWN_POINTS`, at least a day apart but for the last."""
    if start >= at:
        return [at]
    step = max(timedelta(days=1), (at - start) / (BURN_DOWN_POINTS - 1))
    samples = []
    t = start
    while t < at:
        samples.append(t)
        t += step
    samples.append(at)
    return samples


async def burn_downs(store: Store, principal: Principal, at: datetime) -> list[BurnDown]:
    """Each activated ``BUCKET`` contract's balance from its first day to ``at``: its logs are
    read once, and the bucket statement (what ``GetBucketBalance`` reports) is computed at
    each of up to :data:`BURN_DOWN_POINTS` instants, the last of them ``at``."""
    principal.require_staff("read every client's buckets")
    records = [
        r
        for r in await contracts.list_contracts(store, principal)
        if r.contract_type == "BUCKET" and r.status != "DRAFT"
    ]
    out = []
    for record in records:
        async with store.transaction(principal) as conn:
            held = await contracts.load_stored(conn, record.id, principal)
            logs = await buckets.drawing_logs(conn, held, at)
        samples = _samples(datetime.combine(record.starts_on, time(), UTC), at)

        def compute(
            held=held, logs=logs, samples=samples
        ) -> tuple[int, list[tuple[datetime, int]]]:
            points = []
            funded = 0
            for t in samples:
                part = None
                if logs is not None:
                    part = logs.filter(
                        pc.less(logs["start"], pa.scalar(t, logs.schema.field("start").type))
                    )
                    part = part if part.num_rows else None
                st = buckets.statement(held, part, t)
                points.append((t, int(st.remaining_seconds)))
                funded = int(st.purchased_seconds + st.top_up_seconds)
            return funded, points

        funded, points = await asyncio.to_thread(compute)
        out.append(BurnDown(record.id, record.client_id, funded, points))
    return out


@dataclass(frozen=True)
class InvoiceState:
    """Invoices in one state: how many, and their totals by currency (minor units)."""

    status: str
    count: int
    totals_minor: dict[str, int]


async def invoice_states(store: Store, principal: Principal) -> list[InvoiceState]:
    """The tenant's invoices by state (as ``ListInvoices`` reports them), by state name."""
    records = await invoicing.list_invoices(store, principal)
    states: dict[str, tuple[int, Counter[str]]] = {}
    for r in records:
        count, totals = states.get(r.status, (0, Counter()))
        totals[r.currency] += r.total_minor
        states[r.status] = (count + 1, totals)
    return [InvoiceState(s, c, dict(sorted(t.items()))) for s, (c, t) in sorted(states.items())]


async def client_names(store: Store, principal: Principal) -> dict[int, str]:
    """The tenant's client names by id."""
    return dict(await catalog.list_clients(store, principal))


def parse_dates(
    start: str | None, end: str | None, at: datetime, days: int = 30
) -> tuple[date, date]:
    """The ``from``/``to`` dates of a request (``YYYY-MM-DD``; default: the ``days`` days
    ending on ``at``'s UTC date), checked."""
    values: list[date] = []
    for name, text, default in (
        ("from", start, (at.astimezone(UTC).date() - timedelta(days=days - 1))),
        ("to", end, at.astimezone(UTC).date()),
    ):
        if not text:
            values.append(default)
            continue
        try:
            values.append(date.fromisoformat(text))
        except ValueError:
            raise EffigateError(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
    if values[1] < values[0]:
        raise EffigateError(
            f"to: {values[1].isoformat()!r} is before from ({values[0].isoformat()})"
        )
    return values[0], values[1]
