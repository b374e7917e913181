"""Bulk exports of stored data as Arrow tables (served by the Flight ``DoGet`` calls): the SLA
results of stored tickets and the lines of an invoice. Tenancy as everywhere: a portal
principal sees only its own client's tickets and invoices."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pyarrow as pa

from effigate_engine.service.context import Principal
from effigate_engine.service.evaluations import RulesetCache, StoredReport, ruleset
from effigate_engine.service.invoicing import get_invoice
from effigate_engine.service.tickets import load_timelines
from effigate_engine.sla.screening import evaluate_rows
from effigate_engine.store.database import Store

#: The columns of an invoice-lines export (money in minor units, durations in seconds).
INVOICE_LINES = pa.schema(
    [
        ("invoice_id", pa.int64()),
        ("line_id", pa.int64()),
        ("position", pa.int32()),
        ("kind", pa.string()),
        ("description", pa.string()),
        ("time_condition", pa.string()),
        ("support_level", pa.string()),
        ("job_type", pa.string()),
        ("rate_minor_per_hour", pa.int64()),
        ("rate_card_version", pa.int32()),
        ("actual_seconds", pa.int64()),
        ("billed_seconds", pa.int64()),
        ("amount_minor", pa.int64()),
        ("time_log_ids", pa.list_(pa.string())),
        ("evidence_json", pa.string()),
    ]
)


async def stored_results(
    store: Store,
    cache: RulesetCache,
    principal: Principal,
    policy_id: int,
    now: datetime | None = None,
    client_id: int | None = None,
) -> StoredReport:
    """The SLA results (``sla.RESULTS`` columns, stamped with the policy and calendar
    versions) of every stored ticket (of ``client_id``; a portal principal: of its client)
    evaluated at ``now`` (default: now) as Recompute evaluates them, without recording
    breaches; the stored tickets the engine cannot evaluate are in ``failures``."""
    at = now or datetime.now(UTC).replace(microsecond=0)
    async with store.transaction(principal) as conn:
        rules = await ruleset(conn, cache, principal, policy_id)
        table = await load_timelines(conn, principal, client_id=client_id, as_of=at)
    screened = await asyncio.to_thread(evaluate_rows, table, rules.policy, rules.calendars, at)
    return StoredReport(rules.stamp(screened.evaluation).results, screened.rejected)


async def invoice_lines(store: Store, principal: Principal, invoice_id: int) -> pa.Table:
    """The lines of invoice ``invoice_id`` (:data:`INVOICE_LINES`), in position order; another
    client's invoice is not found for a portal principal."""
    record = await get_invoice(store, principal, invoice_id)
    rows = [
        {
            "invoice_id": record.id,
            "line_id": line.id,
            "position": line.position,
            "kind": line.kind,
            "description": line.description,
            "time_condition": line.time_condition,
            "support_level": line.support_level,
            "job_type": line.job_type,
            "rate_minor_per_hour": line.rate_minor_per_hour,
            "rate_card_version": line.rate_card_version,
            "actual_seconds": line.actual_seconds,
            "billed_seconds": line.billed_seconds,
            "amount_minor": line.amount_minor,
            "time_log_ids": list(line.time_log_ids),
            "evidence_json": json.dumps(line.evidence, sort_keys=True, default=str),
        }
        for line in sorted(record.lines, key=lambda line: line.position)
    ]
    return pa.Table.from_pylist(rows, schema=INVOICE_LINES)
