"""IANA zones from the bundled ``tzdata`` package, and a zone's UTC-offset history.

:func:`zone` is the one way the engine builds a zone: it reads the ``tzdata`` package's files,
never the host's (``zoneinfo.ZoneInfo(name)`` looks at ``PYTHONTZPATH`` and the system's zone
directories first), so the rules used are always the release :data:`TZDATA_VERSION` names,
whatever the machine has.

``offset_pieces(zone, start, end)`` splits ``[start, end)`` (UTC seconds) at every offset change.
Within a piece local wall-clock seconds = UTC seconds + offset, so a set of local wall-clock
intervals maps to UTC exactly, piece by piece: a skipped local hour maps to nothing and a
repeated one maps twice (``docs/clock.md``, *What open means*).
"""

from __future__ import annotations

import importlib.metadata
import re
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

import numpy as np

from effigate_engine.errors import EffigateError

#: Release of the ``tzdata`` package every zone is read from (e.g. ``2025.2``).
TZDATA_VERSION = importlib.metadata.version("tzdata")

#: A zone key: ``/``-separated parts of letters, digits, ``_``, ``-`` and ``+`` (``Etc/GMT+5``),
#: none starting with a dot, so a key cannot leave the package's ``zoneinfo`` folder.
_KEY = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]*(/[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]*)*")


class BundledZone(ZoneInfo):
    """A zone read from the ``tzdata`` package. ``key`` and ``str()`` are its IANA name; it
    pickles by name, so it unpickles through :func:`zone` (the package's data again, never the
    host's) to the one cached object of that name."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return zone, (str(self.key),)


class UnknownZoneError(EffigateError):
    """``name`` is not a zone of the bundled ``tzdata`` package."""

    def __init__(self, name: object, problem: str = "is not a known IANA time zone") -> None:
        self.name = name
        super().__init__(f"time zone {name!r} {problem} (tzdata {TZDATA_VERSION})")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``"Europe/London"``) from the bundled ``tzdata`` package.

    One object per name per process (equal zones are the same object, as with
    ``ZoneInfo(name)``). Raises :class:`UnknownZoneError` (an ``EffigateError``) naming the value
    when it is not a zone of the package, including anything shaped like a path (``../x``,
    ``/etc/localtime``).
    """
    if not isinstance(name, str) or not _KEY.fullmatch(name):
        raise UnknownZoneError(name)
    return _load(name)


@cache
def _load(name: str) -> ZoneInfo:
    source = resources.files("tzdata").joinpath("zoneinfo", *name.split("/"))
    try:
        with source.open("rb") as data:
            return BundledZone.from_file(data, key=name)
    except (OSError, ValueError):
        # Missing file, a folder (``America``), or a file that is not TZif (``zone.tab``).
        raise UnknownZoneError(name) from None


#: Offsets are sampled this often; tzdb never changes a zone's offset twice within it.
SAMPLE_STEP_SECONDS = 6 * 3600


def utc_offset(tz: ZoneInfo, t: int) -> int:
    """UTC offset of zone ``tz`` at UTC instant ``t``, in seconds."""
    offset = datetime.fromtimestamp(t, UTC).astimezone(tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _first_change(tz: ZoneInfo, lo: int, hi: int, before: int) -> int:
    """Smallest t in (lo, hi] with offset != ``before``; offset(lo) == before != offset(hi)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if utc_offset(tz, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=256)
def _pieces(zone_name: str, start: int, end: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    tz = zone(zone_name)
    samples = [*range(start, end, SAMPLE_STEP_SECONDS), end]
    starts = [start]
    offsets = [utc_offset(tz, start)]
    prev_t = start
    for t in samples[1:]:
        current = utc_offset(tz, t)
        while current != offsets[-1]:
            change = _first_change(tz, prev_t, t, offsets[-1])
            starts.append(change)
            offsets.append(utc_offset(tz, change))
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
