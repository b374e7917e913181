"""Typed interface of the compiled business-time kernels (``_clock.pyx``).

Instants are UTC epoch seconds in int64 arrays (``NO_INSTANT`` = INT64_MIN for none);
durations are business seconds. Calendar-index and duration arguments broadcast (length 1 or
n). Every batch kernel writes ``out`` and returns -1, or the position of the first invalid
element (unknown calendar, instant outside the horizon, negative duration, deadline past the
horizon), which ``effigate_engine.clock`` turns into an error naming it.
"""

import numpy as np
import numpy.typing as npt

_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]
_U64 = npt.NDArray[np.uint64]

#: Width (open seconds) of the buckets of the deadline index ``by_open``.
BUSINESS_BUCKET_SECONDS: int

class PackedClock:
    """A CalendarSet's packed arrays (kept alive here) and the C view the kernels read."""

    def __init__(
        self,
        intervals: _I64,
        first: _I64,
        last: _I64,
        day_first: _I32,
        by_open: _I32,
        bucket_first: _I64,
        open_at_end: _U8,
        start: int,
        end: int,
        day_rec: _U64 | None = None,
        day_shape: _I32 | None = None,
    ) -> None: ...
    @property
    def has_day_table(self) -> bool:
        """Whether the kernels read the day table (``day_rec``, ``day_shape``) first; without
        it they answer from the intervals alone."""
    @property
    def calendars(self) -> int:
        """Number of calendars."""
    @property
    def start(self) -> int:
        """First instant of the horizon (epoch seconds)."""
    @property
    def end(self) -> int:
        """Last instant of the horizon (epoch seconds, included)."""

def elapsed(clock: PackedClock, cal: _I64, a: _I64, b: _I64, out: _I64) -> int:
    """out[k] = business seconds of cal[k] from a[k] to b[k]."""

def deadline(clock: PackedClock, cal: _I64, a: _I64, seconds: _I64, out: _I64) -> int:
    """out[k] = earliest instant t >= a[k] with seconds[k] business seconds in [a[k], t)."""

def is_open(clock: PackedClock, cal: _I64, t: _I64, out: _U8) -> int:
    """out[k] = 1 when cal[k] is open at t[k]."""

def next_open(clock: PackedClock, cal: _I64, t: _I64, out: _I64) -> int:
    """out[k] = earliest instant >= t[k] at which cal[k] is open (NO_INSTANT: none)."""

def next_close(clock: PackedClock, cal: _I64, t: _I64, out: _I64) -> int:
    """out[k] = earliest instant >= t[k] at which cal[k] is closed (NO_INSTANT: none)."""

def open_seconds_before_batch(clock: PackedClock, cal: _I64, t: _I64, out: _I64) -> int:
    """out[k] = open seconds of cal[k] from the horizon start to t[k]."""
