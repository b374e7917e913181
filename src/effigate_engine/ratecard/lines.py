"""Line aggregates: packed line keys, their rates, and the time-line table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from effigate_engine.errors import BatchError
from effigate_engine.money import SECONDS_PER_HOUR
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classification import LABEL_NAMES
from effigate_engine.ratecard.periods import Period
from effigate_engine.ratecard.schemas import TIME_LINES


def dense_lines(
    dense: np.ndarray, vp_offset: np.ndarray, n_levels: int, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Packed keys and seconds of the non-empty slots of the dense line array."""
    idx = np.flatnonzero(dense)
    seconds = dense[idx]
    slot = idx % K.LABEL_SLOTS
    paired = slot < 2 * K.HIGH_PRIORITY + 2
    hp = np.where(paired, slot % 2, 0)
    label = np.where(paired, slot // 2, slot - (2 * K.HIGH_PRIORITY + 2) + K.ADDITIONAL_HOURS)
    rest = idx // K.LABEL_SLOTS
    job = rest % n_jobs
    rest //= n_jobs
    level = rest % n_levels
    vp = rest // n_levels
    version = np.searchsorted(vp_offset, vp, side="right") - 1
    period = vp - vp_offset[version]
    return pack_keys(version, period, level, job, label, hp), seconds


def pack_keys(
    version: np.ndarray,
    period: np.ndarray,
    level: np.ndarray,
    job: np.ndarray,
    label: np.ndarray,
    hp: np.ndarray,
) -> np.ndarray:
    """Packed line keys (the layout of :data:`kernels.KEY_BITS`)."""
    key = np.asarray(version, np.int64)
    for value, bits in zip((period, level, job, label, hp), K.KEY_BITS[1:], strict=True):
        key = (key << bits) | np.asarray(value, np.int64)
    return key


def unpack_keys(keys: np.ndarray) -> dict[str, np.ndarray]:
    """Fields of packed line keys: version, period, level, job, label, priority applied."""
    out = {}
    shift = 0
    for name, bits in zip(
        ("hp", "label", "job", "level", "period", "version"), reversed(K.KEY_BITS), strict=True
    ):
        out[name] = (keys >> shift) & ((1 << bits) - 1)
        shift += bits
    return out


def line_rates(fields: dict[str, np.ndarray], tables: dict[str, np.ndarray]) -> np.ndarray:
    """The rate (minor units per hour) of each line from its unpacked key: the key determines
    it, so no per-part rate is stored."""
    v, lv, jb = fields["version"], fields["level"], fields["job"]
    label, hp = fields["label"], fields["hp"]
    timed = label < 4
    rates = np.zeros(label.size, np.int64)
    rates[timed] = tables["rate"][v[timed], lv[timed], jb[timed], label[timed], hp[timed]]
    for code, name in (
        (K.HIGH_PRIORITY, "priority"),
        (K.ADDITIONAL_HOURS, "additional"),
        (K.OUT_OF_SCOPE, "oos"),
    ):
        sel = label == code
        rates[sel] = tables[name][v[sel], lv[sel], jb[sel]]
    return rates


def lines_table(
    book: ContractBook,
    periods: list[list[Period]],
    levels: list[str],
    jobs: list[str],
    keys: np.ndarray,
    seconds: np.ndarray,
    tables: dict[str, np.ndarray],
) -> tuple[pa.Table, np.ndarray]:
    """The line aggregates as a table sorted by contract, period, version, condition, level,
    job and priority flag (input order never changes it), with their packed keys."""
    f = unpack_keys(keys)
    rates = line_rates(f, tables)
    version = f["version"]
    contract = book.version_contract[version]
    period_index = book.period_offsets(periods)[contract] + f["period"]
    p_start, p_end, p_ordinal = book.period_days(periods)
    level_rank = np.argsort(np.argsort(np.array(levels, dtype=object)))
    job_rank = np.argsort(np.argsort(np.array(jobs, dtype=object)))
    position = version - book.ver_first[contract]
    sort_key = book.contract_rank[contract].astype(np.int64)
    for value, bits in (
        (f["period"], 12),
        (position, 8),
        (f["label"], 4),
        (level_rank[f["level"]] if levels else f["level"], 8),
        (job_rank[f["job"]] if jobs else f["job"], 10),
        (f["hp"], 1),
    ):
        sort_key = (sort_key << bits) | value.astype(np.int64)
    order = np.argsort(sort_key, kind="stable")
    keys, seconds, rates = keys[order], seconds[order], rates[order]
    contract, version, period_index = contract[order], version[order], period_index[order]
    f = {k: v[order] for k, v in f.items()}
    if seconds.size and int(seconds.max()) * max(int(rates.max()), 1) >= 1 << 61:
        raise BatchError("billed_seconds", 0, int(seconds.max()), "overflows a line amount")
    amount = (2 * seconds * rates + SECONDS_PER_HOUR) // (2 * SECONDS_PER_HOUR)

    def dict_col(codes: np.ndarray, names: Sequence[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(
            pa.array(np.asarray(codes, np.int32)), pa.array(list(names), pa.string())
        )

    table = pa.Table.from_arrays(
        [
            dict_col(contract, [c.id for c in book.contracts]),
            pa.array(p_ordinal[period_index].astype(np.int32)),
            pa.array(p_start[period_index].astype(np.int32)).view(pa.date32()),
            pa.array(p_end[period_index].astype(np.int32)).view(pa.date32()),
            pa.array(book.version_number[version]),
            dict_col(version, [r.content_hash for r in book.versions]),
            dict_col(f["label"], LABEL_NAMES),
            dict_col(level_rank[f["level"]], sorted(levels)),
            dict_col(job_rank[f["job"]], sorted(jobs)),
            pa.array(f["hp"].astype(np.bool_)),
            pa.array(seconds, pa.duration("s")),
            pa.array(rates),
            pa.array(amount),
            dict_col(contract, [c.currency for c in book.contracts]),
        ],
        schema=TIME_LINES,
    )
    return table, keys
