"""Bucket statements: purchased, topped up, burned, remaining, expired, overage and alerts.

The drawdown itself runs in the classification kernel (work order, oldest grant first, straddle
split). A statement replays the contract's drawing parts of a classification, in the same work
order, to say where the balance stands at an instant and which low-balance thresholds were
crossed. All quantities are burn-weighted seconds. The identity
``burned + remaining + expired = purchased + top-ups`` always holds (``expired`` is what a
rollover window let lapse; zero for a one-off bucket).

An alert fires when the balance falls to or below a threshold; it fires once per crossing, and
re-arms only if a top-up lifts the balance back above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from effigate_engine.billing.contracts import Contract, ContractType
from effigate_engine.billing.errors import BillingError
from effigate_engine.billing.periods import local_midnight
from effigate_engine.ratecard.classify import GRANT_PURCHASE, Classification, contract_grants


@dataclass(frozen=True, slots=True)
class BucketAlert:
    """A low-balance threshold crossed: by the part of ``log_id`` starting at ``at``."""

    threshold_seconds: int
    balance_seconds: int
    at: int
    log_id: str


@dataclass(frozen=True, slots=True)
class BucketStatement:
    """A bucket's position at instant ``at`` (epoch seconds); quantities in weighted seconds."""

    contract_id: str
    at: int
    purchased_seconds: int
    top_up_seconds: int
    burned_seconds: int
    remaining_seconds: int
    expired_seconds: int
    overage_seconds: int
    alerts: tuple[BucketAlert, ...]

    @property
    def used_hours(self) -> float:
        """Burned hours, for display only (never for money)."""
        return self.burned_seconds / 3600

    @property
    def remaining_hours(self) -> float:
        """Remaining hours, for display only (never for money)."""
        return self.remaining_seconds / 3600


def bucket_statement(
    contract: Contract, classification: Classification, at: datetime | int
) -> BucketStatement:
    """Replay ``contract``'s drawdown in ``classification`` up to instant ``at``."""
    if contract.type != ContractType.BUCKET or contract.bucket is None:
        raise BillingError("contract.type", contract.type, "is not a BUCKET contract")
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise BillingError("at", at.isoformat(), "is naive; give an aware datetime")
        at = int(at.timestamp())
    book = classification.book
    if contract.id not in book.index:
        raise BillingError("contract", contract.id, "is not in the classification's book")
    c = book.index[contract.id]
    p = classification.parts
    log_ids = classification.logs.column("log_id").to_pylist()
    mine = np.flatnonzero(
        (p["log_contract"][p["part_log"]] == c)
        & ((p["covered"] > 0) | (p["overage"] > 0))
        & (p["part_start"] < at)
    )
    order = sorted(
        mine.tolist(),
        key=lambda k: (
            int(p["part_start"][k]),
            log_ids[int(p["part_log"][k])],
            int(p["part_no"][k]),
        ),
    )
    day = datetime.fromtimestamp(at, UTC).date()
    periods = contract.cycle.periods_until(max(day, contract.start))
    grants = sorted(contract_grants(contract, periods))
    zone = contract.zone
    top_up_amount = sum(
        t.seconds for t in contract.top_ups if local_midnight(t.effective, zone) <= at
    )
    left = [g[2] for g in grants]
    thresholds = sorted(contract.bucket.low_balance_seconds, reverse=True)
    armed = dict.fromkeys(thresholds, True)
    alerts: list[BucketAlert] = []
    overage = 0
    for k in order:
        t = int(p["part_start"][k])
        need = int(p["covered"][k] + p["overage"][k])
        got = 0
        for g, (start, until, _, _) in enumerate(grants):
            if got == need:
                break
            if start <= t < until and left[g] > 0:
                take = min(left[g], need - got)
                left[g] -= take
                got += take
        if got != int(p["covered"][k]):
            raise BillingError("classification", contract.id, "does not match the contract")
        overage += need - got
        balance = sum(x for g, x in zip(grants, left, strict=True) if g[0] <= t < g[1])
        for th in thresholds:
            if balance > th:
                armed[th] = True
            elif armed[th]:
                armed[th] = False
                alerts.append(BucketAlert(th, balance, t, log_ids[int(p["part_log"][k])]))
    purchased = sum(g[2] for g in grants if g[0] <= at and g[3] == GRANT_PURCHASE)
    burned = sum(g[2] - x for g, x in zip(grants, left, strict=True) if g[0] <= at)
    remaining = sum(x for g, x in zip(grants, left, strict=True) if g[0] <= at < g[1])
    expired = sum(x for g, x in zip(grants, left, strict=True) if g[1] <= at)
    return BucketStatement(
        contract.id,
        at,
        purchased,
        top_up_amount,
        burned,
        remaining,
        expired,
        overage,
        tuple(alerts),
    )
