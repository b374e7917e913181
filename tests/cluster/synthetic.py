"""A small synthetic dataset for the scale-out tests: tenants with a few months of tickets each
(pauses, reopenings, several priorities, clients, assignees, job types and support levels;
each ticket under one of two policies or the default), two policies and three calendars (one in
a zone with daylight saving), written with :mod:`effigate_engine.datasets`.

Per tenant one ticket the engine cannot evaluate (its first response before its creation) and
one naming a policy the catalog lacks (no rule: left out, named)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import PolicySource, TenantCatalog
from effigate_engine.sla.schemas import TICKETS

NOW = datetime(2026, 5, 12, 15, 30, tzinfo=UTC)
START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 120  # January to early May: the US and UK clock changes fall inside

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
CALENDARS = {
    "ny-office": {
        "timezone": "America/New_York",
        "weekly": [{"weekday": d, "start": "08:00", "end": "18:00"} for d in WEEKDAYS],
        "holidays": ["2026-01-19", "2026-02-16"],
    },
    "london-24x7": {"timezone": "Europe/London", "24x7": True},
    "sydney-late": {
        "timezone": "Australia/Sydney",
        "weekly": [{"weekday": d, "start": "12:00", "end": "20:30"} for d in WEEKDAYS],
    },
}
STANDARD = {
    "rules": [
        {
            "match": {"priority": "CRITICAL"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "1h", "calendar": "london-24x7"},
                "RESOLUTION": {"target": "8h", "calendar": "london-24x7"},
            },
        },
        {
            "match": {"priority": "HIGH"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "4h", "calendar": "ny-office"},
                "RESOLUTION_PLAN": {"target": "8h", "calendar": "ny-office"},
                "RESOLUTION": {"target": "16h", "calendar": "ny-office"},
            },
        },
        {
            "metrics": {
                "FIRST_RESPONSE": {"target": "8h", "calendar": "ny-office"},
                "RESOLUTION": {"target": "40h", "calendar": "ny-office"},
            }
        },
    ]
}
PREMIUM = {
    "rules": [
        {
            "match": {"job_type": "network"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "30m", "calendar": "london-24x7"},
                "RESOLUTION": {"target": "6h", "calendar": "london-24x7"},
            },
        },
        {
            "match": {"priority": ["CRITICAL", "HIGH"]},
            "metrics": {
                "FIRST_RESPONSE": {"target": "2h", "calendar": "sydney-late"},
                "RESOLUTION": {"target": "12h", "calendar": "sydney-late"},
            },
        },
        {
            "metrics": {
                "FIRST_RESPONSE": {"target": "6h", "calendar": "ny-office"},
                "RESOLUTION": {"target": "24h", "calendar": "ny-office", "warning": "0.8"},
            }
        },
    ]
}
#: A proposed policy (a JSON file's body): tighter first responses, looser resolutions.
PROPOSED = {
    "rules": [
        {
            "match": {"priority": "CRITICAL"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "45m", "calendar": "london-24x7"},
                "RESOLUTION": {"target": "12h", "calendar": "london-24x7"},
            },
        },
        {
            "metrics": {
                "FIRST_RESPONSE": {"target": "5h", "calendar": "ny-office"},
                "RESOLUTION": {"target": "30h", "calendar": "sydney-late"},
            }
        },
    ]
}
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "P1", "P2", "P3")
CLIENTS = ("acme", "globex", "initech", "umbrella", "hooli")
ASSIGNEES = ("ana", "bo", "cy", "di", None)
JOB_TYPES = ("network", "desktop", "server", None)
LEVELS = ("L1", "L2", "L3", None)


@dataclass(frozen=True)
class Synthetic:
    """The dataset written: its URL, tenants, the evaluation instant, and per tenant the
    ticket ids the engine cannot evaluate and those naming no known policy."""

    url: str
    tenants: tuple[str, ...]
    now: datetime
    bad: dict[str, str]
    unknown_policy: dict[str, str]


def tenant_id(k: int) -> str:
    return f"00000000-0000-4000-8000-{k:012d}"


def _ticket(rng: np.random.Generator, tenant: str, i: int) -> dict:
    h = 3600
    if rng.random() < 0.1:  # raised in the last day and a half: on track, warning, paused
        created = NOW - timedelta(seconds=int(rng.integers(60, 36 * h)))
    else:
        created = START + timedelta(seconds=int(rng.integers(0, DAYS * 86_400)))
    first = created + timedelta(seconds=int(rng.integers(60, 30 * h)))
    pauses = []
    resolved = None
    plan = None
    if rng.random() < 0.4:
        plan = created + timedelta(seconds=int(rng.integers(h, 40 * h)))
    if rng.random() < 0.3:  # waiting on the client for a while
        start = created + timedelta(seconds=int(rng.integers(h, 20 * h)))
        end = start + timedelta(seconds=int(rng.integers(600, 30 * h)))
        pauses.append({"start": start, "end": end, "status": "WAITING_ON_CLIENT"})
    if rng.random() < 0.8:
        resolved = created + timedelta(seconds=int(rng.integers(2 * h, 120 * h)))
        if rng.random() < 0.2:  # resolved, then reopened: a RESOLVED pause, resolved again
            reopened = resolved + timedelta(seconds=int(rng.integers(h, 48 * h)))
            pauses.append({"start": resolved, "end": reopened, "status": "RESOLVED"})
            resolved = reopened + timedelta(seconds=int(rng.integers(h, 30 * h)))
    elif rng.random() < 0.3:  # still open, on hold with the vendor
        start = created + timedelta(seconds=int(rng.integers(h, 10 * h)))
        pauses.append({"start": start, "end": None, "status": "ON_HOLD_VENDOR"})
    policy = rng.choice(["standard", "standard", "premium", "none"])
    return {
        "ticket_id": f"{tenant[-4:]}-T{i:05d}",
        "tenant_id": tenant,
        "client_id": str(rng.choice(CLIENTS)),
        "contract_id": f"K{int(rng.integers(1, 4))}",
        "policy": None if policy == "none" else str(policy),
        "priority": str(rng.choice(PRIORITIES)),
        "support_level": LEVELS[int(rng.integers(0, len(LEVELS)))],
        "job_type": JOB_TYPES[int(rng.integers(0, len(JOB_TYPES)))],
        "after_hours": bool(rng.random() < 0.2),
        "assignee": ASSIGNEES[int(rng.integers(0, len(ASSIGNEES)))],
        "created_at": created,
        "first_response_at": first if rng.random() < 0.9 else None,
        "resolution_plan_at": plan,
        "resolved_at": resolved,
        "pauses": pauses,
    }


def tickets(tenant: str, count: int, seed: int) -> tuple[pa.Table, str, str]:
    """A tenant's tickets, the id of the one the engine cannot evaluate and of the one whose
    policy is unknown."""
    rng = np.random.default_rng(seed)
    rows = [_ticket(rng, tenant, i) for i in range(count)]
    bad = rows[count // 3]
    bad["first_response_at"] = bad["created_at"] - timedelta(minutes=5)
    unknown = rows[count // 2]
    unknown["policy"] = "retired-policy"
    return pa.Table.from_pylist(rows, schema=TICKETS), bad["ticket_id"], unknown["ticket_id"]


def catalog(tenant: str, base_id: int) -> TenantCatalog:
    return TenantCatalog(
        tenant=tenant,
        as_of=NOW,
        calendars=CALENDARS,
        calendar_versions=dict.fromkeys(CALENDARS, 1),
        policies=[
            PolicySource(base_id, "standard", 1, STANDARD),
            PolicySource(base_id + 1, "premium", 2, PREMIUM),
        ],
    )


def write_dataset(
    url: str, tenants: int = 2, count: int = 300, seed: int = 7, first: int = 1
) -> Synthetic:
    """Write the dataset to ``url`` (a folder): tenants ``first``, ``first + 1``, …"""
    fs, root = layout.filesystem(url)
    ids, bad, unknown = [], {}, {}
    for k in range(tenants):
        tenant = tenant_id(first + k)
        ids.append(tenant)
        table, bad[tenant], unknown[tenant] = tickets(tenant, count, seed + k)
        layout.write_tickets(url, tenant, table)
        catalog(tenant, 10 * (first + k)).save(url)
    layout.write_manifest(url, {"as_of": NOW.isoformat(), "tenants": ids})
    assert fs.exists(posixpath.join(root, layout.MANIFEST))
    return Synthetic(url, tuple(ids), NOW, bad, unknown)
