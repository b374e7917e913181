"""A ticket table's columns as the SLA kernels read them: Arrow input of any form, dictionary
codes, value codes and epoch seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effigate_engine.errors import EffigateError
from effigate_engine.instants import NO_INSTANT, to_column


def read_tickets(tickets: pa.Table | pa.RecordBatch | str | Path) -> pa.Table:
    if isinstance(tickets, (str, Path)):
        return pq.read_table(tickets)
    if isinstance(tickets, pa.RecordBatch):
        return pa.Table.from_batches([tickets])
    if isinstance(tickets, pa.Table):
        return tickets
    raise EffigateError(f"tickets: {type(tickets).__name__} is not an Arrow table, batch or path")


def ticket_column(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        col = table.column(name)
        if isinstance(col, pa.ChunkedArray):
            return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        return col
    return pa.nulls(table.num_rows)


def dictionary_codes(array: pa.Array, normalize: Any = None) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the dictionary values (normalised)."""
    if pa.types.is_dictionary(array.type):
        encoded = array
    else:
        if pa.types.is_null(array.type):
            return np.full(len(array), -1, np.int64), []
        encoded = pc.dictionary_encode(array)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    values = encoded.dictionary.to_pylist()
    if normalize is not None:
        values = [None if v is None else normalize(v) for v in values]
    return codes, values


def value_codes(array: pa.Array, values: list[str]) -> np.ndarray:
    """Position of each element in ``values`` (-1: null or not among them)."""
    found = pc.index_in(array, value_set=pa.array(values, pa.string()))
    return np.ascontiguousarray(found.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)


def epoch_seconds(array: pa.Array) -> np.ndarray | None:
    """Second-resolution instants (``timestamp[s]`` with a zone, or int64 epoch seconds) as
    int64 epoch seconds, NO_INSTANT where null, in one pass (no copy without nulls); ``None``
    for any other type (the caller converts through :func:`to_column`)."""
    typ = array.type
    if pa.types.is_timestamp(typ) and typ.tz is not None and typ.unit == "s":
        array = array.cast(pa.int64())
    elif not pa.types.is_int64(typ):
        return None
    if array.null_count:
        array = pc.fill_null(array, pa.scalar(NO_INSTANT, pa.int64()))
    return np.ascontiguousarray(array.to_numpy(zero_copy_only=False), np.int64)


def instant_column(
    table: pa.Table, name: str, *, nulls: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """A timestamp column (any unit, with a zone; floored to the second) as epoch seconds,
    NO_INSTANT where null; a missing or all-null column is all NO_INSTANT. The null mask comes
    second (``None`` when nothing is null, or when ``nulls`` is false)."""
    array = ticket_column(table, name) if name in table.column_names else None
    if array is None or pa.types.is_null(array.type):
        return np.full(table.num_rows, NO_INSTANT, np.int64), np.ones(table.num_rows, bool)
    fast = epoch_seconds(array)
    if fast is not None:
        if not nulls or not array.null_count:
            return fast, None
        return fast, np.asarray(array.is_null().to_numpy(zero_copy_only=False), bool)
    col = to_column(array, name)
    values = col.values.copy() if col.nulls is not None else col.values
    if col.nulls is not None:
        values[col.nulls] = NO_INSTANT
    return np.ascontiguousarray(values, np.int64), col.nulls
