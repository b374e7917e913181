"""The wall clock the SLA schedule reads: the system's, or one a test or benchmark sets.

Every write path that reschedules (ticket events, catalog changes, Recompute) and the firing
loop ask :func:`now` for the present instant, so a test that injects a :class:`ManualClock`
moves all of them together: warnings and breaches hours away fire when the test says so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class WallClock(Protocol):
    """Something that tells the present instant (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The system's clock, to the second (SLA instants are whole seconds)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that stands still until told to move (tests, benchmarks)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start: {start.isoformat()!r} has no time zone")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        """Move to ``instant`` (forward or back)."""
        self._now = instant

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds``; the new instant."""
        self._now += timedelta(seconds=seconds)
        return self._now


_current: WallClock = SystemClock()


def now() -> datetime:
    """The present instant of the process's clock."""
    return _current.now()


def use(clock: WallClock) -> WallClock:
    """Make ``clock`` the process's clock; returns the one it replaces."""
    global _current
    previous, _current = _current, clock
    return previous
