"""SLA reports over an evaluation, vectorised, Arrow in and out.

* :func:`hit_rates` — met / (met + breached) by any of priority, client, contract, agent
  (assignee), job type, support level and period (of ``created_at``, UTC);
* :func:`percentiles` — P50/P75/P95 (any quantiles) of business response / resolution times
  (active elapsed seconds at the stop) of the metrics that stopped;
* :func:`at_risk` — open tickets in warning or breached, most urgent first;
* :func:`recommended_targets` — per priority and metric, the P75 of the last N days' actual
  times: a target the team actually hits three times in four;
* :func:`replay` — the same tickets under two policies, with per-group differences.

Quantiles interpolate linearly between order statistics (NumPy's default), exactly on ints.

Each table is built in two steps, so that a report over many parts evaluated apart (a Dask job,
:mod:`effigate_engine.cluster`) is the same table as over one evaluation: integer counts per
group (:func:`hit_counts`; :func:`value_counts`, the number of metrics per group and elapsed
value), which add up across parts, then the table from counts (:func:`rates_from_counts`,
:func:`percentiles_from_counts`; :func:`replay_table` from two hit-rate tables). The
single-process functions here take the same two steps over one part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.calendar_set import CalendarSet
from effigate_engine.errors import EffigateError
from effigate_engine.priority import priority_name
from effigate_engine.sla.evaluation import Evaluation, evaluate
from effigate_engine.sla.policy import Policy
from effigate_engine.sla.ticket_columns import dictionary_codes, ticket_column

GROUP_COLUMNS = ("priority", "client_id", "contract_id", "assignee", "job_type", "support_level")
PERIODS = ("day", "week", "month")


def report_frame(
    evaluation: Evaluation, attributes: Sequence[str] = (*GROUP_COLUMNS, "created_at")
) -> pa.Table:
    """The results with the ticket attributes reports group by (priority normalised):
    ``attributes``, by default all of :data:`GROUP_COLUMNS` and ``created_at`` (a report
    that groups by fewer takes fewer)."""
    results = evaluation.results
    rows = pa.array(evaluation.row_ticket)
    columns = {name: results.column(name) for name in results.column_names}
    if "priority" in attributes:
        priorities = ticket_column(evaluation.tickets, "priority")
        codes, values = dictionary_codes(priorities, priority_name)
        columns["priority"] = pc.take(
            pa.array(values, pa.string()), pa.array(codes[evaluation.row_ticket])
        )
    for name in GROUP_COLUMNS[1:]:
        if name in attributes:
            column = ticket_column(evaluation.tickets, name).cast(pa.string())
            columns[name] = pc.take(column, rows)
    if "created_at" in attributes:
        created = ticket_column(evaluation.tickets, "created_at")
        columns["created_at"] = pc.take(created.cast(pa.timestamp("s", tz="UTC"), safe=False), rows)
    columns["status"] = pc.cast(columns["status"], pa.string())
    columns["metric"] = pc.cast(columns["metric"], pa.string())
    return pa.table(columns)


def report_keys(by: str | Sequence[str], period: str | None = None) -> list[str]:
    """The grouping keys of a report: the ``by`` columns (checked against
    :data:`GROUP_COLUMNS`), ``period`` when a period is given, then ``metric``."""
    keys = [by] if isinstance(by, str) else list(by)
    for key in keys:
        if key not in GROUP_COLUMNS:
            raise EffigateError(f"by: {key!r} is not one of {', '.join(GROUP_COLUMNS)}")
    if period is not None:
        if period not in PERIODS:
            raise EffigateError(f"period: {period!r} is not one of {', '.join(PERIODS)}")
        keys.append("period")
    return [*keys, "metric"]


_keys = report_keys


def with_period(frame: pa.Table, period: str | None) -> pa.Table:
    """``frame`` with a ``period`` column (the start of the UTC day, ISO week or month of
    ``created_at``) when a period is given."""
    if period is None:
        return frame
    start = pc.floor_temporal(frame.column("created_at"), unit=period, week_starts_monday=True)
    return frame.append_column("period", start)


_with_period = with_period

#: The integer counts of a hit-rate group, in output order.
HIT_COUNTS = ("tickets", "met", "breached", "open")


def hit_counts(frame: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Per group of ``keys`` of a report frame (:func:`report_frame`, with :func:`with_period`
    when keyed by period): ``tickets`` (ticket metrics), ``met``, ``breached`` and ``open``
    (not stopped), int64. Counts of parts of an evaluation add up to the whole's."""
    keys = list(keys)
    status = frame.column("status")
    flags = pa.table(
        {
            **{k: frame.column(k) for k in keys},
            "met": pc.cast(pc.equal(status, "MET"), pa.int64()),
            "breached": pc.cast(pc.equal(status, "BREACHED"), pa.int64()),
            "open": pc.cast(pc.is_null(frame.column("stopped_at")), pa.int64()),
        }
    )
    grouped = flags.group_by(keys, use_threads=False).aggregate(
        [([], "count_all"), ("met", "sum"), ("breached", "sum"), ("open", "sum")]
    )
    return pa.table(
        {
            **{k: grouped.column(k) for k in keys},
            "tickets": grouped.column("count_all"),
            "met": grouped.column("met_sum"),
            "breached": grouped.column("breached_sum"),
            "open": grouped.column("open_sum"),
        }
    )


def rates_from_counts(counts: pa.Table, keys: Sequence[str]) -> pa.Table:
    """The hit-rate table from :func:`hit_counts` rows (of one evaluation, or of many parts
    concatenated: rows of the same group are added): per group the summed counts and
    hit rate = met / (met + breached) (null when nothing has been decided yet), sorted by
    the keys."""
    keys = list(keys)
    grouped = counts.group_by(keys, use_threads=False).aggregate(
        [(name, "sum") for name in HIT_COUNTS]
    )
    met = grouped.column("met_sum")
    decided = pc.add(met, grouped.column("breached_sum"))
    rate = pc.if_else(
        pc.equal(decided, 0),
        pa.scalar(None, pa.float64()),
        pc.divide(pc.cast(met, pa.float64()), pc.cast(decided, pa.float64())),
    )
    out = pa.table(
        {
            **{k: grouped.column(k) for k in keys},
            **{name: grouped.column(f"{name}_sum") for name in HIT_COUNTS},
            "hit_rate": rate,
        }
    )
    return out.sort_by([(k, "ascending") for k in keys])


def hit_rates(
    evaluation: Evaluation, by: str | Sequence[str] = "priority", period: str | None = None
) -> pa.Table:
    """Per group and metric: tickets, met, breached, open, and hit rate = met / (met + breached)
    (null when nothing has been decided yet)."""
    keys = report_keys(by, period)  # checked first: an unknown period is an input error
    frame = with_period(report_frame(evaluation), period)
    return rates_from_counts(hit_counts(frame, keys), keys)


def value_counts(frame: pa.Table, keys: Sequence[str], values: str = "elapsed_seconds") -> pa.Table:
    """Per group of ``keys`` and distinct integer ``values``: how many rows have it
    (``count``, int64). The counts of parts add up to the whole's, and the order statistics
    of a group can be read from them exactly (:func:`percentiles_from_counts`)."""
    keys = list(keys)
    grouped = frame.select([*keys, values]).group_by([*keys, values], use_threads=False)
    counted = grouped.aggregate([([], "count_all")])
    return pa.table(
        {
            **{k: counted.column(k) for k in keys},
            values: counted.column(values),
            "count": counted.column("count_all"),
        }
    )


def percentiles_from_counts(
    counts: pa.Table,
    keys: Sequence[str],
    quantiles: Sequence[float],
    values: str = "elapsed_seconds",
) -> pa.Table:
    """Per group: the number of values (``count``) and each quantile (``p<100q>``, float64),
    from :func:`value_counts` rows (rows of the same group and value are added). A quantile
    interpolates linearly between the order statistics at ranks ``floor`` and ``ceil`` of
    ``q * (count - 1)`` within the group (NumPy's default), read from the cumulative counts:
    the same as sorting the group's values, and independent of row order and of how the
    rows were split into parts."""
    keys = list(keys)
    names = [f"p{round(q * 100)}" for q in quantiles]
    if counts.num_rows == 0:
        return pa.table(
            {
                **{k: pa.array([], counts.schema.field(k).type) for k in keys},
                "count": pa.array([], pa.int64()),
                **{name: pa.array([], pa.float64()) for name in names},
            }
        )
    counts = counts.group_by([*keys, values], use_threads=False).aggregate([("count", "sum")])
    composite = np.zeros(counts.num_rows, np.int64)
    for k in keys:
        codes, uniques = dictionary_codes(counts.column(k).combine_chunks())
        composite = composite * (len(uniques) + 1) + (codes + 1)
    value = counts.column(values).to_numpy().astype(np.int64)
    order = np.lexsort((value, composite))
    composite, value = composite[order], value[order]
    data = value.astype(np.float64)
    cum = np.cumsum(counts.column("count_sum").to_numpy()[order].astype(np.int64))
    starts = np.flatnonzero(np.concatenate(([True], composite[1:] != composite[:-1])))
    ends = np.append(starts[1:], composite.size)
    before = np.concatenate(([0], cum))[starts]  # values of the groups sorted before
    n = cum[ends - 1] - before
    out: dict[str, pa.Array] = {k: pc.take(counts.column(k), pa.array(order[starts])) for k in keys}
    out["count"] = pa.array(n, pa.int64())
    for q, name in zip(quantiles, names, strict=True):
        pos = q * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        low = data[np.searchsorted(cum, before + lo, side="right")]
        high = data[np.searchsorted(cum, before + hi, side="right")]
        out[name] = pa.array(low + (high - low) * (pos - lo))
    return pa.table(out).sort_by([(k, "ascending") for k in keys])


def _grouped_quantiles(
    frame: pa.Table, keys: list[str], values: str, quantiles: Sequence[float]
) -> pa.Table:
    return percentiles_from_counts(value_counts(frame, keys, values), keys, quantiles, values)


def stopped(frame: pa.Table) -> pa.Table:
    """The rows of a report frame whose metric has stopped (what percentiles are over)."""
    return frame.filter(pc.is_valid(frame.column("stopped_at")))


_stopped = stopped


def check_quantiles(quantiles: Sequence[float]) -> None:
    """Raise for a quantile outside [0, 1]."""
    for q in quantiles:
        if not 0 <= q <= 1:
            raise EffigateError(f"quantiles: {q!r} is not within [0, 1]")


def percentiles(
    evaluation: Evaluation,
    by: str | Sequence[str] = "priority",
    quantiles: Sequence[float] = (0.5, 0.75, 0.95),
    period: str | None = None,
) -> pa.Table:
    """Quantiles of the business response / resolution times (active elapsed seconds at the
    stop) per group and metric, over the metrics that have stopped."""
    check_quantiles(quantiles)
    keys = report_keys(by, period)  # checked first: an unknown period is an input error
    frame = stopped(with_period(report_frame(evaluation), period))
    return _grouped_quantiles(frame, keys, "elapsed_seconds", quantiles)


def at_risk(evaluation: Evaluation) -> pa.Table:
    """Open ticket metrics in WARNING or BREACHED, by deadline (most overdue first)."""
    frame = report_frame(evaluation)
    status = frame.column("status")
    risky = pc.and_(
        pc.is_null(frame.column("stopped_at")),
        pc.or_(pc.equal(status, "WARNING"), pc.equal(status, "BREACHED")),
    )
    columns = [
        "ticket_id",
        "metric",
        "status",
        "deadline",
        "remaining_seconds",
        "escalation_level",
        "escalation_notify",
        "priority",
        "client_id",
        "assignee",
    ]
    return (
        frame.filter(risky)
        .select(columns)
        .sort_by([("deadline", "ascending"), ("ticket_id", "ascending")])
    )


def recommended_targets(evaluation: Evaluation, days: int = 90, quantile: float = 0.75) -> pa.Table:
    """Per priority and metric: the ``quantile`` (default P75) of the actual business times of
    metrics stopped in the ``days`` before the evaluation instant, rounded up to a whole minute
    (``recommended_seconds``), beside the sample size."""
    if days <= 0:
        raise EffigateError(f"days: {days!r} is not a positive number of days")
    frame = _stopped(report_frame(evaluation))
    now = pa.scalar(evaluation.now, pa.timestamp("s", tz="UTC"))
    since = pa.scalar(evaluation.now.timestamp() - days * 86_400, pa.int64())
    stopped_s = pc.cast(frame.column("stopped_at"), pa.int64())
    recent = pc.and_(
        pc.greater_equal(stopped_s, since), pc.less_equal(frame.column("stopped_at"), now)
    )
    table = _grouped_quantiles(
        frame.filter(recent), ["priority", "metric"], "elapsed_seconds", [quantile]
    )
    column = f"p{round(quantile * 100)}"
    raw = table.column(column).to_numpy(zero_copy_only=False)
    minutes = np.ceil(np.asarray(raw, np.float64) / 60.0) * 60
    return table.append_column("recommended_seconds", pa.array(minutes.astype(np.int64)))


def replay(
    tickets: pa.Table | pa.RecordBatch | str | Path,
    current: Policy | Mapping[str, Policy],
    proposed: Policy | Mapping[str, Policy],
    calendars: CalendarSet,
    now: datetime | int,
    by: str | Sequence[str] = "priority",
    period: str | None = None,
    threads: int | None = None,
) -> pa.Table:
    """Evaluate the same tickets under the current and a proposed policy and report, per group
    and metric, both hit rates and breach counts and their differences (proposed − current)."""
    return replay_evaluations(
        evaluate(tickets, current, calendars, now, threads=threads),
        evaluate(tickets, proposed, calendars, now, threads=threads),
        by,
        period,
    )


def replay_evaluations(
    current: Evaluation,
    proposed: Evaluation,
    by: str | Sequence[str] = "priority",
    period: str | None = None,
) -> pa.Table:
    """:func:`replay` of two evaluations of the same tickets (under the current and the
    proposed policy)."""
    keys = report_keys(by, period)
    return replay_table(hit_rates(current, by, period), hit_rates(proposed, by, period), keys)


#: The columns of a hit-rate table a replay shows for each side.
REPLAYED = ("tickets", "met", "breached", "hit_rate")


def replay_table(before: pa.Table, after: pa.Table, keys: Sequence[str]) -> pa.Table:
    """The replay table from the hit-rate tables (:func:`rates_from_counts`) of the same
    tickets under the current (``before``) and the proposed (``after``) policy: per group
    both sides' tickets, met, breached and hit rate (null on a side without the group), and
    the differences (proposed − current; a side without the group has no breaches). Groups
    are matched as ``group_by`` matches them, a null key (no assignee, no client) included."""
    keys = list(keys)
    names = [f"{name}_{side}" for name in REPLAYED for side in ("current", "proposed")]
    sides = []
    for table, side in ((before, "current"), (after, "proposed")):
        columns = {k: table.column(k) for k in keys}
        for name in REPLAYED:
            typ = table.schema.field(name).type
            for other in ("current", "proposed"):
                columns[f"{name}_{other}"] = (
                    table.column(name) if other == side else pa.nulls(table.num_rows, typ)
                )
        sides.append(pa.table(columns).select([*keys, *names]))
    # each group has a row on one side or on both: max picks the side's value (null if none)
    grouped = pa.concat_tables(sides).group_by(keys, use_threads=False)
    joined = grouped.aggregate([(name, "max") for name in names])
    out = {k: joined.column(k) for k in keys}
    out.update({name: joined.column(f"{name}_max") for name in names})
    out["hit_rate_change"] = pc.subtract(out["hit_rate_proposed"], out["hit_rate_current"])
    out["breached_change"] = pc.subtract(
        pc.fill_null(out["breached_proposed"], 0), pc.fill_null(out["breached_current"], 0)
    )
    return pa.table(out).sort_by([(k, "ascending") for k in keys])
