"""Reads behind the client portal's invoice page: the time logs each line prices and the
breach records its SLA credits settle. Callers check that the invoice is visible to the
caller first (:func:`effigate_engine.service.invoicing.fetch_invoice`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from effigate_engine.store.contracts import loads


@dataclass(frozen=True)
class LineLog:
    """One part of a time log priced by an invoice line: ``billed_seconds`` (burn-weighted
    for a bucket drawdown) and the log's ticket, agent, work and instants."""

    line_id: int
    time_log_id: str
    part: int
    billed_seconds: int
    ticket_id: str | None
    agent: str
    support_level: str
    job_type: str
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True)
class BreachRecord:
    """A stored SLA breach: its ticket, metric, deadline and when it was breached, with the
    priority and overrun (seconds) it was recorded with."""

    id: str
    ticket_id: str
    metric: str
    target_at: datetime
    breached_at: datetime
    priority: str | None
    breach_seconds: int | None


async def invoice_line_logs(conn: asyncpg.Connection, invoice_id: int) -> list[LineLog]:
    """The time-log parts every line of invoice ``invoice_id`` prices, by line, start, log."""
    rows = await conn.fetch(
        "SELECT e.invoice_line_id, e.time_log_id, e.part, e.billed_seconds, l.ticket_id,"
        " l.agent, l.support_level, l.job_type, l.started_at, l.ended_at"
        " FROM invoice_line_time_logs e JOIN time_logs l ON l.id = e.time_log_id"
        " WHERE e.invoice_id = $1 ORDER BY e.invoice_line_id, l.started_at, l.id, e.part",
        invoice_id,
    )
    return [
        LineLog(
            r["invoice_line_id"],
            r["time_log_id"],
            r["part"],
            r["billed_seconds"],
            r["ticket_id"],
            r["agent"],
            r["support_level"],
            r["job_type"],
            r["started_at"],
            r["ended_at"],
        )
        for r in rows
    ]


async def breach_records(conn: asyncpg.Connection, ids: Sequence[str]) -> list[BreachRecord]:
    """The stored breach records with these ids, by breach instant and id."""
    if not ids:
        return []
    rows = await conn.fetch(
        "SELECT id, ticket_id, metric, target_at, breached_at, evidence FROM breach_records"
        " WHERE id = ANY($1::text[]) ORDER BY breached_at, id",
        list(ids),
    )
    out = []
    for r in rows:
        evidence = loads(r["evidence"]) or {}
        seconds = evidence.get("breach_seconds")
        out.append(
            BreachRecord(
                r["id"],
                r["ticket_id"],
                r["metric"],
                r["target_at"],
                r["breached_at"],
                evidence.get("priority"),
                None if seconds is None else int(seconds),
            )
        )
    return out
