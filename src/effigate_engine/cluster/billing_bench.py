"""The billing counterpart of the rule-change bench: a dataset's contracts invoiced for the
period holding a day under their current terms and under proposed ones (a rate card, contract
terms or both), the money difference per client, and what each side costs to price (time logs
per second through ``classify(evidence=True)`` and ``billing_run``, on one thread).

The difference is :func:`effigate_engine.billing.whatif.replay_billing` over each tenant's
billable contracts (as ``effigate bill-run`` bills them: every contract but drafts, started by
the day, with the tenant's breach records, each contract's invoice inputs and default tax), the
proposed contracts built from the same stored rows by the same ``build_contract``:

- a proposed **rate card** (its JSON body) prices every selected contract of its currency from
  the contract's start (its frozen card replaced, its ``RATE_CARD`` amendments dropped; top-ups
  kept); contracts of another currency keep their own card;
- proposed **terms** (a terms object of some sections) replace those sections of each selected
  contract's terms (``bucket`` only on ``BUCKET`` contracts, ``recurring`` only on
  ``RECURRING`` ones), validated per contract; a changed ``anchor_day`` is refused (it would
  move the periods compared), and a ``tax`` section is not applied (the catalog's tax inputs
  price both sides), as in ``cluster.billing_replay``.

The proposed contracts are built by :class:`effigate_engine.billing.whatif.Proposal`, as every
what-if builds them (``effigate replay-billing``, ``ReplayBilling``).

Both sides are invoiced for the current contracts' periods. Money is int64 minor units of each
contract's currency; the cost is milliseconds (best of ``repeat``) and logs per second.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pyarrow as pa

from effigate_engine.billing import whatif
from effigate_engine.billing.rate_card_json import rate_card_from_json
from effigate_engine.billing.run import billing_run
from effigate_engine.billing.terms_json import tax_components
from effigate_engine.billing.whatif import replay_billing
from effigate_engine.calendar import Calendar
from effigate_engine.cluster.billing_jobs import billable, read_logs
from effigate_engine.cluster.sla_jobs import TENANT
from effigate_engine.datasets import layout
from effigate_engine.datasets.catalog import (
    ContractSource,
    contract_periods,
    load_breaches,
    load_catalog,
)
from effigate_engine.errors import EffigateError
from effigate_engine.ratecard.book import ContractBook, book_horizon
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import Contract

SIDES = ("current", "proposed")
#: Terms sections that apply to one contract type only.
TYPE_SECTIONS = {"bucket": "BUCKET", "recurring": "RECURRING"}
#: One row per tenant and side.
BILLING_COSTS = pa.schema(
    [
        pa.field(TENANT, pa.string(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("contracts", pa.int64(), nullable=False),
        pa.field("invoices", pa.int64(), nullable=False),
        pa.field("logs", pa.int64(), nullable=False),
        pa.field("first_run_ms", pa.float64(), nullable=False),
        pa.field("book_ms", pa.float64(), nullable=False),
        pa.field("classify_ms", pa.float64(), nullable=False),
        pa.field("assemble_ms", pa.float64(), nullable=False),
        pa.field("run_ms", pa.float64(), nullable=False),
        pa.field("logs_per_s", pa.float64(), nullable=False),
    ]
)
#: The measures of a side's cost, in the order they are set side by side.
MEASURES = (
    "contracts",
    "invoices",
    "logs",
    "first_run_ms",
    "book_ms",
    "classify_ms",
    "assemble_ms",
    "run_ms",
    "logs_per_s",
)


@dataclass(frozen=True)
class Proposal:
    """What the proposed side changes: a rate card body, terms sections, and which contracts
    (ids; ``None``: all) take them. ``current_card`` prices the current side instead of each
    contract's own card (two cards compared, neither stored)."""

    card: Mapping[str, Any] | None = None
    terms: Mapping[str, Any] | None = None
    contracts: frozenset[str] | None = None
    current_card: Mapping[str, Any] | None = None

    def check(self) -> None:
        """Parse the cards (a bad one names its field) and require a change."""
        if self.card is None and self.terms is None:
            raise EffigateError("proposed: give a rate card or terms (or both)")
        for body, path in ((self.card, "proposed_card"), (self.current_card, "current_card")):
            if body is not None:
                rate_card_from_json(body, path)


@dataclass(frozen=True)
class BillingBench:
    """Per tenant: ``by_client`` (tenant, client, currency: current, proposed, change, minor
    units), ``totals`` per contract and period and the ``lines`` that change (the tables of
    :class:`~effigate_engine.billing.whatif.BillingReplay` with a leading ``tenant_id``), each
    side's cost (:data:`BILLING_COSTS`) and how many contracts each tenant re-priced."""

    by_client: pa.Table
    totals: pa.Table
    lines: pa.Table
    costs: pa.Table
    changed: dict[str, int]
    day: date
    repeat: int


def with_card(source: ContractSource, card: Mapping[str, Any]) -> ContractSource:
    """``source`` priced by ``card`` from its start: its frozen card replaced and its
    ``RATE_CARD`` amendments dropped (top-ups and notes kept)."""
    row = {**source.row, "frozen_rate_card": dict(card), "frozen_rate_card_sha256": None}
    kept = [a for a in source.amendments if a.get("kind") != "RATE_CARD"]
    return replace(source, row=row, amendments=kept)


def _applies(source: ContractSource, proposal: Proposal) -> bool:
    return proposal.contracts is None or source.id in proposal.contracts


def _priced_by(source: ContractSource, card: Mapping[str, Any] | None, p: Proposal) -> bool:
    """Whether ``card`` prices ``source``: a selected contract of the card's currency."""
    return card is not None and _applies(source, p) and card["currency"] == source.row["currency"]


def proposed_contract(source: ContractSource, proposal: Proposal) -> Contract | None:
    """The proposed domain contract of ``source``, built by the what-if's own
    :class:`effigate_engine.billing.whatif.Proposal` (the card of its currency priced from its
    start; the terms sections for its type replacing its own, validated), or ``None`` when the
    proposal does not touch it."""
    if not _applies(source, proposal):
        return None
    kind = str(source.row["contract_type"])
    card = proposal.card if _priced_by(source, proposal.card, proposal) else None
    terms = None
    if proposal.terms is not None:
        terms = {k: v for k, v in proposal.terms.items() if TYPE_SECTIONS.get(k, kind) == kind}
    if card is None and not terms:
        return None
    made, _ = whatif.Proposal.parse(card, terms or None).contract(
        source.row,
        Calendar.from_json(source.calendar),
        source.amendments,
        source.milestones,
        source.deliverables,
    )
    return made


def _best(values: list[float]) -> float:
    return min(values) * 1000.0


def price_once(
    contracts: Sequence[Contract],
    logs: pa.Table | None,
    periods: Mapping[str, Any],
    until: date,
    *,
    breaches: pa.Table | None,
    inputs: Mapping[str, Any],
    tax: Sequence[Any],
) -> tuple[float, float, float, int]:
    """Price ``contracts`` once as a month-end run does on one thread: the seconds of the book
    (calendars compiled), ``classify(evidence=True)`` of the logs and ``billing_run``, and the
    invoices made."""
    t0 = time.perf_counter()
    book = ContractBook(list(contracts), book_horizon(list(contracts), until, logs))
    t1 = time.perf_counter()
    cls = classify(book, logs, evidence=True) if logs is not None else None
    t2 = time.perf_counter()
    run = billing_run(book, cls, periods, breaches=breaches, inputs=inputs, tax=tax, threads=1)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, run.invoices.num_rows


def price_costs(
    sides: Sequence[Sequence[Contract]],
    logs: pa.Table | None,
    periods: Mapping[str, Any],
    until: date,
    *,
    breaches: pa.Table | None,
    inputs: Mapping[str, Any],
    tax: Sequence[Any],
    repeat: int,
) -> list[dict[str, Any]]:
    """What pricing each of ``sides`` costs (rows of :data:`BILLING_COSTS` but the tenant and
    side): a first run (``first_run_ms``: first-call costs included, not counted in the best),
    then the best of ``repeat`` runs of the book, the classification, ``billing_run`` and the
    whole (milliseconds), and logs per second over the best whole run. The sides take turns
    in each round, so a change in the machine's load falls on both alike."""
    if repeat < 1:
        raise EffigateError(f"repeat: {repeat!r} is not a positive number of runs")
    n = 0 if logs is None else logs.num_rows
    runs: list[list[tuple[float, float, float, int]]] = [[] for _ in sides]
    for _ in range(1 + repeat):
        for k, contracts in enumerate(sides):
            if contracts:
                runs[k].append(
                    price_once(
                        contracts, logs, periods, until, breaches=breaches, inputs=inputs, tax=tax
                    )
                )
    out = []
    for contracts, timed in zip(sides, runs, strict=True):
        cost: dict[str, Any] = {"contracts": len(contracts), "invoices": 0, "logs": n}
        cost |= {m: 0.0 for m in MEASURES if m not in cost}
        if timed:
            first, rest = timed[0], timed[1:]
            best = min(sum(r[:3]) for r in rest)
            cost |= {
                "invoices": rest[-1][3],
                "first_run_ms": sum(first[:3]) * 1000.0,
                "book_ms": _best([r[0] for r in rest]),
                "classify_ms": _best([r[1] for r in rest]),
                "assemble_ms": _best([r[2] for r in rest]),
                "run_ms": best * 1000.0,
                "logs_per_s": n / best if best > 0 else 0.0,
            }
        out.append(cost)
    return out


def _with_tenant(table: pa.Table, tenant: str) -> pa.Table:
    return table.add_column(0, TENANT, pa.array([tenant] * table.num_rows, pa.string()))


def bench_billing(
    url: str,
    day: date,
    proposal: Proposal,
    *,
    tenants: Sequence[str] | None = None,
    repeat: int = 3,
) -> BillingBench:
    """Invoice every billable contract of the dataset at ``url`` for its period holding local
    date ``day`` under the current and the proposed terms: the differences and the costs."""
    proposal.check()
    names = sorted(tenants) if tenants is not None else layout.tenants(url)
    if not names:
        raise layout.DatasetError(f"{url}: no tenants (catalog/tenant=<t>/catalog.json)")
    by_client, totals, lines, costs, changed = [], [], [], [], {}
    for tenant in names:
        catalog = load_catalog(url, tenant)
        sources = [s for s in catalog.contracts if billable(s)]
        if proposal.current_card is not None:
            card = proposal.current_card
            sources = [with_card(s, card) if _priced_by(s, card, proposal) else s for s in sources]
        now_side = {s.id: s.contract() for s in sources}
        made = {s.id: proposed_contract(s, proposal) for s in sources}
        new_side = {cid: made[cid] or now_side[cid] for cid in now_side}
        changed[tenant] = sum(c is not None for c in made.values())
        periods = contract_periods(sources, now_side, day)
        ids = set(periods)
        parts = [p for p in layout.parts(url, layout.TIME_LOGS, {tenant}) if p.key in ids]
        logs = read_logs(url, parts)
        breaches = load_breaches(url, tenant)
        inputs = {s.id: s.inputs(now_side[s.id], periods[s.id]) for s in sources if s.id in ids}
        tax = tax_components(catalog.default_tax)
        current = [now_side[s.id] for s in sources if s.id in ids]
        proposed = [new_side[s.id] for s in sources if s.id in ids]
        replayed = replay_billing(
            current,
            proposed,
            logs,
            {cid: [p] for cid, p in periods.items()},
            breaches=breaches,
            inputs=inputs,
            tax=tax,
        )
        by_client.append(_with_tenant(replayed.by_client, tenant))
        totals.append(_with_tenant(replayed.totals, tenant))
        lines.append(_with_tenant(replayed.lines, tenant))
        measured = price_costs(
            (current, proposed),
            logs,
            periods,
            max((p.end for p in periods.values()), default=day),
            breaches=breaches,
            inputs=inputs,
            tax=tax,
            repeat=repeat,
        )
        costs += [
            {TENANT: tenant, "side": side, **m} for side, m in zip(SIDES, measured, strict=True)
        ]
    return BillingBench(
        by_client=pa.concat_tables(by_client),
        totals=pa.concat_tables(totals),
        lines=pa.concat_tables(lines),
        costs=pa.Table.from_pylist(costs, schema=BILLING_COSTS),
        changed=changed,
        day=day,
        repeat=repeat,
    )
