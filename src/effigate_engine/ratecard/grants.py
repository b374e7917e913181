"""Grants a drawdown contract draws from: bucket purchases (one, or one per period), top-ups
added by amendments and the included hours of recurring contracts, in seconds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from effigate_engine.ratecard.contracts import Contract, ContractType
from effigate_engine.ratecard.periods import Period, local_midnight

_FOREVER = np.iinfo(np.int64).max


#: Grant kinds: purchased (or included) seconds, top-ups added by amendments, and a
#: per-period bucket's grant of one period (the grants a rollover cap trims).
GRANT_PURCHASE, GRANT_TOP_UP, GRANT_PERIOD = 0, 1, 2


def contract_grants(
    contract: Contract, periods: Sequence[Period]
) -> list[tuple[int, int, int, int]]:
    """Grants of a contract as ``(from, until, seconds, kind)``: the purchased bucket (once, or
    every period with rollover), top-ups from their effective date, or a recurring contract's
    included seconds per period. Instants are epoch seconds; seconds are burn-weighted."""
    zone = contract.zone
    end = local_midnight(contract.end, zone) if contract.end else _FOREVER
    out: list[tuple[int, int, int, int]] = []
    if contract.type == ContractType.BUCKET and contract.bucket is not None:
        b = contract.bucket
        if b.per_period:
            for p in periods:
                until = contract.cycle.period(p.ordinal + b.rollover_periods).end
                out.append(
                    (
                        local_midnight(p.start, zone),
                        local_midnight(until, zone),
                        b.size_seconds,
                        GRANT_PERIOD,
                    )
                )
        else:
            out.append((local_midnight(contract.start, zone), end, b.size_seconds, GRANT_PURCHASE))
        for t in contract.top_ups:
            out.append((local_midnight(t.effective, zone), end, t.seconds, GRANT_TOP_UP))
    elif (
        contract.type == ContractType.RECURRING
        and contract.recurring is not None
        and contract.recurring.included_seconds is not None
    ):
        for p in periods:
            a, z = p.bounds(zone)
            out.append((a, z, contract.recurring.included_seconds, GRANT_PURCHASE))
    return out
