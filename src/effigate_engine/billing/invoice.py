"""Invoice assembly: pure functions from a contract, a period and its evidence to an invoice.

Lines (``DESIGN.md`` §6), each citing its evidence:

* time lines from a classification (grouped by condition, support level, job type, rate and
  frozen rate-card version; ``amount = round_half_up(billed_seconds × rate / 3600)``), with the
  ids of the logs they price;
* approved milestones (``FIXED_PRICE``) and signed-off deliverables (``SCOPE``) not invoiced
  before;
* recurring: the base fee in advance (the next cycle's, and the first cycle's too on the first
  invoice) or in arrears (the invoiced cycle's own), prorated by days when the contract starts
  off-anchor or ends mid-cycle; units in arrears for the invoiced cycle, at the count in force
  at its end or, with unit proration, the opening count for its active days plus one line per
  change from its date; every recurring line states its service period; included-hours
  overage arrives as time lines;
* SLA credits from breach records: a fixed amount per breach by priority, or a percentage of
  the covered fee of the breach's cycle (its recurring base fee and unit lines, never time,
  overage or tax); once per breach id; capped per invoice by an amount or a percentage of the
  invoiced cycle's covered fee, the cap taking breaches in (breach time, breach id) order.

Totals: ``subtotal`` = Σ charge lines; credits (SLA credits plus a credit balance carried in)
are applied before tax up to the subtotal, the excess carried out as a credit balance, so a
total is never negative; tax components (parts per million) apply to the taxable subtotal less
the applied credits, each rounded half-up once per invoice;
``total = subtotal − credits_applied + tax``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.billing.schemas import BREACH_RECORDS, INVOICE_LINES
from effigate_engine.billing.units import UnitCount, unit_timelines
from effigate_engine.errors import BillingError
from effigate_engine.money import (
    PARTS_PER_MILLION,
    apply_basis_points,
    apply_ppm,
    currency,
)
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.contracts import BaseTiming, Contract, ContractType
from effigate_engine.ratecard.model import normalise_priority
from effigate_engine.ratecard.periods import Period, anchored_date, prorate


class LineKind(StrEnum):
    """What an invoice line bills or credits."""

    TIME = "TIME"
    MILESTONE = "MILESTONE"
    DELIVERABLE = "DELIVERABLE"
    RECURRING_BASE = "RECURRING_BASE"
    RECURRING_UNITS = "RECURRING_UNITS"
    SLA_CREDIT = "SLA_CREDIT"
    CREDIT_BALANCE = "CREDIT_BALANCE"


#: Kinds that reduce the invoice (negative amounts), applied before tax.
CREDIT_KINDS = (LineKind.SLA_CREDIT, LineKind.CREDIT_BALANCE)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line. ``amount`` in minor units (negative for credits); ``quantity`` is billed
    seconds for time, a unit count (or, for a prorated change, the change in the count) for
    units, 1 otherwise; ``rate`` per hour or per unit. Recurring lines state their service
    period ``[service_start, service_end)`` in local dates (``None`` on other kinds)."""

    line_no: int
    kind: LineKind
    description: str
    amount: int
    quantity: int = 1
    rate: int | None = None
    condition: str | None = None
    support_level: str | None = None
    job_type: str | None = None
    taxable: bool = True
    rate_card_version: int | None = None
    rate_card_hash: str | None = None
    log_ids: tuple[str, ...] = ()
    breach_ids: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()
    service_start: date | None = None
    service_end: date | None = None


@dataclass(frozen=True, slots=True)
class TaxComponent:
    """A tax component: ``ppm`` parts per million (GST 10 % = 100,000; QST 9.975 % = 99,750)."""

    name: str
    ppm: int

    def __post_init__(self) -> None:
        if not 0 <= self.ppm <= PARTS_PER_MILLION:
            raise BillingError(f"tax[{self.name}].ppm", self.ppm, "is not 0..1,000,000")


@dataclass(frozen=True, slots=True)
class TaxLine:
    """A tax component's amount on the invoice's taxable base (minor units)."""

    name: str
    ppm: int
    base: int
    amount: int


@dataclass(frozen=True)
class Invoice:
    """An assembled invoice (a draft until issued by the store). Money in minor units."""

    contract_id: str
    period: Period
    currency: str
    lines: tuple[InvoiceLine, ...]
    subtotal: int
    credits_available: int
    credits_applied: int
    credit_balance_out: int
    taxable_base: int
    taxes: tuple[TaxLine, ...]
    total: int
    exemption: str | None = None
    settled_breach_ids: tuple[str, ...] = ()
    forfeited_breach_ids: tuple[str, ...] = field(default=())

    @property
    def charges(self) -> tuple[InvoiceLine, ...]:
        """The lines that bill (non-negative)."""
        return tuple(line for line in self.lines if line.kind not in CREDIT_KINDS)

    @property
    def credit_lines(self) -> tuple[InvoiceLine, ...]:
        """The credit lines (negative)."""
        return tuple(line for line in self.lines if line.kind in CREDIT_KINDS)

    @property
    def tax_total(self) -> int:
        return sum(t.amount for t in self.taxes)

    def format(self) -> str:
        """A plain-text rendering: one line per invoice line, then the totals."""
        money = currency(self.currency)
        width = max([60, *(len(line.description) for line in self.lines)])
        out = [f"{self.contract_id} {self.period.start}..{self.period.end} ({self.currency})"]

        def row(number: str, label: str, amount: int) -> None:
            out.append(f"{number:>3} {label:<{width}} {money.format(amount):>12}")

        for line in self.lines:
            row(str(line.line_no), line.description, line.amount)
        row("", "Subtotal", self.subtotal)
        if self.credits_applied:
            row("", "Credits applied", -self.credits_applied)
        for t in self.taxes:
            row("", f"Tax {t.name} ({t.ppm / 10_000:g}%)", t.amount)
        if self.exemption:
            row("", "Tax exempt: " + self.exemption, 0)
        row("", "Total", self.total)
        if self.credit_balance_out:
            row("", "Credit balance carried", self.credit_balance_out)
        return "\n".join(out)

    def to_arrow(self) -> pa.Table:
        """The lines as an Arrow table (:data:`~effigate_engine.billing.schemas.INVOICE_LINES`)."""
        rows = [line_row(self.contract_id, self.currency, line) for line in self.lines]
        return pa.Table.from_pylist(rows, schema=INVOICE_LINES)


def line_row(contract_id: str, currency_code: str, line: InvoiceLine) -> dict:
    """An invoice line as a row of :data:`~effigate_engine.billing.schemas.INVOICE_LINES`."""
    row = dict(zip(INVOICE_LINES.names, line_values(contract_id, currency_code, line), strict=True))
    for name in ("log_ids", "breach_ids", "item_ids"):
        row[name] = list(row[name])
    return row


def line_values(contract_id: str, currency_code: str, line: InvoiceLine) -> tuple:
    """An invoice line's values in the column order of
    :data:`~effigate_engine.billing.schemas.INVOICE_LINES` (evidence as tuples)."""
    return (
        line.line_no,
        contract_id,
        line.kind.value,
        line.description,
        line.condition,
        line.support_level,
        line.job_type,
        line.quantity,
        line.rate,
        line.amount,
        currency_code,
        line.taxable,
        line.rate_card_version,
        line.rate_card_hash,
        line.log_ids,
        line.breach_ids,
        line.item_ids,
        line.service_start,
        line.service_end,
    )


def line_from_row(row: Mapping) -> InvoiceLine:
    """The invoice line of a row of :data:`~effigate_engine.billing.schemas.INVOICE_LINES` (the
    inverse of :func:`line_row`)."""
    return InvoiceLine(
        row["line_no"],
        LineKind(row["kind"]),
        row["description"],
        row["amount"],
        row["quantity"],
        row["rate"],
        row["condition"],
        row["support_level"],
        row["job_type"],
        row["taxable"],
        row["rate_card_version"],
        row["rate_card_hash"],
        tuple(row["log_ids"]),
        tuple(row["breach_ids"]),
        tuple(row["item_ids"]),
        row.get("service_start"),
        row.get("service_end"),
    )


#: Two-digit minutes and seconds, ``"00"`` to ``"59"``.
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


def recurring_lines(
    contract: Contract, period: Period, unit_counts: Mapping[str, UnitCount] | None = None
) -> list[InvoiceLine]:
    """The recurring lines of the invoice for cycle ``period``: the base fee per the
    contract's ``base_timing`` (:func:`base_cycles`), then the units of ``period`` in arrears
    (:func:`unit_lines`). Every line states its service period."""
    if contract.recurring is None:
        return []
    timing = contract.recurring.base_timing.value
    out: list[InvoiceLine] = []
    for cycle in base_cycles(contract, period):
        fee, days = base_fee(contract, cycle)
        if fee == 0 and days == 0:
            continue
        start, end = _active_span(contract, cycle)
        note = "" if days == _full_cycle_days(contract, cycle) else f", prorated {days} days"
        out.append(
            InvoiceLine(
                0,
                LineKind.RECURRING_BASE,
                f"Base fee {start}..{end} in {timing}{note}",
                fee,
                item_ids=(f"cycle:{cycle.ordinal}",),
                service_start=start,
                service_end=end,
            )
        )
    return out + unit_lines(contract, period, unit_counts)


def base_cycles(contract: Contract, period: Period) -> list[Period]:
    """The cycles whose base fee the invoice for ``period`` carries: in advance the next
    cycle (and, on the first invoice, the first cycle too); in arrears ``period`` itself."""
    terms = contract.recurring
    if terms is None:
        return []
    if terms.base_timing == BaseTiming.ARREARS:
        ordinals = [period.ordinal]
    else:
        ordinals = [period.ordinal + 1] if period.ordinal else [0, 1]
    return [contract.cycle.period(k) for k in ordinals]


def unit_lines(
    contract: Contract, cycle: Period, unit_counts: Mapping[str, UnitCount] | None = None
) -> list[InvoiceLine]:
    """Unit lines of ``cycle`` (billed in arrears), by unit type. Without ``prorate_units``: one
    line at the count in force on the cycle's last day. With it: the opening count (in force
    on the cycle's first active day) for the active days, plus one line per change inside the
    cycle, quantity = new − old count (negative for a decrease), for the days from its date to
    the end of the active span; each amount is ``quantity × price × days / full cycle days``
    rounded half-up. No lines for a cycle the contract is not active in."""
    terms = contract.recurring
    if terms is None:
        return []
    timelines = unit_timelines(unit_counts, terms.unit_prices, contract.id)
    start, end = _active_span(contract, cycle)
    if end <= start:
        return []
    full = _full_cycle_days(contract, cycle)
    money = currency(contract.currency)
    out: list[InvoiceLine] = []

    def line(unit: str, quantity: int, since: date, what: str) -> InvoiceLine:
        price = terms.unit_prices[unit]
        days = (end - since).days
        text = f"{what} at {money.format(price)} for {since}..{end}"
        if terms.prorate_units:
            amount = prorate(quantity * price, days, full)
            if days != full:
                text += f" ({days} of {full} days)"
        else:
            amount = quantity * price
        return InvoiceLine(
            0,
            LineKind.RECURRING_UNITS,
            text,
            amount,
            quantity,
            price,
            item_ids=(unit,),
            service_start=since,
            service_end=end,
        )

    for unit, timeline in sorted(timelines.items()):
        if not terms.prorate_units:
            count = timeline.count_on(cycle.end - timedelta(days=1))
            out.append(line(unit, count, start, f"{unit} × {count}"))
            continue
        count = timeline.count_on(start)
        out.append(line(unit, count, start, f"{unit} × {count}"))
        for since, new in timeline.changes_within(start, end):
            out.append(line(unit, new - count, since, f"{unit} {new - count:+d} (to {new})"))
            count = new
    return out


def _active_span(contract: Contract, cycle: Period) -> tuple[date, date]:
    """``[start, end)``: the local dates of ``cycle`` the contract is active (cut by its end;
    ``end <= start`` when it ended before the cycle)."""
    end = cycle.end if contract.end is None else min(cycle.end, contract.end)
    return cycle.start, end


def _full_cycle_days(contract: Contract, cycle: Period) -> int:
    """Days of the full cycle a (possibly stub) period belongs to: the denominator of every
    proration (a stub first cycle counts the days of the month-long cycle it is cut from)."""
    if cycle.ordinal == 0 and cycle.start.day != contract.cycle.anchor_day:
        year, month = cycle.end.year, cycle.end.month - 1
        if month == 0:
            year, month = year - 1, 12
        return (cycle.end - anchored_date(year, month, contract.cycle.anchor_day)).days
    return cycle.days


def base_fee(contract: Contract, cycle: Period) -> tuple[int, int]:
    """``(fee, days billed)`` of a cycle's base fee: prorated by days (start inclusive, end
    exclusive) for a stub first cycle or a contract ending inside the cycle."""
    terms = contract.recurring
    if terms is None:
        return 0, 0
    start, end = _active_span(contract, cycle)
    days = max(0, (end - start).days)
    full = _full_cycle_days(contract, cycle)
    if days == full or not terms.prorate:
        return (terms.base_fee, full) if days > 0 else (0, 0)
    return prorate(terms.base_fee, days, full), days


def cycle_covered_fee(
    contract: Contract, cycle: Period, unit_counts: Mapping[str, UnitCount] | None = None
) -> int:
    """The covered service fee of ``cycle`` (minor units), on which percent SLA credits and a
    percent cap are computed: the cycle's base fee (whichever invoice bills it, in advance or
    in arrears) plus its unit lines from ``unit_counts``. Time, overage and tax are never
    covered; a contract without recurring terms covers nothing."""
    if contract.recurring is None:
        return 0
    units = unit_lines(contract, cycle, unit_counts)
    return base_fee(contract, cycle)[0] + sum(line.amount for line in units)


def item_lines(
    contract: Contract, period: Period, invoiced: Iterable[str] = ()
) -> list[InvoiceLine]:
    """Approved milestones and signed-off deliverables up to the period's end not invoiced
    before (a late approval lands on the first open invoice)."""
    done = set(invoiced)
    out = []
    for m in contract.milestones:
        if m.approved_on is not None and m.approved_on < period.end and m.id not in done:
            out.append(
                InvoiceLine(
                    0, LineKind.MILESTONE, f"Milestone {m.name}", m.amount, item_ids=(m.id,)
                )
            )
    for d in contract.deliverables:
        if d.signed_off_on is not None and d.signed_off_on < period.end and d.id not in done:
            out.append(
                InvoiceLine(
                    0, LineKind.DELIVERABLE, f"Deliverable {d.name}", d.amount, item_ids=(d.id,)
                )
            )
    return out


def breach_records(breaches: pa.Table) -> pa.Table:
    """``breaches`` as :data:`~effigate_engine.billing.schemas.BREACH_RECORDS` (its columns,
    in order, cast); a missing column raises :class:`BillingError`."""
    if breaches.schema.equals(BREACH_RECORDS):
        return breaches
    missing = [n for n in BREACH_RECORDS.names if n not in breaches.schema.names]
    if missing:
        raise BillingError("breaches", missing, "are missing breach-record columns")
    return breaches.select(BREACH_RECORDS.names).cast(BREACH_RECORDS)


def sla_credit_lines(
    contract: Contract,
    period: Period,
    breaches: pa.Table | None,
    covered_fee: int,
    already_credited: Iterable[str] = (),
    *,
    unit_counts: Mapping[str, UnitCount] | None = None,
) -> tuple[list[InvoiceLine], list[str], list[str]]:
    """Credit lines for the contract's breaches up to the period's end not credited before.
    Returns ``(lines, settled breach ids, forfeited breach ids)``; a breach the cap trims to
    zero is forfeited (settled with no credit).

    ``covered_fee`` is the covered fee of the invoiced cycle ``period``
    (:func:`cycle_covered_fee`): percent credits of its breaches and a percent cap are shares
    of it. A breach of an earlier cycle (one that lands late on this invoice) is a share of
    its own cycle's covered fee, recomputed from the contract and ``unit_counts`` (give the
    count timelines to have the counts each earlier cycle billed)."""
    terms = contract.sla_credits
    if terms is None or breaches is None or breaches.num_rows == 0:
        return [], [], []
    breaches = breach_records(breaches)
    end = int(period.bounds(contract.zone)[1])
    done = set(already_credited)
    seen: dict[str, dict] = {}
    for row in breaches.to_pylist():
        if row["contract_id"] != contract.id or row["breach_id"] in done:
            continue
        if row["breached_at"] is None or int(row["breached_at"].timestamp()) >= end:
            continue
        seen.setdefault(row["breach_id"], row)
    ordered = sorted(seen.values(), key=lambda r: (r["breached_at"], r["breach_id"]))
    money = currency(contract.currency)
    per_breach = {normalise_priority(k): v for k, v in terms.per_breach.items()}
    percent = {normalise_priority(k): v for k, v in terms.percent_per_priority.items()}
    cap = terms.cap_per_period
    if terms.cap_percent_bp is not None:
        cap = apply_basis_points(covered_fee, terms.cap_percent_bp)
    fees = {period.ordinal: covered_fee}
    lines, settled, forfeited = [], [], []
    granted = 0
    for row in ordered:
        priority = normalise_priority(row["priority"])
        if priority in per_breach:
            amount = per_breach[priority]
            how = f"{priority.lower()} priority"
        else:
            cycle = _breach_cycle(contract, row["breached_at"])
            if cycle.ordinal not in fees:
                fees[cycle.ordinal] = cycle_covered_fee(contract, cycle, unit_counts)
            bp = percent.get(priority, terms.percent_bp)
            amount = apply_basis_points(fees[cycle.ordinal], bp)
            how = (
                f"{bp / 100:g}% of {money.format(fees[cycle.ordinal])}"
                f" for {cycle.start}..{cycle.end}"
            )
        if cap is not None and amount > cap - granted:
            amount = cap - granted
            how += ", capped"
        settled.append(row["breach_id"])
        if amount <= 0:
            forfeited.append(row["breach_id"])
            continue
        granted += amount
        lines.append(
            InvoiceLine(
                0,
                LineKind.SLA_CREDIT,
                f"SLA breach deduction ({row['ticket_id']}, {row['metric']}, {how})",
                -amount,
                breach_ids=(row["breach_id"],),
            )
        )
    return lines, settled, forfeited


def _breach_cycle(contract: Contract, breached_at: datetime) -> Period:
    """The contract cycle holding the breach's local date (the first cycle for a breach
    dated before the contract's start)."""
    day = breached_at.astimezone(contract.zone).date()
    if day < contract.start:
        return contract.cycle.period(0)
    return contract.cycle.period_of(day)


def assemble_invoice(
    contract: Contract,
    period: Period,
    *,
    classification: Classification | None = None,
    unit_counts: Mapping[str, UnitCount] | None = None,
    breaches: pa.Table | None = None,
    already_credited: Iterable[str] = (),
    invoiced_items: Iterable[str] = (),
    tax: Sequence[TaxComponent] = (),
    exemption: str | None = None,
    credit_balance: int = 0,
    late: Sequence[tuple[Period, Classification]] = (),
) -> Invoice:
    """Assemble the invoice of ``contract`` for ``period``: a pure function of its inputs, so
    assembling twice gives the same invoice.

    ``unit_counts`` gives a recurring contract's units per unit type: a count, or a timeline
    of ``(local date from which the count holds, count)`` (:mod:`~effigate_engine.billing.units`).
    A timeline reaching back to earlier cycles also prices late breaches of those cycles
    against their own covered fee.

    ``late`` carries work dated in earlier, already invoiced periods that no invoice priced
    (late logs): per earlier period, a classification of those logs only. Their time lines
    follow this period's, priced as of their own dates and labelled with their period."""
    charges: list[InvoiceLine] = []
    if classification is not None and contract.id in classification.book.index:
        charges += time_lines(contract, period, classification)
    for earlier, late_classification in late:
        if earlier.start >= period.start:
            raise BillingError("late", earlier.start.isoformat(), "is not an earlier period")
        for line in time_lines(contract, earlier, late_classification):
            label = f"Late work of {earlier.start.isoformat()}..{earlier.end.isoformat()}: "
            charges.append(replace(line, description=label + line.description))
    terms = term_lines(
        contract,
        period,
        unit_counts=unit_counts,
        breaches=breaches,
        already_credited=already_credited,
        invoiced_items=invoiced_items,
        credit_balance=credit_balance,
    )
    ordered = [*charges, *terms.charges, *terms.credits]
    lines = tuple(replace(line, line_no=i + 1) for i, line in enumerate(ordered))
    return Invoice(
        contract.id,
        period,
        contract.currency,
        lines,
        *invoice_totals(*line_sums(lines), tax, exemption),
        exemption,
        tuple(terms.settled),
        tuple(terms.forfeited),
    )


class TermLines(NamedTuple):
    """The lines an invoice gets from the contract's terms rather than from logged time, in
    invoice order, and the breach ids its SLA credits settle."""

    charges: list[InvoiceLine]
    credits: list[InvoiceLine]
    settled: list[str]
    forfeited: list[str]


def term_lines(
    contract: Contract,
    period: Period,
    *,
    unit_counts: Mapping[str, int] | None = None,
    breaches: pa.Table | None = None,
    already_credited: Iterable[str] = (),
    invoiced_items: Iterable[str] = (),
    credit_balance: int = 0,
) -> TermLines:
    """The invoice lines of ``contract`` for ``period`` that do not come from logged time:
    milestones and deliverables, recurring fees, then SLA credits and the credit balance brought
    forward (minor units). :func:`assemble_invoice` and the billing run both take them from
    here."""
    if credit_balance < 0:
        raise BillingError("credit_balance", credit_balance, "is negative")
    charges: list[InvoiceLine] = []
    if contract.type in (ContractType.FIXED_PRICE, ContractType.SCOPE):
        charges += item_lines(contract, period, invoiced_items)
    charges += recurring_lines(contract, period, unit_counts)
    credits, settled, forfeited = sla_credit_lines(
        contract,
        period,
        breaches,
        cycle_covered_fee(contract, period, unit_counts),
        already_credited,
        unit_counts=unit_counts,
    )
    if credit_balance:
        credits.append(
            InvoiceLine(
                0, LineKind.CREDIT_BALANCE, "Credit balance brought forward", -credit_balance
            )
        )
    return TermLines(charges, credits, settled, forfeited)


def line_sums(lines: Iterable[InvoiceLine]) -> tuple[int, int, int]:
    """``(subtotal, taxable subtotal, credits available)`` of invoice lines (minor units): the
    sum of the charge lines, of the taxable charge lines, and minus the sum of the credit
    lines."""
    subtotal = taxable = credits = 0
    for line in lines:
        if line.kind in CREDIT_KINDS:
            credits -= line.amount
        else:
            subtotal += line.amount
            if line.taxable:
                taxable += line.amount
    return subtotal, taxable, credits


class InvoiceTotals(NamedTuple):
    """An invoice's totals, in the order of :class:`Invoice`'s fields (minor units)."""

    subtotal: int
    credits_available: int
    credits_applied: int
    credit_balance_out: int
    taxable_base: int
    taxes: tuple[TaxLine, ...]
    total: int


def invoice_totals(
    subtotal: int,
    taxable_subtotal: int,
    credits_available: int,
    tax: Sequence[TaxComponent] = (),
    exemption: str | None = None,
) -> InvoiceTotals:
    """Credits are applied before tax up to the subtotal (the rest is carried out as a credit
    balance, so a total is never negative); each tax component applies to the taxable subtotal
    less the applied credits, rounded half-up once; ``total = subtotal − applied + tax``. An
    exemption removes the tax. Money in minor units."""
    applied = min(credits_available, subtotal)
    taxable_base = max(0, taxable_subtotal - applied)
    taxes = (
        ()
        if exemption
        else tuple(
            TaxLine(t.name, t.ppm, taxable_base, apply_ppm(taxable_base, t.ppm)) for t in tax
        )
    )
    total = subtotal - applied + sum(t.amount for t in taxes)
    return InvoiceTotals(
        subtotal,
        credits_available,
        applied,
        credits_available - applied,
        taxable_base,
        taxes,
        total,
    )


def period_of(contract: Contract, day: date) -> Period:
    """The contract's billing period holding local date ``day``."""
    return contract.cycle.period_of(day)
