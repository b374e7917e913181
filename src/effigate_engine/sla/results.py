"""The Arrow results of an SLA evaluation: the result rows (SLA_RESULTS) and the tickets no
rule matched, with the reason, built column-wise."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.instants import NO_INSTANT
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import (
    METRICS,
    Policy,
)
from effigate_engine.sla.rule_tables import Specs
from effigate_engine.sla.schemas import INSTANT, SLA_RESULTS, STATUSES, UNMATCHED
from effigate_engine.sla.ticket_columns import ticket_column
from effigate_engine.zone import TZDATA_VERSION


def _dictionary(indices: np.ndarray, values: list[str], index_type: pa.DataType) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, index_type), pa.array(values, pa.string())
    )


def _masked(values: np.ndarray, typ: pa.DataType, missing: np.ndarray | None = None) -> pa.Array:
    if missing is None:
        missing = values == NO_INSTANT
    return pa.array(values, typ, mask=missing if missing.any() else None)


def results_table(
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    specs: Specs,
    calendars: CalendarSet,
    out: _evaluate.ResultBuffers,
    now_rows: np.ndarray,
    per_ticket: bool,
) -> pa.Table:
    spec = out.spec
    rule_global = specs.spec_rule[spec]
    target = specs.target[spec]
    not_breached = out.status != STATUSES.index("BREACHED")
    cal_names = [c.name for c in calendars.calendars]
    columns = [
        pc.take(ticket_ids, pa.array(out.ticket)),
        _dictionary(out.metric, list(METRICS), pa.int8()),
        _dictionary(specs.rule_policy[rule_global], [p.name for p in policy_list], pa.int32()),
        pa.array(specs.rule_local[rule_global], pa.int32()),
        pa.array(target, pa.int64()),
        _dictionary(specs.cal[spec].astype(np.int32), cal_names, pa.int32()),
        _masked(out.deadline, INSTANT),
        pa.array(out.elapsed, pa.int64()),
        pa.array(target - out.elapsed, pa.int64()),
        _dictionary(out.status, list(STATUSES), pa.int8()),
        _masked(out.stopped, INSTANT),
        _masked(out.deadline, INSTANT, not_breached),
        _masked(out.breach, pa.int64(), not_breached),
        pa.array(out.level, pa.int32()),
        pa.DictionaryArray.from_arrays(
            _masked(out.notify, pa.int32(), out.notify < 0),
            pa.array(specs.notify or [""], pa.string()),
        ),
        _masked(out.next, INSTANT),
        _masked(out.warning_at, INSTANT),
    ]
    schema = SLA_RESULTS.with_metadata(
        {
            # Per-ticket instants: the latest of them (each row was evaluated at its own).
            "effigate.now": datetime.fromtimestamp(
                int(now_rows.max()) if now_rows.size else 0, UTC
            ).isoformat(),
            **({"effigate.now_per_ticket": "true"} if per_ticket else {}),
            "effigate.tzdata": TZDATA_VERSION,
        }
    )
    return pa.Table.from_arrays(columns, schema=schema)


def _quoted(array: pa.Array) -> pa.Array:
    """Each value as Python would show it in a message: 'text', true/false as True/False, None."""
    if pa.types.is_boolean(array.type):
        text = pc.if_else(array, "True", "False")
    else:
        text = pc.binary_join_element_wise("'", array.cast(pa.string()), "'", "")
    return pc.fill_null(text, "None")


def unmatched_table(
    table: pa.Table,
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    ticket_policy: np.ndarray,
    rule_of: np.ndarray,
    named: bool,
) -> pa.Table:
    """The tickets no rule matched, with the reason, built column-wise (no per-ticket Python)."""
    missing = np.flatnonzero(rule_of < 0)
    if missing.size == 0:
        return UNMATCHED.empty_table()
    take = pa.array(missing)
    policy_index = ticket_policy[missing]
    known = pc.take(
        pa.array([p.name for p in policy_list] + [None], pa.string()),
        pa.array(np.where(policy_index >= 0, policy_index, len(policy_list))),
    )
    given = (
        pc.take(ticket_column(table, "policy").cast(pa.string()), take)
        if named
        else pa.nulls(len(missing), pa.string())
    )
    names = pc.if_else(pa.array(policy_index >= 0), known, given)
    parts: list[pa.Array | str] = ["no rule of policy ", _quoted(names), " matches "]
    for i, field in enumerate(
        ("priority", "support_level", "job_type", "client_id", "after_hours")
    ):
        column = ticket_column(table, field)
        values = (
            pa.nulls(len(missing), pa.string())
            if pa.types.is_null(column.type)
            else pc.take(column, take)
        )
        parts += [("" if i == 0 else ", ") + f"{field}=", _quoted(values)]
    no_rule = pc.binary_join_element_wise(*parts, "")
    unknown = pc.binary_join_element_wise(
        "policy ", _quoted(given), " is not among the policies given", ""
    )
    reasons = pc.if_else(pa.array(policy_index >= 0), no_rule, unknown)
    return pa.Table.from_arrays([pc.take(ticket_ids, take), names, reasons], schema=UNMATCHED)
