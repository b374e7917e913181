"""The slow, obvious builder of the per-part result batch (``LOG_RESULTS``): NumPy gathers and
temporaries over the per-part arrays of ``Classification.parts`` (themselves compared with the
``decimal`` reference), one column at a time. ``Classification.results`` (one fused Numba pass,
zero-copy buffers) must equal it value for value; the benchmark times it as the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.classification import Classification, PartArrays
from effigate_engine.ratecard.model import Condition
from effigate_engine.ratecard.schemas import LOG_RESULTS

STATUS_NAMES = ("PRICED", "UNAPPROVED", "REJECTED")
BILLABLE_NAMES = ("BILLABLE", "NON_BILLABLE", "WARRANTY")
LABEL_NAMES = tuple(c.name for c in Condition)


def rate_columns(
    result: Classification, p: PartArrays
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per time condition: the rate and label columns, and each part's table row
    (version, level, job), gathered from the flattened rate tables."""
    t = result._tables
    log = p["part_log"]
    n_levels, n_jobs = t["rate"].shape[1], t["rate"].shape[2]
    version = p["part_version"].astype(np.int64)
    row = (version * n_levels + p["log_level"][log]) * n_jobs + p["log_job"][log]
    base = row * 8 + p["high"]
    flat_rate, flat_label = t["rate"].reshape(-1), t["label"].reshape(-1)
    rates = [flat_rate[base + 2 * c] for c in range(4)]
    labels = [flat_label[base + 2 * c] for c in range(4)]
    return rates, labels, row


def amount_numerators(result: Classification, p: PartArrays) -> np.ndarray:
    """Per part: Σ billed seconds × rate (amount × 3600): time conditions at their rates,
    out-of-scope at ``OUT_OF_SCOPE``, overage at ``ADDITIONAL_HOURS``; zero for covered,
    non-billable, warranty and unpriced parts."""
    t = result._tables
    log = p["part_log"]
    rates, _, row = rate_columns(result, p)
    billed = p["billed"]
    timed_sum = sum(billed[:, c].astype(np.int64) * rates[c] for c in range(4))
    total = billed.sum(axis=1, dtype=np.int64)
    priced = (p["status"] == K.PRICED) & (p["log_billable"][log] == K.BILLABLE)
    mode = result.book.mode[p["log_contract"][log]]
    oos = priced & p["out_of_scope"]
    timed = priced & ~p["out_of_scope"] & (mode == K.MODE_PRICED)
    out = np.where(timed, timed_sum, 0)
    out = np.where(oos, total * t["oos"].reshape(-1)[row], out)
    over = p["overage"] > 0
    return np.where(over, p["overage"] * t["additional"].reshape(-1)[row], out)


def reference_results(result: Classification) -> pa.Table:
    """The per-part result batch, built column by column from the per-part arrays of
    ``result.parts``, built anew (nothing cached)."""
    stored = result.parts
    assert isinstance(stored, PartArrays)
    p = PartArrays(result.book, result._tables, stored.log_starts, stored.log_ends, stored.stored)
    log = p["part_log"]
    n_logs = result.logs.num_rows
    log_ids = result.logs.column("log_id")
    if isinstance(log_ids, pa.ChunkedArray):
        log_ids = log_ids.combine_chunks()
    codes = result._contract_codes
    billable = p["log_billable"]
    if log.size != n_logs:
        # Later parts of split logs follow the n first parts.
        extra = pa.array(log[n_logs:])
        log_ids = pa.concat_arrays([log_ids, log_ids.take(extra)])
        codes = codes[log]
        billable = billable[log]

    def cat(values: np.ndarray, names: Sequence[str], codes: type = np.int8) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(
            pa.array(np.asarray(values, codes)), pa.array(list(names), pa.string())
        )

    rates, labels, _ = rate_columns(result, p)
    actual, billed = p["actual"], p["billed"]
    seconds = pa.duration("s")
    columns = [
        log_ids,
        pa.array(p["part_no"]),
        cat(codes, result._contract_values, np.int32),
        pa.array(p["part_period"].astype(np.int32)),
        pa.array(result.book.version_number[p["part_version"]]),
        pa.array(p["part_start"], pa.timestamp("s", tz="UTC")),
        pa.array(p["part_end"], pa.timestamp("s", tz="UTC")),
        cat(p["status"], STATUS_NAMES),
        cat(billable, BILLABLE_NAMES),
        pa.array(p["out_of_scope"]),
        pa.array(p["high"].astype(np.bool_)),
        *(pa.array(actual[:, c].astype(np.int64), seconds) for c in range(4)),
        *(pa.array(billed[:, c].astype(np.int64), seconds) for c in range(4)),
        pa.array(billed.sum(axis=1).astype(np.int64), seconds),
        *(pa.array(rates[c]) for c in range(4)),
        *(cat(labels[c], LABEL_NAMES) for c in range(4)),
        pa.array(p["covered"], seconds),
        pa.array(p["overage"], seconds),
        pa.array(amount_numerators(result, p)),
    ]
    return pa.Table.from_arrays(columns, schema=LOG_RESULTS)
