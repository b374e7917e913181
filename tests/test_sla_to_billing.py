"""The seam between the engines: SLA breach records become billing credit lines as they are."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from effigate_engine import Calendar, CalendarSet, WeeklyEntry, sla
from effigate_engine.billing.assembly import assemble_invoice
from effigate_engine.billing.invoice import TaxComponent
from effigate_engine.ratecard.contracts import Contract, ContractType, SlaCreditTerms
from effigate_engine.ratecard.model import RateCard

H = 3600


def test_breaches_from_an_evaluation_are_credited_once_each() -> None:
    office = Calendar("America/New_York", tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)),
                      name="nyc-business-hours")
    calendars = CalendarSet([office])
    policy = sla.Policy.from_json({"name": "p", "rules": [{"metrics": {
        "FIRST_RESPONSE": {"target": "1h", "calendar": "nyc-business-hours"},
        "RESOLUTION": {"target": "8h", "calendar": "nyc-business-hours"}}}]})
    created = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
    tickets = pa.Table.from_pylist([
        {"ticket_id": "TKT-1", "priority": "HIGH", "contract_id": "CON-7", "client_id": "nexus",
         "created_at": created, "first_response_at": created + timedelta(hours=2),
         "resolved_at": created + timedelta(hours=3)},
        {"ticket_id": "TKT-2", "priority": "P1", "contract_id": "CON-7", "client_id": "nexus",
         "created_at": created, "first_response_at": created + timedelta(minutes=20)},
    ], schema=sla.TICKETS)
    evaluation = sla.evaluate(tickets, policy, calendars, created + timedelta(days=3))
    breaches = sla.breach_records(evaluation)
    assert sorted(breaches.column("breach_id").to_pylist()) == [
        "TKT-1:FIRST_RESPONSE", "TKT-2:RESOLUTION"]

    card = RateCard.from_json({
        "currency": "USD",
        "base_rates": [{"support_level": "*", "job_type": "*", "amount": "120.00"}],
    })
    contract = Contract(
        "CON-7", "nexus", ContractType.HOURLY, office, date(2026, 3, 1), card,
        sla_credits=SlaCreditTerms(per_breach={"HIGH": 20_000, "CRITICAL": 50_000}),
    ).activate()
    period = contract.cycle.period(0)
    invoice = assemble_invoice(contract, period, breaches=breaches,
                               tax=[TaxComponent("GST", 100_000)],
                               credit_balance=0)
    credited = {b for line in invoice.credit_lines for b in line.breach_ids}
    assert credited == {"TKT-1:FIRST_RESPONSE", "TKT-2:RESOLUTION"}
    assert sum(line.amount for line in invoice.credit_lines) == -70_000
    # Nothing to charge: the credits are carried as a balance, never a negative total.
    assert invoice.total == 0 and invoice.credit_balance_out == 70_000

    again = assemble_invoice(contract, period, breaches=breaches,
                             already_credited=credited)
    assert not again.credit_lines
