"""What-if billing of stored contracts: a quarter re-priced under a proposed card and terms,
each side checked against assembling the invoices independently; issued invoices untouched."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.invoice import TaxComponent
from effigate_engine.billing.schemas import BREACH_RECORDS
from effigate_engine.errors import EffigateError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import RateCardVersion, SlaCreditTerms, freeze
from effigate_engine.ratecard.model import RateCard
from effigate_engine.service import contracts, invoicing
from effigate_engine.service.billing_replay import replay_billing
from tests.billing.support import HORIZON
from tests.billing.support import log_batch as domain_logs
from tests.service.test_invoicing import (
    MARCH,
    SEED_CARD,
    add_breach,
    add_logs,
    fetch_all,
    new_contract,
    run,
    setup,
)
from tests.store.helpers import Database

PROPOSED_CARD = {
    "currency": "USD",
    "base_rates": [{"support_level": "*", "job_type": "*", "amount": "130.00"}],
    "rules": {"AFTER_HOURS": {"amount": "210.00"}, "ADDITIONAL_HOURS": {"amount": "150.00"}},
    "increment_seconds": 900,
}
PROPOSED_TERMS = {
    "sla_credits": {"per_breach": {"HIGH": "50.00"}},
    "tax": [{"name": "GST", "rate_ppm": 50_000}],
}
#: Per month of the quarter: a regular day (09:00-16:00) and an after-hours evening (3 h).
SPANS = [
    (f"2026-{m:02d}-{d:02d}T{a}-04:00", f"2026-{m:02d}-{d:02d}T{b}-04:00")
    for m, regular, evening in ((3, 17, 18), (4, 14, 15), (5, 12, 13))
    for d, a, b in ((regular, "09:00", "16:00"), (evening, "18:00", "21:00"))
]
BREACH_AT = datetime(2026, 4, 10, 15, tzinfo=UTC)
GST = TaxComponent("GST", 100_000)
GST_PROPOSED = TaxComponent("GST", 50_000)


def _snapshot(db: Database, tenant: Any) -> Any:
    async def go() -> Any:
        tables = {}
        for table in ("invoices", "invoice_lines", "billing_periods", "invoice_line_time_logs"):
            rows = await fetch_all(db, f"SELECT * FROM {table} WHERE tenant_id = $1", tenant)
            tables[table] = sorted(tuple(r.items()) for r in rows)
        return tables

    return go()


def test_a_quarter_re_priced_under_a_proposed_card_and_terms(db: Database) -> None:
    async def scenario() -> None:
        from tests.service.support import open_store

        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s)
            await add_logs(store, p, c.id, SPANS, f"Q{c.id}")
            await add_breach(db, p, s.client_id, c.id, f"BR-{c.id}", BREACH_AT)
            march = await invoicing.generate_invoice(store, p, c.id, MARCH)
            march = await invoicing.issue_invoice(store, p, march.id)
            before = await _snapshot(db, p.tenant_id)

            replay = await replay_billing(
                store,
                p,
                day_from=MARCH,
                day_to=date(2026, 5, 31),
                proposed_rate_card=PROPOSED_CARD,
                proposed_terms=PROPOSED_TERMS,
            )
            assert await _snapshot(db, p.tenant_id) == before
            async with store.transaction(p) as conn:
                current = await contracts.load_contract(conn, c.id)

        # the proposed contract, built by hand: the proposed card from the start, the credit
        card = freeze(RateCard.from_json(PROPOSED_CARD))
        proposed = replace(
            current,
            rate_card=card,
            versions=(RateCardVersion(1, current.start, card, card.content_hash()),),
            sla_credits=SlaCreditTerms(per_breach={"HIGH": 5_000}),
        )
        logs = domain_logs(
            [
                {
                    "log_id": f"Q{c.id}-{i}",
                    "contract_id": str(c.id),
                    "start": datetime.fromisoformat(a),
                    "end": datetime.fromisoformat(b),
                }
                for i, (a, b) in enumerate(SPANS)
            ]
        )
        breach = BREACH_RECORDS.empty_table().from_pylist(
            [
                {
                    "breach_id": f"BR-{c.id}",
                    "ticket_id": f"TKT-BR-{c.id}",
                    "contract_id": str(c.id),
                    "client_id": str(s.client_id),
                    "metric": "RESOLUTION",
                    "priority": "HIGH",
                    "breached_at": BREACH_AT,
                    "breach_seconds": 1800,
                    "severity": "MAJOR",
                }
            ],
            schema=BREACH_RECORDS,
        )
        periods = [current.cycle.period(k) for k in range(3)]
        invoices = {}
        for side, contract, tax in (
            ("current", current, GST),
            ("proposed", proposed, GST_PROPOSED),
        ):
            cls = classify(ContractBook([contract], HORIZON), logs, evidence=True)
            credited: set[str] = set()
            invoices[side] = []
            for period in periods:
                inv = assemble_invoice(
                    contract,
                    period,
                    classification=cls,
                    breaches=breach,
                    already_credited=credited,
                    tax=[tax],
                )
                credited |= set(inv.settled_breach_ids)
                invoices[side].append(inv)

        totals = replay.totals.to_pylist()
        assert [(r["period_start"], r["period_end"]) for r in totals] == [
            (q.start, q.end) for q in periods
        ]
        assert [r["current_total"] for r in totals] == [i.total for i in invoices["current"]]
        assert [r["proposed_total"] for r in totals] == [i.total for i in invoices["proposed"]]
        assert totals[0]["current_total"] == march.total_minor  # the issued invoice's total
        assert all(r["total_change"] != 0 for r in totals)

        # the lines that move: per (period, kind, condition) the change the two invoices show
        want: dict[tuple, int] = defaultdict(int)
        for now, new in zip(invoices["current"], invoices["proposed"], strict=True):
            for sign, inv in ((-1, now), (1, new)):
                for line in inv.lines:
                    want[(inv.period.start, line.kind.value, line.condition)] += sign * line.amount
        got: dict[tuple, int] = defaultdict(int)
        for r in replay.lines.to_pylist():
            got[(r["period_start"], r["kind"], r["condition"])] += r["amount_change"]
        assert got == {k: v for k, v in want.items() if v}
        assert {k[1:] for k in got} == {
            ("TIME", "REGULAR"),
            ("TIME", "AFTER_HOURS"),
            ("SLA_CREDIT", None),
        }
        (client,) = replay.by_client.to_pylist()
        assert client["current"] == sum(i.total for i in invoices["current"])
        assert client["proposed"] == sum(i.total for i in invoices["proposed"])

    run(scenario())


def test_bad_proposals_name_the_field(db: Database) -> None:
    async def scenario() -> None:
        from tests.service.support import open_store

        async with open_store(db) as store:
            s = await setup(store, db)
            c = await new_contract(store, s)
            cases = [
                ({}, "proposed_rate_card_json"),
                ({"proposed_terms": {"bucket": {"size_hours": 5}}}, "proposed_terms_json.bucket"),
                (
                    {"proposed_rate_card": {**SEED_CARD, "currency": "EUR"}},
                    "proposed_rate_card_json",
                ),
                ({"proposed_rate_card": "{not json"}, "proposed_rate_card_json"),
                ({"proposed_rate_card": {**SEED_CARD, "base_rates": 3}}, "proposed_rate_card_json"),
                ({"proposed_terms": {"anchor_day": 15}}, "proposed_terms_json.anchor_day"),
            ]
            for kwargs, field in cases:
                with pytest.raises(EffigateError) as err:
                    await replay_billing(
                        store,
                        s.principal,
                        day_from=MARCH,
                        day_to=MARCH,
                        contract_ids=[c.id],
                        **kwargs,
                    )
                assert err.value.field.startswith(field), (kwargs, err.value)

    run(scenario())
