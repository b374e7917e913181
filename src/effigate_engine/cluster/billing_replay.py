"""What-if billing over a dataset (``effigate export``'s Parquet): a tenant's contracts
re-priced under a proposed rate card and/or terms for a range of periods, in this process.

The contracts come from the tenant's catalog (:class:`~effigate_engine.datasets.catalog.
ContractSource`, built as the service builds them), the time logs from its ``time_logs`` parts,
the breaches from its breach records; the comparison is the billing domain's
(:func:`effigate_engine.billing.whatif.replay_billing`). What earlier invoices settled is the
catalog's, as of the export: a breach an exported invoice credited is settled on both sides.
A proposed ``tax`` section is not applied here (the catalog's tax inputs price both sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from effigate_engine.billing.terms_json import tax_components
from effigate_engine.billing.whatif import BillingReplay, Proposal, periods_between, replay_billing
from effigate_engine.calendar import Calendar
from effigate_engine.cluster.billing_jobs import read_logs
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import load_breaches, load_catalog

#: Contract statuses a replay prices when no contract is named.
_ACTIVE = ("ACTIVE", "AMENDED")


def replay_billing_dataset(
    url: str,
    tenant: str,
    *,
    day_from: date,
    day_to: date,
    proposed_card: Any = None,
    proposed_terms: Any = None,
    contract_ids: Sequence[int | str] = (),
) -> BillingReplay:
    """The what-if of tenant ``tenant``'s contracts in the dataset at ``url`` (``contract_ids``,
    else every active one) over their periods overlapping ``day_from``..``day_to`` (local
    dates, inclusive) under ``proposed_card`` (rate-card JSON) and/or ``proposed_terms``
    (terms JSON whose top-level keys replace the contract's sections)."""
    if day_to < day_from:
        raise layout.DatasetError(f"day_to: {day_to} is before day_from {day_from}")
    proposal = Proposal.parse(proposed_card, proposed_terms)
    catalog = load_catalog(url, tenant)
    wanted = {str(c) for c in contract_ids}
    known = {s.id: s for s in catalog.contracts}
    missing = sorted(wanted - set(known))
    if missing:
        raise layout.DatasetError(
            f"contract_ids: {missing} are not contracts of tenant {tenant}'s catalog"
        )
    sources = [
        s
        for s in catalog.contracts
        if (s.id in wanted and s.row.get("status") != "DRAFT")
        or (not wanted and s.row.get("status") in _ACTIVE)
    ]
    current, proposed = [], []
    for s in sources:
        current.append(s.contract())
        calendar = Calendar.from_json(s.calendar)
        made, _ = proposal.contract(s.row, calendar, s.amendments, s.milestones, s.deliverables)
        proposed.append(made)
    periods = {c.id: periods_between(c, day_from, day_to) for c in current}
    ids = {c.id for c in current}
    logs = read_logs(
        url, [p for p in layout.parts(url, layout.TIME_LOGS, {tenant}) if p.key in ids]
    )
    breaches = load_breaches(url, tenant)
    inputs = {
        (c.id, p.start): s.inputs(c, p)
        for s, c in zip(sources, current, strict=True)
        for p in periods[c.id]
    }
    return replay_billing(
        current,
        proposed,
        logs,
        periods,
        breaches=breaches,
        inputs=inputs,
        tax=tax_components(catalog.default_tax),
    )


__all__ = ["replay_billing_dataset"]
