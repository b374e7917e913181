"""Classification of time logs: Arrow batch in, per-part results and line aggregates out.

Pipeline (``docs/billing.md``, *Classification*), each step over whole arrays:

1. logs are split at period boundaries (local midnight at each period end, in the contract's
   zone) and each part picks the frozen rate-card version in force at its start (Numba);
2. the seconds of each part in every time condition come from the compiled calendars through
   the clock's ``elapsed`` kernel (:mod:`effigate_engine.ratecard.calendars`): the book
   measures each condition calendar's cumulative open seconds at every 15-minute UTC slot
   bound once (days sharing a profile share a table), and a part reads them at its start
   and end, plus the seconds into a slot open all through; a part starting or ending inside
   a slot where a calendar opens or closes is measured by the clock itself. Nothing here
   re-implements calendar arithmetic;
3. rounding once per part, largest-remainder sharing of billed seconds, rate resolution,
   out-of-scope and billable type (Numba, over rate tables resolved once per card);
4. bucket / included-hours drawdown in work order (start, then log id; input order never
   matters), oldest grant first, straddling parts split into covered and overage (Numba);
5. aggregation into lines by (contract, period, version, condition, level, job, priority
   applied), in the same Numba passes, into a dense array (or a hash table for large key
   spaces); ``amount = round_half_up(seconds × rate / 3600)`` per line.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from effigate_engine.errors import BatchError, ConfigurationError
from effigate_engine.priority import PRIORITIES, PriorityError, normalise_priority
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.book import ContractBook, elapsed_into
from effigate_engine.ratecard.classification import Classification, PartArrays, WorkBuffers
from effigate_engine.ratecard.drawdown import draw_down
from effigate_engine.ratecard.lines import dense_lines, lines_table
from effigate_engine.ratecard.log_ids import repeated_id
from effigate_engine.ratecard.period_split import split_parts
from effigate_engine.ratecard.periods import Period
from effigate_engine.ratecard.precedence import apply_precedence
from effigate_engine.ratecard.pricing import price_parts
from effigate_engine.ratecard.schemas import TIME_LOGS_REQUIRED
from effigate_engine.ratecard.time_logs import (
    categorical,
    instants,
    remap,
    string_buffers,
    string_column,
    utc_date,
)

#: Largest dense line array (entries of int64 seconds); larger key spaces use the hash table.
DENSE_MAX_ENTRIES = 1 << 23
#: Per-part seconds (actual and billed per condition, burn-weighted need, covered) and part
#: indexes are int32 in the kernels: a batch makes fewer parts, and a part's seconds stay
#: below it (checked per batch from the longest period, the cards' increments and minimums
#: and the largest burn factor).
PART_LIMIT = (1 << 31) - 1
_BILLABLE_TYPES = {
    "BILLABLE": K.BILLABLE,
    "NON_BILLABLE": K.NON_BILLABLE_TYPE,
    "WARRANTY": K.WARRANTY_TYPE,
}


@dataclass
class _Batch:
    """A time-log batch decoded for the kernels: its columns, log ids and vocabularies."""

    logs: pa.Table | pa.RecordBatch
    columns: K.LogColumns
    ids: K.LogIds
    levels: list[str]
    jobs: list[str]
    contract_codes: np.ndarray
    contract_values: list[str]

    @property
    def size(self) -> int:
        return self.logs.num_rows


@dataclass
class _Split:
    """The parts of a batch after the period split (step 1)."""

    periods: list[list[Period]]
    parts: K.PartBuffers


@dataclass
class _Priced:
    """What pricing (step 2) leaves for the drawdown and the lines."""

    tables: dict[str, np.ndarray]
    flags: np.ndarray
    draws: K.Draws
    count: int
    table: np.ndarray
    lines: K.LineSink


def classify(
    book: ContractBook,
    logs: pa.Table | pa.RecordBatch,
    *,
    evidence: bool = False,
    reuse: Classification | None = None,
) -> Classification:
    """Classify, price and aggregate a batch of time logs (schema
    :data:`~effigate_engine.ratecard.schemas.TIME_LOGS`) under ``book``'s contracts.

    Single-threaded. ``evidence=True`` also returns each part's line keys so invoice lines can
    cite their log ids. ``reuse=`` a previous classification that is no longer needed recycles
    its arrays (it is emptied: its lines stay, its per-part arrays go), which spares a
    streaming job the page faults of fresh memory on every batch.
    """
    buffers = WorkBuffers(reuse)
    batch = _decode(book, logs, buffers)
    split = _split(book, batch, buffers)
    priced = _price(book, batch, split, buffers, evidence)
    segments = _draw(book, batch, split, priced, buffers)
    return _classification(book, batch, split, priced, segments, buffers, evidence)


def _decode(book: ContractBook, logs: pa.Table | pa.RecordBatch, buffers: WorkBuffers) -> _Batch:
    """Check the batch (required columns, unique log ids, known codes) and decode its columns."""
    for name in TIME_LOGS_REQUIRED:
        if name not in logs.schema.names:
            raise BatchError(name, 0, None, "is a required time-log column")
    n = logs.num_rows
    if n == 0:
        raise BatchError("logs", 0, 0, "is an empty batch")
    id_offsets, id_data = string_buffers(string_column(logs, "log_id"))
    first, again = repeated_id(
        id_offsets,
        id_data,
        buffers.get("id_hashes", (n,), np.uint64),
        buffers.get("id_spread", (n,), np.uint64),
        buffers.get("id_order", (n,), np.int32),
    )
    if again >= 0:
        ids = string_column(logs, "log_id")
        raise BatchError(
            "log_id", again, ids[again].as_py(), f"appears twice (rows {first} and {again})"
        )
    contract_codes, contract_values = categorical(logs, "contract_id")
    log_contract = remap(
        contract_codes,
        contract_values,
        book.index,
        "contract_id",
        np.int32,
        buffers.get("log_contract", (n,), np.int32),
    )
    level_codes, levels = categorical(logs, "support_level")
    job_codes, jobs = categorical(logs, "job_type")
    prio_codes, prio_values = categorical(logs, "priority")
    prio_map = {}
    for v in prio_values:
        with contextlib.suppress(PriorityError):
            prio_map[v] = PRIORITIES.index(normalise_priority(v))
    log_priority = remap(
        prio_codes,
        prio_values,
        prio_map,
        "priority",
        np.int8,
        buffers.get("log_priority", (n,), np.int8),
    )
    bill_codes, bill_values = categorical(logs, "billable_type")
    log_billable = remap(
        bill_codes,
        bill_values,
        _BILLABLE_TYPES,
        "billable_type",
        np.int8,
        buffers.get("log_billable", (n,), np.int8),
    )
    approved_col = logs.column("approved")
    if approved_col.null_count:
        raise BatchError("approved", 0, None, "is null")
    log_approved = np.ascontiguousarray(approved_col.to_numpy(zero_copy_only=False), np.bool_)
    if len(levels) >= 1 << K.KEY_BITS[2] or len(jobs) >= 1 << K.KEY_BITS[3]:
        raise BatchError("support_level", 0, len(levels), "too many distinct levels or jobs")
    columns = K.LogColumns(
        log_contract,
        instants(logs, "start"),
        instants(logs, "end"),
        np.ascontiguousarray(level_codes, np.int32),
        np.ascontiguousarray(job_codes, np.int32),
        log_priority,
        log_billable,
        log_approved,
    )
    return _Batch(
        logs,
        columns,
        K.LogIds(id_offsets, id_data),
        levels,
        jobs,
        contract_codes,
        contract_values,
    )


def _split(book: ContractBook, batch: _Batch, buffers: WorkBuffers) -> _Split:
    """Step 1. Period split, version choice and seconds per condition: cumulative open seconds
    of the condition calendars, measured by the clock at slot bounds (the book's condition
    tables); the parts whose start or end falls inside a slot where a calendar opens or
    closes are measured by the clock itself. Cards with a non-default precedence then
    re-assign their parts' seconds."""
    logs, n = batch.columns, batch.size
    start, end = logs.start, logs.end
    horizon = book.horizon
    latest = int(end.max())
    if int(start.min()) < horizon.start or latest > horizon.end:
        bad = int(np.flatnonzero((start < horizon.start) | (end > horizon.end))[0])
        raise BatchError("start", bad, int(start[bad]), f"is outside the horizon {horizon}")
    until = utc_date(latest + 2 * 86_400)
    periods, b_first, b_last, bounds = book.periods(until)
    hint, hint_origin, hint_shift = book.period_hints(until)
    period_index = K.PeriodIndex(b_first, b_last, bounds, hint, hint_origin, hint_shift)
    conditions = K.ConditionTables(*book.conditions(int(start.min()), latest))
    versions = K.VersionIndex(
        book.ver_first, book.ver_last, book.ver_starts, book.version_triple, book.version_contract
    )
    extra_cap = n // 16 + 64
    while True:
        capacity = n + extra_cap
        if capacity >= PART_LIMIT:
            raise BatchError("logs", 0, capacity, f"makes {PART_LIMIT:,} parts or more")
        parts = K.PartBuffers(
            buffers.get("part_period", (capacity,), np.int16),
            buffers.get("part_version", (capacity,), np.int32),
            buffers.get("actual", (capacity, 4), np.int32),
            buffers.get("extra_log", (extra_cap,), np.int32),
            buffers.get("extra_no", (extra_cap,), np.int8),
            buffers.get("extra_start", (extra_cap,), np.int64),
            buffers.get("extra_end", (extra_cap,), np.int64),
        )
        deferred = K.DeferredParts(
            buffers.get("deferred", (capacity,), np.int32),
            buffers.get("deferred_start", (capacity,), np.int64),
            buffers.get("deferred_end", (capacity,), np.int64),
        )
        bad, m, late = split_parts(logs, period_index, versions, conditions, parts, deferred)
        if bad <= -2:
            row = -2 - bad
            raise BatchError("end", row, int(end[row]), "spans more than 127 billing periods")
        if bad >= 0:
            if end[bad] <= start[bad]:
                raise BatchError("end", bad, int(end[bad]), "is not after the log's start")
            raise BatchError("start", bad, int(start[bad]), "is before the contract's first period")
        if m <= capacity:
            break
        extra_cap = m - n
    parts = K.PartBuffers(*(a[:m] for a in parts[:3]), *(a[: m - n] for a in parts[3:]))
    if late:
        _measure_deferred(book, parts, deferred, late)
    if (book.cal_precedence[:, 0] >= 0).any():
        apply_precedence(book, parts, logs, batch.levels, batch.jobs)
    return _Split(periods, parts)


def _measure_deferred(
    book: ContractBook, parts: K.PartBuffers, deferred: K.DeferredParts, late: int
) -> None:
    """The seconds per time condition of the first ``late`` deferred parts, measured by the
    clock on the condition calendars, written into ``parts.actual``."""
    todo = deferred.part[:late]
    a, z, v = deferred.start[:late], deferred.end[:late], parts.version[todo]
    seconds = []
    for cal in (book.cal_nonworking, book.cal_regular, book.cal_holiday):
        out = np.empty(late, np.int64)
        elapsed_into(book.calendar_set, cal[v], a, z, out)
        seconds.append(out)
    nw, reg, hol = seconds
    parts.actual[todo] = np.stack([reg, z - a - nw - reg, nw - hol, hol], axis=1)


def _price(
    book: ContractBook, batch: _Batch, split: _Split, buffers: WorkBuffers, evidence: bool
) -> _Priced:
    """Step 2. Rounding, sharing, pricing, and lines of the parts that draw nothing."""
    levels, jobs = batch.levels, batch.jobs
    t = book.tables(tuple(levels), tuple(jobs), tuple(PRIORITIES))
    bound = book.part_seconds_bound(t)
    if bound >= PART_LIMIT:
        raise ConfigurationError(
            "rate cards", bound, "allow part seconds (minimum × burn factor) past 2**31"
        )
    m = split.parts.version.shape[0]
    flags = buffers.get("flags", (m,), np.int8)
    draws = K.Draws(
        buffers.get("draw_part", (m,), np.int32),
        buffers.get("draw_contract", (m,), np.int32),
        buffers.get("draw_start", (m,), np.int64),
        buffers.get("draw_prefix", (m,), np.int64),
        buffers.get("draw_need", (m,), np.int32),
    )
    slot_keys = buffers.get("slot_keys", (m if evidence else 0, 4), np.int64)
    vp_offset = book.vp_offsets(split.periods)
    n_levels, n_jobs = max(len(levels), 1), max(len(jobs), 1)
    dense_size = int(vp_offset[-1]) * n_levels * n_jobs * K.LABEL_SLOTS
    dense = buffers.get(
        "dense", (dense_size if dense_size <= DENSE_MAX_ENTRIES else 0,), np.int64, zero=True
    )
    if t["high"].shape[1] > K.INFO_CODES - K.INFO_HIGH:
        raise ConfigurationError("priorities", t["high"].shape[1], "too many priority codes")
    rows = book.pricing_rows(t, vp_offset, n_levels, n_jobs, bool(dense.size))
    lines = K.LineSink(dense, np.zeros(1, np.int64), vp_offset, n_levels, n_jobs, slot_keys)
    table, bad, count = price_parts(
        batch.columns,
        split.parts,
        book.version_contract,
        K.PricingTables(rows, book.burn),
        flags,
        draws,
        K.new_table(K.INITIAL_BITS),
        lines,
    )
    if bad >= 0:
        n = batch.size
        i = bad if bad < n else int(split.parts.extra_log[bad - n])
        log_level, log_job = batch.columns.level, batch.columns.job
        raise BatchError(
            "support_level",
            i,
            (levels[log_level[i]], jobs[log_job[i]]),
            "has no base rate on the contract's rate card",
        )
    return _Priced(t, flags, draws, count, table, lines)


def _draw(
    book: ContractBook, batch: _Batch, split: _Split, priced: _Priced, buffers: WorkBuffers
) -> K.Segments:
    """Step 3. Drawdown in work order, and the lines of the drawing parts; ``priced.table`` is
    replaced when the line table grows."""
    count = priced.count
    segments = K.Segments(
        buffers.get("seg_part", (count,), np.int32),
        buffers.get("seg_start", (count,), np.int64) if count else np.empty(0, np.int64),
        buffers.get("seg_prefix", (count,), np.int64) if count else np.empty(0, np.int64),
        buffers.get("seg_need", (count,), np.int32),
        buffers.get("seg_got", (count,), np.int32),
    )
    if not count:
        return segments
    g_first, g_last, g_from, g_until, g_left, g_capped, g_cap = book.grants(split.periods)
    priced.table, duplicate = draw_down(
        K.Draws(*(column[:count] for column in priced.draws)),
        batch.size,
        split.parts,
        batch.ids,
        K.Grants(g_first, g_last, g_from, g_until, g_left.copy(), g_capped, g_cap),
        priced.table,
        priced.lines,
        segments,
    )
    if duplicate >= 0:
        ids = string_column(batch.logs, "log_id")
        raise BatchError("log_id", duplicate, ids[duplicate].as_py(), "appears twice")
    return segments


def _classification(
    book: ContractBook,
    batch: _Batch,
    split: _Split,
    priced: _Priced,
    segments: K.Segments,
    buffers: WorkBuffers,
    evidence: bool,
) -> Classification:
    """Step 4. The lines, from the dense array or the hash table, and the classification."""
    dense, table = priced.lines.dense, priced.table
    if dense.size:
        keys, seconds = dense_lines(
            dense, priced.lines.vp_offset, priced.lines.n_levels, priced.lines.n_jobs
        )
    else:
        occupied = table[:, 0] != K.EMPTY
        keys, seconds = table[occupied, 0], table[occupied, 1]
    lines, line_keys = lines_table(
        book, split.periods, batch.levels, batch.jobs, keys, seconds, priced.tables
    )
    parts, logs = split.parts, batch.columns
    stored = {
        "part_period": parts.period,
        "part_version": parts.version,
        "actual": parts.actual,
        "flags": priced.flags,
        "extra_log": parts.extra_log,
        "extra_no": parts.extra_no,
        "extra_start": parts.extra_start,
        "extra_end": parts.extra_end,
        "seg_part": segments.part,
        "seg_need": segments.need,
        "seg_got": segments.got,
        "log_contract": logs.contract,
        "log_level": logs.level,
        "log_job": logs.job,
        "log_billable": logs.billable,
    }
    return Classification(
        book,
        batch.logs,
        lines,
        line_keys,
        PartArrays(book, priced.tables, logs.start, logs.end, stored),
        priced.tables,
        batch.contract_values,
        batch.contract_codes,
        priced.lines.slot_keys if evidence else None,
        buffers.pool,
    )
