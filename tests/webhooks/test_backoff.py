"""The retry schedule: exponential ceilings, full jitter, reproducible from a seed."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effigate_engine.webhooks.backoff import Backoff


def test_the_ceiling_doubles_per_failed_attempt_up_to_the_cap() -> None:
    schedule = Backoff(base_seconds=5.0, cap_seconds=60.0)
    assert [schedule.ceiling(n) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert schedule.ceiling(10_000) == 60.0


@given(
    base=st.floats(0.01, 100.0),
    factor=st.floats(1.0, 1000.0),
    attempt=st.integers(1, 200),
    seed=st.integers(0, 2**32),
)
def test_every_wait_lies_between_zero_and_its_ceiling(
    base: float, factor: float, attempt: int, seed: int
) -> None:
    schedule = Backoff(base, base * factor, random.Random(seed))
    ceiling = min(base * factor, base * 2.0 ** (attempt - 1))
    assert schedule.ceiling(attempt) == pytest.approx(ceiling)
    assert 0.0 <= schedule.delay(attempt) <= ceiling


def test_a_seeded_schedule_repeats_and_draws_over_the_whole_range() -> None:
    first = Backoff(1.0, 8.0, random.Random(42))
    again = Backoff(1.0, 8.0, random.Random(42))
    waits = [first.delay(4) for _ in range(2000)]
    assert waits == [again.delay(4) for _ in range(2000)]
    # full jitter: uniform over [0, 8], not clustered at the ceiling ("equal jitter") or at 0
    assert min(waits) < 0.1 and max(waits) > 7.9
    assert 3.7 < sum(waits) / len(waits) < 4.3
    assert len(set(waits)) == len(waits)


@pytest.mark.parametrize(
    ("base", "cap", "attempt"), [(0.0, 1.0, 1), (-1.0, 1.0, 1), (2.0, 1.0, 1), (1.0, 2.0, 0)]
)
def test_a_schedule_that_cannot_be_is_refused(base: float, cap: float, attempt: int) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap).ceiling(attempt)
