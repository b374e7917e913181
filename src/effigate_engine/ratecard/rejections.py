"""Rejected time logs: the logs a contract's scope refuses, each with the reason.

Under an out-of-scope policy of ``REJECT`` a log whose support level or job type the contract
does not allow is rejected whatever its approval state or billable type: it is on no line and
draws nothing. This lists them for the people who must fix or re-file them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.classification import Classification

#: One row per rejected log.
REJECTED_LOGS = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("contract_id", pa.string(), nullable=False),
        pa.field("support_level", pa.string(), nullable=False),
        pa.field("job_type", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


def rejected_logs(classification: Classification) -> pa.Table:
    """The logs of ``classification`` rejected by their contract's scope (schema
    :data:`REJECTED_LOGS`), in batch order, each with the reason in words."""
    p = classification.parts
    logs = classification.logs
    first = p["status"][: logs.num_rows] == K.REJECTED
    rows = np.flatnonzero(first)
    picked = logs.select(["log_id", "contract_id", "support_level", "job_type"]).take(rows)
    contracts = classification.book.contracts
    index = classification.book.index
    reasons = []
    for r in picked.to_pylist():
        scope = contracts[index[r["contract_id"]]].scope
        why = []
        if scope.support_levels is not None and r["support_level"] not in scope.support_levels:
            why.append(f"support level {r['support_level']!r}")
        if scope.job_types is not None and r["job_type"] not in scope.job_types:
            why.append(f"job type {r['job_type']!r}")
        reasons.append(
            f"{' and '.join(why)} not in contract {r['contract_id']}'s scope (out of scope: REJECT)"
        )
    columns = [picked.column(name).cast(pa.string()) for name in REJECTED_LOGS.names[:4]]
    return pa.Table.from_arrays([*columns, pa.array(reasons, pa.string())], schema=REJECTED_LOGS)


__all__ = ["REJECTED_LOGS", "rejected_logs"]
