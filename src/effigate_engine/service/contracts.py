"""Rate cards and contracts: the library of published cards, contract creation, activation
(which freezes a copy of the card), amendments, milestones, deliverables and unit counts.

Money is integer minor units of the contract's currency; dates are local dates in the
contract's time zone (stored as the instant of their local midnight where the column is a
``timestamptz``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from effigate_engine.billing.rate_card_json import amendment_rate_card, rate_card_from_json
from effigate_engine.billing.terms_json import (
    AMENDMENT_KINDS,
    hours_to_seconds,
    validate_terms,
)
from effigate_engine.calendar import Calendar
from effigate_engine.errors import BillingError, ConfigurationError, EffigateError
from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.model import RateCard, canonical_json, content_sha256
from effigate_engine.ratecard.periods import local_midnight
from effigate_engine.service.catalog import fetch_calendar, fetch_policy
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.store import contracts as db
from effigate_engine.store.contracts import ContractRecord, RateCardVersionRecord, StoredContract
from effigate_engine.store.database import Store
from effigate_engine.zone import zone as bundled_zone

_ACTIVE = ("ACTIVE", "AMENDED")


def instant_of(day: date, zone: ZoneInfo) -> datetime:
    """Local midnight of ``day`` in ``zone`` as an aware datetime (how dates are stored)."""
    return datetime.fromtimestamp(local_midnight(day, zone), UTC)


async def audit(
    conn: Any,
    principal: Principal,
    action: str,
    entity: str,
    entity_id: object,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an audit-log entry for a state change made by ``principal``."""
    await db.audit(conn, principal.actor, action, entity, entity_id, detail)


# Rate cards ---------------------------------------------------------------------------------


async def create_rate_card(store: Store, principal: Principal, name: str) -> int:
    """Create an (empty) library rate card named ``name``; returns its id. Publish versions
    with :func:`publish_rate_card`."""
    principal.require_staff("create rate cards")
    if not isinstance(name, str) or not name.strip():
        raise EffigateError(f"name: {name!r} is not a non-empty rate-card name")
    async with store.transaction(principal) as conn:
        return await db.insert_rate_card(conn, name)


async def publish_rate_card(
    store: Store, principal: Principal, rate_card_id: int, body: dict[str, Any]
) -> RateCardVersionRecord:
    """Validate ``body`` (rate-card JSON, ``docs/billing.md``; errors name ``rate_card.<field>``)
    and store it as the card's next immutable version with the SHA-256 of its canonical
    content. Contracts already activated keep the copy they froze."""
    principal.require_staff("publish rate cards")
    card = rate_card_from_json(body, "rate_card")
    stored = card.to_json()
    digest = card.content_hash()
    async with store.transaction(principal) as conn:
        record = await db.insert_rate_card_version(
            conn, rate_card_id, card.currency, stored, digest
        )
    if record is None:
        raise NotFound("rate_card_id", rate_card_id, "is not a rate card of this tenant")
    return record


async def fetch_rate_card_version(
    conn: Any, rate_card_id: int, version: int | None = None
) -> RateCardVersionRecord:
    """Version ``version`` of library card ``rate_card_id`` (the latest when ``None``)."""
    record = await db.fetch_rate_card_version(conn, rate_card_id, version)
    if record is not None:
        return record
    if version is None:
        raise FailedPrecondition(
            "rate_card_id", rate_card_id, "has no published version; publish one first"
        )
    raise NotFound("rate_card_version", version, f"is not a version of rate card {rate_card_id}")


# Contracts ----------------------------------------------------------------------------------


async def fetch_contract(conn: Any, contract_id: int, *, lock: bool = False) -> ContractRecord:
    """The stored contract ``contract_id`` of the transaction's tenant (``FOR UPDATE`` when
    ``lock``); :class:`NotFound` when there is none."""
    record = await db.fetch_contract(conn, contract_id, lock=lock)
    if record is None:
        raise NotFound("contract_id", contract_id, "is not a contract of this tenant")
    return record


async def load_stored(
    conn: Any, contract_id: int, principal: Principal | None = None, *, lock: bool = False
) -> StoredContract:
    """The aggregate of contract ``contract_id`` (one round trip, ``FOR UPDATE`` when
    ``lock``; ``principal``: whose tenant's default tax to read); :class:`NotFound` for a
    missing contract or calendar; a portal ``principal`` sees only its client's."""
    stored = await db.load_contract(
        conn, contract_id, None if principal is None else principal.tenant_id, lock=lock
    )
    if stored is None:
        raise NotFound("contract_id", contract_id, "is not a contract of this tenant")
    if principal is not None:
        check_visible(principal, stored.record.client_id, "contract_id", contract_id)
    if stored.calendar is None:
        raise NotFound("calendar_id", stored.record.calendar_id, "is not a calendar of this tenant")
    return stored


async def load_contract(conn: Any, contract_id: int) -> Contract:
    """The domain :class:`Contract` of stored contract ``contract_id`` (frozen card, amendments,
    milestones, deliverables); ``contract.id`` is ``str(contract_id)``."""
    return (await load_stored(conn, contract_id)).contract


def check_visible(principal: Principal, client_id: int, field: str, value: object) -> None:
    """A portal principal sees only its own client's rows: another client's is not found."""
    if principal.client_id is not None and principal.client_id != client_id:
        raise NotFound(field, value, "is not a contract, invoice or balance of this client")


async def create_contract(
    store: Store,
    principal: Principal,
    *,
    client_id: int,
    contract_type: str,
    currency: str,
    starts_on: date,
    ends_on: date | None = None,
    calendar_id: int | None = None,
    sla_policy_id: int | None = None,
    rate_card_id: int | None = None,
    time_zone: str | None = None,
    terms: dict[str, Any] | None = None,
) -> ContractRecord:
    """Create a ``DRAFT`` contract of ``client_id``.

    ``terms`` are validated for the type and currency (``docs/contract-terms.md``).
    ``time_zone`` defaults to the calendar's zone (``UTC`` without a calendar, which then means
    a 24x7 calendar in that zone); a zone different from the calendar's is refused. The rate
    card (``rate_card_id``) is only named here: activation freezes a copy.
    """
    principal.require_staff("create contracts")
    normalised = validate_terms(contract_type, currency, terms or {})
    currency = currency.upper()
    if ends_on is not None and ends_on <= starts_on:
        raise ConfigurationError("ends_on", ends_on.isoformat(), "is not after starts_on")
    async with store.transaction(principal) as conn:
        if not await db.client_exists(conn, client_id):
            raise NotFound("client_id", client_id, "is not a client of this tenant")
        zone = time_zone
        if calendar_id is not None:
            calendar = (await fetch_calendar(conn, calendar_id)).calendar()
            if zone is not None and zone != calendar.timezone:
                raise ConfigurationError(
                    "time_zone", zone, f"differs from calendar {calendar_id}'s {calendar.timezone}"
                )
            zone = calendar.timezone
        zone = zone or "UTC"
        Calendar.always_open(zone)  # validates the zone name
        if sla_policy_id is not None:
            await fetch_policy(conn, sla_policy_id)
        if rate_card_id is not None:
            exists, card_currency = await db.rate_card_currency(conn, rate_card_id)
            if not exists:
                raise NotFound("rate_card_id", rate_card_id, "is not a rate card of this tenant")
            if card_currency is not None and card_currency != currency:
                raise ConfigurationError(
                    "currency", currency, f"differs from rate card {rate_card_id}'s {card_currency}"
                )
        return await db.insert_contract(
            conn,
            client_id=client_id,
            contract_type=ContractType(contract_type).value,
            currency=currency,
            time_zone=zone,
            calendar_id=calendar_id,
            sla_policy_id=sla_policy_id,
            starts_on=starts_on,
            ends_on=ends_on,
            terms=normalised,
            rate_card_id=rate_card_id,
        )


async def activate_contract(
    store: Store, principal: Principal, contract_id: int, rate_card_version: int | None = None
) -> ContractRecord:
    """Activate a ``DRAFT`` contract: freeze a copy of its rate card's version
    ``rate_card_version`` (the latest published when ``None``) with that version number and
    its SHA-256, and lock the type. Later publications never change this contract's prices."""
    principal.require_staff("activate contracts")
    async with store.transaction(principal) as conn:
        stored = await load_stored(conn, contract_id, lock=True)
        row = stored.record
        if row.status != "DRAFT":
            raise FailedPrecondition(
                "contract.status", row.status, f"contract {contract_id} is not DRAFT"
            )
        if row.rate_card_id is None:
            raise FailedPrecondition(
                "contract.rate_card_id", None, f"contract {contract_id} names no rate card"
            )
        version = await fetch_rate_card_version(conn, row.rate_card_id, rate_card_version)
        if version.currency != row.currency:
            raise FailedPrecondition(
                "rate_card_version.currency",
                version.currency,
                f"differs from contract {contract_id}'s {row.currency}",
            )
        # Validate the whole contract as the domain activates it (milestones, deliverables...).
        try:
            stored.domain(frozen_rate_card=version.body).activate()
        except BillingError as exc:
            raise FailedPrecondition(exc.field, exc.value, exc.problem) from None
        # The database checks the hash against this exact text.
        text = canonical_json(version.body)
        if content_sha256(text) != version.content_sha256:
            raise FailedPrecondition(
                "rate_card_version.content_sha256",
                version.content_sha256,
                f"is not the SHA-256 of version {version.version}'s content",
            )
        updated = await db.activate(conn, contract_id, version, text)
        bucket = row.terms.get("bucket")
        if row.contract_type == "BUCKET" and bucket and not bucket.get("per_period"):
            at = instant_of(row.starts_on, bundled_zone(row.time_zone))
            seconds = int(bucket["size_seconds"])
            await db.insert_top_up(conn, contract_id, at, seconds, "purchased at activation")
        await audit(
            conn,
            principal,
            "activate",
            "contract",
            contract_id,
            {
                "rate_card_id": row.rate_card_id,
                "rate_card_version": version.version,
                "content_sha256": version.content_sha256,
            },
        )
    return updated


def _same_currency(card: RateCard, contract: ContractRecord) -> None:
    if card.currency != contract.currency:
        raise ConfigurationError(
            "body.currency", card.currency, f"differs from the contract's {contract.currency}"
        )


def _amendment_body(
    kind: str, body: dict[str, Any], contract: ContractRecord, card: RateCard | None
) -> dict[str, Any]:
    """Validate an amendment body (``card``: a ``RATE_CARD`` body's inline card) and return
    what is stored."""
    note = body.get("note", "")
    if not isinstance(note, str):
        raise ConfigurationError("body.note", note, "is not a string")
    if kind == "NOTE":
        if not note:
            raise ConfigurationError("body.note", note, "is required for a NOTE amendment")
        return {"note": note}
    if kind == "TOP_UP":
        if contract.contract_type != "BUCKET":
            raise FailedPrecondition(
                "contract.contract_type", contract.contract_type, "has no bucket to top up"
            )
        if "hours" in body and "seconds" in body:
            raise ConfigurationError("body.hours", body["hours"], "and body.seconds are both given")
        if "seconds" in body:
            seconds = body["seconds"]
            if not isinstance(seconds, int) or isinstance(seconds, bool):
                raise ConfigurationError("body.seconds", seconds, "is not whole seconds")
        elif "hours" in body:
            seconds = hours_to_seconds(body["hours"], "body.hours")
        else:
            raise ConfigurationError("body.hours", None, "is required for a TOP_UP amendment")
        if seconds <= 0:
            raise ConfigurationError("body.hours", body.get("hours", seconds), "is not positive")
        return {"seconds": seconds, "note": note}
    assert card is not None  # a RATE_CARD body's card, parsed by amend_contract
    _same_currency(card, contract)
    return {"rate_card": card.to_json(), "content_sha256": card.content_hash(), "note": note}


async def amend_contract(
    store: Store,
    principal: Principal,
    contract_id: int,
    *,
    kind: str,
    effective_on: date,
    body: dict[str, Any],
) -> int:
    """Record an effective-dated amendment of an active contract; returns its id.

    ``kind``: ``RATE_CARD`` (``body`` is a rate-card JSON, or ``{"rate_card": {...}}``, or
    ``{"rate_card_id": n, "version": v}`` naming a published library version; it prices work
    starting on or after ``effective_on`` and never re-prices earlier work), ``TOP_UP``
    (``{"hours": "10"}`` or ``{"seconds": 36000}``: bucket hours from ``effective_on``, never
    backwards; also written to the bucket ledger), ``NOTE`` (``{"note": "..."}``). Any body may
    carry a ``note``.
    """
    principal.require_staff("amend contracts")
    if kind not in AMENDMENT_KINDS:
        raise ConfigurationError("kind", kind, f"is not one of {list(AMENDMENT_KINDS)}")
    if not isinstance(body, dict):
        raise ConfigurationError("body", body, "is not a JSON object")
    async with store.transaction(principal) as conn:
        row = await fetch_contract(conn, contract_id, lock=True)
        if row.status not in _ACTIVE:
            raise FailedPrecondition(
                "contract.status", row.status, f"contract {contract_id} is not active"
            )
        if effective_on < row.starts_on:
            raise ConfigurationError(
                "effective_on", effective_on.isoformat(), "is before the contract's start"
            )
        card = amendment_rate_card(body) if kind == "RATE_CARD" else None
        if isinstance(card, tuple):  # a published library version
            version = await fetch_rate_card_version(conn, *card)
            _same_currency(RateCard.from_json(version.body), row)
            stored = {
                "rate_card": version.body,
                "content_sha256": version.content_sha256,
                "rate_card_id": version.rate_card_id,
                "rate_card_version": version.version,
                "note": str(body.get("note", "")),
            }
        else:
            stored = _amendment_body(kind, body, row, card)
        effective_at = instant_of(effective_on, bundled_zone(row.time_zone))
        amendment_id = await db.insert_amendment(conn, contract_id, kind, effective_at, stored)
        # The amended contract must still build (e.g. currency, dates).
        await load_contract(conn, contract_id)
        await audit(
            conn,
            principal,
            "amend",
            "contract",
            contract_id,
            {
                "amendment_id": amendment_id,
                "kind": kind,
                "effective_on": effective_on,
                **{k: v for k, v in stored.items() if k != "rate_card"},
            },
        )
    return int(amendment_id)


async def get_contract(store: Store, principal: Principal, contract_id: int) -> ContractRecord:
    """The stored contract ``contract_id`` (a portal principal sees only its client's)."""
    async with store.transaction(principal) as conn:
        record = await fetch_contract(conn, contract_id)
    check_visible(principal, record.client_id, "contract_id", contract_id)
    return record


async def list_contracts(
    store: Store, principal: Principal, client_id: int | None = None
) -> list[ContractRecord]:
    """The tenant's contracts by id, of one client when given (a portal principal: its own)."""
    if principal.client_id is not None:
        if client_id is not None and client_id != principal.client_id:
            return []
        client_id = principal.client_id
    async with store.transaction(principal) as conn:
        return await db.list_contracts(conn, client_id)


# Items and unit counts ----------------------------------------------------------------------


async def _add_item(
    store: Store, principal: Principal, table: str, contract_id: int, name: str, amount_minor: int
) -> int:
    principal.require_staff(f"add {table}")
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError("name", name, "is not a non-empty name")
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor < 0:
        raise ConfigurationError("amount_minor", amount_minor, "is not whole minor units >= 0")
    async with store.transaction(principal) as conn:
        row = await fetch_contract(conn, contract_id)
        wanted = "FIXED_PRICE" if table == "milestones" else "SCOPE"
        if row.contract_type != wanted:
            raise FailedPrecondition(
                "contract.contract_type", row.contract_type, f"has no {table} ({wanted} only)"
            )
        return await db.insert_item(conn, table, contract_id, name, amount_minor)


async def _complete_item(
    store: Store, principal: Principal, table: str, item_id: int, on: date
) -> None:
    principal.require_staff(f"complete {table}")
    done = db.ITEM_TABLES[table][1]
    field = "milestone_id" if table == "milestones" else "deliverable_id"
    async with store.transaction(principal) as conn:
        item = await db.lock_item(conn, table, item_id)
        if item is None:
            raise NotFound(field, item_id, f"is not one of this tenant's {table}")
        if item["status"] != "PENDING":
            raise FailedPrecondition(f"{table}.status", item["status"], f"{field} {item_id}")
        if on < item["starts_on"]:
            raise ConfigurationError("on", on.isoformat(), "is before the contract's start")
        at = instant_of(on, bundled_zone(item["time_zone"]))
        await db.complete_item(conn, table, item_id, at)
        await audit(conn, principal, done.lower(), table[:-1], item_id, {"on": on})


async def add_milestone(
    store: Store, principal: Principal, contract_id: int, name: str, amount_minor: int
) -> int:
    """Add a milestone of ``amount_minor`` to a ``FIXED_PRICE`` contract; returns its id."""
    return await _add_item(store, principal, "milestones", contract_id, name, amount_minor)


async def approve_milestone(
    store: Store, principal: Principal, milestone_id: int, on: date
) -> None:
    """Approve a pending milestone on local date ``on``: it is invoiced on the invoice of the
    period holding ``on`` (or the first invoice generated after, if that one exists)."""
    await _complete_item(store, principal, "milestones", milestone_id, on)


async def add_deliverable(
    store: Store, principal: Principal, contract_id: int, name: str, amount_minor: int
) -> int:
    """Add a deliverable of ``amount_minor`` to a ``SCOPE`` contract; returns its id."""
    return await _add_item(store, principal, "deliverables", contract_id, name, amount_minor)


async def sign_off_deliverable(
    store: Store, principal: Principal, deliverable_id: int, on: date
) -> None:
    """Sign off a pending deliverable on local date ``on`` (it becomes invoiceable)."""
    await _complete_item(store, principal, "deliverables", deliverable_id, on)


async def record_unit_count(
    store: Store,
    principal: Principal,
    contract_id: int,
    unit_type: str,
    count: int,
    *,
    effective_on: date | None = None,
    cycle_end: datetime | None = None,
) -> int:
    """Record that ``count`` units of ``unit_type`` are active on a ``RECURRING`` contract from
    local date ``effective_on`` until the next count of that type: the counts form a timeline
    per unit type. Returns the row id.

    ``cycle_end`` (a cycle's end instant, the older form) records the count in force on that
    cycle's last day: from the local date of the second before it. Give one of the two.
    Re-sending the same count for the same (unit type, date) changes nothing and returns the
    same id; another count for it replaces the count (audited); an invoice keeps the count it
    billed in its line evidence.
    """
    principal.require_staff("record unit counts")
    if effective_on is None and cycle_end is None:
        raise ConfigurationError("effective_on", None, "is required (or a cycle_end instant)")
    if effective_on is not None and cycle_end is not None:
        raise ConfigurationError(
            "cycle_end", cycle_end.isoformat(), "and effective_on are both given; give one"
        )
    if cycle_end is not None and cycle_end.tzinfo is None:
        raise ConfigurationError("cycle_end", cycle_end.isoformat(), "is naive; give UTC")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ConfigurationError("count", count, "is not a whole count >= 0")
    async with store.transaction(principal) as conn:
        row = await fetch_contract(conn, contract_id)
        if row.contract_type != "RECURRING":
            raise FailedPrecondition(
                "contract.contract_type", row.contract_type, "bills no units (RECURRING only)"
            )
        prices = (row.terms.get("recurring") or {}).get("unit_prices", {})
        if unit_type not in prices:
            raise ConfigurationError(
                "unit_type", unit_type, f"has no unit price on contract {contract_id}"
            )
        if effective_on is None:
            assert cycle_end is not None
            last_second = cycle_end - timedelta(seconds=1)
            effective_on = last_second.astimezone(bundled_zone(row.time_zone)).date()
            field = "cycle_end"
        else:
            field = "effective_on"
        if effective_on < row.starts_on:
            raise ConfigurationError(
                field, effective_on.isoformat(), "is before the contract's start"
            )
        if row.ends_on is not None and effective_on >= row.ends_on:
            raise ConfigurationError(
                field, effective_on.isoformat(), "is not before the contract's end"
            )
        stored = await db.lock_unit_count(conn, contract_id, unit_type, effective_on)
        if stored is not None and stored["unit_count"] == count:
            return int(stored["id"])
        count_id = await db.upsert_unit_count(conn, contract_id, unit_type, effective_on, count)
        await audit(
            conn,
            principal,
            "record_unit_count",
            "contract",
            contract_id,
            {
                "unit_count_id": count_id,
                "unit_type": unit_type,
                "effective_on": effective_on,
                "count": count,
                "replaced": None if stored is None else stored["unit_count"],
            },
        )
    return int(count_id)


__all__ = [
    "ContractRecord",
    "activate_contract",
    "add_deliverable",
    "add_milestone",
    "amend_contract",
    "approve_milestone",
    "create_contract",
    "create_rate_card",
    "get_contract",
    "list_contracts",
    "load_contract",
    "publish_rate_card",
    "record_unit_count",
    "sign_off_deliverable",
]
