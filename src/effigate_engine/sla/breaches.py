"""Breach records: the evidence billing turns into SLA-credit lines.

One record per breached ticket metric, with ticket, contract, client, metric, priority,
``breached_at`` (the deadline), breach duration (business seconds past the deadline at the stop
or at ``now``) and a severity. ``breach_id`` is ``"<ticket_id>:<metric>"``: a metric breaches
once, so re-evaluating a ticket never yields a second record for the same breach (its duration
grows while the ticket stays open; billing credits a breach id once).

Severity, by breach duration relative to the target: ``MINOR`` below a quarter of the target,
``MAJOR`` below the whole target, ``SEVERE`` at or beyond it (and for a zero target).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.priority import priority_name
from effigate_engine.sla.evaluation import Evaluation
from effigate_engine.sla.schemas import BREACH_RECORDS
from effigate_engine.sla.ticket_columns import dictionary_codes, ticket_column

SEVERITIES = ("MINOR", "MAJOR", "SEVERE")
#: Breach duration / target below which a breach is MINOR; below 1 it is MAJOR.
MINOR_BELOW = (1, 4)


def severity_codes(breach_seconds: np.ndarray, target_seconds: np.ndarray) -> np.ndarray:
    """0 = MINOR, 1 = MAJOR, 2 = SEVERE, computed exactly in integers."""
    num, den = MINOR_BELOW
    minor = breach_seconds * den < target_seconds * num
    major = breach_seconds < target_seconds
    return np.where(minor, 0, np.where(major, 1, 2)).astype(np.int8)


def breach_records(evaluation: Evaluation) -> pa.Table:
    """The breach records of an evaluation (schema :data:`BREACH_RECORDS`)."""
    results = evaluation.results
    status = pc.cast(results.column("status"), pa.string())
    rows = np.flatnonzero(pc.equal(status, "BREACHED").to_numpy(zero_copy_only=False))
    take = pa.array(rows)
    tickets = pa.array(evaluation.row_ticket[rows])
    ticket_ids = pc.take(results.column("ticket_id"), take)
    metric = pc.cast(pc.take(results.column("metric"), take), pa.string())
    priorities = ticket_column(evaluation.tickets, "priority")
    codes, values = dictionary_codes(priorities, priority_name)
    normalized = pc.take(
        pa.array(values, pa.string()), pa.array(codes[evaluation.row_ticket[rows]])
    )
    breach = pc.take(results.column("breach_seconds"), take).to_numpy(zero_copy_only=False)
    target = pc.take(results.column("target_seconds"), take).to_numpy(zero_copy_only=False)
    severity = pa.DictionaryArray.from_arrays(
        pa.array(severity_codes(breach, target)), pa.array(SEVERITIES)
    ).cast(pa.string())
    columns = [
        pc.binary_join_element_wise(pc.cast(ticket_ids, pa.string()), metric, ":"),
        ticket_ids,
        pc.take(ticket_column(evaluation.tickets, "contract_id").cast(pa.string()), tickets),
        pc.take(ticket_column(evaluation.tickets, "client_id").cast(pa.string()), tickets),
        metric,
        normalized,
        pc.take(results.column("breached_at"), take),
        pa.array(breach, pa.int64()),
        severity,
    ]
    return pa.Table.from_arrays(columns, schema=BREACH_RECORDS)
