"""Builders shared by the billing tests: calendars, cards, contracts, log batches, and the
comparison of a classification with the ``decimal`` reference."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import pyarrow as pa

from effigate_engine import Calendar, Horizon, WeeklyEntry
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from effigate_engine.zone import zone as bundled_zone
from tests.billing.reference import Conditions, Reference, price_reference

HOUR = 3_600
HORIZON = Horizon.of(date(2025, 6, 1), date(2027, 6, 1))
STATUS = ("PRICED", "UNAPPROVED", "REJECTED")


def business_hours(zone: str = "America/New_York", **kwargs) -> Calendar:
    """Mon–Fri 09:00–17:00 in ``zone``."""
    weekly = tuple(WeeklyEntry(d, 9 * HOUR, 17 * HOUR) for d in range(5))
    return Calendar(zone, weekly, **kwargs)


def card(**rules: int | tuple[str, int]) -> RateCard:
    """A USD card with $100/h base; ``rules`` as ``AFTER_HOURS=15000`` (absolute) or
    ``HIGH_PRIORITY=("x", 12500)`` (multiplier in bp)."""
    parsed = {}
    for name, value in rules.items():
        if isinstance(value, tuple):
            parsed[Condition[name]] = Rule(multiplier=value[1])
        else:
            parsed[Condition[name]] = Rule(absolute=value)
    return RateCard("USD", {("*", "*"): 10_000}, parsed)


def hourly(calendar: Calendar, rate_card: RateCard, cid: str = "C1", **kwargs) -> Contract:
    """An active hourly contract started 2026-01-01."""
    return Contract(
        cid, "CL1", ContractType.HOURLY, calendar, date(2026, 1, 1), rate_card, **kwargs
    ).activate()


def at(text: str, zone: str | None = None) -> datetime:
    """An aware datetime from ISO text (``zone`` applied when the text has no offset)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=bundled_zone(zone or "UTC"))
    return value


def log_batch(rows: Sequence[dict]) -> pa.Table:
    """A time-log batch from dicts with defaults (L2 / support / MEDIUM / BILLABLE / approved)."""
    defaults = {
        "support_level": "L2",
        "job_type": "support",
        "priority": "MEDIUM",
        "billable_type": "BILLABLE",
        "approved": True,
        "contract_id": "C1",
    }
    full = [{**defaults, "log_id": f"L{i}", **row} for i, row in enumerate(rows)]
    ts = pa.timestamp("s", tz="UTC")
    return pa.table(
        {
            "log_id": pa.array([r["log_id"] for r in full], pa.string()),
            "contract_id": pa.array([r["contract_id"] for r in full]),
            "support_level": pa.array([r["support_level"] for r in full]),
            "job_type": pa.array([r["job_type"] for r in full]),
            "priority": pa.array([r["priority"] for r in full]),
            "start": pa.array([r["start"] for r in full], ts),
            "end": pa.array([r["end"] for r in full], ts),
            "billable_type": pa.array([r["billable_type"] for r in full]),
            "approved": pa.array([r["approved"] for r in full]),
        }
    )


def run(contracts: Sequence[Contract], rows: Sequence[dict] | pa.Table) -> Classification:
    """Classify rows under contracts (evidence kept)."""
    logs = rows if isinstance(rows, pa.Table) else log_batch(rows)
    return classify(ContractBook(contracts, HORIZON), logs, evidence=True)


def kernel_lines(result: Classification) -> dict[tuple, list[int]]:
    """Kernel lines keyed like the reference's."""
    out = {}
    for r in result.lines.to_pylist():
        key = (
            r["contract_id"],
            r["period"],
            r["rate_card_version"],
            r["condition"],
            r["support_level"],
            r["job_type"],
            int(r["high_priority"]),
        )
        out[key] = [int(r["billed_seconds"].total_seconds()), r["rate"], r["amount"]]
    return out


def kernel_parts(result: Classification) -> dict[tuple[str, int], dict]:
    """Kernel per-part results keyed by (log id, part)."""
    p = result.parts
    ids = result.logs.column("log_id").to_pylist()
    out = {}
    for k in range(p["part_log"].size):
        out[(ids[int(p["part_log"][k])], int(p["part_no"][k]))] = {
            "period": int(p["part_period"][k]),
            "version": int(result.book.version_number[p["part_version"][k]]),
            "start": int(p["part_start"][k]),
            "end": int(p["part_end"][k]),
            "status": STATUS[int(p["status"][k])],
            "out_of_scope": bool(p["out_of_scope"][k]),
            "high": bool(p["high"][k]),
            "actual": tuple(int(x) for x in p["actual"][k]),
            "billed": tuple(int(x) for x in p["billed"][k]),
            "covered": int(p["covered"][k]),
            "overage": int(p["overage"][k]),
        }
    return out


def reference_parts(ref: Reference) -> dict[tuple[str, int], dict]:
    """Reference per-part results in the kernel's form."""
    return {
        key: {
            "period": p.period,
            "version": p.version,
            "start": p.start,
            "end": p.end,
            "status": p.status,
            "out_of_scope": p.out_of_scope,
            "high": p.high,
            "actual": p.actual,
            "billed": p.billed,
            "covered": p.covered,
            "overage": p.overage,
        }
        for key, p in ref.parts.items()
    }


def assert_matches_reference(
    contracts: Sequence[Contract], logs: pa.Table, conditions: Conditions | None = None
) -> Classification:
    """Classify and price with the reference; every part and every line must agree."""
    result = classify(ContractBook(contracts, HORIZON), logs, evidence=True)
    ref = price_reference(list(contracts), logs, conditions)
    got, want = kernel_parts(result), reference_parts(ref)
    assert got.keys() == want.keys(), sorted(got.keys() ^ want.keys())[:5]
    for key in want:
        assert got[key] == want[key], (key, got[key], want[key])
    lines = kernel_lines(result)
    diff = {
        k: (lines.get(k), ref.lines.get(k))
        for k in lines.keys() | ref.lines.keys()
        if lines.get(k) != ref.lines.get(k)
    }
    assert not diff, sorted(diff.items())[:5]
    return result
