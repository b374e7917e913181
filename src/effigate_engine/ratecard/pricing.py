"""Pricing (Numba): each part's billed seconds rounded and shared among time conditions, its
status and rates, and the line seconds of the parts that draw nothing from grants."""

from __future__ import annotations

import numpy as np
from numba import njit

from effigate_engine.ratecard.kernels import (
    BILLABLE,
    BP,
    CHUNK,
    CODE_BITS,
    EMPTY,
    IN_SCOPE,
    INCLUDED,
    INFO_BURN_HIGH,
    INFO_CODES,
    INFO_HIGH,
    INFO_KNOWN,
    INFO_MODE,
    INFO_ROUND,
    LABEL_SLOTS,
    MODE_COVERED,
    MODE_DRAWDOWN,
    N_TIME,
    NON_BILLABLE,
    NON_BILLABLE_TYPE,
    OUT_OF_SCOPE,
    PRICED,
    REJECTED,
    ROW_DENSE,
    ROW_INFO,
    ROW_KEY,
    ROW_ROUNDING,
    SCOPE_PRICED,
    SCOPE_REJECTED,
    SHIFT_PERIOD,
    SLOTS,
    UNAPPROVED,
    WARRANTY,
    Draws,
    LineSink,
    LogColumns,
    PartBuffers,
    PricingTables,
    code_slot,
    flush,
    label_slot,
    round_billed,
    share_billed,
)


@njit(cache=True, nogil=True, error_model="numpy")
def billed_parts(
    actual: np.ndarray,
    part_version: np.ndarray,
    version_increment: np.ndarray,
    version_mode: np.ndarray,
    version_minimum: np.ndarray,
    billed: np.ndarray,
) -> None:
    """``billed[k]``: each part's billed seconds per time condition, rounded once per part
    (:func:`~kernels.round_billed`) and shared (:func:`~kernels.share_billed`) exactly as
    :func:`price_parts` prices them. The pricing pass does not store them; this fills the
    public per-part array on demand."""
    for k in range(actual.shape[0]):
        v = part_version[k]
        a0, a1, a2, a3 = actual[k, 0], actual[k, 1], actual[k, 2], actual[k, 3]
        total = round_billed(
            a0 + a1 + a2 + a3, version_increment[v], version_mode[v], version_minimum[v]
        )
        b0, b1, b2, b3 = share_billed(total, a0, a1, a2, a3)
        billed[k, 0] = b0
        billed[k, 1] = b1
        billed[k, 2] = b2
        billed[k, 3] = b3


@njit(cache=True, nogil=True, error_model="numpy")
def price_parts(
    logs: LogColumns,
    parts: PartBuffers,
    version_contract: np.ndarray,
    pricing: PricingTables,
    flags: np.ndarray,
    draws: Draws,
    table: np.ndarray,
    lines: LineSink,
) -> tuple[np.ndarray, int, int]:
    """Round, share and price every part, and add every part that does not draw from grants
    to the lines. Returns ``(table, bad, drawing)``: the (possibly grown) hash table, -1 or
    the first part whose (support level, job type) has no base rate on its card, and the
    number of drawing parts.

    Parts ``k < n`` (``n`` = the batch's rows) are the first parts of logs ``k``; part
    ``n + x`` is the later part of log ``parts.extra_log[x]`` starting at
    ``parts.extra_start[x]`` (:func:`~effigate_engine.ratecard.period_split.split_parts`).
    ``parts.actual`` holds each part's seconds per time condition; their sum is its duration;
    ``version_contract[v]`` is version ``v``'s contract.

    Everything a part's pricing needs from its contract, card version, level and job comes
    from one row of ``pricing.rows`` (int64, ``(versions × levels × jobs, 4)``, 32 bytes, row
    ``(version × n_levels + level) × n_jobs + job``): ``ROW_DENSE`` the dense index of the
    row's first line slot in period 0 (a period adds ``n_levels × n_jobs × LABEL_SLOTS``),
    ``ROW_KEY`` the packed line key with period, label and flag 0, ``ROW_ROUNDING`` the
    increment (low 32 bits) and minimum (high bits) in seconds, ``ROW_INFO`` the bit fields of
    ``INFO_*`` (scope, contract mode, increment mode, base known, priority flags, line codes).
    So a line addition is an add to a precomputed index, never a key packed and looked up.

    ``flags[k]`` gets the part's status (bits 0–1), out-of-scope flag (bit 2) and priority
    flag (bit 3); billed seconds are not stored (:func:`billed_parts` recomputes them).
    Billed seconds are shared among conditions in proportion to actual seconds by largest
    remainder, ties to the higher precedence. The parts a drawdown contract draws from its
    grants (priced after the drawdown, by :func:`~effigate_engine.ratecard.drawdown.draw_down`)
    are listed in part order in ``draws`` (as long as the parts; the need is int32: the book
    bounds a part's billed seconds times the largest burn factor below ``2**31``).
    """
    start, log_level, log_job = logs.start, logs.level, logs.job
    log_priority, log_billable, log_approved = logs.priority, logs.billable, logs.approved
    extra_log, extra_start = parts.extra_log, parts.extra_start
    part_period, part_version, actual = parts.period, parts.version, parts.actual
    rows, burn = pricing
    draw_part, draw_contract, draw_start, draw_prefix, draw_need = draws
    dense, used, slot_keys = lines.dense, lines.used, lines.slot_keys
    n_levels, n_jobs = lines.n_levels, lines.n_jobs
    n = log_level.shape[0]
    m = part_version.shape[0]
    want_slots = slot_keys.shape[0] > 0
    hashing = dense.shape[0] == 0
    keyed = hashing or want_slots
    stride = n_levels * n_jobs * LABEL_SLOTS
    buf_key = np.empty(CHUNK * SLOTS, np.int64)
    buf_idx = np.empty(CHUNK * SLOTS, np.int64)
    buf_sec = np.empty(CHUNK * SLOTS, np.int64)
    nbuf = 0
    nd = 0
    for k in range(m):
        if nbuf > (CHUNK - 1) * SLOTS:
            table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
            nbuf = 0
        i = k if k < n else np.int64(extra_log[k - n])
        v = np.int64(part_version[k])
        r = (v * n_levels + log_level[i]) * n_jobs + log_job[i]
        info = rows[r, ROW_INFO]
        if not (info >> INFO_KNOWN) & 1:
            return table, k, nd
        rounding = rows[r, ROW_ROUNDING]
        act0 = actual[k, 0]
        act1 = actual[k, 1]
        act2 = actual[k, 2]
        act3 = actual[k, 3]
        total = round_billed(
            act0 + act1 + act2 + act3,
            rounding & 0xFFFFFFFF,
            (info >> INFO_ROUND) & 1,
            rounding >> 32,
        )
        b0, b1, b2, b3 = share_billed(total, act0, act1, act2, act3)
        hp = (info >> (INFO_HIGH + log_priority[i])) & 1
        scope = info & 3
        bits = (hp << 3) | (4 if scope != IN_SCOPE else 0)
        bt = log_billable[i]
        if want_slots:
            for q in range(SLOTS):
                slot_keys[k, q] = EMPTY
        if scope == SCOPE_REJECTED:
            # Out of scope under REJECT: whatever its approval state or billable type.
            flags[k] = bits | REJECTED
            continue
        if not log_approved[i]:
            flags[k] = bits | UNAPPROVED
            continue
        flags[k] = bits | PRICED
        p = np.int64(part_period[k])
        mode = (info >> INFO_MODE) & 3
        if bt == BILLABLE and scope == IN_SCOPE and mode == MODE_DRAWDOWN:
            # Burn weighting rounds half-up once per condition of the part.
            c = version_contract[v]
            # A high-priority log burns at max(condition, priority) factors: columns 4..7.
            w = N_TIME * ((info >> (INFO_BURN_HIGH + log_priority[i])) & 1)
            draw_part[nd] = k
            draw_contract[nd] = c
            draw_start[nd] = start[i] if k < n else extra_start[k - n]
            draw_prefix[nd] = rows[r, ROW_KEY] | (p << SHIFT_PERIOD)
            draw_need[nd] = (
                (2 * b0 * burn[c, w] + BP) // (2 * BP)
                + (2 * b1 * burn[c, w + 1] + BP) // (2 * BP)
                + (2 * b2 * burn[c, w + 2] + BP) // (2 * BP)
                + (2 * b3 * burn[c, w + 3] + BP) // (2 * BP)
            )
            nd += 1
            continue
        base = rows[r, ROW_DENSE] + p * stride
        if bt != BILLABLE or scope == SCOPE_PRICED or mode == MODE_COVERED:
            if total > 0:
                if bt != BILLABLE:
                    label = NON_BILLABLE if bt == NON_BILLABLE_TYPE else WARRANTY
                elif scope == SCOPE_PRICED:
                    label = OUT_OF_SCOPE
                else:
                    label = INCLUDED
                buf_idx[nbuf] = base + label_slot(label, 0)
                buf_sec[nbuf] = total
                if keyed:
                    key = rows[r, ROW_KEY] | (p << SHIFT_PERIOD) | (label << 1)
                    buf_key[nbuf] = key
                    if want_slots:
                        slot_keys[k, 0] = key
                nbuf += 1
            continue
        codes = info >> (INFO_CODES + 4 * CODE_BITS * hp)
        q = 0
        for cond in range(N_TIME):
            sec = b0 if cond == 0 else (b1 if cond == 1 else (b2 if cond == 2 else b3))
            if sec > 0:
                code = (codes >> (CODE_BITS * cond)) & ((1 << CODE_BITS) - 1)
                buf_idx[nbuf] = base + code_slot(code)
                buf_sec[nbuf] = sec
                if keyed:
                    key = rows[r, ROW_KEY] | (p << SHIFT_PERIOD) | code
                    buf_key[nbuf] = key
                    if want_slots:
                        slot_keys[k, q] = key
                q += 1
                nbuf += 1
    table = flush(dense, table, used, buf_key, buf_idx, buf_sec, nbuf)
    return table, -1, nd
