"""Classification of time logs: Arrow batch in, per-part results and line aggregates out.

Pipeline (``DESIGN.md`` §5–§6), each step over whole arrays:

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
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import _clock, clock
from effigate_engine.calendar_set import CalendarSet, Horizon
from effigate_engine.errors import BatchError, ConfigurationError
from effigate_engine.instants import to_column
from effigate_engine.money import SECONDS_PER_HOUR
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard import part_results
from effigate_engine.ratecard.calendars import condition_calendars, precedence_calendars
from effigate_engine.ratecard.contracts import Contract, ContractType, OutOfScope
from effigate_engine.ratecard.drawdown import draw_down
from effigate_engine.ratecard.log_ids import repeated_id
from effigate_engine.ratecard.model import (
    PRECEDENCE_DEFAULT,
    PRIORITIES,
    TIME_CONDITIONS,
    Condition,
    IncrementMode,
    RateCard,
    normalise_priority,
)
from effigate_engine.ratecard.period_split import split_parts
from effigate_engine.ratecard.periods import Period, local_midnight
from effigate_engine.ratecard.pricing import billed_parts, price_parts
from effigate_engine.ratecard.schemas import TIME_LINES, TIME_LOGS_REQUIRED

_FOREVER = np.iinfo(np.int64).max
#: Largest dense line array (entries of int64 seconds); larger key spaces use the hash table.
DENSE_MAX_ENTRIES = 1 << 23
#: Step of the period-search hints as a power of two (2**19 s ≈ 6 days), and the most hint
#: entries a book keeps (the step grows past it: the forward scan from a hint is then longer,
#: never wrong).
HINT_SHIFT = 19
HINT_MAX_ENTRIES = 1 << 22
#: Most day rows (triples × days) of the condition tables (2**17 rows: 10 triples over 35
#: years, 2 MiB, built by ≈ 40 M clock evaluations).
CONDITION_MAX_DAYS = 1 << 17
#: The condition tables cover whole blocks of this many days (from the epoch).
CONDITION_BLOCK_DAYS = 64
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
_LABEL_NAMES = tuple(c.name for c in Condition)
_MODES = {
    ContractType.HOURLY: K.MODE_PRICED,
    ContractType.BUCKET: K.MODE_DRAWDOWN,
    ContractType.RECURRING: K.MODE_DRAWDOWN,
    ContractType.FIXED_PRICE: K.MODE_COVERED,
    ContractType.SCOPE: K.MODE_COVERED,
}


@dataclass(frozen=True)
class _CardTables:
    rate: np.ndarray  # (L, J, 4, 2) minor units per hour
    label: np.ndarray  # (L, J, 4, 2) Condition code
    applied: np.ndarray  # (L, J, 4, 2) priority modifier applied
    known: np.ndarray  # (L, J) a base rate exists
    oos: np.ndarray  # (L, J)
    additional: np.ndarray  # (L, J)
    priority: np.ndarray  # (L, J) the HIGH_PRIORITY line rate under ``max``
    high: np.ndarray  # (P,) priority triggers HIGH_PRIORITY


def _card_tables(
    card: RateCard, levels: Sequence[str], jobs: Sequence[str], priorities: Sequence[str]
) -> _CardTables:
    nl, nj = len(levels), len(jobs)
    rate = np.zeros((nl, nj, 4, 2), np.int64)
    label = np.zeros((nl, nj, 4, 2), np.int8)
    applied = np.zeros((nl, nj, 4, 2), np.uint8)
    known = np.zeros((nl, nj), np.bool_)
    oos = np.zeros((nl, nj), np.int64)
    additional = np.zeros((nl, nj), np.int64)
    priority = np.zeros((nl, nj), np.int64)
    for a, level in enumerate(levels):
        for b, job in enumerate(jobs):
            base = card.base_rate(level, job)
            if base is None:
                continue
            known[a, b] = True
            oos[a, b] = card.portion_rate(base, Condition.OUT_OF_SCOPE)
            additional[a, b] = card.portion_rate(base, Condition.ADDITIONAL_HOURS)
            priority[a, b] = card.portion_rate(base, Condition.HIGH_PRIORITY)
            for cond in TIME_CONDITIONS:
                for hp in (0, 1):
                    r, lab, app = card.resolve(base, cond, bool(hp))
                    rate[a, b, cond, hp] = r
                    label[a, b, cond, hp] = int(lab)
                    applied[a, b, cond, hp] = app
    high = np.array([card.is_high_priority(p) for p in priorities], np.uint8)
    return _CardTables(rate, label, applied, known, oos, additional, priority, high)


@dataclass(frozen=True)
class _VersionRef:
    contract: int
    number: int
    content_hash: str
    card: RateCard


class ContractBook:
    """The contracts a classification run prices, compiled once: their frozen rate-card
    versions, condition calendars (one :class:`CalendarSet`) and period boundaries.

    Reuse a book across batches: compiled calendars and rate tables are cached in it.
    """

    def __init__(self, contracts: Sequence[Contract], horizon: Horizon | None = None) -> None:
        if not contracts:
            raise ConfigurationError("contracts", [], "is empty")
        self.horizon = horizon or Horizon()
        self.contracts: tuple[Contract, ...] = tuple(contracts)
        self.index: dict[str, int] = {}
        for i, c in enumerate(self.contracts):
            if not c.is_active and c.status.value not in ("EXPIRED", "TERMINATED"):
                raise ConfigurationError(f"contracts[{i}]", c.id, "is not activated")
            if c.id in self.index:
                raise ConfigurationError(f"contracts[{i}].id", c.id, "appears twice")
            self.index[c.id] = i
        self.versions: list[_VersionRef] = []
        self.ver_first = np.zeros(len(self.contracts), np.int64)
        self.ver_last = np.zeros(len(self.contracts), np.int64)
        starts: list[int] = []
        for i, c in enumerate(self.contracts):
            self.ver_first[i] = len(self.versions)
            for v, t in zip(c.versions, c.version_starts(), strict=True):
                self.versions.append(_VersionRef(i, v.version, v.content_hash, v.card))
                starts.append(t)
            self.ver_last[i] = len(self.versions)
            if len(c.versions) > 255:
                raise ConfigurationError(f"contracts[{i}].versions", len(c.versions), "> 255")
        self.ver_starts = np.array(starts, np.int64)
        self.version_contract = np.array([r.contract for r in self.versions], np.int64)
        self.version_number = np.array([r.number for r in self.versions], np.int32)
        by_id = sorted(range(len(self.contracts)), key=lambda i: self.contracts[i].id)
        self.contract_rank = np.argsort(np.array(by_id, np.int64))
        if len(self.versions) >= 1 << K.KEY_BITS[0]:
            raise ConfigurationError("contracts", len(self.versions), "too many card versions")
        # Condition calendars, one triple per distinct (calendar, weekend days).
        triples: dict[tuple[str, tuple[int, ...]], int] = {}
        calendars = []
        cal_of_version = np.zeros((len(self.versions), 3), np.int64)
        for g, ref in enumerate(self.versions):
            contract = self.contracts[ref.contract]
            key = (_calendar_key(contract), ref.card.weekend_days)
            if key not in triples:
                derived = condition_calendars(
                    contract.calendar, ref.card.weekend_days, self.horizon
                )
                triples[key] = len(calendars)
                calendars += [derived.holiday, derived.nonworking, derived.regular]
            base = triples[key]
            cal_of_version[g] = (base, base + 1, base + 2)
        self.cal_holiday, self.cal_nonworking, self.cal_regular = (
            np.ascontiguousarray(cal_of_version[:, j]) for j in range(3)
        )
        self.n_triples = len(calendars) // 3
        # Cards with a non-default precedence: two more calendars per (calendar, weekend days)
        # split time by which conditions apply (``calendars.precedence_calendars``).
        pairs: dict[tuple[str, tuple[int, ...]], int] = {}
        #: Per version: its (holiday-on-weekend, open-days) calendars, or -1 (default order).
        self.cal_precedence = np.full((len(self.versions), 2), -1, np.int64)
        for g, ref in enumerate(self.versions):
            if ref.card.precedence == PRECEDENCE_DEFAULT:
                continue
            contract = self.contracts[ref.contract]
            key = (_calendar_key(contract), ref.card.weekend_days)
            if key not in pairs:
                extra = precedence_calendars(contract.calendar, ref.card.weekend_days, self.horizon)
                pairs[key] = len(calendars)
                calendars += [extra.holiday_weekend, extra.open_days]
            self.cal_precedence[g] = (pairs[key], pairs[key] + 1)
        self._winners: dict[tuple, np.ndarray] = {}
        #: Per version: its condition triple (holiday, non-working, regular calendars).
        self.version_triple = self.cal_holiday // 3
        self.calendar_set = CalendarSet(calendars, self.horizon)
        self._conditions: tuple[int, int, np.ndarray, np.ndarray] | None = None
        self.mode = np.array([_mode(c) for c in self.contracts], np.int8)
        #: Burn factors (basis points) per contract: columns 0..3 per time condition, 4..7 the
        #: same for a high-priority log (the higher of the condition's and the priority's).
        self.burn = np.full((len(self.contracts), 2 * K.N_TIME), 10_000, np.int64)
        for i, c in enumerate(self.contracts):
            if c.bucket is not None and c.type == ContractType.BUCKET:
                for cond in TIME_CONDITIONS:
                    self.burn[i, cond] = c.bucket.burn(cond)
                    self.burn[i, K.N_TIME + cond] = c.bucket.priority_burn(cond)
        self._card_cache: dict[tuple, dict[str, _CardTables]] = {}
        self._grants: tuple[list[list[Period]], tuple[np.ndarray, ...]] | None = None
        self._periods: dict[
            date, tuple[list[list[Period]], np.ndarray, np.ndarray, np.ndarray]
        ] = {}
        self._hints: tuple[np.ndarray, tuple[np.ndarray, int, int]] | None = None
        self._period_seconds = 0
        self._rows: tuple[tuple[int, ...], np.ndarray] | None = None

    # Periods --------------------------------------------------------------------------------

    def period_offsets(self, periods: list[list[Period]]) -> np.ndarray:
        """Index of each contract's first period in the flattened period list."""
        sizes = np.array([len(p) for p in periods], np.int64)
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def vp_offsets(self, periods: list[list[Period]]) -> np.ndarray:
        """Offset of each version's periods in the flattened (version, period) slots; the last
        entry is the number of slots."""
        sizes = np.array([len(periods[r.contract]) for r in self.versions], np.int64)
        out = np.zeros(len(self.versions) + 1, np.int64)
        np.cumsum(sizes, out=out[1:])
        return out

    def period_days(self, periods: list[list[Period]]) -> tuple[np.ndarray, ...]:
        """Flattened period starts and ends (days since 1970-01-01) and ordinals."""
        flat = [p for ps in periods for p in ps]
        epoch = date(1970, 1, 1)
        return (
            np.array([(p.start - epoch).days for p in flat], np.int64),
            np.array([(p.end - epoch).days for p in flat], np.int64),
            np.array([p.ordinal for p in flat], np.int64),
        )

    def periods(self, until: date) -> tuple[list[list[Period]], np.ndarray, np.ndarray, np.ndarray]:
        """Every contract's periods through the one holding ``until``, and their boundaries as
        flat epoch seconds (period starts plus the last end) with CSR offsets."""
        if until not in self._periods:
            per: list[list[Period]] = []
            flat: list[int] = []
            first = np.zeros(len(self.contracts), np.int64)
            last = np.zeros(len(self.contracts), np.int64)
            for i, c in enumerate(self.contracts):
                ps = c.cycle.periods_until(until)
                if len(ps) >= 1 << K.KEY_BITS[1]:
                    raise ConfigurationError("periods", len(ps), "too many billing periods")
                per.append(ps)
                first[i] = len(flat)
                flat += [local_midnight(p.start, c.zone) for p in ps]
                flat.append(local_midnight(ps[-1].end, c.zone))
                last[i] = len(flat)
            bounds = np.array(flat, np.int64)
            longest = 0
            for i in range(len(self.contracts)):
                longest = max(longest, int(np.diff(bounds[first[i] : last[i]]).max()))
            self._period_seconds = longest
            self._periods = {until: (per, first, last, bounds)}
        return self._periods[until]

    def part_seconds_bound(self, tables: dict[str, np.ndarray]) -> int:
        """An upper bound of any part's billed and burn-weighted seconds under the periods of
        the last :meth:`periods` call: a part lies inside one period, rounding adds less than
        an increment, the minimum is a floor, and burn weighting multiplies by at most the
        largest burn factor (plus half a second per condition)."""
        billed = max(
            int(tables["minimum"].max()),
            self._period_seconds + int(tables["increment"].max()),
        )
        return billed * max(int(self.burn.max()), K.BP) // K.BP + K.N_TIME

    def period_hints(self, until: date) -> tuple[np.ndarray, int, int]:
        """Where the search for a start's period begins: ``(hint, origin, shift)`` with
        ``hint[c, w]`` the index in the flat boundaries of :meth:`periods` of contract ``c``'s
        last boundary at or before ``origin + (w << shift)`` (epoch seconds; steps of
        ``2**shift`` seconds, at least :data:`HINT_SHIFT`), or its first boundary. Cached with
        the periods."""
        _, first, last, flat = self.periods(until)
        if self._hints is None or self._hints[0] is not flat:
            origin = self.horizon.start
            span = self.horizon.end - origin
            shift = HINT_SHIFT
            while (span >> shift) * len(self.contracts) > HINT_MAX_ENTRIES:
                shift += 1
            steps = (np.arange((span >> shift) + 1, dtype=np.int64) << shift) + origin
            hint = np.empty((len(self.contracts), steps.size), np.int32)
            for c in range(len(self.contracts)):
                lo, hi = int(first[c]), int(last[c])
                at = np.searchsorted(flat[lo:hi], steps, side="right") - 1
                hint[c] = np.clip(at, 0, hi - lo - 2) + lo
            self._hints = (flat, (hint, origin, shift))
        return self._hints[1]

    # Condition tables -----------------------------------------------------------------------

    def conditions(self, lo: int, hi: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Condition tables covering ``[lo, hi]`` (epoch seconds): the cumulative open seconds
        of every condition triple's calendars, measured by the clock at every slot bound
        (``SLOT_SECONDS`` apart) from ``origin``, a UTC midnight. Returns ``(origin, days,
        profiles)``:

        * ``days[g, d]`` (int32): the (non-working, regular, holiday) seconds of triple ``g``
          from ``origin`` to the start of UTC day ``d``, and the row in ``profiles`` of the
          day's first slot;
        * ``profiles[r]`` (int64): ``(cumulative, slope)`` of one slot of a day profile: the
          three seconds from the day's start to the slot's start, packed
          :data:`~kernels.PACK_BITS` bits apart, and per calendar 1 if open all through the
          slot (0 if closed), packed alike, or -1 if a calendar opens or closes inside it.

        Days with equal profiles share one (weekdays, weekends, holidays, DST offsets), so
        the tables stay in cache. Cached; a span not covered grows the tables to the union
        (at most :data:`CONDITION_MAX_DAYS` day rows; beyond that, to the span alone). A span
        too long for them gets an empty ``days``: the clock then measures every part."""
        day, slot, bits = K.SECONDS_PER_DAY, K.SLOT_SECONDS, K.PACK_BITS
        cached = self._conditions
        if cached is not None and cached[0] <= lo and hi <= cached[1]:
            return cached[0], cached[2], cached[3]
        triples = self.n_triples
        a, z = lo, hi
        if cached is not None:
            a, z = min(lo, cached[0]), max(hi, cached[1])
            if (z - a) // day * triples > CONDITION_MAX_DAYS:
                a, z = lo, hi
        # Whole blocks of CONDITION_BLOCK_DAYS, so batches streaming forward rebuild rarely.
        block = CONDITION_BLOCK_DAYS * day
        a = max(a // block * block, self.horizon.start)
        z = min(-(-z // block) * block, self.horizon.end)
        n_days = (z - a) // day
        slots = K.SLOTS_PER_DAY
        if (n_days + 1) * triples > CONDITION_MAX_DAYS or n_days * day >= 1 << 31:
            return a, np.zeros((triples, 0, 4), np.int32), np.zeros((1, 2), np.int64)
        bounds = np.arange(a, z + 1, slot, dtype=np.int64)
        starts = np.full(bounds.size, a, np.int64)
        cumulative = np.empty((triples, 3, bounds.size), np.int64)
        for g in range(triples):
            for col, cal in enumerate((3 * g + 1, 3 * g + 2, 3 * g)):
                calendar = np.full(bounds.size, cal, np.int64)
                _elapsed(self.calendar_set, calendar, starts, bounds, cumulative[g, col])
        # Per (triple, day): the seconds at each slot bound of the day from the day's start.
        at = np.arange(n_days)[:, None] * slots + np.arange(slots + 1)[None, :]
        within = cumulative[:, :, at]  # (triples, 3, days, slots + 1)
        within = within - within[:, :, :, :1]
        shapes = within.transpose(0, 2, 1, 3).reshape(triples * n_days, 3 * (slots + 1))
        seen: dict[bytes, int] = {}
        profile = np.array([seen.setdefault(row.tobytes(), len(seen)) for row in shapes])
        _, first = np.unique(profile, return_index=True)  # ids count up from 0
        unique = shapes[first].reshape(-1, 3, slots + 1)
        width = np.diff(unique, axis=2)  # (profiles, 3, slots)
        packed = np.zeros((unique.shape[0], slots + 1, 2), np.int64)
        for col in range(3):
            packed[:, :, 0] |= unique[:, col] << (bits * col)
            packed[:, :slots, 1] |= (width[:, col] == slot).astype(np.int64) << (bits * col)
        mixed = ((width > 0) & (width < slot)).any(axis=1)
        packed[:, :slots, 1][mixed] = -1
        days = np.zeros((triples, n_days + 1, 4), np.int32)
        days[:, :, :3] = cumulative[:, :, ::slots].transpose(0, 2, 1)
        days[:, :n_days, 3] = profile.reshape(triples, n_days) * (slots + 1)
        self._conditions = (a, z, days, packed.reshape(-1, 2))
        return a, days, self._conditions[3]

    # Rate tables ----------------------------------------------------------------------------

    def tables(
        self, levels: tuple[str, ...], jobs: tuple[str, ...], priorities: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """Rate, label and scope tables for a batch's vocabularies, cached per vocabulary."""
        key = (levels, jobs, priorities)
        if key in self._card_cache:
            return self._card_cache[key]  # type: ignore[return-value]
        by_hash: dict[str, _CardTables] = {}
        for ref in self.versions:
            if ref.content_hash not in by_hash:
                by_hash[ref.content_hash] = _card_tables(ref.card, levels, jobs, priorities)
        per = [by_hash[ref.content_hash] for ref in self.versions]
        scopes: dict[tuple, np.ndarray] = {}
        scope_rows = []
        for c in self.contracts:
            s = c.scope
            skey = (s.support_levels, s.job_types, s.out_of_scope)
            if skey not in scopes:
                table = np.zeros((len(levels), len(jobs)), np.int8)
                outside = (
                    K.SCOPE_REJECTED if s.out_of_scope == OutOfScope.REJECT else (K.SCOPE_PRICED)
                )
                for a, level in enumerate(levels):
                    for b, job in enumerate(jobs):
                        if not s.allows(level, job):
                            table[a, b] = outside
                scopes[skey] = table
            scope_rows.append(scopes[skey])
        out = {
            "rate": np.ascontiguousarray(np.stack([t.rate for t in per])),
            "label": np.ascontiguousarray(np.stack([t.label for t in per])),
            "applied": np.ascontiguousarray(np.stack([t.applied for t in per])),
            "known": np.ascontiguousarray(np.stack([t.known for t in per])),
            "oos": np.ascontiguousarray(np.stack([t.oos for t in per])),
            "additional": np.ascontiguousarray(np.stack([t.additional for t in per])),
            "priority": np.ascontiguousarray(np.stack([t.priority for t in per])),
            "high": np.ascontiguousarray(np.stack([t.high for t in per])),
            # Per version and priority: a bucket burns the priority's time at the high-priority
            # factor (the priority is among the card's high priorities; no rule needed).
            "burns_high": np.array(
                [[p in r.card.high_priorities for p in priorities] for r in self.versions],
                np.uint8,
            ).reshape(len(self.versions), len(priorities)),
            "scope": np.ascontiguousarray(np.stack(scope_rows)),
            "increment": np.array([r.card.increment_seconds for r in self.versions], np.int64),
            "mode": np.array(
                [
                    K.ROUND_UP if r.card.increment_mode == IncrementMode.UP else K.ROUND_NEAREST
                    for r in self.versions
                ],
                np.int64,
            ),
            "minimum": np.array([r.card.minimum_seconds for r in self.versions], np.int64),
        }
        self._card_cache[key] = out  # type: ignore[assignment]
        return out

    def pricing_rows(
        self,
        tables: dict[str, np.ndarray],
        vp_offset: np.ndarray,
        n_levels: int,
        n_jobs: int,
        dense: bool,
    ) -> np.ndarray:
        """One int64 row of 4 per (version, level, job) with what :func:`kernels.price_parts`
        needs of it (layout ``kernels.ROW_*`` and ``kernels.INFO_*``): the dense index of its
        first line slot (when ``dense``), its packed line-key prefix, the card's increment and
        minimum (seconds, each below ``2**31``: checked by :meth:`part_seconds_bound`), and
        the bit fields of scope, contract mode, increment mode, base known, the priority flag
        per priority and the line code of each time condition with and without it. Cached for
        the last (tables, periods, dense) combination."""
        key = (id(tables), id(vp_offset), int(vp_offset[-1]), n_levels, n_jobs, dense)
        if self._rows is not None and self._rows[0] == key:
            return self._rows[1]
        n_versions = len(self.versions)
        v = np.arange(n_versions, dtype=np.int64)[:, None, None]
        lv = np.arange(n_levels, dtype=np.int64)[None, :, None]
        jb = np.arange(n_jobs, dtype=np.int64)[None, None, :]
        shape = (n_versions, n_levels, n_jobs)
        rows = np.zeros((*shape, 4), np.int64)
        if dense:
            rows[..., K.ROW_DENSE] = ((vp_offset[:-1][v] * n_levels + lv) * n_jobs + jb) * (
                K.LABEL_SLOTS
            )
        rows[..., K.ROW_KEY] = (v << K.SHIFT_VERSION) | (lv << K.SHIFT_LEVEL) | (jb << K.SHIFT_JOB)
        rows[..., K.ROW_ROUNDING] = np.broadcast_to(
            tables["increment"][v] | (tables["minimum"][v] << 32), shape
        )
        contract = self.version_contract[v]
        known = tables["known"].astype(np.int64)  # (versions, levels, jobs) like ``shape``
        scope = tables["scope"][self.version_contract].astype(np.int64)
        high = tables["high"].astype(np.int64)
        high_mask = (high << np.arange(high.shape[1], dtype=np.int64)).sum(axis=1)
        burns = tables["burns_high"].astype(np.int64)
        burn_mask = (burns << np.arange(burns.shape[1], dtype=np.int64)).sum(axis=1)
        info = (
            scope
            | self.mode.astype(np.int64)[contract] << K.INFO_MODE
            | tables["mode"][v] << K.INFO_ROUND
            | known << K.INFO_KNOWN
            | high_mask[v] << K.INFO_HIGH
            | burn_mask[v] << K.INFO_BURN_HIGH
        )
        label = tables["label"].astype(np.int64)
        applied = tables["applied"].astype(np.int64)
        for hp in (0, 1):
            for cond in range(K.N_TIME):
                code = label[..., cond, hp] << 1 | applied[..., cond, hp]
                info |= code << (K.INFO_CODES + K.CODE_BITS * (K.N_TIME * hp + cond))
        rows[..., K.ROW_INFO] = info
        out = np.ascontiguousarray(rows.reshape(-1, 4))
        self._rows = (key, out)
        return out

    def winners(
        self,
        version: np.ndarray,
        level: np.ndarray,
        job: np.ndarray,
        levels: Sequence[str],
        jobs: Sequence[str],
    ) -> np.ndarray:
        """Per (version, level, job) given: the time condition (code 0..3) that prices each of
        the six classes of time of :data:`_CLASS_CONDITIONS` under the version card's
        precedence, ``(len(version), 6)`` int8. A pair with no base rate gets the default
        order (the pricing pass refuses it)."""
        rows = (version.astype(np.int64) * len(levels) + level) * max(len(jobs), 1) + job
        unique, inverse = np.unique(rows, return_inverse=True)
        table = np.empty((unique.size, len(_CLASS_CONDITIONS)), np.int8)
        for u, row in enumerate(unique.tolist()):
            v, rest = divmod(row, len(levels) * max(len(jobs), 1))
            lv, jb = divmod(rest, max(len(jobs), 1))
            card = self.versions[v].card
            key = (self.versions[v].content_hash, levels[lv], jobs[jb])
            if key not in self._winners:
                base = card.base_rate(levels[lv], jobs[jb])
                self._winners[key] = np.array(
                    [
                        card.winning_condition(base, applies)
                        if base is not None
                        else max(applies, default=Condition.REGULAR)
                        for applies in _CLASS_CONDITIONS
                    ],
                    np.int8,
                )
            table[u] = self._winners[key]
        return table[inverse.reshape(-1)]

    # Grants ---------------------------------------------------------------------------------

    def grants(self, periods: list[list[Period]]) -> tuple[np.ndarray, ...]:
        """Every drawdown contract's grants in consumption order (oldest first), CSR by
        contract: ``(first, last, from, until, seconds, capped, rollover_cap)`` — ``capped``
        marks per-period bucket grants, ``rollover_cap`` is per contract (seconds, -1 =
        none). Seconds are burn-weighted seconds. Cached for the current period lists;
        callers consume a copy of the seconds."""
        cached = self._grants
        if cached is not None and cached[0] is periods:
            return cached[1]
        first = np.zeros(len(self.contracts), np.int64)
        last = np.zeros(len(self.contracts), np.int64)
        cap = np.full(len(self.contracts), -1, np.int64)
        rows: list[tuple[int, int, int, int]] = []
        for i, c in enumerate(self.contracts):
            first[i] = len(rows)
            rows.extend(sorted(contract_grants(c, periods[i])))
            last[i] = len(rows)
            if c.bucket is not None and c.bucket.rollover_cap_seconds is not None:
                cap[i] = c.bucket.rollover_cap_seconds
        arr = np.array(rows, np.int64).reshape(-1, 4)
        out = (
            first,
            last,
            np.ascontiguousarray(arr[:, 0]),
            np.ascontiguousarray(arr[:, 1]),
            np.ascontiguousarray(arr[:, 2]),
            np.ascontiguousarray(arr[:, 3] == GRANT_PERIOD),
            cap,
        )
        self._grants = (periods, out)
        return out


def _mode(contract: Contract) -> int:
    """Pricing mode of a contract: a recurring contract without included hours bills its time
    as time and materials."""
    if contract.type == ContractType.RECURRING and (
        contract.recurring is None or contract.recurring.included_seconds is None
    ):
        return K.MODE_PRICED
    return _MODES[contract.type]


def _calendar_key(contract: Contract) -> str:
    return json.dumps(contract.calendar.to_json(), sort_keys=True)


#: Grant kinds: purchased (or included) seconds, top-ups added by amendments, and a
#: per-period bucket's grant of one period (the grants a rollover cap trims).
GRANT_PURCHASE, GRANT_TOP_UP, GRANT_PERIOD = 0, 1, 2


def contract_grants(
    contract: Contract, periods: Sequence[Period]
) -> list[tuple[int, int, int, int]]:
    """Grants of a contract as ``(from, until, seconds, kind)``: the purchased bucket (once, or
    every period with rollover), top-ups from their effective date, or a recurring contract's
    included seconds per period. Instants are epoch seconds; seconds are burn-weighted."""
    zone = contract.zone
    end = local_midnight(contract.end, zone) if contract.end else _FOREVER
    out: list[tuple[int, int, int, int]] = []
    if contract.type == ContractType.BUCKET and contract.bucket is not None:
        b = contract.bucket
        if b.per_period:
            for p in periods:
                until = contract.cycle.period(p.ordinal + b.rollover_periods).end
                out.append(
                    (
                        local_midnight(p.start, zone),
                        local_midnight(until, zone),
                        b.size_seconds,
                        GRANT_PERIOD,
                    )
                )
        else:
            out.append((local_midnight(contract.start, zone), end, b.size_seconds, GRANT_PURCHASE))
        for t in contract.top_ups:
            out.append((local_midnight(t.effective, zone), end, t.seconds, GRANT_TOP_UP))
    elif (
        contract.type == ContractType.RECURRING
        and contract.recurring is not None
        and contract.recurring.included_seconds is not None
    ):
        for p in periods:
            a, z = p.bounds(zone)
            out.append((a, z, contract.recurring.included_seconds, GRANT_PURCHASE))
    return out


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
            _LABEL_NAMES,
        )
        return self._results


class _Buffers:
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


def _categorical(batch: pa.Table | pa.RecordBatch, name: str) -> tuple[np.ndarray, list[str]]:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    if col.null_count:
        raise BatchError(
            name, int(np.flatnonzero(col.is_null().to_numpy(False))[0]), None, "is null"
        )
    indices = col.indices.to_numpy(zero_copy_only=False)
    return indices, [str(x) for x in col.dictionary.to_pylist()]


def _instants(batch: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    col = to_column(batch.column(name), name)
    if col.nulls is not None and col.nulls.any():
        raise BatchError(name, int(np.flatnonzero(col.nulls)[0]), None, "is null")
    return col.values


def _remap(
    codes: np.ndarray,
    values: list[str],
    mapping: dict[str, int],
    name: str,
    dtype: type,
    out: np.ndarray | None = None,
) -> np.ndarray:
    lookup = np.empty(len(values), dtype)
    for j, v in enumerate(values):
        if v not in mapping:
            used = np.flatnonzero(codes == j)
            if used.size:
                raise BatchError(name, int(used[0]), v, f"is not one of {sorted(mapping)}")
            lookup[j] = 0
        else:
            lookup[j] = mapping[v]
    if out is None:
        return lookup[codes]
    K.remap_codes(lookup, np.ascontiguousarray(codes), out)
    return out


def _string_buffers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and UTF-8 bytes of a string column, as NumPy views (no copy for ``string`` and
    ``large_string`` columns; other types are cast to ``string`` first)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())
    if column.null_count:
        raise BatchError(
            "log_id", int(np.flatnonzero(column.is_null().to_numpy(False))[0]), None, "is null"
        )
    wide = pa.types.is_large_string(column.type)
    dtype = np.int64 if wide else np.int32
    _, offsets, data = column.buffers()
    offsets = np.frombuffer(
        offsets, dtype, len(column) + 1, column.offset * np.dtype(dtype).itemsize
    )
    bytes_ = np.frombuffer(data, np.uint8) if data is not None else np.zeros(1, np.uint8)
    return offsets, bytes_


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
    buffers = _Buffers(reuse)
    for name in TIME_LOGS_REQUIRED:
        if name not in logs.schema.names:
            raise BatchError(name, 0, None, "is a required time-log column")
    n = logs.num_rows
    if n == 0:
        raise BatchError("logs", 0, 0, "is an empty batch")
    id_offsets, id_data = _string_buffers(_string_column(logs, "log_id"))
    first, again = repeated_id(
        id_offsets,
        id_data,
        buffers.get("id_hashes", (n,), np.uint64),
        buffers.get("id_spread", (n,), np.uint64),
        buffers.get("id_order", (n,), np.int32),
    )
    if again >= 0:
        ids = _string_column(logs, "log_id")
        raise BatchError(
            "log_id", again, ids[again].as_py(), f"appears twice (rows {first} and {again})"
        )
    contract_codes, contract_values = _categorical(logs, "contract_id")
    log_contract = _remap(
        contract_codes,
        contract_values,
        book.index,
        "contract_id",
        np.int32,
        buffers.get("log_contract", (n,), np.int32),
    )
    level_codes, levels = _categorical(logs, "support_level")
    job_codes, jobs = _categorical(logs, "job_type")
    prio_codes, prio_values = _categorical(logs, "priority")
    prio_map = {}
    for v in prio_values:
        with contextlib.suppress(ConfigurationError):
            prio_map[v] = PRIORITIES.index(normalise_priority(v))
    log_priority = _remap(
        prio_codes,
        prio_values,
        prio_map,
        "priority",
        np.int8,
        buffers.get("log_priority", (n,), np.int8),
    )
    bill_codes, bill_values = _categorical(logs, "billable_type")
    log_billable = _remap(
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
    start = _instants(logs, "start")
    end = _instants(logs, "end")
    log_level = np.ascontiguousarray(level_codes, np.int32)
    log_job = np.ascontiguousarray(job_codes, np.int32)
    if len(levels) >= 1 << K.KEY_BITS[2] or len(jobs) >= 1 << K.KEY_BITS[3]:
        raise BatchError("support_level", 0, len(levels), "too many distinct levels or jobs")
    log_columns = K.LogColumns(
        log_contract, start, end, log_level, log_job, log_priority, log_billable, log_approved
    )

    # 1. Period split, version choice and seconds per condition: cumulative open seconds of
    # the condition calendars, measured by the clock at slot bounds (the book's condition
    # tables); the parts whose start or end falls inside a slot where a calendar opens or
    # closes are measured by the clock itself.
    horizon = book.horizon
    latest = int(end.max())
    if int(start.min()) < horizon.start or latest > horizon.end:
        bad = int(np.flatnonzero((start < horizon.start) | (end > horizon.end))[0])
        raise BatchError("start", bad, int(start[bad]), f"is outside the horizon {horizon}")
    until = _utc_date(latest + 2 * 86_400)
    periods, b_first, b_last, bounds = book.periods(until)
    hint, hint_origin, hint_shift = book.period_hints(until)
    conditions = K.ConditionTables(*book.conditions(int(start.min()), latest))
    period_index = K.PeriodIndex(b_first, b_last, bounds, hint, hint_origin, hint_shift)
    versions = K.VersionIndex(
        book.ver_first, book.ver_last, book.ver_starts, book.version_triple, book.version_contract
    )
    extra_cap = n // 16 + 64
    while True:
        capacity = n + extra_cap
        if capacity >= PART_LIMIT:
            raise BatchError("logs", 0, capacity, f"makes {PART_LIMIT:,} parts or more")
        part_period = buffers.get("part_period", (capacity,), np.int16)
        part_version = buffers.get("part_version", (capacity,), np.int32)
        actual = buffers.get("actual", (capacity, 4), np.int32)
        extra_log = buffers.get("extra_log", (extra_cap,), np.int32)
        extra_no = buffers.get("extra_no", (extra_cap,), np.int8)
        extra_start = buffers.get("extra_start", (extra_cap,), np.int64)
        extra_end = buffers.get("extra_end", (extra_cap,), np.int64)
        deferred = buffers.get("deferred", (capacity,), np.int32)
        deferred_start = buffers.get("deferred_start", (capacity,), np.int64)
        deferred_end = buffers.get("deferred_end", (capacity,), np.int64)
        bad, m, late = split_parts(
            log_columns,
            period_index,
            versions,
            conditions,
            K.PartBuffers(
                part_period, part_version, actual, extra_log, extra_no, extra_start, extra_end
            ),
            K.DeferredParts(deferred, deferred_start, deferred_end),
        )
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
    part_period, part_version, actual = part_period[:m], part_version[:m], actual[:m]
    extra_log, extra_no = extra_log[: m - n], extra_no[: m - n]
    extra_start, extra_end = extra_start[: m - n], extra_end[: m - n]
    parts_out = K.PartBuffers(
        part_period, part_version, actual, extra_log, extra_no, extra_start, extra_end
    )
    if late:
        todo = deferred[:late]
        a, z, v = deferred_start[:late], deferred_end[:late], part_version[todo]
        seconds = []
        for cal in (book.cal_nonworking, book.cal_regular, book.cal_holiday):
            out = np.empty(late, np.int64)
            _elapsed(book.calendar_set, cal[v], a, z, out)
            seconds.append(out)
        nw, reg, hol = seconds
        actual[todo] = np.stack([reg, z - a - nw - reg, nw - hol, hol], axis=1)
    if (book.cal_precedence[:, 0] >= 0).any():
        _apply_precedence(
            book,
            actual,
            part_version,
            start,
            end,
            extra_log,
            extra_no,
            extra_start,
            extra_end,
            log_level,
            log_job,
            levels,
            jobs,
        )

    # 2. Rounding, sharing, pricing, and lines of the parts that draw nothing.
    t = book.tables(tuple(levels), tuple(jobs), tuple(PRIORITIES))
    bound = book.part_seconds_bound(t)
    if bound >= PART_LIMIT:
        raise ConfigurationError(
            "rate cards", bound, "allow part seconds (minimum × burn factor) past 2**31"
        )
    flags = buffers.get("flags", (m,), np.int8)
    draw_part = buffers.get("draw_part", (m,), np.int32)
    draw_contract = buffers.get("draw_contract", (m,), np.int32)
    draw_start = buffers.get("draw_start", (m,), np.int64)
    draw_prefix = buffers.get("draw_prefix", (m,), np.int64)
    draw_need = buffers.get("draw_need", (m,), np.int32)
    slot_keys = buffers.get("slot_keys", (m if evidence else 0, 4), np.int64)
    used = np.zeros(1, np.int64)
    table = K.new_table(K.INITIAL_BITS)
    vp_offset = book.vp_offsets(periods)
    n_levels, n_jobs = max(len(levels), 1), max(len(jobs), 1)
    dense_size = int(vp_offset[-1]) * n_levels * n_jobs * K.LABEL_SLOTS
    dense = buffers.get(
        "dense", (dense_size if dense_size <= DENSE_MAX_ENTRIES else 0,), np.int64, zero=True
    )
    if t["high"].shape[1] > K.INFO_CODES - K.INFO_HIGH:
        raise ConfigurationError("priorities", t["high"].shape[1], "too many priority codes")
    rows = book.pricing_rows(t, vp_offset, n_levels, n_jobs, bool(dense.size))
    draws = K.Draws(draw_part, draw_contract, draw_start, draw_prefix, draw_need)
    lines_sink = K.LineSink(dense, used, vp_offset, n_levels, n_jobs, slot_keys)
    table, bad, count = price_parts(
        log_columns,
        parts_out,
        book.version_contract,
        K.PricingTables(rows, book.burn),
        flags,
        draws,
        table,
        lines_sink,
    )
    if bad >= 0:
        i = bad if bad < n else int(extra_log[bad - n])
        raise BatchError(
            "support_level",
            i,
            (levels[log_level[i]], jobs[log_job[i]]),
            "has no base rate on the contract's rate card",
        )

    # 3. Drawdown in work order, and the lines of the drawing parts.
    seg_part = buffers.get("seg_part", (count,), np.int32)
    seg_need = buffers.get("seg_need", (count,), np.int32)
    seg_got = buffers.get("seg_got", (count,), np.int32)
    if count:
        g_first, g_last, g_from, g_until, g_left, g_capped, g_cap = book.grants(periods)
        table, duplicate = draw_down(
            K.Draws(*(column[:count] for column in draws)),
            n,
            parts_out,
            K.LogIds(id_offsets, id_data),
            K.Grants(g_first, g_last, g_from, g_until, g_left.copy(), g_capped, g_cap),
            table,
            lines_sink,
            K.Segments(
                seg_part,
                buffers.get("seg_start", (count,), np.int64),
                buffers.get("seg_prefix", (count,), np.int64),
                seg_need,
                seg_got,
            ),
        )
        if duplicate >= 0:
            ids = _string_column(logs, "log_id")
            raise BatchError("log_id", duplicate, ids[duplicate].as_py(), "appears twice")

    # 4. Lines.
    if dense.size:
        keys, seconds = _dense_lines(dense, vp_offset, n_levels, n_jobs)
    else:
        occupied = table[:, 0] != K.EMPTY
        keys, seconds = table[occupied, 0], table[occupied, 1]
    lines, line_keys = _lines_table(book, periods, levels, jobs, keys, seconds, t)
    parts = PartArrays(
        book,
        t,
        start,
        end,
        {
            "part_period": part_period,
            "part_version": part_version,
            "actual": actual,
            "flags": flags,
            "extra_log": extra_log,
            "extra_no": extra_no,
            "extra_start": extra_start,
            "extra_end": extra_end,
            "seg_part": seg_part,
            "seg_need": seg_need,
            "seg_got": seg_got,
            "log_contract": log_contract,
            "log_level": log_level,
            "log_job": log_job,
            "log_billable": log_billable,
        },
    )
    return Classification(
        book,
        logs,
        lines,
        line_keys,
        parts,
        t,
        contract_values,
        contract_codes,
        slot_keys if evidence else None,
        buffers.pool,
    )


#: The six classes of time by which time conditions apply (``calendars.precedence_calendars``):
#: holiday on a weekend day, other holiday (both closed), weekend open, weekend closed, closed
#: weekday, open weekday.
_CLASS_CONDITIONS = (
    frozenset({Condition.HOLIDAY, Condition.WEEKEND, Condition.AFTER_HOURS}),
    frozenset({Condition.HOLIDAY, Condition.AFTER_HOURS}),
    frozenset({Condition.WEEKEND}),
    frozenset({Condition.WEEKEND, Condition.AFTER_HOURS}),
    frozenset({Condition.AFTER_HOURS}),
    frozenset(),
)


def _apply_precedence(
    book: ContractBook,
    actual: np.ndarray,
    part_version: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    extra_log: np.ndarray,
    extra_no: np.ndarray,
    extra_start: np.ndarray,
    extra_end: np.ndarray,
    log_level: np.ndarray,
    log_job: np.ndarray,
    levels: Sequence[str],
    jobs: Sequence[str],
) -> None:
    """Re-assign the seconds of the parts priced by cards with a non-default precedence: the
    clock measures their holiday-on-a-weekend and open-days calendars, the default split gives
    the rest, and each of the six classes of time goes to the condition the card's precedence
    picks among those that apply (``RateCard.winning_condition``; ``highest`` compares rates
    on the part's base rate). In place, in ``actual``."""
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
    _elapsed(book.calendar_set, np.ascontiguousarray(cal[:, 0]), a, z, holiday_weekend)
    _elapsed(book.calendar_set, np.ascontiguousarray(cal[:, 1]), a, z, open_days)
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


def _elapsed(
    cset: CalendarSet, calendar: np.ndarray, start: np.ndarray, end: np.ndarray, out: np.ndarray
) -> None:
    """``out = clock.elapsed(cset, calendar, start, end)`` (business seconds) on the calling
    thread, written into a recycled array: the compiled clock kernel itself, without the
    conversions and the fresh result array of the public wrapper (the inputs are already
    int64 epoch seconds, checked against the horizon). A refused element is explained by the
    wrapper."""
    if _clock.elapsed(cset.packed, calendar, start, end, out) >= 0:
        clock.elapsed(cset, calendar, start, end, threads=1)


def _utc_date(t: int) -> date:
    return date(1970, 1, 1) + timedelta(days=t // 86_400)


def _string_column(logs: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    col = logs.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _dense_lines(
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


def _lines_table(
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
            dict_col(f["label"], _LABEL_NAMES),
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


__all__ = [
    "Classification",
    "ContractBook",
    "classify",
    "contract_grants",
    "unpack_keys",
]
