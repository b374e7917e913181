"""Datasets for the scale-out jobs: export the store to a Parquet dataset
(:mod:`effigate_engine.datasets.layout`), and load a job's SLA results back.

**Export** (:func:`export_dataset`), per tenant, with the tenant's binding (a staff principal;
with the owner's credentials a job token per tenant, revoked when the export ends):

- tickets as the SLA engine's ``TICKETS`` batch exactly as the service evaluates them
  (:func:`~effigate_engine.service.tickets.load_timelines`, folded from their events as known
  at ``as_of``), with ``tenant_id`` and ``policy``: the name of the live SLA policy of the
  ticket's contract, as the service applies it (the screens, routing and the SLA schedule);
  null when the ticket has no contract, its contract no policy, or that policy is retired —
  the jobs then apply the catalog's first policy (lowest id), as a recompute under one policy
  does. One part per month of creation (UTC);
- every stored time log, as the billing ``TIME_LOGS`` columns (``approved`` true for approved
  logs; priority ``LOW`` when stored without one), read with the store's Arrow read (ADBC);
  one part per contract, in work order (start, id);
- the catalog (:class:`~effigate_engine.datasets.catalog.TenantCatalog`): live calendars and
  policies at their current versions, every contract but drafts in its stored form with what
  its next invoice takes besides its time (gathered as invoicing does), the tenant's default
  tax; and the tenant's breach records breached by ``as_of``;
- the manifest, last: the as-of instant, the tenants and the row counts.

Parts a tenant no longer has (a month or contract of an earlier export) are removed, so a
re-export leaves exactly one copy of every row.

**Load-back** (:func:`load_sla_results`): every part of ``results/<job>/`` (``SLA_RESULTS`` +
``tenant_id``) with its ``results/<job>_breaches/`` part (``BREACH_RECORDS``) in one
transaction: standings upserted into ``sla_standings`` (a stored standing is replaced only by
one evaluated at the same or a later instant), breach records inserted by breach id (one
already stored is left as it was). A part that fails leaves the store as it was.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.datasets import catalog as ds_catalog
from effigate_engine.datasets import layout
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.ratecard.schemas import TIME_LOGS
from effigate_engine.service.context import Principal
from effigate_engine.service.contracts import load_stored
from effigate_engine.service.dataset_access import JOB_LABEL, TenantRef, principals
from effigate_engine.service.dataset_results import LoadSummary, load_sla_results
from effigate_engine.service.invoice_evidence import breaches_table, settled
from effigate_engine.service.tickets import load_timelines
from effigate_engine.store import catalog as catalog_store
from effigate_engine.store import contracts as contract_store
from effigate_engine.store import invoices as invoice_store
from effigate_engine.store import standings as standings_store
from effigate_engine.store import tickets as ticket_store
from effigate_engine.store.arrow_reads import read_arrow
from effigate_engine.store.batches import STORED_TIME_LOGS
from effigate_engine.store.contracts import ContractRecord
from effigate_engine.store.database import Store
from effigate_engine.store.timelogs import DEFAULT_PRIORITY


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the dataset, the as-of instant, the tenants (ids as text) and the
    row and part counts (``tickets``, ``time_logs``, ``contracts``, ``policies``,
    ``calendars``, ``breaches``, ``ticket_parts``, ``time_log_parts``)."""

    url: str
    as_of: datetime
    tenants: list[str]
    counts: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the command line."""
        c = self.counts
        return (
            f"exported {len(self.tenants)} tenant(s) as of {self.as_of.isoformat()} to"
            f" {self.url}: {c.get('tickets', 0):,} tickets in {c.get('ticket_parts', 0)} parts,"
            f" {c.get('time_logs', 0):,} time logs in {c.get('time_log_parts', 0)} parts,"
            f" {c.get('contracts', 0)} contracts, {c.get('policies', 0)} policies,"
            f" {c.get('breaches', 0):,} breach records"
        )


def _instant(as_of: datetime | None) -> datetime:
    """``as_of`` (default now) as an aware UTC instant, whole seconds."""
    if as_of is None:
        return datetime.now(UTC).replace(microsecond=0)
    if as_of.tzinfo is None:
        raise DatasetError(f"as_of: {as_of.isoformat()!r} has no time zone")
    return as_of.astimezone(UTC).replace(microsecond=0)


async def export_dataset(
    store: Store,
    url: str,
    *,
    tenants: Sequence[TenantRef] | None = None,
    as_of: datetime | None = None,
) -> ExportSummary:
    """Export ``tenants`` (every tenant of the store when ``None``) to the dataset at ``url``
    as known at ``as_of`` (default now; whole seconds, UTC): see the module's docstring."""
    at = _instant(as_of)
    counts: dict[str, int] = {}
    exported: list[str] = []
    async with principals(store, tenants) as bound:
        for principal in sorted(bound, key=lambda p: str(p.tenant_id)):
            for name, n in (await _export_tenant(store, url, principal, at)).items():
                counts[name] = counts.get(name, 0) + n
            exported.append(str(principal.tenant_id))
    layout.write_manifest(url, {"as_of": at.isoformat(), "tenants": exported, "counts": counts})
    return ExportSummary(str(url), at, exported, counts)


async def _export_tenant(
    store: Store, url: str, principal: Principal, at: datetime
) -> dict[str, int]:
    """Write one tenant's parts, catalog and breaches; the counts."""
    tenant = str(principal.tenant_id)
    async with store.transaction(principal) as conn:
        months = await ticket_store.created_months(conn, at)
        calendars = await catalog_store.load_calendars(conn)
        policies = await catalog_store.load_policies(conn)
        records = await contract_store.list_contracts(conn, None)
        sources = [
            await _contract_source(conn, principal, r, at) for r in records if r.status != "DRAFT"
        ]
        breach_rows = await standings_store.tenant_breaches(conn, at)
    async with store.adbc() as adbc:
        stored_logs = await read_arrow(adbc, STORED_TIME_LOGS, principal.key)
    default_tax: list[dict[str, Any]] = []
    if sources:
        default_tax = sources[0][1]
    contracts = [s for s, _ in sources]

    policy_names = {p.id: p.name for p in policies}
    # One month of tickets at a time (each its own read): memory is bounded by a month's
    # tickets, not the tenant's.
    written: list[str] = []
    ticket_count = 0
    for start in months:
        async with store.transaction(principal) as conn:
            window = (start, _next_month(start))
            tickets = await load_timelines(conn, principal, as_of=at, created=window)
        tickets = with_policies(tickets, tenant, records, policy_names)
        written.extend(layout.write_tickets(url, tenant, tickets))
        ticket_count += tickets.num_rows
    _prune(url, layout.TICKETS, tenant, set(written))

    logs = time_logs_table(stored_logs).cast(TIME_LOGS)
    contract_ids = layout.write_time_logs(url, tenant, logs)
    _prune(url, layout.TIME_LOGS, tenant, set(contract_ids))

    ds_catalog.TenantCatalog(
        tenant=tenant,
        as_of=at,
        calendars={r.name: r.body for r in calendars},
        calendar_versions={r.name: r.version for r in calendars},
        policies=[ds_catalog.PolicySource(p.id, p.name, p.version, p.body) for p in policies],
        contracts=contracts,
        default_tax=default_tax,
    ).save(url)
    breaches = breaches_table(breach_rows)
    ds_catalog.save_breaches(url, tenant, breaches)
    return {
        "tickets": ticket_count,
        "ticket_parts": len(written),
        "time_logs": logs.num_rows,
        "time_log_parts": len(contract_ids),
        "contracts": len(contracts),
        "policies": len(policies),
        "calendars": len(calendars),
        "breaches": breaches.num_rows,
    }


def _next_month(start: datetime) -> datetime:
    """The first instant of the month after the one ``start`` opens."""
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def with_policies(
    tickets: pa.Table,
    tenant: str,
    contracts: Sequence[ContractRecord],
    policy_names: dict[int, str],
) -> pa.Table:
    """``tickets`` (``TICKETS``) with ``tenant_id`` set and ``policy`` naming the live SLA policy
    of each ticket's contract (null: none, see the module's docstring)."""
    named = [(str(c.id), policy_names.get(c.sla_policy_id or 0)) for c in contracts]
    named = [(c, n) for c, n in named if n is not None]
    keys = pa.array([c for c, _ in named], pa.string())
    names = pa.array([n for _, n in named], pa.string())
    where = pc.index_in(tickets.column("contract_id"), value_set=keys)
    policy = pc.take(names, where)
    n = tickets.num_rows
    tickets = tickets.set_column(
        tickets.schema.get_field_index("tenant_id"),
        "tenant_id",
        pa.array([tenant] * n, pa.string()),
    )
    return tickets.set_column(tickets.schema.get_field_index("policy"), "policy", policy)


def time_logs_table(stored: pa.Table) -> pa.Table:
    """Stored time logs (:data:`~effigate_engine.store.batches.STORED_TIME_LOGS`) as the
    billing ``TIME_LOGS`` columns, ``contract_id`` as text (plain strings: cast each part to
    ``TIME_LOGS``), sorted by contract, then work order (start, id); as the service's invoice
    reads give them (:func:`~effigate_engine.store.timelogs.logs_table`), with ``approved``
    false for logs not approved. Instants are floored to the second, as billing reads them."""
    stored = stored.sort_by(
        [("contract_id", "ascending"), ("started_at", "ascending"), ("id", "ascending")]
    )
    priority = stored.column("priority")
    given = pc.fill_null(pc.not_equal(priority, ""), False)

    def second(name: str) -> Any:
        return pc.floor_temporal(stored.column(name), unit="second").cast(
            TIME_LOGS.field("start").type
        )

    columns = {
        "log_id": stored.column("id"),
        "contract_id": pc.cast(stored.column("contract_id"), pa.string()),
        "ticket_id": stored.column("ticket_id"),
        "task_id": stored.column("task_ref"),
        "agent_id": stored.column("agent"),
        "support_level": stored.column("support_level"),
        "job_type": stored.column("job_type"),
        "priority": pc.if_else(given, priority, DEFAULT_PRIORITY),
        "start": second("started_at"),
        "end": second("ended_at"),
        "billable_type": stored.column("billable_type"),
        "approved": pc.fill_null(pc.equal(stored.column("approval_state"), "APPROVED"), False),
    }
    return pa.table(columns)


async def _contract_source(
    conn: Any, principal: Principal, record: ContractRecord, at: datetime
) -> tuple[ds_catalog.ContractSource, list[dict[str, Any]]]:
    """A stored contract as the catalog keeps it, gathered as invoicing gathers an invoice's
    inputs (:func:`~effigate_engine.service.invoicing.invoice_inputs`): what the contract's other
    non-void invoices settled (breach ids credited, items invoiced, the credit balance they
    carry forward); and the tenant's default tax."""
    stored = await load_stored(conn, record.id, principal)
    _, lines = await invoice_store.settlement_inputs(conn, record.id, int(at.timestamp()), None)
    credited, items, balance = settled(lines)
    assert stored.calendar is not None  # load_stored refuses a contract without one
    tax = stored.record.terms.get("tax")
    source = ds_catalog.ContractSource(
        row=stored.record.row(),
        calendar={**stored.calendar.to_json(), "name": stored.calendar.name},
        amendments=[dict(a) for a in stored.amendments],
        milestones=[dict(m) for m in stored.milestones],
        deliverables=[dict(d) for d in stored.deliverables],
        unit_counts=[[u.unit_type, u.effective_on, u.count] for u in stored.unit_counts],
        tax=[] if tax is None else list(tax),
        exemption=stored.record.terms.get("tax_exemption"),
        already_credited=sorted(credited),
        invoiced_items=sorted(items),
        credit_balance=balance,
        tax_given=tax is not None,
    )
    return source, list(stored.default_tax)


def _prune(url: str, table: str, tenant: str, keep: set[str]) -> None:
    """Remove the tenant's parts of ``table`` whose key is not in ``keep`` (left by an earlier
    export)."""
    fs, _ = layout.filesystem(url)
    for part in layout.parts(url, table, {tenant}):
        if part.key not in keep:
            fs.rm(posixpath.dirname(part.path), recursive=True)


__all__ = [
    "JOB_LABEL",
    "ExportSummary",
    "LoadSummary",
    "TenantRef",
    "export_dataset",
    "load_sla_results",
    "principals",
    "time_logs_table",
    "with_policies",
]
