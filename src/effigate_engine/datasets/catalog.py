"""A tenant's catalog in a dataset: calendars, SLA policies, contracts and what each
contract's invoice takes besides its time (unit counts, tax, credits), as of the export.

Stored as one JSON file per tenant (``catalog/tenant=<t>/catalog.json``, see
:mod:`~effigate_engine.datasets.layout`). Contracts are kept in their stored form (the
``contracts`` row with its frozen rate card, amendments, milestones and deliverables) and built
into domain contracts by the same function the service uses
(:func:`~effigate_engine.billing.terms_json.build_contract`), so a job on a cluster prices
exactly what the service would. Dates and instants are tagged in the JSON
(``{"$date": "2026-03-01"}``, ``{"$instant": "2026-03-01T09:00:00+00:00"}``).

:func:`compiled` gives a catalog's compiled calendars and parsed policies once per process,
keyed by the catalog's digest: a worker that runs many parts of one tenant compiles them once.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any

import pyarrow as pa

from effigate_engine.billing.run import InvoiceInputs
from effigate_engine.billing.terms_json import build_contract, tax_components
from effigate_engine.calendar import Calendar
from effigate_engine.calendar_set import CalendarSet
from effigate_engine.datasets.layout import CATALOG, DatasetError, filesystem, write_table
from effigate_engine.ratecard.contracts import Contract
from effigate_engine.ratecard.periods import Period
from effigate_engine.sla.policy import Policy

CATALOG_FILE = "catalog.json"
BREACHES_FILE = "breaches.parquet"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DatasetError(f"catalog: instant {value.isoformat()!r} has no time zone")
        return {"$instant": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"catalog: {type(value).__name__} is not JSON")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$date" in obj:
            return date.fromisoformat(obj["$date"])
        if "$instant" in obj:
            return datetime.fromisoformat(obj["$instant"])
    return obj


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, tagged dates and instants)."""
    return json.dumps(value, default=_encode, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> Any:
    """The inverse of :func:`dumps`."""
    return json.loads(text, object_hook=_decode)


@dataclass(frozen=True)
class ContractSource:
    """One stored contract, in the form :func:`build_contract` takes, with its billing inputs:
    ``row`` (the ``contracts`` columns: ``id``, ``client_id``, ``contract_type``, ``currency``,
    ``starts_on``, ``ends_on``, ``status``, ``terms``, ``frozen_rate_card``,
    ``frozen_rate_card_sha256``, ``time_zone``), ``calendar`` (its calendar's JSON, with
    ``name``), ``amendments`` / ``milestones`` / ``deliverables`` rows, ``unit_counts`` as
    ``[unit_type, effective_on, count]`` rows, ``tax`` components (``[{name, rate_ppm}]``,
    empty: the run's default), ``exemption``, the breach ids ``already_credited`` and item ids
    ``invoiced_items`` by earlier invoices, and ``credit_balance`` (minor units) brought in.
    ``tax_given``: the contract's terms set its tax components, so an empty ``tax`` means no
    tax rather than the run's default (a contract whose terms say ``"tax": []``)."""

    row: dict[str, Any]
    calendar: dict[str, Any]
    amendments: list[dict[str, Any]] = field(default_factory=list)
    milestones: list[dict[str, Any]] = field(default_factory=list)
    deliverables: list[dict[str, Any]] = field(default_factory=list)
    unit_counts: list[list[Any]] = field(default_factory=list)
    tax: list[dict[str, Any]] = field(default_factory=list)
    exemption: str | None = None
    already_credited: list[str] = field(default_factory=list)
    invoiced_items: list[str] = field(default_factory=list)
    credit_balance: int = 0
    tax_given: bool = False

    @property
    def id(self) -> str:
        """The contract's id as billing names it (``str`` of the stored id)."""
        return str(self.row["id"])

    def contract(self) -> Contract:
        """The domain contract (as the service builds it)."""
        calendar = Calendar.from_json(self.calendar)
        return build_contract(
            self.row, calendar, self.amendments, self.milestones, self.deliverables
        )

    def inputs(self, contract: Contract, period: Period) -> InvoiceInputs:
        """What the contract's invoice for ``period`` takes besides its time and breaches.
        Unit counts: per unit type the count in force on the period's last day, or with
        ``prorate_units`` the timeline up to the period's end (as the service gives them)."""
        timelines: dict[str, list[tuple[date, int]]] = {}
        for unit, on, count in sorted(self.unit_counts, key=lambda r: (r[0], r[1])):
            if on < period.end:
                timelines.setdefault(unit, []).append((on, int(count)))
        counts: dict[str, Any]
        if contract.recurring is None or not contract.recurring.prorate_units:
            counts = {unit: timeline[-1][1] for unit, timeline in timelines.items()}
        else:
            counts = {}
            for unit, timeline in timelines.items():
                none_before = [(contract.start, 0)] if timeline[0][0] > contract.start else []
                counts[unit] = none_before + timeline
        return InvoiceInputs(
            unit_counts=counts,
            already_credited=tuple(self.already_credited),
            invoiced_items=tuple(self.invoiced_items),
            tax=tax_components(self.tax) if self.tax or self.tax_given else None,
            exemption=self.exemption,
            credit_balance=int(self.credit_balance),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "calendar": self.calendar,
            "amendments": self.amendments,
            "milestones": self.milestones,
            "deliverables": self.deliverables,
            "unit_counts": self.unit_counts,
            "tax": self.tax,
            "exemption": self.exemption,
            "already_credited": self.already_credited,
            "invoiced_items": self.invoiced_items,
            "credit_balance": self.credit_balance,
            # only when set: the JSON (and digest) of other contracts stays as it was
            **({"tax_given": True} if self.tax_given else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContractSource:
        return cls(**dict(data))


@dataclass(frozen=True)
class PolicySource:
    """A stored SLA policy: its id, name, version and JSON body."""

    id: int
    name: str
    version: int
    body: dict[str, Any]

    def policy(self) -> Policy:
        return Policy.from_json({**self.body, "name": self.name})


@dataclass(frozen=True)
class TenantCatalog:
    """A tenant's catalog as of ``as_of``: calendars by name (JSON bodies) with their
    versions, policies, contracts, and the default tax components (``[{name, rate_ppm}]``)."""

    tenant: str
    as_of: datetime
    calendars: dict[str, dict[str, Any]]
    calendar_versions: dict[str, int] = field(default_factory=dict)
    policies: list[PolicySource] = field(default_factory=list)
    contracts: list[ContractSource] = field(default_factory=list)
    default_tax: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "as_of": self.as_of,
            "calendars": self.calendars,
            "calendar_versions": self.calendar_versions,
            "policies": [
                {"id": p.id, "name": p.name, "version": p.version, "body": p.body}
                for p in self.policies
            ],
            "contracts": [c.to_json() for c in self.contracts],
            "default_tax": self.default_tax,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TenantCatalog:
        return cls(
            tenant=str(data["tenant"]),
            as_of=data["as_of"],
            calendars=dict(data["calendars"]),
            calendar_versions=dict(data.get("calendar_versions", {})),
            policies=[PolicySource(**p) for p in data.get("policies", [])],
            contracts=[ContractSource.from_json(c) for c in data.get("contracts", [])],
            default_tax=list(data.get("default_tax", [])),
        )

    @cached_property
    def text(self) -> str:
        """The catalog's canonical JSON."""
        return dumps(self.to_json())

    @cached_property
    def digest(self) -> str:
        """SHA-256 of :attr:`text`: what the per-process cache is keyed by."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def policy_source(self, ref: str | int) -> PolicySource:
        """A policy by id (digits) or name."""
        text = str(ref)
        for p in self.policies:
            if (text.isdigit() and p.id == int(text)) or p.name == text:
                return p
        known = ", ".join(f"{p.id} {p.name!r}" for p in self.policies) or "none"
        raise DatasetError(f"policy {ref!r}: not in tenant {self.tenant}'s catalog ({known})")

    def save(self, url: str) -> None:
        """Write the catalog to the dataset at ``url`` (replacing the tenant's)."""
        fs, root = filesystem(url)
        folder = posixpath.join(root, CATALOG, f"tenant={self.tenant}")
        fs.makedirs(folder, exist_ok=True)
        path = posixpath.join(folder, CATALOG_FILE)
        with fs.open(f"{path}.tmp", "w") as f:
            f.write(self.text)
        fs.mv(f"{path}.tmp", path)


def catalog_path(url: str, tenant: str, name: str = CATALOG_FILE) -> str:
    """Path of one of a tenant's catalog files within the dataset's file system."""
    _, root = filesystem(url)
    return posixpath.join(root, CATALOG, f"tenant={tenant}", name)


def load_catalog(url: str, tenant: str) -> TenantCatalog:
    """The catalog of ``tenant`` in the dataset at ``url``."""
    fs, _ = filesystem(url)
    path = catalog_path(url, tenant)
    if not fs.exists(path):
        raise DatasetError(f"{path}: tenant {tenant} has no catalog in the dataset")
    with fs.open(path, "r") as f:
        return TenantCatalog.from_json(loads(f.read()))


def save_breaches(url: str, tenant: str, breaches: pa.Table) -> None:
    """Write the tenant's breach records (:data:`~effigate_engine.sla.schemas.BREACH_RECORDS`)."""
    write_table(url, catalog_path(url, tenant, BREACHES_FILE), breaches)


def load_breaches(url: str, tenant: str) -> pa.Table | None:
    """The tenant's breach records, or ``None`` when none were exported."""
    import pyarrow.parquet as pq

    from effigate_engine.sla.schemas import BREACH_RECORDS

    fs, _ = filesystem(url)
    path = catalog_path(url, tenant, BREACHES_FILE)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return pq.read_table(f).cast(BREACH_RECORDS)


@dataclass(frozen=True)
class Compiled:
    """A catalog compiled: the calendar set (default horizon, as the service compiles it),
    the policies by name, and the domain contracts by id (built on first use)."""

    catalog: TenantCatalog
    calendars: CalendarSet
    policies: dict[str, Policy]

    @cached_property
    def contracts(self) -> dict[str, Contract]:
        return {c.id: c.contract() for c in self.catalog.contracts}

    @cached_property
    def sources(self) -> dict[str, ContractSource]:
        return {c.id: c for c in self.catalog.contracts}

    def policy(self, ref: str | int) -> Policy:
        return self.policies[self.catalog.policy_source(ref).name]


_COMPILED: dict[str, Compiled] = {}
_LOCK = threading.Lock()
#: Catalogs kept compiled per process (the most recently used are kept).
COMPILED_KEPT = 16


def compiled(catalog: TenantCatalog) -> Compiled:
    """``catalog`` compiled, once per process (keyed by its digest)."""
    key = catalog.digest
    with _LOCK:
        hit = _COMPILED.get(key)
        if hit is not None:
            return hit
        calendars = CalendarSet(
            [Calendar.from_json({**body, "name": name}) for name, body in catalog.calendars.items()]
        )
        made = Compiled(catalog, calendars, {p.name: p.policy() for p in catalog.policies})
        while len(_COMPILED) >= COMPILED_KEPT:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = made
        return made


def compile_count() -> int:
    """How many catalogs this process holds compiled (tests check the cache works)."""
    return len(_COMPILED)


def contract_periods(
    sources: Sequence[ContractSource], contracts: Mapping[str, Contract], day: date
) -> dict[str, Period]:
    """The period holding local date ``day`` of each contract started by then."""
    return {
        s.id: contracts[s.id].cycle.period_of(day) for s in sources if contracts[s.id].start <= day
    }
