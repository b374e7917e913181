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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from effigate_engine.billing.invoice import Invoice
from effigate_engine.billing.run import InvoiceInputs
from effigate_engine.billing.terms_json import tax_components
from effigate_engine.billing.whatif import (
    BillingReplay,
    Proposal,
    Settled,
    compare_invoices,
    periods_between,
)
from effigate_engine.errors import BillingError
from effigate_engine.ratecard.contracts import Contract
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
        assert stored.calendar is not None  # load_stored refuses a contract without one
        proposed, terms = proposal.contract(
            stored.record.row(),
            stored.calendar,
            stored.amendments,
            stored.milestones,
            stored.deliverables,
        )
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
    """``inputs`` under the proposed contract: its unit counts, and the tax its terms name
    (else the tenant's default, as an invoice of the contract would take)."""
    tax = g.proposed_terms.get("tax")
    return replace(
        inputs,
        contract=g.proposed,
        unit_counts=unit_counts(g.stored, inputs.period, g.proposed),
        tax=list(g.stored.default_tax if tax is None else tax),
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


__all__ = ["replay_billing"]
