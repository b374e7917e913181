"""A small synthetic billing dataset (``datasets.layout`` + ``datasets.catalog``) and the
single-process billing run over it that the distributed run must equal.

Two tenants, 44 contracts of every type in three currencies (USD, EUR, JPY): hourly; bucket
(small buckets that overrun, per-period buckets with rollover, top-ups, burn factors, a scope
that rejects); recurring with unit prices and included hours (prorated units on some, counts
changing inside the period); fixed price with an approved and an unapproved milestone; scope
with signed-off deliverables; rate-card amendments; SLA credit terms (per breach, percent,
caps) with breach records, some credited before; credit balances, an exemption, a contract's
own tax; contracts without logs, one started inside the period and one not started yet.
Contract ids cross a power of ten so their string order is not their numeric order. Logs run
from January to mid-April, so earlier periods (late work drawing the bucket down) and the next
period are in the batch too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from effigate_engine.billing.run import BillingRun, billing_run
from effigate_engine.billing.schemas import BREACH_RECORDS
from effigate_engine.billing.terms_json import tax_components, validate_terms
from effigate_engine.calendar_set import Horizon
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import (
    ContractSource,
    TenantCatalog,
    load_breaches,
    load_catalog,
    save_breaches,
)
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.model import RateCard
from effigate_engine.ratecard.schemas import TIME_LOGS

DAY = date(2026, 3, 31)
AS_OF = datetime(2026, 4, 12, tzinfo=UTC)
TENANTS = {
    "3f1c2a9e-0000-4000-8000-00000000000a": ["USD", "JPY"],
    "7b44d0c1-0000-4000-8000-00000000000b": ["EUR", "USD"],
}
#: Contract ids per tenant: 92..113 and 990..1011 (string order is not numeric order).
FIRST_IDS = (92, 990)
PER_TENANT = 22
TYPES = ("HOURLY", "BUCKET", "RECURRING", "FIXED_PRICE", "SCOPE", "BUCKET")
CALENDARS = {
    "new-york": {
        "timezone": "America/New_York",
        "weekly": [{"weekday": d, "start": "08:00", "end": "18:00"} for d in range(5)],
        "holiday_regions": [{"country": "US", "subdivision": "NY"}],
    },
    "london": {
        "timezone": "Europe/London",
        "weekly": [{"weekday": d, "start": "09:00", "end": "17:30"} for d in range(5)],
        "holidays": ["2026-03-17", "2026-04-03"],
    },
    "tokyo": {
        "timezone": "Asia/Tokyo",
        "weekly": [{"weekday": d, "start": "09:00", "end": "18:00"} for d in range(6)],
    },
}
AMOUNTS = {"USD": ("120.00", "180.00", "150.00"), "EUR": ("95.50", "140.00", "130.25")}
AMOUNTS["JPY"] = ("15000", "22000", "19000")


def card(currency: str, bump: int = 0) -> dict[str, Any]:
    """A rate card's JSON (``bump`` raises the base rate: a later amendment's card)."""
    base, after, extra = AMOUNTS[currency]
    minor = 1 if currency == "JPY" else 100
    base_rate = int(float(base) * minor) + bump * minor
    return {
        "currency": currency,
        "base_rates": [
            {"support_level": "*", "job_type": "*", "rate": base_rate},
            {"support_level": "L3", "job_type": "*", "rate": base_rate + 40 * minor},
        ],
        "rules": {
            "AFTER_HOURS": {"amount": after},
            "WEEKEND": {"multiplier_bp": 20_000},
            "HOLIDAY": {"multiplier_bp": 25_000},
            "HIGH_PRIORITY": {"multiplier_bp": 12_500},
            "ADDITIONAL_HOURS": {"amount": extra},
            "OUT_OF_SCOPE": {"multiplier_bp": 15_000},
        },
        "increment_seconds": 900 if bump == 0 else 360,
        "minimum_seconds": 900,
    }


def _money(currency: str, major: int) -> str:
    return str(major) if currency == "JPY" else f"{major}.00"


def _terms(kind: str, currency: str, i: int) -> dict[str, Any]:
    scale = 100 if currency == "JPY" else 1
    terms: dict[str, Any] = {"anchor_day": 1 + (i * 7) % 28}
    if kind == "BUCKET":
        terms["bucket"] = {
            "size_hours": 6 if i % 3 == 0 else 40,  # the small ones overrun
            "burn_factors": {"AFTER_HOURS": "1.5", "WEEKEND": "2"},
            "per_period": i % 2 == 0,
            "rollover_periods": 1,
        }
        if i % 4 == 1:
            terms["scope"] = {"job_types": ["support", "network"], "out_of_scope": "REJECT"}
    elif kind == "RECURRING":
        terms["recurring"] = {
            "base_fee": _money(currency, 900 * scale),
            "unit_prices": {
                "endpoint": _money(currency, 12 * scale),
                "mailbox": _money(currency, 3 * scale),
            },
            "included_hours": 5 if i % 2 else 0,
            "prorate": True,
            "prorate_units": i % 2 == 0,
            "base_timing": "advance" if i % 3 else "arrears",
        }
    elif kind == "SCOPE":
        terms["scope"] = {
            "support_levels": ["L2", "L3"],
            "job_types": ["network", "support"],
            "out_of_scope": "PRICE",
        }
    if i % 3 == 0:
        credits: dict[str, Any] = {
            "per_breach": {"CRITICAL": _money(currency, 250 * scale)},
            "cap": _money(currency, 400 * scale),
        }
        if kind == "RECURRING":
            credits["percent_per_priority"] = {"HIGH": 500}
        else:
            credits["per_breach"]["HIGH"] = _money(currency, 75 * scale)
        terms["sla_credits"] = credits
    return validate_terms(kind, currency, terms)


def contract_source(tenant: str, t: int, k: int, currency: str) -> ContractSource:
    i = t * PER_TENANT + k
    cid = FIRST_IDS[t] + k
    kind = TYPES[i % len(TYPES)]
    calendar = "tokyo" if currency == "JPY" else ("london", "new-york")[i % 2]
    frozen = RateCard.from_json(card(currency))
    starts = date(2026, 1, 1)
    if k == 5:
        starts = date(2026, 3, 10)  # a first, partial period
    if k == 6:
        starts = date(2026, 4, 15)  # not started by the run's day: no invoice
    zone = CALENDARS[calendar]["timezone"]
    row = {
        "id": cid,
        "client_id": 500 + i % 7,
        "contract_type": kind,
        "currency": currency,
        "starts_on": starts,
        "ends_on": None,
        "status": "AMENDED" if i % 5 == 2 else "ACTIVE",
        "terms": _terms(kind, currency, i),
        "frozen_rate_card": frozen.to_json(),
        "frozen_rate_card_sha256": frozen.content_hash(),
        "time_zone": zone,
    }
    amendments = []
    if i % 5 == 2:
        amendments.append(
            {
                "id": 10 * cid + 1,
                "kind": "RATE_CARD",
                "effective_at": datetime(2026, 3, 16, 12, tzinfo=UTC),
                "body": {"rate_card": RateCard.from_json(card(currency, 10)).to_json()},
            }
        )
    if kind == "BUCKET" and i % 4 == 3:
        amendments.append(
            {
                "id": 10 * cid + 2,
                "kind": "TOP_UP",
                "effective_at": datetime(2026, 3, 2, 15, tzinfo=UTC),
                "body": {"seconds": 4 * 3_600},
            }
        )
    scale = 1 if currency == "JPY" else 100
    milestones = []
    if kind == "FIXED_PRICE":
        milestones = [
            {
                "id": 10 * cid + 3,
                "name": "Design",
                "amount_minor": 2_500 * scale,
                "approved_at": datetime(2026, 3, 12, 16, tzinfo=UTC),
            },
            {"id": 10 * cid + 4, "name": "Build", "amount_minor": 7_000 * scale},
        ]
    deliverables = []
    if kind == "SCOPE":
        deliverables = [
            {
                "id": 10 * cid + 5,
                "name": "Network survey",
                "amount_minor": 1_800 * scale,
                "signed_off_at": datetime(2026, 3, 20, 10, tzinfo=UTC),
            }
        ]
    unit_counts = []
    if kind == "RECURRING":
        unit_counts = [
            ["endpoint", starts, 20 + k],
            ["endpoint", date(2026, 3, 18), 26 + k],
            ["mailbox", date(2026, 2, 1), 10],
        ]
    breach_ids = [f"BR-{cid}-{n}" for n in range(4)]
    return ContractSource(
        row=row,
        calendar={**CALENDARS[calendar], "name": calendar},
        amendments=amendments,
        milestones=milestones,
        deliverables=deliverables,
        unit_counts=unit_counts,
        tax=[{"name": "QST", "rate_ppm": 99_750}] if k == 3 else [],
        exemption="registered charity" if k == 8 else None,
        already_credited=breach_ids[:1] if k % 2 == 0 else [],
        invoiced_items=[f"milestone:{10 * cid + 3}"] if k == 9 else [],
        credit_balance=(40 * scale if k % 4 == 1 else 0),
    )


def logs(cid: int, rng: np.random.Generator, starts: date) -> pa.Table:
    """A contract's time logs from its start (or January) to mid-April, in no order."""
    n = int(rng.integers(15, 70))
    first = datetime.combine(max(starts, date(2026, 1, 3)), datetime.min.time(), UTC)
    span = int((datetime(2026, 4, 14, tzinfo=UTC) - first).total_seconds())
    start = int(first.timestamp()) + rng.integers(0, span, n) // 300 * 300
    length = rng.choice([900, 1_800, 3_600, 7_200, 14_400, 20_000], n)
    ts = pa.timestamp("s", tz="UTC")

    def pick(values: list[str], p: list[float] | None = None) -> pa.Array:
        return pa.array(rng.choice(values, n, p=p).tolist()).dictionary_encode()

    return pa.table(
        {
            "log_id": [f"L{cid}-{j:03d}" for j in range(n)],
            "contract_id": pa.array([str(cid)] * n).dictionary_encode(),
            "ticket_id": [f"T{cid}-{j % 9}" for j in range(n)],
            "task_id": pa.nulls(n, pa.string()),
            "agent_id": pick(["ana", "bo", "chen"]).cast(pa.string()),
            "support_level": pick(["L1", "L2", "L3"]),
            "job_type": pick(["support", "network", "devops"]),
            "priority": pick(["CRITICAL", "HIGH", "MEDIUM", "LOW"], [0.1, 0.2, 0.4, 0.3]),
            "start": pa.array(start, ts),
            "end": pa.array(start + length, ts),
            "billable_type": pick(["BILLABLE", "NON_BILLABLE", "WARRANTY"], [0.85, 0.1, 0.05]),
            "approved": pa.array(rng.random(n) < 0.93),
        }
    ).cast(TIME_LOGS)


def breaches(tenant: str, sources: list[ContractSource]) -> pa.Table:
    """Breach records of the contracts with SLA credit terms: in the run's period, in an
    earlier one, one credited before; and one with no contract."""
    rows = []
    for s in sources:
        if "sla_credits" not in s.row["terms"]:
            continue
        cid = s.id
        for n, (priority, when) in enumerate(
            [
                ("CRITICAL", datetime(2026, 3, 25, 14, tzinfo=UTC)),
                ("HIGH", datetime(2026, 3, 27, 2, tzinfo=UTC)),
                ("CRITICAL", datetime(2026, 2, 10, 9, tzinfo=UTC)),
                ("CRITICAL", datetime(2026, 3, 29, 9, tzinfo=UTC)),
            ]
        ):
            rows.append(
                {
                    "breach_id": f"BR-{cid}-{n}",
                    "ticket_id": f"T{cid}-{n}",
                    "contract_id": cid,
                    "client_id": str(s.row["client_id"]),
                    "metric": "RESOLUTION" if n % 2 else "FIRST_RESPONSE",
                    "priority": priority,
                    "breached_at": when,
                    "breach_seconds": 1_800 * (n + 1),
                    "severity": "MAJOR",
                }
            )
    rows.append({**rows[0], "breach_id": f"BR-{tenant[:4]}-none", "contract_id": None})
    return pa.Table.from_pylist(rows, schema=BREACH_RECORDS)


def write_dataset(url: str, seed: int = 18) -> None:
    """Write the dataset to ``url`` (a local folder)."""
    rng = np.random.default_rng(seed)
    _, root = layout.filesystem(url)
    for t, (tenant, currencies) in enumerate(TENANTS.items()):
        sources = [
            contract_source(tenant, t, k, currencies[0] if k % 3 else currencies[1])
            for k in range(PER_TENANT)
        ]
        for k, s in enumerate(sources):
            if k % 7 == 4 or k == 6:
                continue  # no logs: billed for its fees only
            table = logs(int(s.id), rng, s.row["starts_on"])
            layout.write_table(url, layout.part_path(root, layout.TIME_LOGS, tenant, s.id), table)
        TenantCatalog(
            tenant,
            AS_OF,
            {name: body for name, body in CALENDARS.items()},
            {name: 1 for name in CALENDARS},
            [],
            sources,
            [{"name": "GST", "rate_ppm": 100_000}]
            if t == 0
            else [{"name": "VAT", "rate_ppm": 200_000}],
        ).save(url)
        save_breaches(url, tenant, breaches(tenant, sources))
    layout.write_manifest(url, {"as_of": AS_OF.isoformat(), "tenants": len(TENANTS)})


WIDE = Horizon.of(date(2020, 1, 1), date(2032, 1, 1))


def single_process(url: str, tenant: str, day: date = DAY) -> BillingRun:
    """The oracle: one book of all of the tenant's contracts (a wide horizon of its own), one
    classification of all their logs, one ``billing_run`` for ``day``."""
    catalog = load_catalog(url, tenant)
    contracts = [s.contract() for s in catalog.contracts]
    book = ContractBook(contracts, WIDE)
    parts = layout.parts(url, layout.TIME_LOGS, {tenant})
    batch = pa.concat_tables([layout.read_part(p, url, TIME_LOGS) for p in reversed(parts)])
    classification = classify(book, batch.unify_dictionaries().combine_chunks(), evidence=True)
    by_id = {c.id: c for c in contracts}
    inputs = {
        s.id: s.inputs(by_id[s.id], by_id[s.id].cycle.period_of(day))
        for s in catalog.contracts
        if by_id[s.id].start <= day
    }
    return billing_run(
        book,
        classification,
        day,
        breaches=load_breaches(url, tenant),
        inputs=inputs,
        tax=tax_components(catalog.default_tax),
    )
