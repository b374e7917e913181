"""Time-condition precedence: the seconds of parts priced by cards with a non-default
precedence re-assigned among the time conditions that apply."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.book import ContractBook, elapsed_into


def apply_precedence(
    book: ContractBook,
    parts: K.PartBuffers,
    logs: K.LogColumns,
    levels: Sequence[str],
    jobs: Sequence[str],
) -> None:
    """Re-assign the seconds of the parts priced by cards with a non-default precedence: the
    clock measures their holiday-on-a-weekend and open-days calendars, the default split gives
    the rest, and each of the six classes of time goes to the condition the card's precedence
    picks among those that apply (``RateCard.winning_condition``; ``highest`` compares rates
    on the part's base rate). In place, in ``parts.actual``."""
    actual, part_version = parts.actual, parts.version
    extra_log, extra_no = parts.extra_log, parts.extra_no
    extra_start, extra_end = parts.extra_start, parts.extra_end
    start, end, log_level, log_job = logs.start, logs.end, logs.level, logs.job
    n = start.size
    sel = np.flatnonzero(book.cal_precedence[part_version, 0] >= 0)
    if not sel.size:
        return
    later = sel >= n
    log = sel.copy()
    log[later] = extra_log[sel[later] - n]
    a = start[log]
    a[later] = extra_start[sel[later] - n]
    first_end = end[log]
    split = extra_no == 1  # a split log's first part ends where its second starts
    if split.any():
        # Each split log has one second part: look its start up by log row, vectorised.
        order = np.argsort(extra_log[split], kind="stable")
        rows, cuts = extra_log[split][order], extra_start[split][order]
        first = np.flatnonzero(~later)
        at = np.minimum(np.searchsorted(rows, log[first]), rows.size - 1)
        hit = rows[at] == log[first]
        first_end[first[hit]] = cuts[at[hit]]
    z = first_end
    z[later] = extra_end[sel[later] - n]
    cal = book.cal_precedence[part_version[sel]]
    holiday_weekend = np.empty(sel.size, np.int64)
    open_days = np.empty(sel.size, np.int64)
    elapsed_into(book.calendar_set, np.ascontiguousarray(cal[:, 0]), a, z, holiday_weekend)
    elapsed_into(book.calendar_set, np.ascontiguousarray(cal[:, 1]), a, z, open_days)
    act = actual[sel].astype(np.int64)
    regular, after, weekend, holiday = act[:, 0], act[:, 1], act[:, 2], act[:, 3]
    weekend_open = open_days - regular
    classes = (
        holiday_weekend,
        holiday - holiday_weekend,
        weekend_open,
        weekend - weekend_open,
        after,
        regular,
    )
    winners = book.winners(part_version[sel], log_level[log], log_job[log], levels, jobs)
    out = np.zeros((sel.size, K.N_TIME), np.int64)
    for j, seconds in enumerate(classes):
        for c in range(K.N_TIME):
            out[:, c] += np.where(winners[:, j] == c, seconds, 0)
    actual[sel] = out
