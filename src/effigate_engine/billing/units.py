"""Unit counts of a recurring contract (endpoints, licences, mailboxes) as timelines.

A unit type's count is given either as a plain ``int`` (that count throughout) or as a
timeline: ``(local date from which the count holds, count)`` pairs in any order. A timeline
holds its first count before its first date, so every date has exactly one count in force.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from effigate_engine.errors import BillingError

#: What callers pass per unit type: a count, or ``(date from which it holds, count)`` pairs.
UnitCount = int | Sequence[tuple[date, int]]


@dataclass(frozen=True, slots=True)
class UnitTimeline:
    """A unit type's counts by date: ``changes`` sorted by date, one count per date."""

    changes: tuple[tuple[date, int], ...]

    def count_on(self, day: date) -> int:
        """The count in force on local date ``day`` (the first count before the first date)."""
        count = self.changes[0][1]
        for since, value in self.changes:
            if since > day:
                break
            count = value
        return count

    def changes_within(self, start: date, end: date) -> list[tuple[date, int]]:
        """``(date, new count)`` where the count differs from the day before, for dates
        strictly after ``start`` and before ``end``."""
        out = []
        count = self.count_on(start)
        for since, value in self.changes:
            if start < since < end:
                if value != count:
                    out.append((since, value))
                count = value
        return out


def unit_timelines(
    unit_counts: Mapping[str, UnitCount] | None, unit_prices: Mapping[str, int], contract_id: str
) -> dict[str, UnitTimeline]:
    """Validated timelines by unit type. Every unit type needs a unit price; counts are
    non-negative integers; a timeline is non-empty, its dates are local ``date`` values (not
    datetimes) and no date appears twice."""
    out = {}
    for unit, given in (unit_counts or {}).items():
        if unit not in unit_prices:
            raise BillingError("unit_counts", unit, f"has no unit price on {contract_id}")
        if isinstance(given, int) and not isinstance(given, bool):
            _check_count(f"unit_counts[{unit}]", given)
            out[unit] = UnitTimeline(((date.min, given),))
            continue
        if isinstance(given, str | bytes) or not isinstance(given, Sequence) or not given:
            raise BillingError(
                f"unit_counts[{unit}]", given, "is not a count or a non-empty timeline"
            )
        seen: dict[date, int] = {}
        for k, entry in enumerate(given):
            field = f"unit_counts[{unit}][{k}]"
            if not isinstance(entry, Sequence) or len(entry) != 2:
                raise BillingError(field, entry, "is not a (date, count) pair")
            since, count = entry
            if not isinstance(since, date) or isinstance(since, datetime):
                raise BillingError(field, since, "is not a local date")
            _check_count(field, count)
            if since in seen:
                raise BillingError(field, since.isoformat(), "appears twice in the timeline")
            seen[since] = count
        out[unit] = UnitTimeline(tuple(sorted(seen.items())))
    return out


def _check_count(field: str, count: object) -> None:
    if not isinstance(count, int) or isinstance(count, bool):
        raise BillingError(field, count, "is not an integer count")
    if count < 0:
        raise BillingError(field, count, "is negative")
