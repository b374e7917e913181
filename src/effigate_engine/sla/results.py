"""The Arrow results of an SLA evaluation: the result rows (SLA_RESULTS) and the tickets no
rule matched, with the reason, built column-wise."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.sla import _evaluate
from effigate_engine.sla.policy import (
    METRICS,
    Policy,
)
from effigate_engine.sla.rule_tables import Specs
from effigate_engine.sla.schemas import INSTANT, SLA_RESULTS, STATUSES, UNMATCHED
from effigate_engine.sla.ticket_columns import ticket_column
from effigate_engine.zone import TZDATA_VERSION


def _column(typ: pa.DataType, values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A fixed-width Arrow column over the kernel's buffer (no copy), with the kernel's validity
    bitmap (``None``: no nulls)."""
    bitmap = None if valid is None else pa.py_buffer(valid)
    return pa.Array.from_buffers(typ, len(values), [bitmap, pa.py_buffer(values)], null_count=-1)


def _labels(
    typ: pa.DictionaryType, codes: np.ndarray, values: list[str], valid: np.ndarray | None = None
) -> pa.Array:
    """Dictionary codes the kernel wrote (always within ``values``) as a dictionary column."""
    return pa.DictionaryArray.from_arrays(
        _column(typ.index_type, codes, valid), pa.array(values, pa.string()), safe=False
    )


def results_table(
    ticket_ids: pa.Array,
    policy_list: list[Policy],
    specs: Specs,
    calendars: CalendarSet,
    out: _evaluate.ResultBuffers,
    now_rows: np.ndarray,
    per_ticket: bool,
) -> pa.Table:
    """The result rows (:data:`SLA_RESULTS`) over the kernel's columns and validity bitmaps:
    only the ticket ids are gathered, every other column wraps a buffer the kernel filled."""
    cal_names = [c.name for c in calendars.calendars]
    label = SLA_RESULTS.field("policy").type
    small = SLA_RESULTS.field("metric").type
    columns = [
        pc.take(ticket_ids, pa.array(out.ticket), boundscheck=False),
        _labels(small, out.metric, list(METRICS)),
        _labels(label, out.policy, [p.name for p in policy_list]),
        _column(pa.int32(), out.rule),
        _column(pa.int64(), out.target),
        _labels(label, out.calendar, cal_names),
        _column(INSTANT, out.deadline, out.deadline_valid),
        _column(pa.int64(), out.elapsed),
        _column(pa.int64(), out.remaining),
        _labels(small, out.status, list(STATUSES)),
        _column(INSTANT, out.stopped, out.stopped_valid),
        _column(INSTANT, out.deadline, out.breached_valid),
        _column(pa.int64(), out.breach, out.breached_valid),
        _column(pa.int32(), out.level),
        _labels(label, out.notify, specs.notify or [""], out.notify_valid),
        _column(INSTANT, out.next, out.next_valid),
        _column(INSTANT, out.warning_at, out.warning_valid),
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
