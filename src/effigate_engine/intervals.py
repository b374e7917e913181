"""Sets of half-open intervals ``[start, end)`` on int64 seconds, as sorted NumPy arrays.

An interval set is a pair ``(starts, ends)`` of int64 arrays, sorted, disjoint and non-touching
(touching intervals are merged). Operations are vectorised; they never loop per interval.
"""

from __future__ import annotations

import numpy as np

IntervalSet = tuple[np.ndarray, np.ndarray]


def empty() -> IntervalSet:
    """The empty set."""
    return np.empty(0, np.int64), np.empty(0, np.int64)


def union(starts: np.ndarray, ends: np.ndarray) -> IntervalSet:
    """Normalise any collection of intervals (unsorted, overlapping, empty) into a set."""
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return empty()
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    breaks = starts[1:] > reach[:-1]
    first = np.concatenate(([True], breaks))
    last = np.concatenate((breaks, [True]))
    return starts[first], reach[last]


def merge(*sets: IntervalSet) -> IntervalSet:
    """Union of several interval sets."""
    if not sets:
        return empty()
    return union(np.concatenate([s[0] for s in sets]), np.concatenate([s[1] for s in sets]))


def _members(points: np.ndarray, s: IntervalSet) -> np.ndarray:
    idx = np.searchsorted(s[0], points, side="right") - 1
    inside = idx >= 0
    inside[inside] = points[inside] < s[1][idx[inside]]
    return inside


def difference(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """``a`` minus ``b``."""
    if a[0].size == 0 or b[0].size == 0:
        return a
    points = np.unique(np.concatenate((a[0], a[1], b[0], b[1])))
    seg_start, seg_end = points[:-1], points[1:]
    keep = _members(seg_start, a) & ~_members(seg_start, b)
    return union(seg_start[keep], seg_end[keep])


def clip(s: IntervalSet, lo: int, hi: int) -> IntervalSet:
    """The part of ``s`` inside ``[lo, hi)``."""
    first = int(np.searchsorted(s[1], lo, side="right"))
    last = int(np.searchsorted(s[0], hi, side="left"))
    starts = np.maximum(s[0][first:last], lo)
    ends = np.minimum(s[1][first:last], hi)
    return starts, ends
