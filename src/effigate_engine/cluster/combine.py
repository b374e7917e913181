"""Combining the counts parts return, exactly.

- **Hit rates**: every part counts per group (``tenant_id``, the report keys, ``metric``) its
  ticket metrics, met, breached and open, in int64; the counts of all parts are added and the
  hit rate computed from the sums by the same function the single-process report uses
  (:func:`effigate_engine.sla.reports.rates_from_counts`): the same table, float for float.
- **Percentiles**: every part counts per group each distinct elapsed value (business seconds,
  integers); the counts of equal (group, value) pairs are added (a shuffle by group with equal
  values pre-combined: lossless, the values being integers) and the order statistics read from
  the cumulative counts by :func:`effigate_engine.sla.reports.percentiles_from_counts`, which
  the single-process report uses too. Exact, whatever the parts.
- **Replay**: both policies' hit counts combined as above, then the difference table by
  :func:`effigate_engine.sla.reports.replay_table`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from effigate_engine.errors import EffigateError
from effigate_engine.sla.reports import (
    percentiles_from_counts,
    rates_from_counts,
    replay_table,
)


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """The parts' tables in one (their schemas must agree; key columns of a part that had
    only nulls there are promoted)."""
    if not tables:
        raise EffigateError("combine: no parts to combine")
    return pa.concat_tables(tables, promote_options="permissive")


def add_counts(tables: Sequence[pa.Table], keys: Sequence[str], column: str = "count") -> pa.Table:
    """``column`` summed per group of ``keys`` over the parts' tables, sorted by the keys."""
    keys = list(keys)
    summed = concat(tables).group_by(keys, use_threads=False).aggregate([(column, "sum")])
    out = pa.table({**{k: summed.column(k) for k in keys}, column: summed.column(f"{column}_sum")})
    return out.sort_by([(k, "ascending") for k in keys])


def sum_counts(tables: Sequence[pa.Table], keys: Sequence[str], columns: Sequence[str]) -> pa.Table:
    """Each of ``columns`` summed per group of ``keys`` over the tables (the keys, then the
    columns, in that order; unsorted): a part's slices' counts merged before they travel."""
    keys = list(keys)
    summed = (
        concat(tables).group_by(keys, use_threads=False).aggregate([(c, "sum") for c in columns])
    )
    return pa.table(
        {**{k: summed.column(k) for k in keys}, **{c: summed.column(f"{c}_sum") for c in columns}}
    )


def hit_rates(tables: Sequence[pa.Table], keys: Sequence[str]) -> pa.Table:
    """The hit-rate table of the parts' hit counts (:func:`~effigate_engine.sla.reports.hit_counts`
    rows)."""
    return rates_from_counts(concat(tables), keys)


def percentiles(
    tables: Sequence[pa.Table], keys: Sequence[str], quantiles: Sequence[float]
) -> pa.Table:
    """The percentile table of the parts' value counts
    (:func:`~effigate_engine.sla.reports.value_counts` rows)."""
    return percentiles_from_counts(concat(tables), keys, quantiles)


def replay(
    current: Sequence[pa.Table], proposed: Sequence[pa.Table], keys: Sequence[str]
) -> pa.Table:
    """The replay table of the parts' hit counts under the current and the proposed policy."""
    return replay_table(hit_rates(current, keys), hit_rates(proposed, keys), keys)
