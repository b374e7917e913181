"""What-if billing: the invoices of a range of periods under the current terms and under proposed
ones (a rate card, contract terms or both), side by side.

Both sides are assembled by the same domain (``classify(evidence=True)`` + ``assemble_invoice``)
from the same logs, unit counts, breaches and settlement inputs, so the only difference is the
terms. Lines of the two invoices of a (contract, period) are matched by a stable key: the kind
with the time condition, support level and job type (time lines, a late period's label
included), the item ids and service start (milestones, deliverables, recurring lines) or the
breach ids (SLA credits). Several lines of one side under one key (e.g. two rate-card versions
in a period) are summed. Money is integer minor units of each contract's currency, durations
whole seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.invoice import Invoice, InvoiceLine, LineKind, TaxComponent
from effigate_engine.billing.rate_card_json import rate_card_from_json
from effigate_engine.billing.run import InvoiceInputs
from effigate_engine.billing.terms_json import build_contract, validate_terms
from effigate_engine.calendar import Calendar
from effigate_engine.calendar_set import Horizon
from effigate_engine.errors import BillingError, ConfigurationError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classification import Classification
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import Contract, RateCardVersion, freeze
from effigate_engine.ratecard.model import RateCard
from effigate_engine.ratecard.periods import Period

#: One row per (contract, period): the invoice totals on each side and their difference.
REPLAY_TOTALS = pa.schema(
    [
        ("contract_id", pa.string()),
        ("client_id", pa.string()),
        ("period_start", pa.date32()),
        ("period_end", pa.date32()),
        ("currency", pa.string()),
        ("current_total", pa.int64()),
        ("proposed_total", pa.int64()),
        ("total_change", pa.int64()),
        ("current_lines", pa.int32()),
        ("proposed_lines", pa.int32()),
    ]
)

#: The lines that change (a line on one side only has nulls on the other).
REPLAY_LINES = pa.schema(
    [
        ("contract_id", pa.string()),
        ("client_id", pa.string()),
        ("period_start", pa.date32()),
        ("kind", pa.string()),
        ("condition", pa.string()),
        ("support_level", pa.string()),
        ("job_type", pa.string()),
        ("key", pa.string()),
        ("description", pa.string()),
        ("current_rate", pa.int64()),
        ("proposed_rate", pa.int64()),
        ("current_seconds", pa.int64()),
        ("proposed_seconds", pa.int64()),
        ("current_amount", pa.int64()),
        ("proposed_amount", pa.int64()),
        ("amount_change", pa.int64()),
    ]
)

#: Per client and currency: the totals of its invoices on each side.
REPLAY_BY_CLIENT = pa.schema(
    [
        ("client_id", pa.string()),
        ("currency", pa.string()),
        ("current", pa.int64()),
        ("proposed", pa.int64()),
        ("change", pa.int64()),
    ]
)

_LATE = "Late work of "


@dataclass(frozen=True)
class BillingReplay:
    """The what-if result: ``totals`` (:data:`REPLAY_TOTALS`, by contract then period),
    ``lines`` (:data:`REPLAY_LINES`, the lines that change) and ``by_client``
    (:data:`REPLAY_BY_CLIENT`, by client and currency). Quantities of time lines are billed
    seconds; of other lines their count (units, breaches, items)."""

    totals: pa.Table
    lines: pa.Table
    by_client: pa.Table


@dataclass
class _Side:
    """A line key's lines on one side, summed."""

    line: InvoiceLine
    rate: int | None
    quantity: int
    amount: int

    def add(self, line: InvoiceLine) -> None:
        self.rate = self.rate if self.rate == line.rate else None
        self.quantity += line.quantity
        self.amount += line.amount


def line_key(line: InvoiceLine) -> str:
    """The stable key matching a line across the two sides (see the module docstring)."""
    if line.kind == LineKind.TIME:
        late = line.description.split(": ", 1)[0] if line.description.startswith(_LATE) else ""
        return f"TIME|{line.condition}|{line.support_level}|{line.job_type}|{late}"
    if line.kind == LineKind.SLA_CREDIT:
        return "SLA_CREDIT|" + ",".join(line.breach_ids)
    start = "" if line.service_start is None else line.service_start.isoformat()
    return f"{line.kind.value}|{','.join(line.item_ids)}|{start}"


def _sides(invoice: Invoice | None) -> dict[str, _Side]:
    out: dict[str, _Side] = {}
    for line in () if invoice is None else invoice.lines:
        key = line_key(line)
        if key in out:
            out[key].add(line)
        else:
            out[key] = _Side(line, line.rate, line.quantity, line.amount)
    return out


def compare_invoices(pairs: Iterable[tuple[str, Invoice, Invoice]]) -> BillingReplay:
    """The replay of ``(client id, current invoice, proposed invoice)`` pairs, each pair one
    contract's invoice of one period under each side (same contract id and period)."""
    totals: list[dict] = []
    lines: list[dict] = []
    for client_id, current, proposed in pairs:
        if (current.contract_id, current.period) != (proposed.contract_id, proposed.period):
            raise BillingError(
                "proposed.contract_id", proposed.contract_id, "differs from the current invoice"
            )
        start = current.period.start
        totals.append(
            {
                "contract_id": current.contract_id,
                "client_id": client_id,
                "period_start": start,
                "period_end": current.period.end,
                "currency": current.currency,
                "current_total": current.total,
                "proposed_total": proposed.total,
                "total_change": proposed.total - current.total,
                "current_lines": len(current.lines),
                "proposed_lines": len(proposed.lines),
            }
        )
        before, after = _sides(current), _sides(proposed)
        for key in [*before, *(k for k in after if k not in before)]:
            a, b = before.get(key), after.get(key)
            if (
                a is not None
                and b is not None
                and (a.rate, a.quantity, a.amount)
                == (
                    b.rate,
                    b.quantity,
                    b.amount,
                )
            ):
                continue
            line = (a or b).line  # type: ignore[union-attr]
            lines.append(
                {
                    "contract_id": current.contract_id,
                    "client_id": client_id,
                    "period_start": start,
                    "kind": line.kind.value,
                    "condition": line.condition,
                    "support_level": line.support_level,
                    "job_type": line.job_type,
                    "key": key,
                    "description": line.description,
                    "current_rate": None if a is None else a.rate,
                    "proposed_rate": None if b is None else b.rate,
                    "current_seconds": None if a is None else a.quantity,
                    "proposed_seconds": None if b is None else b.quantity,
                    "current_amount": None if a is None else a.amount,
                    "proposed_amount": None if b is None else b.amount,
                    "amount_change": (0 if b is None else b.amount)
                    - (0 if a is None else a.amount),
                }
            )
    totals_table = pa.Table.from_pylist(totals, schema=REPLAY_TOTALS)
    return BillingReplay(
        totals_table,
        pa.Table.from_pylist(lines, schema=REPLAY_LINES),
        _by_client(totals_table),
    )


def _by_client(totals: pa.Table) -> pa.Table:
    if totals.num_rows == 0:
        return REPLAY_BY_CLIENT.empty_table()
    grouped = totals.group_by(["client_id", "currency"]).aggregate(
        [("current_total", "sum"), ("proposed_total", "sum")]
    )
    current = grouped.column("current_total_sum")
    proposed = grouped.column("proposed_total_sum")
    table = pa.table(
        {
            "client_id": grouped.column("client_id"),
            "currency": grouped.column("currency"),
            "current": current,
            "proposed": proposed,
            "change": pc.subtract(proposed, current),
        },
        schema=REPLAY_BY_CLIENT,
    )
    return table.sort_by([("client_id", "ascending"), ("currency", "ascending")])


def _horizon(contracts: Sequence[Contract], periods: Mapping[str, Sequence[Period]]) -> Horizon:
    first = min(c.start for c in contracts)
    last = max((p.end for ps in periods.values() for p in ps), default=first)
    return Horizon.of(date(first.year - 1, 1, 1), date(last.year + 2, 1, 1))


def _classified(
    contracts: Sequence[Contract], logs: pa.Table | None, horizon: Horizon
) -> Classification | None:
    if logs is None or logs.num_rows == 0:
        return None
    return classify(ContractBook(contracts, horizon), logs, evidence=True)


def _breaches_of(breaches: pa.Table | None, contract_id: str) -> pa.Table | None:
    if breaches is None:
        return None
    return breaches.filter(pc.equal(breaches.column("contract_id"), contract_id))


def replay_billing(
    current: Sequence[Contract],
    proposed: Sequence[Contract],
    logs: pa.Table | None,
    periods: Mapping[str, Sequence[Period]],
    *,
    breaches: pa.Table | None = None,
    inputs: Mapping[str | tuple[str, date], InvoiceInputs] | None = None,
    tax: Sequence[TaxComponent] = (),
) -> BillingReplay:
    """Re-price the invoices of ``periods`` (per contract id, the periods to invoice) under the
    ``proposed`` contracts (same ids as ``current``) and compare them with the ``current`` ones.

    ``logs`` (:data:`~effigate_engine.ratecard.schemas.TIME_LOGS`, every contract's, from each
    contract's start for drawing contracts) are classified once per side; ``breaches``
    (:data:`~effigate_engine.billing.schemas.BREACH_RECORDS`) give the SLA credits; ``inputs``
    the rest of what ``assemble_invoice`` takes, per contract id or per ``(contract id, period
    start)`` (what invoices before the range settled); ``tax`` the components of an invoice
    whose inputs name none. Within the range each side's invoices of a contract settle in
    period order (:class:`Settled`): a breach credited in one period is not credited again in
    the next, an item is invoiced once, a credit balance carried out is brought into the
    next."""
    by_id = {c.id: c for c in proposed}
    missing = [c.id for c in current if c.id not in by_id]
    if missing or len(by_id) != len(current):
        raise BillingError("proposed", missing, "does not hold the same contracts as current")
    unknown = sorted(set(periods) - {c.id for c in current})
    if unknown:
        raise BillingError("periods", unknown, "names contracts not in current")
    if not current:
        return compare_invoices(())
    horizon = _horizon(current, periods)
    paired = [by_id[c.id] for c in current]
    cls_now = _classified(current, logs, horizon)
    cls_new = _classified(paired, logs, horizon)
    pairs = []
    given = inputs or {}
    for now, new in zip(current, paired, strict=True):
        chain_now, chain_new = Settled(), Settled()
        for period in periods.get(now.id, ()):
            extra = given.get((now.id, period.start)) or given.get(now.id) or InvoiceInputs()
            args = {
                "unit_counts": extra.unit_counts,
                "breaches": _breaches_of(breaches, now.id),
                "tax": tax if extra.tax is None else extra.tax,
                "exemption": extra.exemption,
            }
            before = chain_now.assemble(now, period, cls_now, extra, args)
            after = chain_new.assemble(new, period, cls_new, extra, args)
            pairs.append((now.client_id, before, after))
    return compare_invoices(pairs)


@dataclass
class Settled:
    """What the earlier replayed invoices of one contract on one side settled: breach ids
    credited, item ids invoiced, the credit balance carried out (minor units; ``None`` before
    the first). Each period of a range sees its predecessors' settlement, as a run of
    invoices would."""

    breach_ids: set[str] = field(default_factory=set)
    item_ids: set[str] = field(default_factory=set)
    balance: int | None = None

    def assemble(
        self,
        contract: Contract,
        period: Period,
        cls: Classification | None,
        extra: InvoiceInputs,
        args: Mapping[str, Any],
    ) -> Invoice:
        """The invoice of ``period`` after the earlier ones, recorded as settled."""
        invoice = assemble_invoice(
            contract,
            period,
            classification=cls,
            already_credited=self.breach_ids | set(extra.already_credited),
            invoiced_items=self.item_ids | set(extra.invoiced_items),
            credit_balance=extra.credit_balance if self.balance is None else self.balance,
            **args,
        )
        self.breach_ids.update(invoice.settled_breach_ids, invoice.forfeited_breach_ids)
        for line in invoice.lines:
            if line.kind in (LineKind.MILESTONE, LineKind.DELIVERABLE):
                self.item_ids.update(line.item_ids)
        self.balance = invoice.credit_balance_out
        return invoice


# Proposed terms -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """The proposed side: a rate card and/or terms (a JSON object whose top-level keys replace
    the contract's sections)."""

    rate_card: RateCard | None = None
    terms: dict[str, Any] | None = None

    @classmethod
    def parse(cls, rate_card: Any = None, terms: Any = None) -> Proposal:
        """From JSON bodies (text, bytes or decoded; empty or ``None``: not proposed); errors
        name ``proposed_rate_card_json`` / ``proposed_terms_json`` and the path within."""
        card_body = _decoded(rate_card, "proposed_rate_card_json")
        terms_body = _decoded(terms, "proposed_terms_json")
        if card_body is None and terms_body is None:
            raise BillingError(
                "proposed_rate_card_json", None, "and proposed_terms_json are both empty"
            )
        card = (
            None if card_body is None else rate_card_from_json(card_body, "proposed_rate_card_json")
        )
        if terms_body is not None and not isinstance(terms_body, dict):
            raise BillingError("proposed_terms_json", terms_body, "is not a JSON object")
        return cls(card, terms_body)

    def contract(
        self,
        row: Mapping[str, Any],
        calendar: Calendar,
        amendments: Sequence[Mapping[str, Any]] = (),
        milestones: Sequence[Mapping[str, Any]] = (),
        deliverables: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[Contract, dict[str, Any]]:
        """The proposed domain contract of a stored contract (its ``contracts`` row and rows
        as :func:`~effigate_engine.billing.terms_json.build_contract` takes them) and its
        terms (normalised)."""
        terms = dict(_json(row.get("terms")) or {})
        cid, kind = row["id"], row["contract_type"]
        anchor = terms.get("anchor_day")
        if self.terms is not None and self.terms.get("anchor_day", anchor) != anchor:
            raise BillingError(
                "proposed_terms_json.anchor_day",
                self.terms["anchor_day"],
                f"would move contract {cid}'s billing periods (a what-if keeps them)",
            )
        if self.terms is not None:
            terms.update(self.terms)
            terms = {k: v for k, v in terms.items() if v is not None}
            try:
                terms = validate_terms(kind, str(row["currency"]).strip(), terms)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"proposed_terms_json.{exc.field.removeprefix('terms.')}",
                    exc.value,
                    f"{exc.problem} (contract {cid}, {kind})",
                ) from None
        row = {**row, "terms": terms}
        if self.rate_card is not None:  # the proposed card prices from the start
            amendments = [a for a in amendments if a["kind"] != "RATE_CARD"]
        contract = build_contract(row, calendar, amendments, milestones, deliverables)
        if self.rate_card is not None:
            card = freeze(self.rate_card)
            if card.currency != contract.currency:
                raise BillingError(
                    "proposed_rate_card_json.currency",
                    card.currency,
                    f"differs from contract {cid}'s {contract.currency}",
                )
            version = RateCardVersion(1, contract.start, card, card.content_hash())
            contract = replace(contract, rate_card=card, versions=(version,))
        return contract, terms


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _decoded(body: Any, field: str) -> Any:
    if body is None or body in ("", b""):
        return None
    if isinstance(body, str | bytes):
        try:
            return json.loads(body)
        except ValueError as exc:
            raise BillingError(field, str(body)[:80], f"is not JSON: {exc}") from None
    return body


def periods_between(contract: Contract, day_from: date, day_to: date) -> list[Period]:
    """The billing periods of ``contract`` overlapping local dates ``day_from``..``day_to``
    (inclusive), from its start and up to its end."""
    first = max(day_from, contract.start)
    out: list[Period] = []
    if first > day_to or (contract.end is not None and first >= contract.end):
        return out
    period = contract.cycle.period_of(first)
    while period.start <= day_to and (contract.end is None or period.start < contract.end):
        out.append(period)
        period = contract.cycle.period(period.ordinal + 1)
    return out


__all__ = [
    "REPLAY_BY_CLIENT",
    "REPLAY_LINES",
    "REPLAY_TOTALS",
    "BillingReplay",
    "Proposal",
    "Settled",
    "compare_invoices",
    "line_key",
    "periods_between",
    "replay_billing",
]
