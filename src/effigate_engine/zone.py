"""UTC-offset history of an IANA zone as constant-offset pieces of UTC time.

``offset_pieces(zone, start, end)`` splits ``[start, end)`` (UTC seconds) at every offset change.
Within a piece local wall-clock seconds = UTC seconds + offset, so a set of local wall-clock
intervals maps to UTC exactly, piece by piece: a skipped local hour maps to nothing and a
repeated one maps twice (``DESIGN.md`` §3).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

#: Offsets are sampled this often; tzdb never changes a zone's offset twice within it.
SAMPLE_STEP_SECONDS = 6 * 3600


def utc_offset(zone: ZoneInfo, t: int) -> int:
    """UTC offset of ``zone`` at UTC instant ``t``, in seconds."""
    offset = datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _first_change(zone: ZoneInfo, lo: int, hi: int, before: int) -> int:
    """Smallest t in (lo, hi] with offset != ``before``; offset(lo) == before != offset(hi)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if utc_offset(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=256)
def _pieces(zone_name: str, start: int, end: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    zone = ZoneInfo(zone_name)
    samples = [*range(start, end, SAMPLE_STEP_SECONDS), end]
    starts = [start]
    offsets = [utc_offset(zone, start)]
    prev_t = start
    for t in samples[1:]:
        current = utc_offset(zone, t)
        while current != offsets[-1]:
            change = _first_change(zone, prev_t, t, offsets[-1])
            starts.append(change)
            offsets.append(utc_offset(zone, change))
            prev_t = change
        prev_t = t
    return tuple(starts), tuple(offsets)


def offset_pieces(
    zone_name: str, start: int, end: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pieces ``[piece_start, piece_end)`` covering ``[start, end)`` with their UTC offsets (s)."""
    starts, offsets = _pieces(zone_name, start, end)
    piece_starts = np.array(starts, np.int64)
    piece_ends = np.append(piece_starts[1:], np.int64(end))
    return piece_starts, piece_ends, np.array(offsets, np.int64)
