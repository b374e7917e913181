"""When a failed delivery is tried again: exponential backoff with full jitter.

Attempt ``n`` (1: the first) that failed is followed by a wait drawn uniformly from
``[0, min(cap, base * 2 ** (n - 1))]`` seconds ("full jitter"): the ceiling doubles with
every failure, and receivers that failed together are not all retried at one instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: Ceiling of the wait after the first failed attempt (seconds).
BASE_SECONDS = 5.0
#: The ceiling never grows beyond this (seconds): one hour.
CAP_SECONDS = 3600.0


@dataclass
class Backoff:
    """The retry schedule: ``base_seconds`` and ``cap_seconds`` as in the module; ``rng`` the
    random source (seed it for a reproducible schedule)."""

    base_seconds: float = BASE_SECONDS
    cap_seconds: float = CAP_SECONDS
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if not self.base_seconds > 0:
            raise ValueError(f"base_seconds {self.base_seconds!r} must be > 0")
        if not self.cap_seconds >= self.base_seconds:
            raise ValueError(
                f"cap_seconds {self.cap_seconds!r} must be >= base_seconds {self.base_seconds!r}"
            )

    def ceiling(self, attempt: int) -> float:
        """The longest wait (seconds) after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt {attempt!r} must be >= 1")
        # 2 ** 60 already exceeds any cap; no overflow for absurd attempt numbers
        return min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt - 1, 60))

    def delay(self, attempt: int) -> float:
        """The wait (seconds) before the attempt after failed attempt number ``attempt``."""
        return self.rng.uniform(0.0, self.ceiling(attempt))
