"""Conversion of caller values to the hot path's int64 UTC epoch seconds, and back.

Accepted instants: aware ``datetime``; NumPy ``datetime64[any unit]`` (UTC by definition) or
int64 epoch seconds; Arrow ``timestamp[any unit, tz=any]`` arrays / chunked arrays or int64
epoch seconds. Sub-second values are floored to the second. Naive ``datetime`` values and Arrow
timestamps without a zone are refused: their meaning would depend on the host's zone.
Accepted durations: ``int`` seconds, ``timedelta``, ``timedelta64``, Arrow ``duration`` or ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa

from effigate_engine.errors import BatchError

#: What Arrow raises when a caller's column cannot be cast to the type asked for, or a caller's
#: batches cannot be combined: the caller's input is at fault, never the engine.
ARROW_INPUT_ERRORS: tuple[type[Exception], ...] = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
)

NO_INSTANT = np.iinfo(np.int64).min
_UNIT_SECONDS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class Form(Enum):
    """How a caller passed a value, so results come back in the same form."""

    SCALAR = 0
    NUMPY = 1
    ARROW = 2


@dataclass(frozen=True, slots=True)
class Column:
    """A batch argument as contiguous int64 plus a null mask (``None`` when nothing is null)."""

    values: np.ndarray
    nulls: np.ndarray | None
    form: Form

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _floor_div(values: np.ndarray, divisor: int) -> np.ndarray:
    return values if divisor == 1 else np.floor_divide(values, divisor)


def _from_arrow(array: pa.Array | pa.ChunkedArray, field: str, *, duration: bool) -> Column:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    typ = array.type
    expected = "a duration" if duration else "an instant"
    if pa.types.is_timestamp(typ) and not duration:
        if typ.tz is None:
            raise BatchError(
                field,
                0,
                str(typ),
                "is a timestamp without a time zone; declare its zone "
                "(e.g. cast to timestamp(unit, tz='UTC')) so its meaning is not a guess",
            )
        divisor = _UNIT_SECONDS[typ.unit]
    elif pa.types.is_duration(typ) and duration:
        divisor = _UNIT_SECONDS[typ.unit]
    elif pa.types.is_integer(typ):
        divisor = 1
    else:
        raise BatchError(field, 0, str(typ), f"is not {expected} type")
    nulls = None
    raw = array.cast(pa.int64())
    if raw.null_count:
        nulls = np.asarray(raw.is_null().to_numpy(zero_copy_only=False), bool)
        raw = raw.fill_null(0)
    values = _floor_div(raw.to_numpy(), divisor)
    return Column(np.ascontiguousarray(values, np.int64), nulls, Form.ARROW)


def _from_numpy(array: np.ndarray, field: str, *, duration: bool) -> Column:
    if array.ndim != 1:
        raise BatchError(field, 0, f"shape {array.shape}", "is not a one-dimensional array")
    kind = array.dtype.kind
    nulls = None
    if (kind == "M" and not duration) or (kind == "m" and duration):
        unit, count = np.datetime_data(array.dtype)
        nat = np.isnat(array)
        nulls = nat if nat.any() else None
        raw = array.view(np.int64)
        step = np.timedelta64(count, unit)
        second = np.timedelta64(1, "s")
        coarse = step >= second
        values = raw * (step // second) if coarse else np.floor_divide(raw, second // step)
        if nulls is not None:
            values = np.where(nulls, 0, values)
    elif kind in "iu":
        values = array.astype(np.int64, copy=False)
    elif kind == "M":
        raise BatchError(field, 0, str(array.dtype), "is an instant where a duration is expected")
    elif kind == "m":
        raise BatchError(field, 0, str(array.dtype), "is a duration where an instant is expected")
    else:
        raise BatchError(field, 0, str(array.dtype), "is not an instant or integer array")
    return Column(np.ascontiguousarray(values, np.int64), nulls, Form.NUMPY)


def _scalar_instant(value: Any, field: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise BatchError(
                field,
                0,
                value.isoformat(),
                "is a naive datetime; attach a time zone "
                "(e.g. tzinfo=timezone.utc) so its meaning is not a guess",
            )
        seconds = (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
        return int(seconds)
    if isinstance(value, np.datetime64):
        return int(_from_numpy(np.array([value]), field, duration=False).values[0])
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise BatchError(field, 0, value, "is not an instant (aware datetime or epoch seconds)")


def _scalar_duration(value: Any, field: str) -> int:
    if isinstance(value, timedelta):
        return value // timedelta(seconds=1)
    if isinstance(value, np.timedelta64):
        return int(value.astype("m8[s]").astype(np.int64))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise BatchError(field, 0, value, "is not a duration (seconds or timedelta)")


def to_column(value: Any, field: str, *, duration: bool = False) -> Column:
    """Convert an instant (or, with ``duration=True``, a duration) argument to a :class:`Column`."""
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return _from_arrow(value, field, duration=duration)
    if isinstance(value, np.ndarray):
        return _from_numpy(value, field, duration=duration)
    if isinstance(value, (list, tuple)):
        convert = _scalar_duration if duration else _scalar_instant
        values = np.array([convert(v, f"{field}[{i}]") for i, v in enumerate(value)], np.int64)
        return Column(values, None, Form.NUMPY)
    convert = _scalar_duration if duration else _scalar_instant
    return Column(np.array([convert(value, field)], np.int64), None, Form.SCALAR)


def result_form(*columns: Column) -> Form:
    """Arrow if any argument was Arrow, else NumPy if any was an array, else scalar."""
    return max((c.form for c in columns), key=lambda f: f.value)


def instants_out(
    values: np.ndarray, nulls: np.ndarray | None, form: Form, *, may_be_none: bool = True
) -> Any:
    """Epoch seconds (``NO_INSTANT`` = none) as Arrow ``timestamp[s, UTC]``, NumPy
    ``datetime64[s]`` (NaT for none) or an aware ``datetime`` (``None`` for none).

    ``values`` is the caller's fresh output buffer: it is reused, not copied. NumPy's NaT is
    ``NO_INSTANT``, so a NumPy result is a view.
    """
    if nulls is not None:
        values[nulls] = NO_INSTANT
    if form is Form.ARROW:
        missing = values == NO_INSTANT if may_be_none or nulls is not None else None
        if missing is not None and not missing.any():
            missing = None
        return pa.array(values, pa.timestamp("s", tz="UTC"), mask=missing)
    if form is Form.NUMPY:
        return values.view("M8[s]")
    if values[0] == NO_INSTANT:
        return None
    return datetime.fromtimestamp(int(values[0]), UTC)


def durations_out(values: np.ndarray, nulls: np.ndarray | None, form: Form) -> Any:
    """Seconds as Arrow ``duration[s]``, NumPy int64 seconds, or a scalar ``int``."""
    if form is Form.ARROW:
        return pa.array(values, pa.duration("s"), mask=nulls)
    if form is Form.NUMPY:
        return values
    return None if nulls is not None and nulls[0] else int(values[0])


def flags_out(values: np.ndarray, nulls: np.ndarray | None, form: Form) -> Any:
    """Booleans as Arrow ``bool``, NumPy ``bool`` or a scalar ``bool``."""
    flags = values.astype(bool)
    if form is Form.ARROW:
        return pa.array(flags, pa.bool_(), mask=nulls)
    if form is Form.NUMPY:
        return flags
    return None if nulls is not None and nulls[0] else bool(flags[0])


__all__ = [
    "NO_INSTANT",
    "Column",
    "Form",
    "durations_out",
    "flags_out",
    "instants_out",
    "result_form",
    "to_column",
]
