"""The contract book: the contracts a classification run prices, compiled once (frozen
rate-card versions, condition calendars, period boundaries, condition and rate tables,
pricing rows and grants)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import _clock, clock
from effigate_engine.calendar_set import CalendarSet, Horizon
from effigate_engine.errors import ConfigurationError
from effigate_engine.ratecard import kernels as K
from effigate_engine.ratecard.calendars import condition_calendars, precedence_calendars
from effigate_engine.ratecard.contracts import Contract, ContractType, OutOfScope
from effigate_engine.ratecard.grants import GRANT_PERIOD, contract_grants
from effigate_engine.ratecard.model import (
    PRECEDENCE_DEFAULT,
    TIME_CONDITIONS,
    Condition,
    IncrementMode,
    RateCard,
)
from effigate_engine.ratecard.periods import Period, local_midnight

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
_MODES = {
    ContractType.HOURLY: K.MODE_PRICED,
    ContractType.BUCKET: K.MODE_DRAWDOWN,
    ContractType.RECURRING: K.MODE_DRAWDOWN,
    ContractType.FIXED_PRICE: K.MODE_COVERED,
    ContractType.SCOPE: K.MODE_COVERED,
}


def book_horizon(contracts: Sequence[Contract], until: date, logs: pa.Table | None) -> Horizon:
    """The horizon a book of ``contracts`` is compiled over: whole years from the year before
    the earliest contract start or log to two years after ``until`` or the latest log end.
    Pricing does not depend on it as long as it holds the logs and periods."""
    first = min(c.start for c in contracts)
    last = until
    if logs is not None and logs.num_rows:
        first = min(first, pc.min(logs.column("start")).as_py().date())
        last = max(last, pc.max(logs.column("end")).as_py().date())
    return Horizon.of(date(first.year - 1, 1, 1), date(last.year + 2, 1, 1))


#: The six classes of time by which time conditions apply (``calendars.precedence_calendars``):
#: holiday on a weekend day, other holiday (both closed), weekend open, weekend closed, closed
#: weekday, open weekday.
CLASS_CONDITIONS = (
    frozenset({Condition.HOLIDAY, Condition.WEEKEND, Condition.AFTER_HOURS}),
    frozenset({Condition.HOLIDAY, Condition.AFTER_HOURS}),
    frozenset({Condition.WEEKEND}),
    frozenset({Condition.WEEKEND, Condition.AFTER_HOURS}),
    frozenset({Condition.AFTER_HOURS}),
    frozenset(),
)


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
        self._index_versions()
        self._compile_calendars()
        self._winners: dict[tuple, np.ndarray] = {}
        #: Per version: its condition triple (holiday, non-working, regular calendars).
        self.version_triple = self.cal_holiday // 3
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

    def _index_versions(self) -> None:
        """Every contract's frozen rate-card versions, flattened: CSR by contract, each with its
        start (epoch seconds), contract and number."""
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

    def _compile_calendars(self) -> None:
        """The condition calendars (one triple per distinct calendar and weekend days) and,
        for cards with a non-default precedence, two more per pair; one CalendarSet."""
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
        self.calendar_set = CalendarSet(calendars, self.horizon)

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
                elapsed_into(self.calendar_set, calendar, starts, bounds, cumulative[g, col])
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
        the six classes of time of :data:`CLASS_CONDITIONS` under the version card's
        precedence, ``(len(version), 6)`` int8. A pair with no base rate gets the default
        order (the pricing pass refuses it)."""
        rows = (version.astype(np.int64) * len(levels) + level) * max(len(jobs), 1) + job
        unique, inverse = np.unique(rows, return_inverse=True)
        table = np.empty((unique.size, len(CLASS_CONDITIONS)), np.int8)
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
                        for applies in CLASS_CONDITIONS
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


def elapsed_into(
    cset: CalendarSet, calendar: np.ndarray, start: np.ndarray, end: np.ndarray, out: np.ndarray
) -> None:
    """``out = clock.elapsed(cset, calendar, start, end)`` (business seconds) on the calling
    thread, written into a recycled array: the compiled clock kernel itself, without the
    conversions and the fresh result array of the public wrapper (the inputs are already
    int64 epoch seconds, checked against the horizon). A refused element is explained by the
    wrapper."""
    if _clock.elapsed(cset.packed, calendar, start, end, out) >= 0:
        clock.elapsed(cset, calendar, start, end, threads=1)
