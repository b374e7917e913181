"""Business-time arithmetic over a :class:`CalendarSet`, in batches or one value at a time.

``F(t)`` is the open seconds of a calendar before instant ``t`` (``docs/clock.md``, *What open
means*):

* :func:`elapsed` — ``F(end) - F(start)``: business seconds between two instants (negative
  when ``end < start``);
* :func:`deadline` — the earliest ``t >= start`` with ``F(t) - F(start) >= seconds``
  (``deadline(a, 0) == a``; a deadline that uses up an opening exactly is its close);
* :func:`is_open`, :func:`next_open` (earliest open instant ``>= t``: ``t`` itself when open),
  :func:`next_close` (earliest closed instant ``>= t``: ``t`` itself when closed); ``None`` /
  null / NaT when that does not happen before the horizon ends.

Every function takes ``calendar`` as an index or name into the set, or an array of indexes (one
per element), and instants as aware ``datetime``, NumPy ``datetime64``/int64 epoch seconds, or
Arrow timestamp arrays of any unit and zone. Results come back in the form given: Arrow in →
Arrow out (``timestamp[s, tz=UTC]``, ``duration[s]``, ``bool``), NumPy in → NumPy out
(``datetime64[s]``, int64 seconds, ``bool``), scalars in → scalars out. Nulls in → nulls out.

The work runs in the compiled ``_clock`` kernels with the GIL released; batches of at least
:data:`PARALLEL_MIN_BATCH` elements are split across ``threads`` threads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from effigate_engine import _clock, parallel
from effigate_engine.calendar_set import CalendarSet, Horizon
from effigate_engine.errors import BatchError
from effigate_engine.instants import (
    Column,
    Form,
    durations_out,
    flags_out,
    instants_out,
    result_form,
    to_column,
)

#: Batches smaller than this run on the calling thread.
PARALLEL_MIN_BATCH = 1 << 16
#: Threads used when the caller does not say.
DEFAULT_THREADS = parallel.DEFAULT_THREADS

Kernel = Callable[..., int]

#: The UTC span every instant the service stores or evaluates must lie in: the default
#: :class:`Horizon` the service compiles calendars over (2000-01-01..2100-01-01 UTC, both ends
#: included). Writes refuse instants outside it, so every stored row can be evaluated. This is
#: the one definition of the accepted range; test a value with :func:`within_horizon` or a
#: batch with :func:`outside_horizon`.
HORIZON: Horizon = Horizon()


def within_horizon(at: datetime | int) -> bool:
    """Whether ``at`` (an aware datetime or epoch seconds) lies in :data:`HORIZON`."""
    seconds = to_column(at, "at").values[0]
    return bool(HORIZON.start <= int(seconds) <= HORIZON.end)


def outside_horizon(instants: Any) -> np.ndarray:
    """Per element of ``instants`` (Arrow timestamps or NumPy ``datetime64``/epoch seconds),
    whether it lies outside :data:`HORIZON` (a null is not outside)."""
    column = to_column(instants, "instants")
    values = np.asarray(column.values, np.int64)
    bad = (values < HORIZON.start) | (values > HORIZON.end)
    if column.nulls is not None:
        bad &= ~column.nulls
    return np.asarray(bad, bool)


def _calendar_column(calendars: CalendarSet, calendar: Any) -> Column:
    if isinstance(calendar, (str, int, np.integer)) and not isinstance(calendar, bool):
        return Column(np.array([calendars.index(calendar)], np.int64), None, Form.SCALAR)
    if isinstance(calendar, (pa.Array, pa.ChunkedArray)):
        if isinstance(calendar, pa.ChunkedArray):
            calendar = calendar.combine_chunks()
        if pa.types.is_string(calendar.type) or pa.types.is_large_string(calendar.type):
            names = calendar.to_pylist()
            idx = [calendars.index(n) if n is not None else 0 for n in names]
            nulls = np.array([n is None for n in names]) if calendar.null_count else None
            return Column(np.array(idx, np.int64), nulls, Form.ARROW)
        return to_column(calendar, "calendar")
    array = np.asarray(calendar)
    if array.dtype.kind in "US":
        return Column(
            np.array([calendars.index(str(n)) for n in array], np.int64), None, Form.NUMPY
        )
    if array.dtype.kind not in "iu":
        raise BatchError("calendar", 0, str(array.dtype), "is not an array of calendar indexes")
    return Column(np.ascontiguousarray(array, np.int64), None, Form.NUMPY)


def _batch_length(columns: dict[str, Column]) -> int:
    n = max(len(c) for c in columns.values())
    for name, col in columns.items():
        if len(col) not in (1, n):
            raise BatchError(name, 0, f"length {len(col)}", f"does not match the batch length {n}")
    return n


def _prepare(
    calendars: CalendarSet,
    columns: dict[str, Column],
    instants: tuple[str, ...],
    broadcast: tuple[str, ...],
) -> tuple[int, dict[str, np.ndarray], np.ndarray | None]:
    """Expand to a common length, fill null positions with a valid value, and merge null masks."""
    n = _batch_length(columns)
    nulls: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        values = col.values
        if col.nulls is not None:
            mask = col.nulls if len(col) == n else np.broadcast_to(col.nulls, (n,))
            nulls = mask.copy() if nulls is None else nulls | mask
            values = values.copy()
            values[col.nulls] = calendars.horizon.start if name in instants else 0
        if len(col) == 1 and n > 1 and name not in broadcast:
            values = np.full(n, values[0], np.int64)
        arrays[name] = np.ascontiguousarray(values, np.int64)
    return n, arrays, nulls


def _run(
    kernel: Kernel,
    calendars: CalendarSet,
    n: int,
    args: list[np.ndarray],
    out: np.ndarray,
    threads: int | None,
) -> int:
    """Run a kernel, split into slices across threads for large batches; first bad index or -1."""
    packed = calendars.packed

    def chunk(lo: int, hi: int) -> int:
        sliced = [a if a.shape[0] == 1 else a[lo:hi] for a in args]
        bad = kernel(packed, *sliced, out[lo:hi])
        return -1 if bad < 0 else lo + bad

    bads = [
        b for b in parallel.run(chunk, parallel.slices(n, threads, PARALLEL_MIN_BATCH)) if b >= 0
    ]
    return min(bads) if bads else -1


def _iso(t: int) -> str:
    try:
        return datetime.fromtimestamp(t, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return str(t)


def _raise_at(
    calendars: CalendarSet, k: int, arrays: dict[str, np.ndarray], instants: tuple[str, ...]
) -> None:
    """Explain why element ``k`` was refused by a kernel."""

    def at(name: str) -> int:
        values = arrays[name]
        return int(values[k if values.shape[0] > 1 else 0])

    cal = at("calendar")
    if not 0 <= cal < len(calendars):
        raise BatchError(
            "calendar", k, cal, f"is not a calendar of the set (0..{len(calendars) - 1})"
        )
    horizon = calendars.horizon
    for name in instants:
        t = at(name)
        if not horizon.start <= t <= horizon.end:
            raise BatchError(name, k, _iso(t), f"is outside the calendars' horizon {horizon}")
    if "seconds" in arrays:
        seconds = at("seconds")
        if seconds < 0:
            raise BatchError("seconds", k, seconds, "is negative; a deadline needs a duration >= 0")
        raise BatchError(
            "seconds",
            k,
            seconds,
            f"runs past the calendars' horizon {horizon} from start {_iso(at('start'))}",
        )
    raise BatchError("calendar", k, cal, "was refused by the kernel")  # pragma: no cover


def elapsed(
    calendars: CalendarSet, calendar: Any, start: Any, end: Any, *, threads: int | None = None
) -> Any:
    """Business seconds of ``calendar`` from ``start`` to ``end`` (negative when end < start)."""
    columns = {
        "calendar": _calendar_column(calendars, calendar),
        "start": to_column(start, "start"),
        "end": to_column(end, "end"),
    }
    form = result_form(*columns.values())
    n, arrays, nulls = _prepare(calendars, columns, ("start", "end"), ("calendar",))
    out = np.empty(n, np.int64)
    bad = _run(
        _clock.elapsed,
        calendars,
        n,
        [arrays["calendar"], arrays["start"], arrays["end"]],
        out,
        threads,
    )
    if bad >= 0:
        _raise_at(calendars, bad, arrays, ("start", "end"))
    return durations_out(out, nulls, form)


def deadline(
    calendars: CalendarSet, calendar: Any, start: Any, seconds: Any, *, threads: int | None = None
) -> Any:
    """Earliest instant by which ``seconds`` business seconds of ``calendar`` have passed since
    ``start``. A start while closed counts from the next opening."""
    columns = {
        "calendar": _calendar_column(calendars, calendar),
        "start": to_column(start, "start"),
        "seconds": to_column(seconds, "seconds", duration=True),
    }
    form = result_form(*columns.values())
    n, arrays, nulls = _prepare(calendars, columns, ("start",), ("calendar", "seconds"))
    out = np.empty(n, np.int64)
    bad = _run(
        _clock.deadline,
        calendars,
        n,
        [arrays["calendar"], arrays["start"], arrays["seconds"]],
        out,
        threads,
    )
    if bad >= 0:
        _raise_at(calendars, bad, arrays, ("start",))
    return instants_out(out, nulls, form, may_be_none=False)


def _at_kernel(
    kernel: Kernel, dtype: type, calendars: CalendarSet, calendar: Any, at: Any, threads: int | None
) -> tuple[np.ndarray, np.ndarray | None, Form]:
    columns = {"calendar": _calendar_column(calendars, calendar), "at": to_column(at, "at")}
    form = result_form(*columns.values())
    n, arrays, nulls = _prepare(calendars, columns, ("at",), ("calendar",))
    out = np.empty(n, dtype)
    bad = _run(kernel, calendars, n, [arrays["calendar"], arrays["at"]], out, threads)
    if bad >= 0:
        _raise_at(calendars, bad, arrays, ("at",))
    return out, nulls, form


def is_open(calendars: CalendarSet, calendar: Any, at: Any, *, threads: int | None = None) -> Any:
    """Whether ``calendar`` is open at ``at``."""
    return flags_out(*_at_kernel(_clock.is_open, np.uint8, calendars, calendar, at, threads))


def next_open(calendars: CalendarSet, calendar: Any, at: Any, *, threads: int | None = None) -> Any:
    """Earliest instant ``>= at`` at which ``calendar`` is open (``at`` itself when open)."""
    return instants_out(*_at_kernel(_clock.next_open, np.int64, calendars, calendar, at, threads))


def next_close(
    calendars: CalendarSet, calendar: Any, at: Any, *, threads: int | None = None
) -> Any:
    """Earliest instant ``>= at`` at which ``calendar`` is closed (``at`` itself when closed)."""
    return instants_out(*_at_kernel(_clock.next_close, np.int64, calendars, calendar, at, threads))


def open_seconds_before(
    calendars: CalendarSet, calendar: Any, at: Any, *, threads: int | None = None
) -> Any:
    """``F(at)``: open seconds of ``calendar`` from the horizon start to ``at``."""
    return durations_out(
        *_at_kernel(_clock.open_seconds_before_batch, np.int64, calendars, calendar, at, threads)
    )


def compiled_module() -> str:
    """Path of the compiled extension that backs this API (it must not be a pure-Python file)."""
    return str(_clock.__file__)
