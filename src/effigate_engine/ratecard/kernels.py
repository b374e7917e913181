"""What the Numba kernels of classification share: codes, bit layouts, the argument groups they
take, rounding and sharing of billed seconds, and the line table. The kernels themselves are
:mod:`~effigate_engine.ratecard.period_split`, :mod:`~effigate_engine.ratecard.pricing`,
:mod:`~effigate_engine.ratecard.drawdown` and :mod:`~effigate_engine.ratecard.log_ids`. Every
array is NumPy; every duration is seconds; every rate int64 minor units per hour. The kernels
hold no Python objects, release the GIL and are cached on disk.

Time-condition index ``c``: 0 REGULAR, 1 AFTER_HOURS, 2 WEEKEND, 3 HOLIDAY (rising precedence).
Per-condition outputs are shaped ``(parts, 4)``: one 16-byte row per part keeps the hot loop to
a few memory streams.

Lines are accumulated by key: a key packs (version, period, level, job, label, priority
applied) and determines the line's rate, so rates are looked up once per line, not per part.
When the batch's key space is small enough the seconds go to a dense array (one cache line per
part); otherwise to an open-addressing table of int64 rows ``[key, seconds]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

#: Condition codes shared with :class:`effigate_engine.ratecard.model.Condition`.
REGULAR, AFTER_HOURS, WEEKEND, HOLIDAY = 0, 1, 2, 3
HIGH_PRIORITY, ADDITIONAL_HOURS, OUT_OF_SCOPE, INCLUDED, NON_BILLABLE, WARRANTY = 4, 5, 6, 7, 8, 9
#: Time conditions per part.
N_TIME = 4
#: Part status codes.
PRICED, UNAPPROVED, REJECTED = 0, 1, 2
#: Billable-type codes.
BILLABLE, NON_BILLABLE_TYPE, WARRANTY_TYPE = 0, 1, 2
#: Scope codes per (contract, level, job): in scope, out of scope priced, out of scope rejected.
IN_SCOPE, SCOPE_PRICED, SCOPE_REJECTED = 0, 1, 2
#: Contract pricing modes: time priced at rates, drawn from grants (bucket, included hours),
#: or covered by a fixed price (fixed-price and scope contracts).
MODE_PRICED, MODE_DRAWDOWN, MODE_COVERED = 0, 1, 2
#: Increment modes.
ROUND_UP, ROUND_NEAREST = 0, 1
#: Line slots per part (at most one per time condition).
SLOTS = 4
#: Bits of each field of a packed line key (version, period, level, job, label, priority).
KEY_BITS = (20, 12, 8, 10, 4, 1)
#: Bit offsets of the version, period, level and job fields in a packed key.
SHIFT_JOB = KEY_BITS[4] + KEY_BITS[5]
SHIFT_LEVEL = SHIFT_JOB + KEY_BITS[3]
SHIFT_PERIOD = SHIFT_LEVEL + KEY_BITS[2]
SHIFT_VERSION = SHIFT_PERIOD + KEY_BITS[1]
#: Basis points in 1 (burn factors).
BP = 10_000
EMPTY = -1
#: Dense line slots per (version, period, level, job): the five labels a priority flag can
#: qualify (time conditions, HIGH_PRIORITY) × the flag, then the five others; 15 used of 16.
LABEL_SLOTS = 16
#: Initial line-table capacity (power of two); it doubles past half full.
INITIAL_BITS = 12
#: Parts between two flushes of the dense-line buffer.
CHUNK = 2048
#: Work-order sort of one contract's drawing parts: radix digits of at most 13 bits (a 64 KiB
#: count table; two passes cover two years of starts), insertion sort up to 32 parts.
SEGMENT_BITS = 13
SEGMENT_INSERTION = 32
#: Width of a condition-table slot (seconds): a divisor of every UTC offset and of every
#: whole-quarter-hour opening time, so a slot rarely holds an opening or closing.
SLOT_SECONDS = 900
SECONDS_PER_DAY = 86_400
SLOTS_PER_DAY = SECONDS_PER_DAY // SLOT_SECONDS
#: A day profile packs the three condition calendars' seconds (at most a day) into one int64,
#: this many bits apart.
PACK_BITS = 21
PACK_MASK = (1 << PACK_BITS) - 1
#: Fibonacci hashing multiplier (2**64 / golden ratio).
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def remap_codes(lookup: np.ndarray, codes: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = lookup[codes[i]]``: dictionary codes of a batch column mapped to the codes of
    the engine (codes are valid indexes of ``lookup``)."""
    for i in range(codes.shape[0]):
        out[i] = lookup[codes[i]]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def round_billed(actual: int, increment: int, mode: int, minimum: int) -> int:
    """``max(minimum, round_to_increment(actual))``: the minimum is a floor, never rounded."""
    rounded = actual
    if increment > 0:
        if mode == ROUND_UP:
            rounded = (actual + increment - 1) // increment * increment
        else:
            rounded = (2 * actual + increment) // (2 * increment) * increment
    return rounded if rounded > minimum else minimum


@njit(cache=True, nogil=True, inline="always")
def label_slot(label: int, hp: int) -> int:
    """Dense slot of a (label, priority flag) pair inside a (version, period, level, job)
    block."""
    return (
        2 * label + hp
        if label <= HIGH_PRIORITY
        else 2 * HIGH_PRIORITY + 2 + label - ADDITIONAL_HOURS
    )


@njit(cache=True, nogil=True, inline="always")
def _pack(v: int, period: int, level: int, job: int, label: int, hp: int) -> int:
    key = v
    key = (key << 12) | period
    key = (key << 8) | level
    key = (key << 10) | job
    key = (key << 4) | label
    return (key << 1) | hp


@njit(cache=True, nogil=True, inline="always")
def _slot(key: int, bits: int) -> int:
    h = np.uint64(key) * GOLDEN
    return np.int64(h >> np.uint64(64 - bits))


@njit(cache=True, nogil=True)
def new_table(bits: int) -> np.ndarray:
    """An empty line table of ``2**bits`` rows ``[key, seconds]``."""
    table = np.zeros((1 << bits, 2), np.int64)
    table[:, 0] = EMPTY
    return table


@njit(cache=True, nogil=True)
def grow(table: np.ndarray) -> np.ndarray:
    """The table rehashed into twice the capacity."""
    size = table.shape[0] * 2
    bits = 0
    while (1 << bits) < size:
        bits += 1
    out = new_table(bits)
    for j in range(table.shape[0]):
        key = table[j, 0]
        if key != EMPTY:
            s = _slot(key, bits)
            while out[s, 0] != EMPTY:
                s = (s + 1) & (size - 1)
            out[s, 0] = key
            out[s, 1] = table[j, 1]
    return out


@njit(cache=True, nogil=True)
def flush(
    dense: np.ndarray,
    table: np.ndarray,
    used: np.ndarray,
    buf_key: np.ndarray,
    buf_idx: np.ndarray,
    buf_sec: np.ndarray,
    nbuf: int,
) -> np.ndarray:
    """Apply ``nbuf`` queued line additions: to the dense array when it is in use (a tight
    scatter whose cache misses overlap), else to the hash table, grown past half full.
    Called once per chunk of parts, never per part. Returns the (possibly new) table."""
    if dense.shape[0] > 0:
        for j in range(nbuf):
            dense[buf_idx[j]] += buf_sec[j]
        return table
    for j in range(nbuf):
        if 2 * (used[0] + 1) > table.shape[0]:
            table = grow(table)
        size = table.shape[0]
        bits = 0
        while (1 << bits) < size:
            bits += 1
        key = buf_key[j]
        s = _slot(key, bits)
        while table[s, 0] != EMPTY and table[s, 0] != key:
            s = (s + 1) & (size - 1)
        if table[s, 0] == EMPTY:
            table[s, 0] = key
            used[0] += 1
        table[s, 1] += buf_sec[j]
    return table


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def share_billed(total: int, a0: int, a1: int, a2: int, a3: int) -> tuple[int, int, int, int]:
    """``total`` billed seconds shared among the four time conditions in proportion to their
    actual seconds ``a0..a3``: shares floored, then the rest by largest remainder, ties to the
    higher precedence (HOLIDAY first); an absent condition gets nothing."""
    duration = a0 + a1 + a2 + a3
    b0 = b1 = b2 = b3 = 0
    if a0 == duration:
        b0 = total
    elif a1 == duration:
        b1 = total
    elif a2 == duration:
        b2 = total
    elif a3 == duration:
        b3 = total
    else:
        r0 = r1 = r2 = r3 = -1
        if a0 > 0:
            b0 = total * a0 // duration
            r0 = total * a0 - b0 * duration
        if a1 > 0:
            b1 = total * a1 // duration
            r1 = total * a1 - b1 * duration
        if a2 > 0:
            b2 = total * a2 // duration
            r2 = total * a2 - b2 * duration
        if a3 > 0:
            b3 = total * a3 // duration
            r3 = total * a3 - b3 * duration
        left = total - b0 - b1 - b2 - b3
        while left > 0:
            if r3 >= r2 and r3 >= r1 and r3 >= r0:
                b3 += 1
                r3 = -2
            elif r2 >= r1 and r2 >= r0:
                b2 += 1
                r2 = -2
            elif r1 >= r0:
                b1 += 1
                r1 = -2
            else:
                b0 += 1
                r0 = -2
            left -= 1
    return b0, b1, b2, b3


#: Columns of a pricing row (:func:`~effigate_engine.ratecard.pricing.price_parts`), one per
#: (version, level, job).
ROW_DENSE, ROW_KEY, ROW_ROUNDING, ROW_INFO = 0, 1, 2, 3
#: Bit fields of a row's ``ROW_INFO`` word: scope (2 bits), contract mode (2), increment mode
#: (1), base rate known (1), priority flag per priority code (8), then the four time
#: conditions' line codes (``label << 1 | priority applied``, 5 bits each) without and with
#: the priority flag.
INFO_MODE, INFO_ROUND, INFO_KNOWN, INFO_HIGH, INFO_CODES = 2, 4, 5, 6, 14
#: Bits (one per priority) of a row's ``ROW_INFO`` word: the priority burns a bucket at the
#: high-priority factor (after the eight line codes of ``CODE_BITS`` each).
INFO_BURN_HIGH = 54
CODE_BITS = 5


@njit(cache=True, nogil=True, inline="always")
def code_slot(code: int) -> int:
    """Dense slot of a line code ``label << 1 | priority applied`` (:func:`label_slot`)."""
    return (
        code
        if code < 2 * HIGH_PRIORITY + 2
        else (code >> 1) + 2 * HIGH_PRIORITY + 2 - (ADDITIONAL_HOURS)
    )


# Argument groups ------------------------------------------------------------------------------
# The kernels take their arrays grouped by meaning (Numba compiles a NamedTuple of arrays to a
# plain struct, so a group costs nothing in the loops).


class LogColumns(NamedTuple):
    """The batch's logs, one entry per row ``i``: contract index (int32), start and end (int64
    epoch seconds), support-level and job-type codes (int32), priority code (int8),
    billable-type code (int8, ``BILLABLE``...) and approval (bool)."""

    contract: np.ndarray
    start: np.ndarray
    end: np.ndarray
    level: np.ndarray
    job: np.ndarray
    priority: np.ndarray
    billable: np.ndarray
    approved: np.ndarray


class PeriodIndex(NamedTuple):
    """Every contract's billing periods: ``bounds[first[c]:last[c]]`` are contract ``c``'s
    period starts plus the end of its last period (epoch seconds, rising); ``hint[c, w]`` is
    the index in ``bounds`` of its last boundary at or before ``origin + (w << shift)``
    (seconds), or its first."""

    first: np.ndarray
    last: np.ndarray
    bounds: np.ndarray
    hint: np.ndarray
    origin: int
    shift: int


class VersionIndex(NamedTuple):
    """The frozen rate-card versions: contract ``c``'s are ``first[c] .. last[c] - 1``, in
    force from ``starts[v]`` (epoch seconds); ``triple[v]`` is the version's condition triple,
    ``contract[v]`` its contract."""

    first: np.ndarray
    last: np.ndarray
    starts: np.ndarray
    triple: np.ndarray
    contract: np.ndarray


class ConditionTables(NamedTuple):
    """The condition tables of ``ContractBook.conditions``: ``origin`` (epoch seconds of their
    first UTC midnight), ``days`` (triples × days × 4, int32) and ``profiles`` (int64 rows
    ``(cumulative, slope)``); empty ``days`` when the clock measures every part."""

    origin: int
    days: np.ndarray
    profiles: np.ndarray


class PartBuffers(NamedTuple):
    """The parts of a batch: per part its period ordinal (int16), global version (int32) and
    ``actual`` seconds per time condition (``(parts, 4)`` int32); per later part of a split
    log (part ``n + x``) its log row (int32), part number (int8), start and end (int64)."""

    period: np.ndarray
    version: np.ndarray
    actual: np.ndarray
    extra_log: np.ndarray
    extra_no: np.ndarray
    extra_start: np.ndarray
    extra_end: np.ndarray


class DeferredParts(NamedTuple):
    """Parts the condition tables cannot measure (the clock does): part index (int32), start
    and end (int64 epoch seconds)."""

    part: np.ndarray
    start: np.ndarray
    end: np.ndarray


class PricingTables(NamedTuple):
    """What pricing reads per (version, level, job) row (``(rows, 4)`` int64, layout
    ``ROW_*`` / ``INFO_*``) and per contract: burn factors (basis points, ``(contracts, 8)``:
    per time condition, then the same for high-priority logs)."""

    rows: np.ndarray
    burn: np.ndarray


class Draws(NamedTuple):
    """The parts that draw from grants, in part order: part (int32), contract (int32), start
    (int64 epoch seconds), line-key prefix (int64: version, period, level, job) and need
    (int32 burn-weighted billed seconds)."""

    part: np.ndarray
    contract: np.ndarray
    start: np.ndarray
    prefix: np.ndarray
    need: np.ndarray


class LineSink(NamedTuple):
    """Where line seconds go: the dense array (empty: the hash table is used), the hash
    table's used-slot count (one int64), each version's offset among the (version, period)
    slots, the level and job counts, and per part the keys of the lines it feeds
    (``(parts, 4)`` int64; empty when not asked for)."""

    dense: np.ndarray
    used: np.ndarray
    vp_offset: np.ndarray
    n_levels: int
    n_jobs: int
    slot_keys: np.ndarray


class Grants(NamedTuple):
    """Every contract's grants (bucket purchases, per-period grants, top-ups, included hours):
    contract ``c``'s are ``first[c] .. last[c] - 1``, sorted by ``valid_from``; each counts for
    parts starting in ``[valid_from, until)`` (epoch seconds) with ``left`` seconds (consumed in
    place); ``capped`` marks per-period grants; ``rollover_cap[c]`` (seconds, -1 none) caps what
    they carry into later periods."""

    first: np.ndarray
    last: np.ndarray
    valid_from: np.ndarray
    until: np.ndarray
    left: np.ndarray
    capped: np.ndarray
    rollover_cap: np.ndarray


class Segments(NamedTuple):
    """The drawing parts grouped by contract (as long as the draw list): part, start,
    line-key prefix, need and covered seconds (``got``, int32)."""

    part: np.ndarray
    start: np.ndarray
    prefix: np.ndarray
    need: np.ndarray
    got: np.ndarray


class LogIds(NamedTuple):
    """The batch's log ids: a string column's offsets and UTF-8 bytes."""

    offsets: np.ndarray
    data: np.ndarray
