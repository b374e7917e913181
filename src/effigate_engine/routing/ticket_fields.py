"""A routing tickets batch's columns as the kernels read them: vocabulary codes checked once,
with the first bad row named (``BatchError``: field, row, value)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.errors import BatchError
from effigate_engine.instants import ARROW_INPUT_ERRORS, to_column
from effigate_engine.priority import ACCEPTED, PRIORITIES, priority_name
from effigate_engine.sla.policy import SUPPORT_LEVELS
from effigate_engine.sla.schemas import STATUSES
from effigate_engine.sla.ticket_columns import dictionary_codes, read_tickets, ticket_column

__all__ = [
    "casefolded",
    "codes_in",
    "level_codes",
    "priority_codes",
    "read_tickets",
    "remaining_seconds",
    "required",
    "status_codes",
    "string_column",
    "ticket_column",
]


def required(table: pa.Table, name: str) -> pa.Array:
    """A column that must be present and non-null in every row."""
    if name not in table.column_names:
        raise BatchError(name, 0, None, "is required: the batch has no such column")
    column = ticket_column(table, name)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise BatchError(name, row, None, "is required")
    return column


def string_column(table: pa.Table, name: str) -> pa.Array:
    """A text column as ``string`` (dictionary columns decoded, integers spelled)."""
    column = ticket_column(table, name)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_null(column.type) or pa.types.is_integer(column.type):
        return column.cast(pa.string())
    if pa.types.is_large_string(column.type):
        return column.cast(pa.string())
    raise BatchError(name, 0, str(column.type), "is not a text column")


def codes_in(
    array: pa.Array,
    name: str,
    vocabulary: Sequence[str],
    normalize: Callable[[str], str],
    problem: str,
) -> np.ndarray:
    """Position of each value in ``vocabulary`` after ``normalize`` (-1: null, as int8);
    :class:`BatchError` naming the first row whose value is not in it."""
    codes, values = dictionary_codes(array)
    index = {v: i for i, v in enumerate(vocabulary)}
    mapped = np.empty(len(values) + 1, np.int8)
    mapped[-1] = -1  # code -1 (null) reads the last entry
    for k, value in enumerate(values):
        found = index.get(normalize(value)) if isinstance(value, str) else None
        if found is None:
            row = int(np.flatnonzero(codes == k)[0])
            raise BatchError(name, row, value, problem)
        mapped[k] = found
    return mapped[codes]


def priority_codes(table: pa.Table) -> np.ndarray:
    """``priority`` as an index of ``PRIORITIES`` (required in every row)."""
    return codes_in(
        string_column_required(table, "priority"), "priority", PRIORITIES, priority_name, ACCEPTED
    )


def string_column_required(table: pa.Table, name: str) -> pa.Array:
    required(table, name)
    return string_column(table, name)


def level_codes(table: pa.Table) -> np.ndarray:
    """``support_level`` as an index of ``SUPPORT_LEVELS`` (-1: null)."""
    return codes_in(
        string_column(table, "support_level"),
        "support_level",
        SUPPORT_LEVELS,
        lambda s: s.strip().upper(),
        f"is not one of {', '.join(SUPPORT_LEVELS)}",
    )


def status_codes(table: pa.Table) -> np.ndarray:
    """``sla_status`` as an index of the SLA statuses (-1: null)."""
    return codes_in(
        string_column(table, "sla_status"),
        "sla_status",
        STATUSES,
        lambda s: s.strip().upper(),
        f"is not one of {', '.join(STATUSES)}",
    )


def remaining_seconds(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``remaining_seconds`` as int64 business seconds and a mask of the nulls."""
    column = ticket_column(table, "remaining_seconds")
    n = table.num_rows
    if pa.types.is_null(column.type):
        return np.zeros(n, np.int64), np.ones(n, bool)
    try:
        col = to_column(column, "remaining_seconds", duration=True)
    except ARROW_INPUT_ERRORS as exc:
        raise BatchError(
            "remaining_seconds", 0, str(column.type), f"cannot be read: {exc}"
        ) from exc
    nulls = col.nulls if col.nulls is not None else np.zeros(n, bool)
    return col.values, nulls


def casefolded(array: pa.Array) -> pa.Array:
    """Unicode-casefolded text: ASCII values folded by Arrow (casefold is lower-casing there),
    the others by Python's ``str.casefold``."""
    folded = pc.ascii_lower(array)
    other = pc.invert(pc.string_is_ascii(array).fill_null(True))
    if not pc.any(other).as_py():
        return folded
    values = pc.filter(array, other).to_pylist()
    replacements = pa.array([v.casefold() for v in values], pa.string())
    return pc.replace_with_mask(folded, other, replacements)
