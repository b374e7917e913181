"""The per-part result batch of a classification
(:data:`~effigate_engine.ratecard.schemas.LOG_RESULTS`), built from the kernels' own arrays.

One Numba pass over the parts writes every computed column into two blocks of contiguous rows
(int64 and int32), each row a column's Arrow data buffer: billed seconds (the pricing pass's
rounding and sharing, recomputed by the same inline code), rates and labels gathered from the
flattened rate tables, covered and overage seconds, the amount numerator, the status, the
end instant and the two flag bitmaps. A second pass writes the drawing parts' covered and
overage seconds and their overage amounts from the drawdown's segments. The columns whose
values already exist are not copied: the log ids, the starts and the contract codes of the
first parts are the input's own buffers, and the later parts of split logs follow them as a
second chunk.

Both passes release the GIL; with ``threads > 1`` they run on contiguous slices of the parts
(and of the segments) concurrently.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from effigate_engine import parallel
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.schemas import LOG_RESULTS, SECONDS, UTC_SECONDS

#: Rows of the int64 block: actual and billed seconds per time condition, billed total, rates
#: per time condition, covered and overage seconds, amount numerator, part end.
ACTUAL, BILLED, TOTAL, RATE, COVERED, OVERAGE, AMOUNT, END = 0, 4, 8, 9, 13, 14, 15, 16
WIDE_ROWS = 17
#: Rows of the int32 block: period, rate-card version number.
PERIOD, VERSION = 0, 1
NARROW_ROWS = 2
#: Rows of the int8 block of dictionary codes: status, billable type, the line label per time
#: condition.
STATUS, BILLABLE, LABEL = 0, 1, 2
CODE_ROWS = 6
#: Bitmaps (Arrow booleans, least significant bit first): out of scope, priority flag.
OUT_OF_SCOPE_BITS, HIGH_BITS = 0, 1
#: Parts below which one thread builds the batch.
PARALLEL_MIN_PARTS = 1 << 16
#: Flag byte of a part (:func:`kernels.price_parts`): status bits, out-of-scope bit, priority
#: flag bit.
_STATUS_MASK, _OUT_OF_SCOPE_FLAG, _HIGH_SHIFT = 3, 4, 3

STATUS_NAMES = ("PRICED", "UNAPPROVED", "REJECTED")
BILLABLE_NAMES = ("BILLABLE", "NON_BILLABLE", "WARRANTY")


@njit(cache=True, nogil=True, error_model="numpy")
def fill_parts(
    lo: int,
    hi: int,
    actual: np.ndarray,
    flags: np.ndarray,
    part_version: np.ndarray,
    part_period: np.ndarray,
    extra_log: np.ndarray,
    log_level: np.ndarray,
    log_job: np.ndarray,
    log_billable: np.ndarray,
    log_contract: np.ndarray,
    end: np.ndarray,
    pricing: np.ndarray,
    rates: np.ndarray,
    labels: np.ndarray,
    contract_mode: np.ndarray,
    n_levels: int,
    n_jobs: int,
    wide: np.ndarray,
    narrow: np.ndarray,
    codes: np.ndarray,
    bits: np.ndarray,
) -> None:
    """Columns of parts ``[lo, hi)`` (``lo`` a multiple of 8: the bitmaps are written a byte
    at a time, from bits gathered in registers). Parts ``k < n`` (``n = end.size``) are the
    first parts of logs ``k``; part ``n + x`` is a later part of log ``extra_log[x]``.

    ``pricing`` (int64, per version): increment, increment mode, minimum (seconds), version
    number. ``rates`` (int64) and ``labels`` (int8) are the rate tables flattened to rows
    ``((version × n_levels + level) × n_jobs + job) × 10``: per time condition the rate or
    label without and with the priority flag, then the ``OUT_OF_SCOPE`` and
    ``ADDITIONAL_HOURS`` rates. The end of a first part is its log's end (:func:`part_ends`
    cuts the split logs'). Covered and overage seconds and the amount numerator of a drawing
    part are left 0 (:func:`fill_segments` writes them).
    """
    n = end.shape[0]
    # Part indexes are below 2**31: zero-extended from 32 bits they are provably
    # non-negative, so the indexing below compiles without negative-index wraparound.
    first = np.int64(np.uint32(lo))
    last = hi - lo - 1
    oos_byte = 0
    high_byte = 0
    for t in range(hi - lo):
        k = first + t
        i = k if k < n else np.int64(np.uint32(extra_log[k - n]))
        v = np.int64(np.uint32(part_version[k]))
        a0 = np.int64(actual[k, 0])
        a1 = np.int64(actual[k, 1])
        a2 = np.int64(actual[k, 2])
        a3 = np.int64(actual[k, 3])
        total = K.round_billed(a0 + a1 + a2 + a3, pricing[v, 0], pricing[v, 1], pricing[v, 2])
        b0, b1, b2, b3 = K.share_billed(total, a0, a1, a2, a3)
        f = flags[k]
        status = f & _STATUS_MASK
        out_of_scope = (f & _OUT_OF_SCOPE_FLAG) != 0
        hp = (f >> _HIGH_SHIFT) & 1
        bt = log_billable[i]
        row = ((v * n_levels + log_level[i]) * n_jobs + log_job[i]) * 10
        r0 = rates[row + hp]
        r1 = rates[row + 2 + hp]
        r2 = rates[row + 4 + hp]
        r3 = rates[row + 6 + hp]
        mode = contract_mode[log_contract[i]]
        priced = status == K.PRICED and bt == K.BILLABLE
        covered = 0
        amount = 0
        if priced:
            if out_of_scope:
                amount = total * rates[row + 8]
            elif mode == K.MODE_PRICED:
                amount = b0 * r0 + b1 * r1 + b2 * r2 + b3 * r3
            elif mode == K.MODE_COVERED:
                covered = total
        wide[ACTUAL, k] = a0
        wide[ACTUAL + 1, k] = a1
        wide[ACTUAL + 2, k] = a2
        wide[ACTUAL + 3, k] = a3
        wide[BILLED, k] = b0
        wide[BILLED + 1, k] = b1
        wide[BILLED + 2, k] = b2
        wide[BILLED + 3, k] = b3
        wide[TOTAL, k] = total
        wide[RATE, k] = r0
        wide[RATE + 1, k] = r1
        wide[RATE + 2, k] = r2
        wide[RATE + 3, k] = r3
        wide[COVERED, k] = covered
        wide[OVERAGE, k] = 0
        wide[AMOUNT, k] = amount
        narrow[PERIOD, k] = part_period[k]
        narrow[VERSION, k] = pricing[v, 3]
        codes[STATUS, k] = status
        codes[BILLABLE, k] = bt
        codes[LABEL, k] = labels[row + hp]
        codes[LABEL + 1, k] = labels[row + 2 + hp]
        codes[LABEL + 2, k] = labels[row + 4 + hp]
        codes[LABEL + 3, k] = labels[row + 6 + hp]
        shift = k & 7
        oos_byte |= np.int64(out_of_scope) << shift
        high_byte |= hp << shift
        if shift == 7 or t == last:
            bits[OUT_OF_SCOPE_BITS, k >> 3] = oos_byte
            bits[HIGH_BITS, k >> 3] = high_byte
            oos_byte = 0
            high_byte = 0
    for k in range(first, min(hi, n)):
        wide[END, k] = end[k]


@njit(cache=True, nogil=True, error_model="numpy")
def fill_segments(
    lo: int,
    hi: int,
    seg_part: np.ndarray,
    seg_need: np.ndarray,
    seg_got: np.ndarray,
    part_version: np.ndarray,
    extra_log: np.ndarray,
    log_level: np.ndarray,
    log_job: np.ndarray,
    rates: np.ndarray,
    n_levels: int,
    n_jobs: int,
    wide: np.ndarray,
) -> None:
    """Covered and overage seconds (burn-weighted) of the drawing parts of segments
    ``[lo, hi)`` of the drawdown, and their amount numerators: the overage at the
    ``ADDITIONAL_HOURS`` rate (covered seconds are not charged). ``fill_parts`` comes first."""
    n = log_level.shape[0]
    for j in range(lo, hi):
        k = np.int64(np.uint32(seg_part[j]))  # non-negative: see fill_parts
        i = k if k < n else np.int64(np.uint32(extra_log[k - n]))
        v = np.int64(part_version[k])
        got = np.int64(seg_got[j])
        over = np.int64(seg_need[j]) - got
        wide[COVERED, k] = got
        wide[OVERAGE, k] = over
        if over > 0:
            row = ((v * n_levels + log_level[i]) * n_jobs + log_job[i]) * 10
            wide[AMOUNT, k] = over * rates[row + 9]
        else:
            wide[AMOUNT, k] = 0


@dataclass(frozen=True)
class PartColumns:
    """The computed per-part columns: ``wide`` (int64, rows :data:`ACTUAL` …), ``narrow``
    (int32, rows :data:`PERIOD` …), ``codes`` (int8 dictionary codes, rows :data:`STATUS`
    …) and ``bits`` (uint8 bitmaps), each row contiguous and read-only; ``parts`` columns
    wide."""

    wide: np.ndarray
    narrow: np.ndarray
    codes: np.ndarray
    bits: np.ndarray

    @property
    def parts(self) -> int:
        return int(self.wide.shape[1])


def part_columns(
    stored: dict[str, np.ndarray],
    end: np.ndarray,
    tables: dict[str, np.ndarray],
    version_number: np.ndarray,
    contract_mode: np.ndarray,
    threads: int = 1,
) -> PartColumns:
    """Compute the per-part columns from the kernels' stored arrays (the ``stored`` mapping of
    :class:`~effigate_engine.ratecard.classification.PartArrays`), the batch's log ends (epoch
    seconds) and the rate tables of its vocabularies."""
    m = int(stored["part_version"].size)
    pricing = np.stack(
        [tables["increment"], tables["mode"], tables["minimum"], version_number.astype(np.int64)],
        axis=1,
    )
    n_levels, n_jobs = tables["rate"].shape[1], tables["rate"].shape[2]
    cells = tables["rate"].shape[0] * n_levels * n_jobs
    rates = np.empty((cells, 10), np.int64)
    rates[:, :8] = tables["rate"].reshape(cells, 8)
    rates[:, 8] = tables["oos"].reshape(cells)
    rates[:, 9] = tables["additional"].reshape(cells)
    labels = np.zeros((cells, 10), np.int8)
    labels[:, :8] = tables["label"].reshape(cells, 8)
    wide = np.empty((WIDE_ROWS, m), np.int64)
    narrow = np.empty((NARROW_ROWS, m), np.int32)
    codes = np.empty((CODE_ROWS, m), np.int8)
    bits = np.zeros((2, (m + 7) // 8), np.uint8)
    extra_log = stored["extra_log"]
    level, job = stored["log_level"], stored["log_job"]
    rates, labels = rates.reshape(-1), labels.reshape(-1)

    def parts(lo: int, hi: int) -> None:
        fill_parts(
            lo,
            hi,
            stored["actual"],
            stored["flags"],
            stored["part_version"],
            stored["part_period"],
            extra_log,
            level,
            job,
            stored["log_billable"],
            stored["log_contract"],
            end,
            pricing,
            rates,
            labels,
            contract_mode,
            n_levels,
            n_jobs,
            wide,
            narrow,
            codes,
            bits,
        )

    def segments(lo: int, hi: int) -> None:
        fill_segments(
            lo,
            hi,
            stored["seg_part"],
            stored["seg_need"],
            stored["seg_got"],
            stored["part_version"],
            extra_log,
            level,
            job,
            rates,
            n_levels,
            n_jobs,
            wide,
        )

    parallel.run(parts, _slices(m, threads, 8))
    parallel.run(segments, _slices(int(stored["seg_part"].size), threads, 1))
    part_ends(
        wide[END], end, extra_log, stored["extra_no"], stored["extra_start"], stored["extra_end"]
    )
    for block in (wide, narrow, codes, bits):
        block.flags.writeable = False
    return PartColumns(wide, narrow, codes, bits)


def part_ends(
    out: np.ndarray,
    end: np.ndarray,
    extra_log: np.ndarray,
    extra_no: np.ndarray,
    extra_start: np.ndarray,
    extra_end: np.ndarray,
) -> None:
    """The later parts' ends, and the first parts of split logs cut where their second part
    starts (``out[:n]`` holds the logs' ends already)."""
    n = end.size
    cut = extra_no == 1
    out[extra_log[cut]] = extra_start[cut]
    out[n:] = extra_end


def _slices(n: int, threads: int, align: int) -> list[tuple[int, int]]:
    """Contiguous slices of ``n`` elements, one per thread, cut at multiples of ``align``."""
    if threads <= 1 or n < PARALLEL_MIN_PARTS:
        return [(0, n)]
    cuts = [min(n, (n * t // threads) // align * align) for t in range(threads + 1)]
    cuts[-1] = n
    return [(lo, hi) for lo, hi in itertools.pairwise(cuts) if hi > lo]


def _buffer_array(type_: pa.DataType, values: np.ndarray) -> pa.Array:
    """An Arrow array over a contiguous NumPy array's memory (no copy, no nulls)."""
    return pa.Array.from_buffers(type_, values.size, [None, pa.py_buffer(values)])


def _bool_array(bitmap: np.ndarray, size: int) -> pa.Array:
    return pa.Array.from_buffers(pa.bool_(), size, [None, pa.py_buffer(bitmap)])


def _dictionary(codes: pa.Array, names: pa.Array) -> pa.Array:
    return pa.DictionaryArray.from_arrays(codes, names, safe=False)


def _chunked(
    first: pa.Array | pa.ChunkedArray, later: pa.Array | pa.ChunkedArray
) -> pa.ChunkedArray:
    """``first`` (the first parts, one per log) followed by ``later`` (the later parts)."""
    chunks = [
        chunk
        for column in (first, later)
        for chunk in (column.chunks if isinstance(column, pa.ChunkedArray) else [column])
    ]
    return pa.chunked_array(chunks, first.type)


def results_table(
    columns: PartColumns,
    log_ids: pa.Array | pa.ChunkedArray,
    start: np.ndarray,
    contract_codes: np.ndarray,
    contract_names: Sequence[str],
    stored: dict[str, np.ndarray],
    label_names: Sequence[str],
) -> pa.Table:
    """The :data:`LOG_RESULTS` table over ``columns``: log ids, starts and contract codes of
    the first parts are the input's own arrays (``log_ids`` a string column, ``start`` int64
    epoch seconds, ``contract_codes`` dictionary codes into ``contract_names``), the later
    parts' follow as a second chunk (so does the part number)."""
    m = columns.parts
    n = int(start.size)
    extra_log = stored["extra_log"]
    wide, narrow, codes = columns.wide, columns.narrow, columns.codes
    int32, int8 = pa.int32(), pa.int8()
    if not pa.types.is_string(log_ids.type):
        log_ids = log_ids.cast(pa.string())
    contract_codes = np.ascontiguousarray(contract_codes, np.int32)
    contracts = pa.array(list(contract_names), pa.string())
    later = pa.array(extra_log, pa.int32())
    log_id = _chunked(log_ids, log_ids.take(later))
    contract = _chunked(
        _dictionary(_buffer_array(int32, contract_codes), contracts),
        _dictionary(_buffer_array(int32, contract_codes[extra_log]), contracts),
    )
    # First parts are part 0: zero pages that are never written (nor faulted in).
    part = _chunked(
        _buffer_array(int8, np.zeros(n, np.int8)),
        _buffer_array(int8, np.array(stored["extra_no"], np.int8)),
    )
    starts = _chunked(
        _buffer_array(UTC_SECONDS, np.ascontiguousarray(start, np.int64)),
        _buffer_array(UTC_SECONDS, np.array(stored["extra_start"], np.int64)),
    )
    statuses = pa.array(STATUS_NAMES, pa.string())
    billable = pa.array(BILLABLE_NAMES, pa.string())
    labels = pa.array(list(label_names), pa.string())
    out = [
        log_id,
        part,
        contract,
        _buffer_array(int32, narrow[PERIOD]),
        _buffer_array(int32, narrow[VERSION]),
        starts,
        _buffer_array(UTC_SECONDS, wide[END]),
        _dictionary(_buffer_array(int8, codes[STATUS]), statuses),
        _dictionary(_buffer_array(int8, codes[BILLABLE]), billable),
        _bool_array(columns.bits[OUT_OF_SCOPE_BITS], m),
        _bool_array(columns.bits[HIGH_BITS], m),
        *(_buffer_array(SECONDS, wide[ACTUAL + c]) for c in range(K.N_TIME)),
        *(_buffer_array(SECONDS, wide[BILLED + c]) for c in range(K.N_TIME)),
        _buffer_array(SECONDS, wide[TOTAL]),
        *(_buffer_array(pa.int64(), wide[RATE + c]) for c in range(K.N_TIME)),
        *(_dictionary(_buffer_array(int8, codes[LABEL + c]), labels) for c in range(K.N_TIME)),
        _buffer_array(SECONDS, wide[COVERED]),
        _buffer_array(SECONDS, wide[OVERAGE]),
        _buffer_array(pa.int64(), wide[AMOUNT]),
    ]
    return pa.Table.from_arrays(out, schema=LOG_RESULTS)
