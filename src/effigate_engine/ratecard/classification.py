"""The outcome of :func:`~effigate_engine.ratecard.classify.classify`: line aggregates and
per-part results (NumPy arrays, the Arrow batch built from them on first access), and the
work buffers a classification recycles."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa

from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard import part_results
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.model import (
    Condition,
)
from effigate_engine.ratecard.pricing import billed_parts

LABEL_NAMES = tuple(c.name for c in Condition)


class PartArrays(Mapping[str, np.ndarray]):
    """The per-part results of :func:`classify` as NumPy arrays, by name; parts ``k < n``
    (``n`` = the batch's rows) are the first parts of logs ``k``, the later parts of split
    logs follow. The kernels store only what the aggregation needs, in the narrowest types
    the bounds allow; the rest is built on first access:

    * stored: ``part_period`` (int16: fewer than ``2**12`` periods per contract),
      ``part_version`` (int32 global version index), ``actual`` (``(parts, 4)`` int32 seconds
      per time condition: a part lies inside one period), ``log_contract``, ``log_level``,
      ``log_job`` (int32) and ``log_billable`` (int8) per log;
    * built: ``part_log`` (int32 batch row), ``part_no`` (int8), ``part_start`` and
      ``part_end`` (int64 epoch seconds), ``billed`` (``(parts, 4)`` int32 seconds, the
      pricing pass's rounding and sharing recomputed), ``status`` (int8), ``out_of_scope``
      (bool) and ``high`` (uint8) from one packed flag byte, and ``covered`` and
      ``overage`` (int64 seconds) from the drawdown's per-part results.
    """

    _BUILT = (
        "part_log",
        "part_no",
        "part_start",
        "part_end",
        "billed",
        "status",
        "out_of_scope",
        "high",
        "covered",
        "overage",
    )
    _STORED = (
        "part_period",
        "part_version",
        "actual",
        "log_contract",
        "log_level",
        "log_job",
        "log_billable",
    )

    def __init__(
        self,
        book: ContractBook,
        tables: dict[str, np.ndarray],
        start: np.ndarray,
        end: np.ndarray,
        stored: dict[str, np.ndarray],
    ) -> None:
        self._book = book
        self._tables = tables
        self._start = start
        self._end = end
        self._stored = stored
        self._arrays: dict[str, np.ndarray] = {k: stored[k] for k in self._STORED}
        self._builders: dict[str, Callable[[], np.ndarray]] = {
            "part_log": self._part_log,
            "part_no": self._part_no,
            "part_start": self._part_start,
            "part_end": self._part_end,
            "billed": self._billed,
            "status": lambda: self._stored["flags"] & np.int8(3),
            "out_of_scope": lambda: (self._stored["flags"] & np.int8(4)) != 0,
            "high": lambda: ((self._stored["flags"] >> 3) & 1).astype(np.uint8),
            "covered": lambda: self._drawn()[0],
            "overage": lambda: self._drawn()[1],
        }

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None:
            if name not in self._builders:
                raise KeyError(name)
            array = self._arrays[name] = self._builders[name]()
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._BUILT + self._STORED)

    def __len__(self) -> int:
        return len(self._BUILT) + len(self._STORED)

    @property
    def size(self) -> int:
        """Number of parts."""
        return int(self._stored["part_version"].size)

    @property
    def stored(self) -> dict[str, np.ndarray]:
        """The kernels' own arrays, as written (read them, never write): the stored arrays
        above, ``flags``, the later parts' ``extra_log``, ``extra_no``, ``extra_start`` and
        ``extra_end``, and the drawdown's ``seg_part``, ``seg_need`` and ``seg_got``."""
        return self._stored

    @property
    def log_starts(self) -> np.ndarray:
        """Start of each log of the batch (int64 epoch seconds): the first parts' starts."""
        return self._start

    @property
    def log_ends(self) -> np.ndarray:
        """End of each log of the batch (int64 epoch seconds)."""
        return self._end

    def result_columns(self, threads: int = 1) -> part_results.PartColumns:
        """The computed columns of the per-part result batch: one fused pass over the parts
        on ``threads`` threads."""
        book = self._book
        return part_results.part_columns(
            self._stored, self._end, self._tables, book.version_number, book.mode, threads
        )

    def _part_log(self) -> np.ndarray:
        n = self._start.size
        return np.concatenate([np.arange(n, dtype=np.int32), self._stored["extra_log"]])

    def _part_no(self) -> np.ndarray:
        return np.concatenate([np.zeros(self._start.size, np.int8), self._stored["extra_no"]])

    def _part_start(self) -> np.ndarray:
        return np.concatenate([self._start, self._stored["extra_start"]]).astype(np.int64)

    def _part_end(self) -> np.ndarray:
        extra_log, extra_no = self._stored["extra_log"], self._stored["extra_no"]
        first = np.array(self._end, np.int64)
        cut = extra_no == 1  # a split log's first part ends where its second starts
        first[extra_log[cut]] = self._stored["extra_start"][cut]
        return np.concatenate([first, self._stored["extra_end"]])

    def _billed(self) -> np.ndarray:
        t = self._tables
        billed = np.empty((self.size, 4), np.int32)
        billed_parts(
            self._stored["actual"],
            self._stored["part_version"],
            t["increment"],
            t["mode"],
            t["minimum"],
            billed,
        )
        return billed

    def _drawn(self) -> tuple[np.ndarray, np.ndarray]:
        """``covered`` and ``overage`` seconds per part: the billed seconds of priced,
        billable, in-scope parts of fixed-price and scope contracts; what the drawdown
        covered of a drawing part and the rest."""
        if "covered" not in self._arrays:
            log = self["part_log"]
            mode = self._book.mode[self._stored["log_contract"]][log]
            billable = self._stored["log_billable"][log] == K.BILLABLE
            flags = self._stored["flags"]
            fixed = ((flags & np.int8(7)) == K.PRICED) & billable & (mode == K.MODE_COVERED)
            covered = np.where(fixed, self["billed"].sum(axis=1, dtype=np.int64), 0)
            overage = np.zeros(self.size, np.int64)
            drawing = self._stored["seg_part"]
            got = self._stored["seg_got"].astype(np.int64)
            covered[drawing] = got
            overage[drawing] = self._stored["seg_need"] - got
            self._arrays["covered"], self._arrays["overage"] = covered, overage
        return self._arrays["covered"], self._arrays["overage"]


class Classification:
    """The result of :func:`classify`: line aggregates, and per-part results as NumPy arrays
    (``parts``) with the Arrow batch :attr:`results` built from them on first access.

    ``slot_keys`` (``(parts, 4)``, only with ``evidence=True``) holds the packed key of each
    line a part feeds (-1 = none), matching ``line_keys``.
    """

    def __init__(
        self,
        book: ContractBook,
        logs: pa.Table | pa.RecordBatch,
        lines: pa.Table,
        line_keys: np.ndarray,
        parts: PartArrays,
        tables: dict[str, np.ndarray],
        contract_values: list[str],
        contract_codes: np.ndarray,
        slot_keys: np.ndarray | None,
        buffers: dict[str, np.ndarray] | None = None,
    ) -> None:
        self._buffers = buffers or {}
        self.book = book
        self.logs = logs
        self.lines = lines
        self.line_keys = line_keys
        self.parts: Mapping[str, np.ndarray] = parts
        self.slot_keys = slot_keys
        self._tables = tables
        self._contract_values = contract_values
        self._contract_codes = contract_codes
        self._results: pa.Table | None = None
        self._columns: part_results.PartColumns | None = None

    def _release(self) -> dict[str, np.ndarray]:
        """Hand this classification's arrays to the next call; this one is emptied."""
        buffers, self._buffers = self._buffers, {}
        self.parts = {}
        self.slot_keys = None
        self._columns = None
        return buffers

    @property
    def part_log(self) -> np.ndarray:
        """Row of the input batch each part comes from."""
        return self.parts["part_log"]

    def _part_arrays(self) -> PartArrays:
        if not isinstance(self.parts, PartArrays):
            raise ValueError("this classification's per-part arrays were recycled (reuse=)")
        return self.parts

    def _result_columns(self) -> part_results.PartColumns:
        if self._columns is None:
            self._columns = self._part_arrays().result_columns()
        return self._columns

    def rates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per part and time condition ``(parts, 4)``: the resolved rate (minor units per hour)
        and the line label (:class:`Condition` code). Read-only views of the result columns."""
        columns = self._result_columns()
        rates = columns.wide[part_results.RATE : part_results.RATE + K.N_TIME].T
        labels = columns.codes[part_results.LABEL : part_results.LABEL + K.N_TIME].T
        return rates, labels

    def amount_numerators(self) -> np.ndarray:
        """Per part: Σ billed seconds × rate (amount × 3600, minor units), as the lines price it:
        time conditions at their rates, out-of-scope at ``OUT_OF_SCOPE``, overage at
        ``ADDITIONAL_HOURS``; zero for covered, non-billable, warranty and unpriced parts.
        A read-only view of the result column."""
        return self._result_columns().wide[part_results.AMOUNT]

    @property
    def results(self) -> pa.Table:
        """The per-part result batch (:data:`~effigate_engine.ratecard.schemas.LOG_RESULTS`),
        built on first access, single-threaded (:meth:`build_results` takes threads)."""
        if self._results is None:
            self._results = self.build_results()
        return self._results

    def build_results(self, threads: int = 1) -> pa.Table:
        """Build the per-part result batch (again), its columns computed on ``threads``
        threads (the kernels release the GIL); :attr:`results` then returns it. The first
        parts' log ids, starts and contract codes are the input batch's own buffers (no copy),
        the later parts of split logs a second chunk."""
        parts = self._part_arrays()
        self._columns = parts.result_columns(threads)
        self._results = part_results.results_table(
            self._columns,
            self.logs.column("log_id"),
            parts.log_starts,
            self._contract_codes,
            self._contract_values,
            parts.stored,
            LABEL_NAMES,
        )
        return self._results


class WorkBuffers:
    """Work and result arrays of one classification. Handed to the next :func:`classify` call
    through ``reuse=``, they are recycled instead of allocated: fresh memory costs a page fault
    per page on first touch, a large share of a big batch's time."""

    def __init__(self, previous: Classification | None) -> None:
        self.pool: dict[str, np.ndarray] = {}
        self.spare: dict[str, np.ndarray] = {}
        if previous is not None:
            self.spare = previous._release()

    def get(
        self, name: str, shape: tuple[int, ...], dtype: type, *, zero: bool = False
    ) -> np.ndarray:
        """An array of ``shape`` (zero-filled when asked), recycled when a spare one fits."""
        size = int(np.prod(shape))
        spare = self.spare.pop(name, None)
        if spare is not None and spare.dtype == np.dtype(dtype) and spare.size >= size:
            array = spare.reshape(-1)[:size].reshape(shape)
            if zero:
                array.fill(0)
            base = spare
        else:
            array = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
            base = array
        self.pool[name] = base
        return array
