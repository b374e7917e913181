"""Bucket statements: purchased, topped up, burned, remaining, expired, overage and alerts.

The drawdown itself runs in the classification kernel (work order, oldest grant first, straddle
split). A statement replays the contract's drawing parts of a classification, in the same work
order, to say where the balance stands at an instant and which low-balance thresholds were
crossed. All quantities are burn-weighted seconds. The identity
``burned + remaining + expired = purchased + top-ups`` always holds (``expired`` is what a
rollover window let lapse; zero for a one-off bucket).

A low-balance threshold *T* fires when a draw takes the balance from above *T* to at or below
*T*: it re-arms whenever the balance rises above *T* again (a top-up, a new period's grant, a
rollover) and never fires for a draw that started at or below *T*. The bucket is *exhausted*
the same way at 0: a draw that takes the balance from above 0 to 0 (work beyond it is
overage). At each period start a
per-period bucket's rollover cap expires what the earlier periods' grants carry in beyond it,
oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from effigate_engine.errors import BillingError
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.grants import GRANT_PERIOD, GRANT_PURCHASE, contract_grants
from effigate_engine.ratecard.periods import local_midnight


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
    #: draws that took the balance from above 0 to 0 (``threshold_seconds`` 0), in order
    exhaustions: tuple[BucketAlert, ...] = ()

    @property
    def used_hours(self) -> float:
        """Burned hours, for display only (never for money)."""
        return self.burned_seconds / 3600

    @property
    def remaining_hours(self) -> float:
        """Remaining hours, for display only (never for money)."""
        return self.remaining_seconds / 3600


def bucket_statement(
    contract: Contract, classification: Classification | None, at: datetime | int
) -> BucketStatement:
    """Replay ``contract``'s drawdown in ``classification`` (``None``: no logs yet) up to
    instant ``at`` (epoch seconds or an aware datetime)."""
    if contract.type != ContractType.BUCKET or contract.bucket is None:
        raise BillingError("contract.type", contract.type, "is not a BUCKET contract")
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise BillingError("at", at.isoformat(), "is naive; give an aware datetime")
        at = int(at.timestamp())
    drawing: list[tuple[int, str, int, int, int]] = []  # start, log id, part, need, covered
    if classification is not None:
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
        drawing = sorted(
            (
                int(p["part_start"][k]),
                log_ids[int(p["part_log"][k])],
                int(p["part_no"][k]),
                int(p["covered"][k] + p["overage"][k]),
                int(p["covered"][k]),
            )
            for k in mine.tolist()
        )
    day = datetime.fromtimestamp(at, UTC).date()
    periods = contract.cycle.periods_until(max(day, contract.start))
    pool = _Pool(sorted(contract_grants(contract, periods)), contract.bucket.rollover_cap_seconds)
    thresholds = sorted(contract.bucket.low_balance_seconds, reverse=True)
    alerts: list[BucketAlert] = []
    exhaustions: list[BucketAlert] = []
    overage = 0
    for t, log_id, _, need, covered in drawing:
        pool.cap_until(t)
        before = pool.balance(t)
        got = pool.draw(t, need)
        if got != covered:
            raise BillingError("classification", contract.id, "does not match the contract")
        overage += need - got
        after = before - got
        # A threshold fires when a draw takes the balance from above it to at or below it.
        alerts.extend(
            BucketAlert(th, after, t, log_id) for th in thresholds if after <= th < before
        )
        if after <= 0 < before:
            exhaustions.append(BucketAlert(0, after, t, log_id))
    pool.cap_until(at)
    grants, left = pool.grants, pool.left
    zone = contract.zone
    return BucketStatement(
        contract.id,
        at,
        sum(g[2] for g in grants if g[0] <= at and g[3] in (GRANT_PURCHASE, GRANT_PERIOD)),
        sum(t.seconds for t in contract.top_ups if local_midnight(t.effective, zone) <= at),
        sum(pool.drawn),
        sum(x for g, x in zip(grants, left, strict=True) if g[0] <= at < g[1]),
        sum(x for g, x in zip(grants, left, strict=True) if g[1] <= at) + sum(pool.capped),
        overage,
        tuple(alerts),
        tuple(exhaustions),
    )


class _Pool:
    """A bucket's grants ``(from, until, seconds, kind)`` (sorted by start) as a drawdown
    consumes them: seconds left, drawn and expired by the rollover cap per grant."""

    def __init__(self, grants: list[tuple[int, int, int, int]], cap: int | None) -> None:
        self.grants = grants
        self.left = [g[2] for g in grants]
        self.drawn = [0] * len(grants)
        self.capped = [0] * len(grants)
        self._cap = cap
        self._events = sorted({g[0] for g in grants if g[3] == GRANT_PERIOD})
        self._next = 0

    def cap_until(self, t: int) -> None:
        """Apply the rollover cap at every per-period grant start up to ``t``, in order: what
        earlier per-period grants still valid there carry in beyond the cap expires, oldest
        first."""
        while self._next < len(self._events) and self._events[self._next] <= t:
            s = self._events[self._next]
            self._next += 1
            if self._cap is None:
                continue
            carried = [
                j for j, g in enumerate(self.grants) if g[3] == GRANT_PERIOD and g[0] < s < g[1]
            ]
            excess = sum(self.left[j] for j in carried) - self._cap
            for j in carried:
                if excess <= 0:
                    break
                cut = min(self.left[j], excess)
                self.left[j] -= cut
                self.capped[j] += cut
                excess -= cut

    def balance(self, t: int) -> int:
        """Seconds left in the grants valid at ``t``."""
        return sum(x for g, x in zip(self.grants, self.left, strict=True) if g[0] <= t < g[1])

    def draw(self, t: int, need: int) -> int:
        """Draw up to ``need`` seconds at ``t``, oldest grant first; returns what was drawn."""
        got = 0
        for j, (start, until, _, _) in enumerate(self.grants):
            if got == need:
                break
            if start <= t < until and self.left[j] > 0:
                take = min(self.left[j], need - got)
                self.left[j] -= take
                self.drawn[j] += take
                got += take
        return got
