"""Contracts in the store: library rate cards and their versions, contracts (with the frozen
card), amendments, milestones and deliverables, unit counts, and the audit log.

:func:`load_contract` reads a contract's whole aggregate in one round trip (the row, its
calendar, amendments, milestones, deliverables, unit counts and the tenant's default tax) and
hands back the stored :class:`ContractRecord` and the domain
:class:`~effigate_engine.ratecard.contracts.Contract` together. Rows of another tenant are never
seen (row-level security); a missing row comes back as ``None`` for the caller to name.
Money is integer minor units; dates are local dates of the contract's zone, stored as the
instant of their local midnight where the column is a ``timestamptz``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

import asyncpg

from effigate_engine.billing.terms_json import build_contract
from effigate_engine.calendar import Calendar
from effigate_engine.ratecard.contracts import Contract

CONTRACT_COLUMNS = (
    "id, client_id, contract_type, status, currency, time_zone, starts_on, ends_on, calendar_id,"
    " sla_policy_id, rate_card_id, frozen_rate_card, frozen_rate_card_version,"
    " frozen_rate_card_sha256, activated_at, terms"
)
_C_COLUMNS = ", ".join(f"c.{name.strip()}" for name in CONTRACT_COLUMNS.split(","))

#: Milestones and deliverables: the table, the column dating completion, the state it sets.
ITEM_TABLES = {
    "milestones": ("approved_at", "APPROVED"),
    "deliverables": ("signed_off_at", "SIGNED_OFF"),
}


def loads(value: Any) -> Any:
    """A JSON column's value (asyncpg hands ``jsonb`` over as text)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


@dataclass(frozen=True)
class RateCardVersionRecord:
    """A published, immutable version of a library rate card. ``body`` is the card's canonical
    JSON (:meth:`RateCard.to_json`, rates in minor units per hour); ``content_sha256`` is
    :meth:`RateCard.content_hash` of it."""

    rate_card_id: int
    version: int
    currency: str
    content_sha256: str
    body: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class ContractRecord:
    """A stored contract. ``terms`` is the normalised terms JSON (``docs/contract-terms.md``);
    the ``frozen_rate_card*`` fields are the copy taken at activation (``None`` while
    ``DRAFT``): the library version it was copied from and the SHA-256 of its content."""

    id: int
    client_id: int
    contract_type: str
    status: str
    currency: str
    time_zone: str
    starts_on: date
    ends_on: date | None
    calendar_id: int | None
    sla_policy_id: int | None
    rate_card_id: int | None
    frozen_rate_card_version: int | None
    frozen_rate_card_sha256: str | None
    activated_at: datetime | None
    terms: dict[str, Any]
    frozen_rate_card: dict[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        """The record as a ``contracts`` row mapping (what the terms codec builds from)."""
        return dict(vars(self))


def contract_record(row: asyncpg.Record) -> ContractRecord:
    """A :class:`ContractRecord` from a ``contracts`` row."""
    return ContractRecord(
        id=row["id"],
        client_id=row["client_id"],
        contract_type=row["contract_type"],
        status=row["status"],
        currency=row["currency"].strip(),
        time_zone=row["time_zone"],
        starts_on=row["starts_on"],
        ends_on=row["ends_on"],
        calendar_id=row["calendar_id"],
        sla_policy_id=row["sla_policy_id"],
        rate_card_id=row["rate_card_id"],
        frozen_rate_card_version=row["frozen_rate_card_version"],
        frozen_rate_card_sha256=row["frozen_rate_card_sha256"],
        activated_at=row["activated_at"],
        terms=loads(row["terms"]) or {},
        frozen_rate_card=loads(row["frozen_rate_card"]),
    )


@dataclass(frozen=True)
class UnitCountRow:
    """A stored unit count: ``count`` units of ``unit_type`` from local date ``effective_on``."""

    unit_type: str
    effective_on: date
    count: int


@dataclass(frozen=True)
class StoredContract:
    """A contract's aggregate as stored: the record, its calendar (``None`` when the calendar
    it names is gone), amendment, milestone and deliverable rows (mappings, by id), its unit
    counts (by unit type and date), the tenant's default tax components and the row's version
    (changes with every update of the ``contracts`` row)."""

    record: ContractRecord
    calendar: Calendar | None
    amendments: tuple[dict[str, Any], ...]
    milestones: tuple[dict[str, Any], ...]
    deliverables: tuple[dict[str, Any], ...]
    unit_counts: tuple[UnitCountRow, ...]
    default_tax: list[dict[str, Any]]
    row_version: int

    def domain(self, frozen_rate_card: dict[str, Any] | None = None) -> Contract:
        """The domain contract (priced by ``frozen_rate_card`` instead of the stored copy when
        given); raises the terms codec's errors for a contract that does not build."""
        if self.calendar is None:
            raise LookupError(f"calendar {self.record.calendar_id} of the contract is gone")
        row = self.record.row()
        if frozen_rate_card is not None:
            row["frozen_rate_card"] = frozen_rate_card
        return build_contract(
            row, self.calendar, self.amendments, self.milestones, self.deliverables
        )

    @cached_property
    def contract(self) -> Contract:
        """The domain contract (built once, on first use)."""
        return self.domain()


_AGGREGATE_SQL = (
    f"SELECT {_C_COLUMNS}, c.xmin::text::bigint AS row_version, cal.id AS cal_id,"
    " cal.name AS cal_name, cal.body AS cal_body,"
    " ARRAY(SELECT ROW(a.id, a.kind, a.effective_at, a.body) FROM contract_amendments a"
    "   WHERE a.contract_id = c.id ORDER BY a.id) AS amendments,"
    " ARRAY(SELECT ROW(m.id, m.name, m.amount_minor, m.approved_at) FROM milestones m"
    "   WHERE m.contract_id = c.id ORDER BY m.id) AS milestones,"
    " ARRAY(SELECT ROW(d.id, d.name, d.amount_minor, d.signed_off_at) FROM deliverables d"
    "   WHERE d.contract_id = c.id ORDER BY d.id) AS deliverables,"
    " ARRAY(SELECT ROW(u.unit_type, u.effective_on, u.unit_count) FROM unit_counts u"
    "   WHERE u.contract_id = c.id ORDER BY u.unit_type, u.effective_on) AS unit_counts,"
    " (SELECT t.default_tax FROM tenants t WHERE t.id = $2) AS default_tax"
    " FROM contracts c"
    " LEFT JOIN calendars cal ON cal.id = c.calendar_id AND cal.retired_at IS NULL"
    " WHERE c.id = $1"
)


async def load_contract(
    conn: asyncpg.Connection,
    contract_id: int,
    tenant_id: UUID | None = None,
    *,
    lock: bool = False,
) -> StoredContract | None:
    """The aggregate of contract ``contract_id`` in one round trip (``None`` when the tenant
    has no such contract), its row locked ``FOR UPDATE`` when ``lock``. ``tenant_id`` names
    the tenant whose default tax to read."""
    sql = _AGGREGATE_SQL + (" FOR UPDATE OF c" if lock else "")
    row = await conn.fetchrow(sql, contract_id, tenant_id)
    if row is None:
        return None
    record = contract_record(row)
    calendar: Calendar | None
    if record.calendar_id is None:
        calendar = Calendar.always_open(record.time_zone, name="24x7")
    elif row["cal_id"] is None:
        calendar = None
    else:
        calendar = Calendar.from_json({**loads(row["cal_body"]), "name": row["cal_name"]})
    return StoredContract(
        record=record,
        calendar=calendar,
        amendments=tuple(
            {"id": i, "kind": k, "effective_at": at, "body": loads(b)}
            for i, k, at, b in row["amendments"]
        ),
        milestones=tuple(
            {"id": i, "name": n, "amount_minor": a, "approved_at": at}
            for i, n, a, at in row["milestones"]
        ),
        deliverables=tuple(
            {"id": i, "name": n, "amount_minor": a, "signed_off_at": at}
            for i, n, a, at in row["deliverables"]
        ),
        unit_counts=tuple(UnitCountRow(u, on, int(n)) for u, on, n in row["unit_counts"]),
        default_tax=list(loads(row["default_tax"]) or []),
        row_version=int(row["row_version"]),
    )


async def fetch_contract(
    conn: asyncpg.Connection, contract_id: int, *, lock: bool = False
) -> ContractRecord | None:
    """The stored contract ``contract_id`` (``FOR UPDATE`` when ``lock``), ``None`` if the
    tenant has none."""
    sql = f"SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id = $1"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), contract_id)
    return None if row is None else contract_record(row)


async def list_contracts(conn: asyncpg.Connection, client_id: int | None) -> list[ContractRecord]:
    """The tenant's contracts by id, of one client when given."""
    rows = await conn.fetch(
        f"SELECT {CONTRACT_COLUMNS} FROM contracts"
        " WHERE ($1::bigint IS NULL OR client_id = $1) ORDER BY id",
        client_id,
    )
    return [contract_record(r) for r in rows]


async def client_exists(conn: asyncpg.Connection, client_id: int) -> bool:
    """Whether the tenant has client ``client_id``."""
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)", client_id)
    )


async def insert_contract(conn: asyncpg.Connection, **values: Any) -> ContractRecord:
    """Store a ``DRAFT`` contract (``values``: the ``contracts`` columns a creation sets,
    ``terms`` as a dict); returns it as stored."""
    row = await conn.fetchrow(
        "INSERT INTO contracts (client_id, contract_type, currency, time_zone, calendar_id,"
        " sla_policy_id, starts_on, ends_on, terms, rate_card_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)"
        f" RETURNING {CONTRACT_COLUMNS}",
        values["client_id"],
        values["contract_type"],
        values["currency"],
        values["time_zone"],
        values["calendar_id"],
        values["sla_policy_id"],
        values["starts_on"],
        values["ends_on"],
        json.dumps(values["terms"]),
        values["rate_card_id"],
    )
    return contract_record(row)


async def activate(
    conn: asyncpg.Connection, contract_id: int, version: RateCardVersionRecord, text: str
) -> ContractRecord:
    """Set contract ``contract_id`` ``ACTIVE`` with a frozen copy of ``version`` (``text``: its
    canonical JSON, as hashed)."""
    row = await conn.fetchrow(
        "UPDATE contracts SET status = 'ACTIVE', frozen_rate_card = $2::jsonb,"
        " frozen_rate_card_text = $5, frozen_rate_card_version = $3,"
        " frozen_rate_card_sha256 = $4, activated_at = now()"
        f" WHERE id = $1 RETURNING {CONTRACT_COLUMNS}",
        contract_id,
        text,
        version.version,
        version.content_sha256,
        text,
    )
    return contract_record(row)


async def insert_amendment(
    conn: asyncpg.Connection,
    contract_id: int,
    kind: str,
    effective_at: datetime,
    body: dict[str, Any],
) -> int:
    """Store an amendment (a ``TOP_UP`` also as a bucket-ledger entry) and mark the contract
    ``AMENDED``; returns the amendment's id."""
    amendment_id = int(
        await conn.fetchval(
            "INSERT INTO contract_amendments (contract_id, kind, effective_at, body)"
            " VALUES ($1, $2, $3, $4::jsonb) RETURNING id",
            contract_id,
            kind,
            effective_at,
            json.dumps(body),
        )
    )
    if kind == "TOP_UP":
        await insert_top_up(
            conn, contract_id, effective_at, body["seconds"], f"amendment {amendment_id}"
        )
    await conn.execute("UPDATE contracts SET status = 'AMENDED' WHERE id = $1", contract_id)
    return amendment_id


async def insert_top_up(
    conn: asyncpg.Connection, contract_id: int, at: datetime, seconds: int, note: str
) -> None:
    """Add ``seconds`` of prepaid bucket time from instant ``at`` (a ``TOP_UP`` ledger entry)."""
    await conn.execute(
        "INSERT INTO bucket_ledger (contract_id, entry_at, kind, seconds, note)"
        " VALUES ($1, $2, 'TOP_UP', $3, $4)",
        contract_id,
        at,
        seconds,
        note,
    )


# Rate cards ---------------------------------------------------------------------------------


async def insert_rate_card(conn: asyncpg.Connection, name: str) -> int:
    """Store an (empty) library rate card named ``name``; returns its id."""
    return int(await conn.fetchval("INSERT INTO rate_cards (name) VALUES ($1) RETURNING id", name))


async def insert_rate_card_version(
    conn: asyncpg.Connection, rate_card_id: int, currency: str, body: dict[str, Any], digest: str
) -> RateCardVersionRecord | None:
    """Store ``body`` as the next version of library card ``rate_card_id`` (locked while the
    number is taken); ``None`` when the tenant has no such card."""
    locked = await conn.fetchval("SELECT id FROM rate_cards WHERE id = $1 FOR UPDATE", rate_card_id)
    if locked is None:
        return None
    row = await conn.fetchrow(
        "INSERT INTO rate_card_versions (rate_card_id, version, currency, body, content_sha256)"
        " SELECT $1::bigint, coalesce(max(version), 0) + 1, $2::char(3), $3::jsonb, $4::text"
        " FROM rate_card_versions"
        " WHERE rate_card_id = $1 RETURNING version, created_at",
        rate_card_id,
        currency,
        json.dumps(body),
        digest,
    )
    return RateCardVersionRecord(
        rate_card_id, int(row["version"]), currency, digest, body, row["created_at"]
    )


async def fetch_rate_card_version(
    conn: asyncpg.Connection, rate_card_id: int, version: int | None = None
) -> RateCardVersionRecord | None:
    """Version ``version`` of library card ``rate_card_id`` (the latest when ``None``), or
    ``None`` when there is no such version."""
    row = await conn.fetchrow(
        "SELECT * FROM rate_card_versions WHERE rate_card_id = $1"
        " AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
        rate_card_id,
        version,
    )
    if row is None:
        return None
    return RateCardVersionRecord(
        row["rate_card_id"],
        row["version"],
        row["currency"].strip(),
        row["content_sha256"],
        loads(row["body"]),
        row["created_at"],
    )


async def rate_card_currency(
    conn: asyncpg.Connection, rate_card_id: int
) -> tuple[bool, str | None]:
    """Whether library card ``rate_card_id`` exists, and its latest version's currency
    (``None`` before a first publication)."""
    row = await conn.fetchrow(
        "SELECT (SELECT v.currency FROM rate_card_versions v WHERE v.rate_card_id = c.id"
        " ORDER BY v.version DESC LIMIT 1) AS currency FROM rate_cards c WHERE c.id = $1",
        rate_card_id,
    )
    if row is None:
        return False, None
    return True, None if row["currency"] is None else row["currency"].strip()


# Items and unit counts ----------------------------------------------------------------------


async def insert_item(
    conn: asyncpg.Connection, table: str, contract_id: int, name: str, amount_minor: int
) -> int:
    """Store a pending milestone or deliverable (``table``); returns its id."""
    assert table in ITEM_TABLES
    return int(
        await conn.fetchval(
            f"INSERT INTO {table} (contract_id, name, amount_minor) VALUES ($1, $2, $3)"
            " RETURNING id",
            contract_id,
            name,
            amount_minor,
        )
    )


async def lock_item(conn: asyncpg.Connection, table: str, item_id: int) -> asyncpg.Record | None:
    """Milestone or deliverable ``item_id`` (``id``, ``status``) locked for update, with its
    contract's ``time_zone`` and ``starts_on``; ``None`` when there is none."""
    assert table in ITEM_TABLES
    return await conn.fetchrow(
        f"SELECT i.id, i.status, c.time_zone, c.starts_on FROM {table} i"
        " JOIN contracts c ON c.id = i.contract_id WHERE i.id = $1 FOR UPDATE OF i",
        item_id,
    )


async def complete_item(conn: asyncpg.Connection, table: str, item_id: int, at: datetime) -> None:
    """Mark an item approved / signed off at instant ``at``."""
    column, done = ITEM_TABLES[table]
    await conn.execute(
        f"UPDATE {table} SET status = $2, {column} = $3 WHERE id = $1", item_id, done, at
    )


async def set_items_status(
    conn: asyncpg.Connection, table: str, item_ids: Sequence[int], status: str
) -> None:
    """Set the status of the given milestones or deliverables (one statement)."""
    assert table in ITEM_TABLES
    if item_ids:
        await conn.execute(
            f"UPDATE {table} SET status = $2 WHERE id = ANY($1::bigint[])", list(item_ids), status
        )


async def lock_unit_count(
    conn: asyncpg.Connection, contract_id: int, unit_type: str, effective_on: date
) -> asyncpg.Record | None:
    """The stored count (``id``, ``unit_count``) of a unit type on a date, locked."""
    return await conn.fetchrow(
        "SELECT id, unit_count FROM unit_counts"
        " WHERE contract_id = $1 AND unit_type = $2 AND effective_on = $3 FOR UPDATE",
        contract_id,
        unit_type,
        effective_on,
    )


async def upsert_unit_count(
    conn: asyncpg.Connection, contract_id: int, unit_type: str, effective_on: date, count: int
) -> int:
    """Store (or replace) the count of a unit type from a date; returns the row id."""
    return int(
        await conn.fetchval(
            "INSERT INTO unit_counts (contract_id, unit_type, effective_on, unit_count)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, contract_id, unit_type,"
            " effective_on) DO UPDATE SET unit_count = EXCLUDED.unit_count RETURNING id",
            contract_id,
            unit_type,
            effective_on,
            count,
        )
    )


# Audit --------------------------------------------------------------------------------------

#: The audit-log insert: actor, action, entity, entity id, detail (JSON text).
AUDIT_SQL = (
    "INSERT INTO audit_log (actor, action, entity, entity_id, detail)"
    " VALUES ($1, $2, $3, $4, $5::jsonb)"
)


def audit_detail(detail: dict[str, Any] | None) -> str:
    """An audit entry's detail as JSON text (dates and other values as their text)."""
    return json.dumps(detail or {}, default=str)


async def audit(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an ``audit_log`` row for a state change made by ``actor``."""
    await conn.execute(AUDIT_SQL, actor, action, entity, str(entity_id), audit_detail(detail))


async def audit_many(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    entity: str,
    entries: Sequence[tuple[object, dict[str, Any]]],
) -> None:
    """Append one ``audit_log`` row per ``(entity id, detail)`` in one statement."""
    if entries:
        await conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id, detail)"
            " SELECT $1, $2, $3, e, d::jsonb FROM unnest($4::text[], $5::text[]) AS u(e, d)",
            actor,
            action,
            entity,
            [str(e) for e, _ in entries],
            [audit_detail(d) for _, d in entries],
        )
