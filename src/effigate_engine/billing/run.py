"""Billing run: every contract's invoice for a period, assembled at once.

A month-end run bills all the contracts of a :class:`ContractBook` from one classification of
their logs (made with ``evidence=True``). Each invoice equals what
:func:`~effigate_engine.billing.assembly.assemble_invoice` gives for its contract alone, but
the work is linear in logs + lines instead of invoices × batch:

* time lines: the classification's line table is already sorted by contract id, then period,
  so one vectorised selection (the invoiced period of each line's contract) gives every
  invoice's time lines in invoice order; their descriptions come from
  :func:`~effigate_engine.billing.time_lines.time_descriptions` and their log ids from one pass
  over the evidence (:func:`~effigate_engine.billing.evidence.line_log_ids`);
* the lines of contract terms (items, recurring fees, SLA credits, credit balance) and the
  totals come from the same functions as ``assemble_invoice`` (``term_lines``, ``line_sums``,
  ``invoice_totals``), once per invoice; breach records are grouped by contract once;
* the result is two Arrow tables, :data:`~effigate_engine.billing.schemas.RUN_LINES` and
  :data:`~effigate_engine.billing.schemas.RUN_INVOICES`; :meth:`BillingRun.invoice` gives one
  contract's :class:`~effigate_engine.billing.invoice.Invoice`.

With more than one thread the pass over the evidence (compiled, GIL released) runs on the
shared pool, split across threads, while the calling thread formats the descriptions and
assembles the term lines; ``threads=1`` keeps the whole run on the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import parallel
from effigate_engine.billing.assembly import invoice_totals, line_sums, term_lines
from effigate_engine.billing.evidence import line_log_ids
from effigate_engine.billing.invoice import (
    Invoice,
    LineKind,
    TaxComponent,
    TaxLine,
    line_from_row,
    line_values,
)
from effigate_engine.billing.schemas import INVOICE_LINES, RUN_INVOICES, RUN_LINES
from effigate_engine.billing.sla_credits import breach_records
from effigate_engine.billing.time_lines import time_descriptions
from effigate_engine.errors import BillingError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.periods import BillingCycle, Period


@dataclass(frozen=True, slots=True)
class InvoiceInputs:
    """What one contract's invoice takes besides its time and the breach records (the
    arguments of ``assemble_invoice``): unit counts at the period's end, breach ids credited
    before, milestone and deliverable ids invoiced before, tax components (``None``: the run's
    default), a tax exemption (its reason) and a credit balance brought in (minor units)."""

    unit_counts: Mapping[str, int] | None = None
    already_credited: Iterable[str] = ()
    invoiced_items: Iterable[str] = ()
    tax: Sequence[TaxComponent] | None = None
    exemption: str | None = None
    credit_balance: int = 0


class BillingRun:
    """The invoices of one run: ``lines`` (:data:`~effigate_engine.billing.schemas.RUN_LINES`,
    by invoice then line number) and ``invoices``
    (:data:`~effigate_engine.billing.schemas.RUN_INVOICES`, one row per invoice, by contract
    id)."""

    def __init__(self, lines: pa.Table, invoices: pa.Table, periods: Mapping[str, Period]) -> None:
        self.lines = lines
        self.invoices = invoices
        self.periods = dict(periods)
        ids = invoices.column("contract_id").to_pylist()
        self._position = {cid: i for i, cid in enumerate(ids)}
        counts = invoices.column("lines").to_numpy()
        self._first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return self.invoices.num_rows

    @property
    def contract_ids(self) -> list[str]:
        """The invoiced contracts, in invoice order (by id)."""
        return list(self._position)

    def invoice(self, contract_id: str) -> Invoice:
        """The invoice of ``contract_id``: equal to ``assemble_invoice`` for it with the run's
        inputs."""
        if contract_id not in self._position:
            raise BillingError("contract_id", contract_id, "has no invoice in this run")
        i = self._position[contract_id]
        head = self.invoices.slice(i, 1).to_pylist()[0]
        rows = self.lines.slice(int(self._first[i]), head["lines"]).to_pylist()
        return Invoice(
            contract_id,
            self.periods[contract_id],
            head["currency"],
            tuple(line_from_row(row) for row in rows),
            head["subtotal"],
            head["credits_available"],
            head["credits_applied"],
            head["credit_balance_out"],
            head["taxable_base"],
            tuple(TaxLine(t["name"], t["ppm"], t["base"], t["amount"]) for t in head["taxes"]),
            head["total"],
            head["exemption"],
            tuple(head["settled_breach_ids"]),
            tuple(head["forfeited_breach_ids"]),
        )

    def __iter__(self) -> Iterator[Invoice]:
        """Every invoice, in invoice order."""
        return (self.invoice(cid) for cid in self._position)


def billing_run(
    book: ContractBook,
    classification: Classification | None,
    period: date | Mapping[str, Period],
    *,
    breaches: pa.Table | None = None,
    inputs: Mapping[str, InvoiceInputs] | None = None,
    tax: Sequence[TaxComponent] = (),
    threads: int | None = None,
) -> BillingRun:
    """Assemble the invoices of a billing run.

    ``period`` is a local date (every contract of ``book`` started by then is billed for its
    period holding that date) or an explicit period per contract id. ``classification`` (of
    the book's logs, ``evidence=True``; ``None`` when there are none) gives the time lines;
    ``breaches`` (:data:`~effigate_engine.billing.schemas.BREACH_RECORDS`, all contracts in one
    table) the SLA credits; ``inputs`` per contract id the rest of what ``assemble_invoice``
    takes; ``tax`` the components of every invoice whose inputs name none. ``threads``: for
    the pass over the evidence (as for the clock; the rest runs on the calling thread)."""
    periods = _periods(book, period)
    inputs = dict(inputs or {})
    unknown = sorted(set(inputs) - set(periods))
    if unknown:
        raise BillingError("inputs", unknown[0], "is not a contract invoiced by this run")
    if classification is not None and classification.book is not book:
        raise BillingError("classification", "book", "was made with another contract book")
    ids = sorted(periods)
    time = _time_lines(book, classification, ids, periods)
    # The log ids come from compiled passes that release the GIL: with more than one thread
    # they run beside the descriptions and the term lines.
    log_ids = _log_ids(classification, time.rows, threads)
    descriptions = time_descriptions(time.table)
    by_contract = _breaches_by_contract(breaches)
    no_inputs = InvoiceInputs()
    term_columns = _Columns(INVOICE_LINES)
    heads = _Columns(RUN_INVOICES)
    for i, cid in enumerate(ids):
        contract, p = book.contracts[book.index[cid]], periods[cid]
        given = inputs.get(cid, no_inputs)
        terms = term_lines(
            contract,
            p,
            unit_counts=given.unit_counts,
            breaches=by_contract.get(cid),
            already_credited=given.already_credited,
            invoiced_items=given.invoiced_items,
            credit_balance=given.credit_balance,
        )
        lines = [*terms.charges, *terms.credits]
        for line in lines:
            term_columns.add(line_values(cid, contract.currency, line))
        subtotal, taxable, credits = line_sums(lines)
        # Time lines are taxable charges.
        time_amount = int(time.amounts[i])
        totals = invoice_totals(
            subtotal + time_amount,
            taxable + time_amount,
            credits,
            tax if given.tax is None else given.tax,
            given.exemption,
        )
        heads.add(
            (
                i,
                cid,
                p.ordinal,
                p.start,
                p.end,
                contract.currency,
                int(time.counts[i]) + len(lines),
                totals.subtotal,
                totals.credits_available,
                totals.credits_applied,
                totals.credit_balance_out,
                totals.taxable_base,
                tuple((t.name, t.ppm, t.base, t.amount) for t in totals.taxes),
                totals.total,
                given.exemption,
                tuple(terms.settled),
                tuple(terms.forfeited),
            )
        )
    invoices = heads.table()
    terms_table = term_columns.table()
    id_counts, cited = log_ids()
    lines = _merge(invoices, time, descriptions, id_counts, cited, terms_table)
    return BillingRun(lines, invoices, periods)


class _Columns:
    """Rows gathered column by column (a few long lists rather than an object per row that
    outlives the loop and wakes the garbage collector), then one Arrow table."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.values: list[list] = [[] for _ in schema]

    def add(self, row: Sequence) -> None:
        for column, value in zip(self.values, row, strict=True):
            column.append(value)

    def table(self) -> pa.Table:
        arrays = [pa.array(v, f.type) for v, f in zip(self.values, self.schema, strict=True)]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _periods(book: ContractBook, period: date | Mapping[str, Period]) -> dict[str, Period]:
    """The period each invoiced contract is billed for."""
    if isinstance(period, date):
        # Contracts share cycles (a start and an anchor day): each cycle's period once.
        cycles: dict[BillingCycle, Period] = {}
        out = {}
        for c in book.contracts:
            if c.start <= period:
                cycle = c.cycle
                if cycle not in cycles:
                    cycles[cycle] = cycle.period_of(period)
                out[c.id] = cycles[cycle]
        return out
    out = {}
    for cid, p in period.items():
        if cid not in book.index:
            raise BillingError("period", cid, "is not a contract of the book")
        if not isinstance(p, Period):
            raise BillingError(f"period[{cid}]", p, "is not a billing Period")
        out[cid] = p
    return out


@dataclass(frozen=True)
class _TimeLines:
    """The invoices' time lines in invoice order: per invoice their count and amount; per line
    its invoice, its row in the classification's line table, and that row."""

    counts: np.ndarray
    amounts: np.ndarray
    invoice: np.ndarray
    rows: np.ndarray
    table: pa.Table


def _time_lines(
    book: ContractBook,
    classification: Classification | None,
    ids: list[str],
    periods: Mapping[str, Period],
) -> _TimeLines:
    """Every invoice's time lines, from one pass over the classification's line table: it is
    sorted by contract id, then period, so they come in invoice order."""
    n = len(ids)
    if classification is None:
        empty = np.zeros(0, np.int64)
        return _TimeLines(np.zeros(n, np.int64), np.zeros(n, np.int64), empty, empty, pa.table({}))
    if classification.slot_keys is None:
        raise BillingError("classification", "evidence", "is missing; classify(evidence=True)")
    lines = classification.lines
    contract = lines.column("contract_id").combine_chunks()
    # The line table's contract codes, as book positions.
    code_to_book = np.array(
        [book.index[c] for c in contract.dictionary.to_pylist()] or [0], np.int64
    )
    line_contract = code_to_book[contract.indices.to_numpy(zero_copy_only=False)]
    wanted = np.full(len(book.contracts), -1, np.int64)
    invoice_of = np.full(len(book.contracts), -1, np.int64)
    for i, cid in enumerate(ids):
        wanted[book.index[cid]] = periods[cid].ordinal
        invoice_of[book.index[cid]] = i
    rows = np.flatnonzero(wanted[line_contract] == lines.column("period").to_numpy())
    invoice = invoice_of[line_contract[rows]]
    if invoice.size and (np.diff(invoice) < 0).any():
        raise BillingError("classification.lines", "order", "is not sorted by contract id")
    table = lines.take(pa.array(rows))
    counts = np.bincount(invoice, minlength=n).astype(np.int64)
    total = np.zeros(rows.size + 1, np.int64)
    np.cumsum(table.column("amount").to_numpy(), out=total[1:])
    ends = np.cumsum(counts)
    return _TimeLines(counts, total[ends] - total[ends - counts], invoice, rows, table)


def _log_ids(
    classification: Classification | None, rows: np.ndarray, threads: int | None
) -> Callable[[], tuple[np.ndarray, pa.Array]]:
    """The log ids of the chosen lines (:func:`line_log_ids`), when asked: computed now on one
    thread, else started on the shared pool."""
    if classification is None:
        empty = (np.zeros(0, np.int64), pa.array([], pa.string()))
        return lambda: empty
    if threads == 1:
        done = line_log_ids(classification, rows, threads=1)
        return lambda: done
    return parallel.submit(line_log_ids, classification, rows, threads=threads).result


def _breaches_by_contract(breaches: pa.Table | None) -> dict[str, pa.Table]:
    """The breach records of each contract, in input order (one stable sort)."""
    if breaches is None or breaches.num_rows == 0:
        return {}
    records = breach_records(breaches)
    records = records.filter(pc.is_valid(records.column("contract_id")))
    if records.num_rows == 0:
        return {}
    codes = pc.dictionary_encode(records.column("contract_id").combine_chunks())
    index = codes.indices.to_numpy(zero_copy_only=False)
    grouped = records.take(pa.array(np.argsort(index, kind="stable")))
    counts = np.bincount(index, minlength=len(codes.dictionary))
    first = np.concatenate([[0], np.cumsum(counts)])
    return {
        cid: grouped.slice(int(first[v]), int(counts[v]))
        for v, cid in enumerate(codes.dictionary.to_pylist())
    }


def _merge(
    invoices: pa.Table,
    time: _TimeLines,
    descriptions: pa.Array,
    id_counts: np.ndarray,
    cited: pa.Array,
    terms: pa.Table,
) -> pa.Table:
    """The run's line table: per invoice its time lines, then its term lines. Time lines and
    term lines each keep their order, so every column is a scatter of the two into place."""
    sizes = invoices.column("lines").to_numpy().astype(np.int64)
    total = int(sizes.sum())
    first = _starts(sizes)
    invoice = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    line_no = np.arange(total, dtype=np.int64) - first[invoice] + 1
    is_time = line_no <= time.counts[invoice]
    time_at, term_at = np.flatnonzero(is_time), np.flatnonzero(~is_time)
    t = time.table

    def merged(name: str, time_values: pa.Array | np.ndarray | None = None) -> pa.Array:
        """Column ``name``: the time lines' values (by default their column ``name``) and the
        term lines' column ``name``, each in place."""
        other = terms.column(name).combine_chunks()
        if time_at.size == 0:
            return other
        if time_values is None:
            time_values = t.column(name).combine_chunks()
        if isinstance(time_values, pa.Array) and pa.types.is_dictionary(time_values.type):
            return _merged_text(total, time_at, time_values, term_at, other)
        if isinstance(time_values, pa.Array) and pa.types.is_string(time_values.type):
            source = np.empty(total, np.int64)
            source[time_at] = np.arange(time_at.size)
            source[term_at] = time_at.size + np.arange(term_at.size)
            return pa.concat_arrays([time_values, other]).take(pa.array(source))
        if not isinstance(time_values, np.ndarray):
            time_values = time_values.cast(other.type).to_numpy(zero_copy_only=False)
        values = np.zeros(total, time_values.dtype)
        values[time_at] = time_values
        if other.null_count == 0:
            values[term_at] = other.to_numpy(zero_copy_only=False)
            return pa.array(values, other.type)
        valid = other.is_valid().to_numpy(zero_copy_only=False)
        values[term_at[valid]] = other.drop_null().to_numpy(zero_copy_only=False)
        mask = np.zeros(total, np.bool_)
        mask[term_at[~valid]] = True
        return pa.array(values, other.type, mask=mask)

    def lists(name: str, time_counts: np.ndarray, time_values: pa.Array) -> pa.Array:
        return _list_column(
            total, time_at, time_counts, time_values, term_at, terms.column(name).combine_chunks()
        )

    def term_only(name: str) -> pa.Array:
        """Column ``name``, null on the time lines (the service period of recurring lines)."""
        other = terms.column(name).combine_chunks()
        source = np.empty(total, np.int64)
        source[time_at] = np.arange(time_at.size)
        source[term_at] = time_at.size + np.arange(term_at.size)
        return pa.concat_arrays([pa.nulls(time_at.size, other.type), other]).take(pa.array(source))

    size = time_at.size
    no_ids = np.zeros(size, np.int64)
    empty = pa.array([], pa.string())
    columns = [
        pa.array(invoice.astype(np.int32)),
        pa.array(line_no.astype(np.int32)),
        invoices.column("contract_id").combine_chunks().take(pa.array(invoice)),
        merged("kind", _one_value(size, LineKind.TIME.value)),
        merged("description", descriptions),
        merged("condition"),
        merged("support_level"),
        merged("job_type"),
        merged(
            "quantity", t.column("billed_seconds").cast(pa.int64()).to_numpy() if size else None
        ),
        merged("rate"),
        merged("amount"),
        invoices.column("currency").combine_chunks().take(pa.array(invoice)),
        merged("taxable", np.ones(size, np.bool_)),
        merged("rate_card_version"),
        merged("rate_card_hash"),
        lists("log_ids", id_counts, cited),
        lists("breach_ids", no_ids, empty),
        lists("item_ids", no_ids, empty),
        term_only("service_start"),
        term_only("service_end"),
    ]
    return pa.Table.from_arrays(columns, schema=RUN_LINES)


def _one_value(size: int, value: str) -> pa.DictionaryArray:
    """``size`` times ``value``, dictionary-encoded."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(size, np.int32)), pa.array([value], pa.string())
    )


def _merged_text(
    total: int,
    time_at: np.ndarray,
    time_values: pa.Array,
    term_at: np.ndarray,
    term_values: pa.Array,
) -> pa.Array:
    """A text column from dictionary-encoded time values and plain (or null) term values:
    one dictionary over both, codes scattered into place, decoded once."""
    terms = pc.dictionary_encode(term_values.cast(pa.string()))
    dictionary = pa.concat_arrays([time_values.dictionary.cast(pa.string()), terms.dictionary])
    codes = np.zeros(total, np.int64)
    codes[time_at] = time_values.indices.to_numpy(zero_copy_only=False)
    null = np.zeros(total, np.bool_)
    if terms.null_count:
        null[term_at] = terms.is_null().to_numpy(zero_copy_only=False)
    codes[term_at] = terms.indices.fill_null(0).to_numpy(zero_copy_only=False) + len(
        time_values.dictionary
    )
    indices = pa.array(codes.astype(np.int32), mask=null if null.any() else None)
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def _starts(counts: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums: where each group starts."""
    out = np.zeros(counts.size, np.int64)
    np.cumsum(counts[:-1], out=out[1:])
    return out


def _list_column(
    total: int,
    time_at: np.ndarray,
    time_counts: np.ndarray,
    time_values: pa.Array,
    term_at: np.ndarray,
    term_lists: pa.Array,
) -> pa.ListArray:
    """A ``list<string>`` column of the merged table: the time rows' lists (``time_counts``
    values each, from ``time_values`` in time-line order) and the term rows' lists."""
    term_counts = pc.list_value_length(term_lists).to_numpy(zero_copy_only=False)
    term_values = term_lists.flatten()
    counts = np.zeros(total, np.int64)
    counts[time_at] = time_counts
    counts[term_at] = term_counts
    offsets = np.zeros(total + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] >= 1 << 31:
        raise BillingError("invoice lines", int(offsets[-1]), "cite 2**31 ids or more")
    # Time rows and term rows each come in merged order, so when only one kind cites
    # anything its values are already in place (time lines cite logs; term lines breaches
    # and items).
    if len(term_values) == 0:
        values = time_values
    elif len(time_values) == 0:
        values = term_values
    else:
        source = np.zeros(total, np.int64)
        source[time_at] = _starts(time_counts)
        source[term_at] = len(time_values) + _starts(term_counts)
        index = np.repeat(source - offsets[:-1], counts) + np.arange(offsets[-1])
        values = pa.concat_arrays([time_values, term_values]).take(pa.array(index))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values.cast(pa.string()))
