"""Time lines of an invoice: a classification's lines for the contract and period, with the
ids of the logs they price and their descriptions (hours as h:mm)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.billing.invoice import (
    InvoiceLine,
    LineKind,
)
from effigate_engine.errors import BillingError
from effigate_engine.money import currency
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.contracts import Contract
from effigate_engine.ratecard.periods import Period

_TWO_DIGITS = pa.array([f"{i:02d}" for i in range(60)], pa.string())


def _hours(seconds: np.ndarray) -> pa.StringArray:
    """Durations as hours, minutes and seconds: ``3h``, ``28h30m``, ``0h45m30s``."""
    whole, rest = np.divmod(seconds, 3_600)
    minutes, secs = np.divmod(rest, 60)
    return pc.binary_join_element_wise(
        pa.array(whole).cast(pa.string()),
        "h",
        pc.if_else(
            pa.array(rest != 0),
            pc.binary_join_element_wise(_TWO_DIGITS.take(pa.array(minutes)), "m", ""),
            "",
        ),
        pc.if_else(
            pa.array(secs != 0),
            pc.binary_join_element_wise(_TWO_DIGITS.take(pa.array(secs)), "s", ""),
            "",
        ),
        "",
    )


def time_descriptions(lines: pa.Table) -> pa.StringArray:
    """The description of each time line of ``lines`` (rows of
    :data:`~effigate_engine.ratecard.schemas.TIME_LINES`), e.g.
    ``"After hours L2/support (3h × 180.00/h)"``: condition, level/job, billed duration and
    rate in the line's currency. Whole columns at once: each distinct (condition, level, job),
    duration and (currency, rate) is formatted once."""
    if lines.num_rows == 0:
        return pa.array([], pa.string())
    condition, conditions = _codes(lines.column("condition"))
    level, levels = _codes(lines.column("support_level"))
    job, jobs = _codes(lines.column("job_type"))
    kinds = pc.dictionary_encode(pa.array((condition * len(levels) + level) * len(jobs) + job))
    c, rest = np.divmod(kinds.dictionary.to_numpy(), len(levels) * len(jobs))
    lv, jb = np.divmod(rest, len(jobs))
    heads = [
        f"{conditions[a].replace('_', ' ').capitalize()} {levels[b]}/{jobs[d]} ("
        for a, b, d in zip(c.tolist(), lv.tolist(), jb.tolist(), strict=True)
    ]
    durations = pc.dictionary_encode(
        lines.column("billed_seconds").combine_chunks().cast(pa.int64())
    )
    code, codes = _codes(lines.column("currency"))
    rates = pc.dictionary_encode(lines.column("rate").combine_chunks())
    rate_values = rates.dictionary.to_numpy()
    pairs = pc.dictionary_encode(
        pa.array(code * len(rate_values) + rates.indices.to_numpy().astype(np.int64))
    )
    currency_code, rate = np.divmod(pairs.dictionary.to_numpy(), len(rate_values))
    tails = [
        f" × {currency(codes[a]).format(int(b))}/h)"
        for a, b in zip(currency_code.tolist(), rate_values[rate].tolist(), strict=True)
    ]
    return pc.binary_join_element_wise(
        pa.array(heads, pa.string()).take(kinds.indices),
        _hours(durations.dictionary.to_numpy()).take(durations.indices),
        pa.array(tails, pa.string()).take(pairs.indices),
        "",
    )


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """Codes (int64) of a text column's values and the distinct values they index."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        values = pc.dictionary_encode(column.dictionary)  # a dictionary may repeat values
        codes = values.indices.take(column.indices)
        names = values.dictionary
    else:
        encoded = pc.dictionary_encode(column)
        codes, names = encoded.indices, encoded.dictionary
    return codes.to_numpy(zero_copy_only=False).astype(np.int64), [
        str(v) for v in names.to_pylist()
    ]


def time_lines(
    contract: Contract, period: Period, classification: Classification
) -> list[InvoiceLine]:
    """The time lines of ``contract`` in ``period``, with the log ids each one prices.
    ``classification`` must have been made with ``evidence=True``."""
    if classification.slot_keys is None:
        raise BillingError("classification", "evidence", "is missing; classify(evidence=True)")
    lines = classification.lines
    mask = (np.asarray(lines.column("contract_id").to_pylist(), dtype=object) == contract.id) & (
        lines.column("period").to_numpy() == period.ordinal
    )
    rows = [r for r, keep in zip(lines.to_pylist(), mask, strict=True) if keep]
    keys = classification.line_keys[mask]
    evidence: dict[int, set[str]] = {int(k): set() for k in keys}
    if evidence:
        p = classification.parts
        log_ids = classification.logs.column("log_id")
        slot_keys = classification.slot_keys
        hit = np.isin(slot_keys, keys)
        part_rows, _ = np.nonzero(hit)
        ids = log_ids.take(pa.array(p["part_log"][part_rows])).to_pylist()
        for key, log_id in zip(slot_keys[hit].tolist(), ids, strict=True):
            evidence[key].add(log_id)
    descriptions = time_descriptions(lines.filter(pa.array(mask))).to_pylist()
    out = []
    for row, key, description in zip(rows, keys.tolist(), descriptions, strict=True):
        seconds = int(row["billed_seconds"].total_seconds())
        out.append(
            InvoiceLine(
                0,
                LineKind.TIME,
                description,
                row["amount"],
                seconds,
                row["rate"],
                row["condition"],
                row["support_level"],
                row["job_type"],
                True,
                row["rate_card_version"],
                row["rate_card_hash"],
                tuple(sorted(evidence[key])),
            )
        )
    return out
