"""What-if billing of stored contracts: the invoices of a range of periods re-priced under a
proposed rate card and/or proposed contract terms, beside the invoices the current terms give.

For each contract (the listed ones, or every active contract of the tenant) and each of its
billing periods overlapping the local dates ``day_from``..``day_to`` (inclusive), the inputs are
gathered as an invoice preview gathers them (:func:`~effigate_engine.service.invoicing.
invoice_inputs`: approved logs, late logs, unit counts, breaches, what the contract's other
invoices settled) and the invoice assembled under each side; the comparison is the billing
domain's (:mod:`effigate_engine.billing.whatif`). It runs in a read-only transaction: issued
invoices, drafts and periods are never written.

The proposed side: a rate card (the rate-card JSON, ``docs/billing.md``) prices every period
from the contract's start (its rate-card amendments are replaced by it); terms JSON
(``docs/contract-terms.md``) replace the contract's terms section by section (a top-level key
given replaces that section, ``null`` removes it), validated for each contract's type and
currency. Money is integer minor units of each contract's currency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from effigate_engine.billing.invoice import Invoice
from effigate_engine.billing.rate_card_json import rate_card_from_json
from effigate_engine.billing.run import InvoiceInputs
from effigate_engine.billing.terms_json import build_contract, tax_components, validate_terms
from effigate_engine.billing.whatif import BillingReplay, Settled, compare_invoices
from effigate_engine.errors import BillingError, ConfigurationError
from effigate_engine.ratecard.contracts import Contract, RateCardVersion, freeze
from effigate_engine.ratecard.model import RateCard
from effigate_engine.ratecard.periods import Period
from effigate_engine.service.context import Principal
from effigate_engine.service.contracts import load_stored
from effigate_engine.service.invoice_evidence import Inputs, classified, unit_counts
from effigate_engine.service.invoicing import invoice_inputs
from effigate_engine.store import contracts as contract_store
from effigate_engine.store import periods as period_store
from effigate_engine.store.contracts import StoredContract
from effigate_engine.store.database import Store

#: Contract statuses a replay prices when no contract is named.
_ACTIVE = ("ACTIVE", "AMENDED")


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
        card = None if card_body is None else rate_card_from_json(card_body, "proposed_rate_card")
        if terms_body is not None and not isinstance(terms_body, dict):
            raise BillingError("proposed_terms_json", terms_body, "is not a JSON object")
        return cls(card, terms_body)

    def contract(self, stored: StoredContract) -> tuple[Contract, dict[str, Any]]:
        """The proposed domain contract of ``stored`` and its terms (normalised)."""
        record = stored.record
        terms = dict(record.terms)
        if self.terms is not None:
            terms.update(self.terms)
            terms = {k: v for k, v in terms.items() if v is not None}
            try:
                terms = validate_terms(record.contract_type, record.currency, terms)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"proposed_terms_json.{exc.field.removeprefix('terms.')}",
                    exc.value,
                    f"{exc.problem} (contract {record.id}, {record.contract_type})",
                ) from None
        row = record.row()
        row["terms"] = terms
        amendments = stored.amendments
        if self.rate_card is not None:  # the proposed card prices from the start
            amendments = tuple(a for a in amendments if a["kind"] != "RATE_CARD")
        assert stored.calendar is not None  # load_stored refuses a contract without one
        contract = build_contract(
            row, stored.calendar, amendments, stored.milestones, stored.deliverables
        )
        if self.rate_card is not None:
            card = freeze(self.rate_card)
            if card.currency != contract.currency:
                raise BillingError(
                    "proposed_rate_card_json.currency",
                    card.currency,
                    f"differs from contract {record.id}'s {contract.currency}",
                )
            version = RateCardVersion(1, contract.start, card, card.content_hash())
            contract = replace(contract, rate_card=card, versions=(version,))
        return contract, terms


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


@dataclass
class _Gathered:
    stored: StoredContract
    proposed: Contract
    proposed_terms: dict[str, Any]
    inputs: list[Inputs]


async def _gather(
    conn: Any,
    principal: Principal,
    contract_ids: Sequence[int],
    day_from: date,
    day_to: date,
    proposal: Proposal,
) -> list[_Gathered]:
    if not contract_ids:
        records = await contract_store.list_contracts(conn, principal.client_id)
        contract_ids = [r.id for r in records if r.status in _ACTIVE]
    out = []
    for contract_id in dict.fromkeys(contract_ids):
        stored = await load_stored(conn, contract_id, principal)
        if stored.record.status == "DRAFT":
            raise BillingError("contract_ids", contract_id, "is a DRAFT contract (not priced)")
        proposed, terms = proposal.contract(stored)
        gathered = []
        for period in periods_between(stored.contract, day_from, day_to):
            bounds = period.bounds(stored.contract.zone)
            row = await period_store.fetch_period(conn, contract_id, bounds)
            gathered.append(
                await invoice_inputs(
                    conn, stored, period, bounds, None if row is None else row["id"]
                )
            )
        out.append(_Gathered(stored, proposed, terms, gathered))
    return out


def _proposed_inputs(g: _Gathered, inputs: Inputs) -> Inputs:
    """``inputs`` under the proposed contract: its unit counts, and its tax when its terms
    name one."""
    tax = g.proposed_terms.get("tax")
    return replace(
        inputs,
        contract=g.proposed,
        unit_counts=unit_counts(g.stored, inputs.period, g.proposed),
        tax=inputs.tax if tax is None else list(tax),
        exemption=g.proposed_terms.get("tax_exemption"),
    )


def _assemble(settled: Settled, inputs: Inputs) -> Invoice:
    cls, late = classified(inputs)
    extra = InvoiceInputs(
        already_credited=inputs.already_credited,
        invoiced_items=inputs.invoiced_items,
        credit_balance=inputs.credit_balance,
    )
    args = {
        "unit_counts": inputs.unit_counts,
        "breaches": inputs.breaches,
        "tax": tax_components(inputs.tax),
        "exemption": inputs.exemption,
        "late": late,
    }
    return settled.assemble(inputs.contract, inputs.period, cls, extra, args)


def _compute(gathered: Sequence[_Gathered]) -> BillingReplay:
    """Both sides of every gathered period, each contract's periods in order (CPU-bound)."""
    pairs = []
    for g in gathered:
        now, new = Settled(), Settled()
        client = str(g.stored.record.client_id)
        for inputs in g.inputs:
            current = _assemble(now, inputs)
            proposed = _assemble(new, _proposed_inputs(g, inputs))
            pairs.append((client, current, proposed))
    return compare_invoices(pairs)


async def replay_billing(
    store: Store,
    principal: Principal,
    *,
    day_from: date,
    day_to: date,
    contract_ids: Sequence[int] = (),
    proposed_rate_card: Any = None,
    proposed_terms: Any = None,
) -> BillingReplay:
    """The what-if of the contracts ``contract_ids`` (none: every active contract of the
    tenant) over their periods overlapping ``day_from``..``day_to`` (local dates, inclusive)
    under the proposed rate card and/or terms (JSON; see the module docstring). Reads only:
    nothing is stored, issued invoices are untouched. Staff only."""
    principal.require_staff("replay billing")
    if day_to < day_from:
        raise BillingError("period_to", day_to.isoformat(), f"is before period_from {day_from}")
    for i, cid in enumerate(contract_ids):
        if not isinstance(cid, int) or isinstance(cid, bool) or cid <= 0:
            raise BillingError(f"contract_ids[{i}]", cid, "is not a contract id")
    proposal = Proposal.parse(proposed_rate_card, proposed_terms)
    async with store.transaction(principal) as conn:
        await conn.execute("SET TRANSACTION READ ONLY")
        gathered = await _gather(conn, principal, contract_ids, day_from, day_to, proposal)
    return await asyncio.to_thread(_compute, gathered)


__all__ = ["Proposal", "periods_between", "replay_billing"]
