"""A time-log batch's columns as the kernels read them: dictionary codes, epoch seconds and
string buffers, each refusing nulls and unknown values with the column and row named."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.errors import BatchError
from effigate_engine.instants import to_column
from effigate_engine.ratecard import kernels as K


def categorical(batch: pa.Table | pa.RecordBatch, name: str) -> tuple[np.ndarray, list[str]]:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    if col.null_count:
        raise BatchError(
            name, int(np.flatnonzero(col.is_null().to_numpy(False))[0]), None, "is null"
        )
    indices = col.indices.to_numpy(zero_copy_only=False)
    return indices, [str(x) for x in col.dictionary.to_pylist()]


def instants(batch: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    col = to_column(batch.column(name), name)
    if col.nulls is not None and col.nulls.any():
        raise BatchError(name, int(np.flatnonzero(col.nulls)[0]), None, "is null")
    return col.values


def remap(
    codes: np.ndarray,
    values: list[str],
    mapping: dict[str, int],
    name: str,
    dtype: type,
    out: np.ndarray | None = None,
) -> np.ndarray:
    lookup = np.empty(len(values), dtype)
    for j, v in enumerate(values):
        if v not in mapping:
            used = np.flatnonzero(codes == j)
            if used.size:
                raise BatchError(name, int(used[0]), v, f"is not one of {sorted(mapping)}")
            lookup[j] = 0
        else:
            lookup[j] = mapping[v]
    if out is None:
        return lookup[codes]
    K.remap_codes(lookup, np.ascontiguousarray(codes), out)
    return out


def string_buffers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and UTF-8 bytes of a string column, as NumPy views (no copy for ``string`` and
    ``large_string`` columns; other types are cast to ``string`` first)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())
    if column.null_count:
        raise BatchError(
            "log_id", int(np.flatnonzero(column.is_null().to_numpy(False))[0]), None, "is null"
        )
    wide = pa.types.is_large_string(column.type)
    dtype = np.int64 if wide else np.int32
    _, offsets, data = column.buffers()
    offsets = np.frombuffer(
        offsets, dtype, len(column) + 1, column.offset * np.dtype(dtype).itemsize
    )
    bytes_ = np.frombuffer(data, np.uint8) if data is not None else np.zeros(1, np.uint8)
    return offsets, bytes_


def utc_date(t: int) -> date:
    return date(1970, 1, 1) + timedelta(days=t // 86_400)


def string_column(logs: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    col = logs.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col
