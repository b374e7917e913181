"""Billing through the API: the seed workflow from a portal ticket to a paid invoice, portal
isolation, immutability after issue, idempotent generation under a race, and error mapping —
against a real server process."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pyarrow as pa

from effigate_client import Client, billing_pb2, catalog_pb2, sla_pb2, tickets_pb2, to_timestamp
from effigate_client.client import ipc_bytes, ipc_table
from effigate_engine.ratecard.schemas import LOG_RESULTS
from tests.e2e.support import at, refused

MARCH = "2026-03-01"
HOUR = 3_600
NYC_HOURS = {
    "timezone": "America/New_York",
    "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
}
SEED_CARD = {
    "currency": "USD",
    "base_rates": [{"support_level": "*", "job_type": "*", "amount": "120.00"}],
    "rules": {"AFTER_HOURS": {"amount": "180.00"}},
    "increment_seconds": 900,
}
SEED_TERMS = {"sla_credits": {"per_breach": {"HIGH": "200.00"}}}
POLICY = {
    "name": "nyc-msp",
    "rules": [
        {
            "name": "high",
            "match": {"priority": "HIGH"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "1h", "calendar": "nyc-business-hours"},
                "RESOLUTION": {"target": "16h", "calendar": "nyc-business-hours"},
            },
        },
        {
            "name": "everything else",
            "metrics": {
                "FIRST_RESPONSE": {"target": "8h", "calendar": "nyc-business-hours"},
                "RESOLUTION": {"target": "40h", "calendar": "nyc-business-hours"},
            },
        },
    ],
}
#: The seed's six logs (New York local times): 4 × 7 h + 0.5 h regular, 3 h after hours.
SEED_SPANS = [(f"2026-03-0{d}T09:00-05:00", f"2026-03-0{d}T16:00-05:00") for d in (2, 3, 4, 5)] + [
    ("2026-03-06T09:00-05:00", "2026-03-06T09:30-05:00"),
    ("2026-03-06T18:00-05:00", "2026-03-06T21:00-05:00"),
]


@dataclass
class Book:
    """What :func:`billing_setup` created: the NYC calendar, policy, rate card and clients."""

    calendar: int
    policy: int
    rate_card: int
    nexus: int
    globex: int


def billing_setup(client: Client) -> Book:
    """The NYC business-hours calendar, an SLA policy on it, the seed rate card (published as
    version 1) and two clients."""
    calendar = client.catalog.CreateCalendar(
        catalog_pb2.CreateCalendarRequest(
            name="nyc-business-hours", body_json=json.dumps(NYC_HOURS)
        )
    ).id
    policy = client.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name="nyc-msp", calendar_id=calendar, body_json=json.dumps(POLICY)
        )
    ).id
    card = client.rate_cards.CreateRateCard(billing_pb2.CreateRateCardRequest(name="standard")).id
    version = client.rate_cards.PublishRateCard(
        billing_pb2.PublishRateCardRequest(rate_card_id=card, body_json=json.dumps(SEED_CARD))
    )
    assert (version.version, version.currency) == (1, "USD")
    nexus = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Nexus Corp")).id
    globex = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Globex")).id
    return Book(calendar, policy, card, nexus, globex)


def new_contract(
    client: Client,
    book: Book,
    client_id: int,
    contract_type: str = "HOURLY",
    terms: dict | None = None,
) -> billing_pb2.Contract:
    """An activated contract of ``client_id`` on the NYC calendar, policy and seed card."""
    created = client.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=client_id,
            contract_type=contract_type,
            currency="USD",
            starts_on=MARCH,
            calendar_id=book.calendar,
            sla_policy_id=book.policy,
            rate_card_id=book.rate_card,
            terms_json=json.dumps(SEED_TERMS if terms is None else terms),
        )
    )
    assert created.status == "DRAFT"
    active = client.contracts.ActivateContract(
        billing_pb2.ActivateContractRequest(contract_id=created.id)
    )
    assert active.status == "ACTIVE" and active.frozen_rate_card_version == 1
    assert active.time_zone == "America/New_York"
    return active


def time_log(
    log_id: str,
    contract_id: int,
    span: tuple[str, str],
    *,
    ticket_id: str = "",
    task_ref: str = "",
    priority: str = "MEDIUM",
) -> billing_pb2.TimeLog:
    return billing_pb2.TimeLog(
        id=log_id,
        contract_id=contract_id,
        ticket_id=ticket_id,
        task_ref=task_ref,
        agent="ana",
        support_level="L2",
        job_type="support",
        priority=priority,
        started_at=to_timestamp(at(span[0])),
        ended_at=to_timestamp(at(span[1])),
        billable_type=billing_pb2.BILLABLE,
    )


def seed_logs(contract_id: int, prefix: str) -> list[billing_pb2.TimeLog]:
    """The seed's six logs on ``contract_id``, ids ``{prefix}-{i}``."""
    return [time_log(f"{prefix}-{i}", contract_id, span) for i, span in enumerate(SEED_SPANS)]


def ingest_and_approve(client: Client, logs: Sequence[billing_pb2.TimeLog]) -> None:
    summary = client.time_logs.IngestTimeLogs(billing_pb2.IngestTimeLogsRequest(logs=logs))
    assert (summary.received, summary.inserted) == (len(logs), len(logs))
    approved = client.time_logs.ApproveTimeLogs(
        billing_pb2.ApproveTimeLogsRequest(log_ids=[log.id for log in logs])
    )
    assert approved.changed == len(logs)


def period(contract_id: int, day: str = MARCH) -> billing_pb2.PeriodRequest:
    return billing_pb2.PeriodRequest(contract_id=contract_id, period_start=day)


def test_seed_workflow_from_portal_ticket_to_paid_invoice(service, client: Client, tenant) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    created = at("2026-03-02T08:30-05:00")  # Mon, before the desk opens
    with Client(service.address, tenant.portal_token(book.nexus)) as portal:
        ticket = portal.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id="TKT-041",
                client_id=book.nexus,
                contract_id=contract.id,
                priority="HIGH",
                created_at=to_timestamp(created),
            )
        )
        assert (ticket.status, ticket.contract_id) == ("OPEN", contract.id)
        # the clock starts at 09:00; no policy named: the contract's
        status = portal.tickets.GetTicketStatus(
            tickets_pb2.GetTicketStatusRequest(
                ticket_id="TKT-041", at=to_timestamp(at("2026-03-02T09:10-05:00"))
            )
        )
    metrics = {m.metric: m for m in status.metrics}
    assert set(metrics) == {"FIRST_RESPONSE", "RESOLUTION"}
    resolution = metrics["RESOLUTION"]
    assert resolution.status == "ON_TRACK"
    assert resolution.HasField("deadline")
    # 16 business hours from Mon 09:00: Tue 17:00 New York
    deadline = at("2026-03-03T17:00-05:00")
    assert resolution.deadline.ToDatetime(tzinfo=UTC) == deadline
    assert resolution.elapsed_seconds == 600 and resolution.target_seconds == 16 * HOUR
    assert metrics["FIRST_RESPONSE"].status == "ON_TRACK"
    client.tickets.RecordEvent(
        tickets_pb2.RecordEventRequest(
            event_id="TKT-041:responded",
            ticket_id="TKT-041",
            kind=tickets_pb2.RESPONDED,
            occurred_at=to_timestamp(at("2026-03-02T09:20-05:00")),
            actor="ana",
        )
    )

    # an agent logs time on the ticket; the ticket spawns a project task and the evening work
    # is logged on the task
    on_ticket = [
        time_log(f"TL-{i}", contract.id, span, ticket_id="TKT-041", priority="HIGH")
        for i, span in enumerate(SEED_SPANS[:5])
    ]
    on_task = [time_log("TL-5", contract.id, SEED_SPANS[5], task_ref="PRJ-7/T-1")]
    ingest_and_approve(client, on_ticket + on_task)

    # later, the ticket breaches its resolution target
    recomputed = client.sla.Recompute(
        sla_pb2.RecomputeRequest(
            policy_id=book.policy, now=to_timestamp(at("2026-03-10T10:00-04:00"))
        )
    )
    assert recomputed.tickets == 1 and recomputed.new_breaches == 1
    counts = {(c.metric, c.status): c.count for c in recomputed.counts}
    assert counts == {("FIRST_RESPONSE", "MET"): 1, ("RESOLUTION", "BREACHED"): 1}

    closed = client.time_logs.ClosePeriod(
        billing_pb2.ClosePeriodRequest(contract_id=contract.id, period_start=MARCH)
    )
    assert closed.status == "CLOSED"
    assert closed.starts_at.ToDatetime(tzinfo=UTC) == at("2026-03-01T00:00-05:00")
    assert closed.ends_at.ToDatetime(tzinfo=UTC) == at("2026-04-01T00:00-04:00")

    invoice = client.invoice(contract.id, MARCH)
    assert (invoice.status, invoice.number) == ("DRAFT", 0)
    assert (invoice.period_start, invoice.period_end) == (MARCH, "2026-04-01")
    regular, after, credit = invoice.lines
    assert [line.kind for line in invoice.lines] == ["TIME", "TIME", "SLA_CREDIT"]
    assert (regular.time_condition, regular.rate_minor_per_hour, regular.billed_seconds) == (
        "REGULAR",
        12_000,
        28 * HOUR + 1_800,
    )
    assert regular.amount_minor == 342_000
    assert list(regular.time_log_ids) == [f"TL-{i}" for i in range(5)]
    assert (after.time_condition, after.rate_minor_per_hour, after.billed_seconds) == (
        "AFTER_HOURS",
        18_000,
        3 * HOUR,
    )
    assert after.amount_minor == 54_000 and list(after.time_log_ids) == ["TL-5"]
    assert regular.rate_card_version == after.rate_card_version == 1
    assert credit.amount_minor == -20_000
    assert json.loads(credit.evidence_json)["breach_ids"] == ["TKT-041:RESOLUTION"]
    assert [(t.name, t.rate_ppm, t.amount_minor) for t in invoice.taxes] == [
        ("GST", 100_000, 37_600)
    ]
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (
        376_000,
        37_600,
        413_600,
    )
    assert "4136.00" in invoice.text

    reviewed = client.billing.ReviewInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id))
    assert reviewed.status == "REVIEW"
    issued = client.billing.IssueInvoice(
        billing_pb2.IssueInvoiceRequest(invoice_id=invoice.id, due_days=14)
    )
    assert (issued.status, issued.number, issued.total_minor) == ("ISSUED", 1, 413_600)
    due = issued.due_at.ToDatetime(tzinfo=UTC) - issued.issued_at.ToDatetime(tzinfo=UTC)
    assert due == timedelta(days=14)
    paid = client.billing.RecordPayment(
        billing_pb2.RecordPaymentRequest(
            invoice_id=invoice.id,
            amount_minor=issued.total_minor,
            received_at=to_timestamp(at("2026-04-10T12:00+00:00")),
            reference="wire 88121",
        )
    )
    assert (paid.status, paid.paid_minor, paid.number) == ("PAID", 413_600, 1)
    assert client.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id)) == paid


def test_portal_token_sees_only_its_clients_billing(service, client: Client, tenant) -> None:
    book = billing_setup(client)
    bucket_terms = {"bucket": {"size_hours": 50, "low_balance_hours": ["10"]}}
    mine = new_contract(client, book, book.nexus, "BUCKET", bucket_terms)
    theirs = new_contract(client, book, book.globex, "BUCKET", bucket_terms)
    ingest_and_approve(client, seed_logs(mine.id, "N") + seed_logs(theirs.id, "G"))
    own_invoice = client.invoice(mine.id, MARCH)
    other_invoice = client.invoice(theirs.id, MARCH)
    assert own_invoice.id != other_invoice.id
    when = to_timestamp(at("2026-03-20T00:00+00:00"))
    with Client(service.address, tenant.portal_token(book.nexus)) as portal:
        seen = portal.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=own_invoice.id))
        assert seen == own_invoice
        listed = portal.billing.ListInvoices(billing_pb2.ListInvoicesRequest())
        assert [i.id for i in listed.invoices] == [own_invoice.id]
        assert portal.contracts.GetContract(
            billing_pb2.GetContractRequest(contract_id=mine.id)
        ) == client.contracts.GetContract(billing_pb2.GetContractRequest(contract_id=mine.id))
        balance = portal.billing.GetBucketBalance(
            billing_pb2.BucketBalanceRequest(contract_id=mine.id, at=when)
        )
        assert balance.purchased_seconds == 50 * HOUR
        assert balance.burned_seconds == 31 * HOUR + 1_800
        assert balance.remaining_seconds == 50 * HOUR - balance.burned_seconds

        details = refused(
            grpc.StatusCode.NOT_FOUND,
            portal.billing.GetInvoice,
            billing_pb2.InvoiceRequest(invoice_id=other_invoice.id),
        )
        assert "invoice_id" in details and str(other_invoice.id) in details
        details = refused(
            grpc.StatusCode.NOT_FOUND,
            portal.contracts.GetContract,
            billing_pb2.GetContractRequest(contract_id=theirs.id),
        )
        assert "contract_id" in details and str(theirs.id) in details
        details = refused(
            grpc.StatusCode.NOT_FOUND,
            portal.billing.GetBucketBalance,
            billing_pb2.BucketBalanceRequest(contract_id=theirs.id, at=when),
        )
        assert "contract_id" in details and str(theirs.id) in details
        listed = portal.billing.ListInvoices(billing_pb2.ListInvoicesRequest(contract_id=theirs.id))
        assert list(listed.invoices) == []

        for call, request in (
            (portal.billing.GenerateInvoice, period(mine.id)),
            (
                portal.billing.IssueInvoice,
                billing_pb2.IssueInvoiceRequest(invoice_id=own_invoice.id),
            ),
            (
                portal.contracts.CreateContract,
                billing_pb2.CreateContractRequest(
                    client_id=book.nexus,
                    contract_type="HOURLY",
                    currency="USD",
                    starts_on=MARCH,
                    calendar_id=book.calendar,
                    rate_card_id=book.rate_card,
                ),
            ),
        ):
            details = refused(grpc.StatusCode.PERMISSION_DENIED, call, request)
            assert "portal" in details
    # nothing the portal was refused happened
    again = client.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=own_invoice.id))
    assert (again.status, again.number) == ("DRAFT", 0)
    contracts = client.contracts.ListContracts(billing_pb2.ListContractsRequest())
    assert sorted(c.id for c in contracts.contracts) == sorted([mine.id, theirs.id])


def test_issued_invoice_is_immutable_through_the_api(client: Client) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    logs = seed_logs(contract.id, "IM")
    ingest_and_approve(client, logs)
    invoice = client.invoice(contract.id, MARCH)
    assert invoice.total_minor == 396_000 + 39_600
    issued = client.billing.IssueInvoice(billing_pb2.IssueInvoiceRequest(invoice_id=invoice.id))
    assert (issued.status, issued.number) == ("ISSUED", 1)

    # the same logs again change nothing
    again = client.time_logs.IngestTimeLogs(billing_pb2.IngestTimeLogsRequest(logs=logs))
    assert (again.received, again.inserted, again.updated, again.unchanged) == (6, 0, 0, 6)
    # a changed version of a log on the issued invoice is refused, naming it; nothing changes
    changed = billing_pb2.TimeLog()
    changed.CopyFrom(logs[2])
    changed.ended_at.CopyFrom(to_timestamp(at("2026-03-04T16:30-05:00")))
    fresh = time_log("IM-new", contract.id, ("2026-03-09T09:00-04:00", "2026-03-09T10:00-04:00"))
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.time_logs.IngestTimeLogs,
        billing_pb2.IngestTimeLogsRequest(logs=[fresh, changed]),
    )
    assert "IM-2" in details and "issued invoice" in details
    once_more = client.time_logs.IngestTimeLogs(billing_pb2.IngestTimeLogsRequest(logs=logs))
    assert once_more.unchanged == len(logs)
    same = client.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id))
    assert same == issued

    # a credit note above what is creditable on a line is refused; within it, accepted
    regular = issued.lines[0]
    assert regular.amount_minor == 342_000
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.billing.CreateCreditNote,
        billing_pb2.CreateCreditNoteRequest(
            invoice_id=invoice.id,
            amounts=[billing_pb2.CreditAmount(line_id=regular.id, amount_minor=342_001)],
            reason="too much",
        ),
    )
    assert f"amounts[{regular.id}]" in details
    note = client.billing.CreateCreditNote(
        billing_pb2.CreateCreditNoteRequest(
            invoice_id=invoice.id,
            amounts=[billing_pb2.CreditAmount(line_id=regular.id, amount_minor=12_000)],
            reason="one hour goodwill",
        )
    )
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (12_000, 1_200, 13_200)
    refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.billing.CreateCreditNote,
        billing_pb2.CreateCreditNoteRequest(
            invoice_id=invoice.id,
            amounts=[billing_pb2.CreditAmount(line_id=regular.id, amount_minor=330_001)],
        ),
    )

    paid = client.billing.RecordPayment(
        billing_pb2.RecordPaymentRequest(
            invoice_id=invoice.id, amount_minor=issued.total_minor - note.total_minor
        )
    )
    assert paid.status == "PAID"
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.billing.ReviewInvoice,
        billing_pb2.InvoiceRequest(invoice_id=invoice.id),
    )
    assert "invoice.status" in details and "PAID" in details
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.billing.VoidInvoice,
        billing_pb2.InvoiceRequest(invoice_id=invoice.id),
    )
    assert "PAID" in details or "payments" in details
    final = client.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id))
    assert (final.status, final.number, final.total_minor) == ("PAID", 1, issued.total_minor)
    assert list(final.lines) == list(issued.lines)


def test_unpaid_invoices_past_due_become_overdue_until_paid(client: Client) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    ingest_and_approve(client, seed_logs(contract.id, "OD"))
    invoice = client.invoice(contract.id, MARCH)
    issued = client.billing.IssueInvoice(
        billing_pb2.IssueInvoiceRequest(invoice_id=invoice.id, due_days=10)
    )
    due = issued.due_at.ToDatetime(tzinfo=UTC)

    def overdue(when: datetime) -> list[int]:
        reply = client.billing.MarkOverdue(billing_pb2.MarkOverdueRequest(as_of=to_timestamp(when)))
        return [i.id for i in reply.invoices]

    assert overdue(due - timedelta(seconds=1)) == []
    assert overdue(due + timedelta(seconds=1)) == [invoice.id]
    assert overdue(due + timedelta(days=5)) == []  # once
    late = client.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id))
    assert (late.status, late.number) == ("OVERDUE", issued.number)
    half = issued.total_minor // 2
    client.billing.RecordPayment(
        billing_pb2.RecordPaymentRequest(invoice_id=invoice.id, amount_minor=half)
    )
    paid = client.billing.RecordPayment(
        billing_pb2.RecordPaymentRequest(
            invoice_id=invoice.id, amount_minor=issued.total_minor - half
        )
    )
    assert (paid.status, paid.paid_minor) == ("PAID", issued.total_minor)


def test_generate_is_idempotent_under_two_concurrent_calls(client: Client) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    ingest_and_approve(client, seed_logs(contract.id, "RC"))
    start = threading.Barrier(2)

    def generate(day: str) -> billing_pb2.Invoice:
        start.wait()
        return client.billing.GenerateInvoice(period(contract.id, day))

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(generate, [MARCH, "2026-03-17"])
    assert first.id == second.id != 0
    assert first == second
    assert first.total_minor == 396_000 + 39_600
    listed = client.billing.ListInvoices(billing_pb2.ListInvoicesRequest(contract_id=contract.id))
    assert [i.id for i in listed.invoices] == [first.id]
    assert client.invoice(contract.id, "2026-03-31") == first


def test_billing_errors_name_the_field(client: Client) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})

    def contract_request(**overrides: object) -> billing_pb2.CreateContractRequest:
        fields: dict[str, object] = {
            "client_id": book.nexus,
            "contract_type": "HOURLY",
            "currency": "USD",
            "starts_on": MARCH,
            "calendar_id": book.calendar,
            "rate_card_id": book.rate_card,
        }
        fields.update(overrides)
        return billing_pb2.CreateContractRequest(**fields)

    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.contracts.CreateContract,
        contract_request(contract_type="BUCKET", terms_json=json.dumps({"anchor_day": 1})),
    )
    assert "terms.bucket" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.contracts.CreateContract,
        contract_request(
            terms_json=json.dumps({"sla_credits": {"per_breach": {"URGENT": "200.00"}}})
        ),
    )
    assert "terms.sla_credits.per_breach.URGENT" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.contracts.CreateContract,
        contract_request(starts_on="2026-13-01"),
    )
    assert "starts_on" in details and "2026-13-01" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.contracts.CreateContract,
        contract_request(terms_json="{not json"),
    )
    assert "terms_json" in details
    card = {**SEED_CARD, "rules": {"AFTER_HOURS": {"amount": "33.333"}}}
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.rate_cards.PublishRateCard,
        billing_pb2.PublishRateCardRequest(rate_card_id=book.rate_card, body_json=json.dumps(card)),
    )
    assert "AFTER_HOURS" in details and "33.333" in details
    # the refused card published nothing: the next version is still 2
    version = client.rate_cards.PublishRateCard(
        billing_pb2.PublishRateCardRequest(
            rate_card_id=book.rate_card, body_json=json.dumps(SEED_CARD)
        )
    )
    assert version.version == 2

    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.billing.GenerateInvoice,
        period(contract.id, "2026-13-01"),
    )
    assert "period_start" in details and "2026-13-01" in details
    # a bad batch of logs is the caller's to fix, named by position, and stores nothing
    backwards = time_log("BAD-1", contract.id, ("2026-03-02T10:00-05:00", "2026-03-02T09:00-05:00"))
    good = time_log("OK-1", contract.id, SEED_SPANS[0])
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.time_logs.IngestTimeLogs,
        billing_pb2.IngestTimeLogsRequest(logs=[good, backwards]),
    )
    assert "ended_at[1]" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.time_logs.IngestTimeLogs,
        billing_pb2.IngestTimeLogsRequest(logs=[good, good]),
    )
    assert "id[1]" in details and "OK-1" in details
    details = refused(
        grpc.StatusCode.NOT_FOUND,
        client.time_logs.ApproveTimeLogs,
        billing_pb2.ApproveTimeLogsRequest(log_ids=["OK-1"]),
    )
    assert "log_ids[0]" in details and "OK-1" in details
    for call, request in (
        (client.contracts.GetContract, billing_pb2.GetContractRequest(contract_id=987_654)),
        (client.billing.GenerateInvoice, period(987_654)),
        (
            client.contracts.ActivateContract,
            billing_pb2.ActivateContractRequest(contract_id=987_654),
        ),
        (
            client.billing.GetBucketBalance,
            billing_pb2.BucketBalanceRequest(contract_id=987_654),
        ),
    ):
        details = refused(grpc.StatusCode.NOT_FOUND, call, request)
        assert "contract_id" in details and "987654" in details
    details = refused(
        grpc.StatusCode.NOT_FOUND,
        client.billing.GetInvoice,
        billing_pb2.InvoiceRequest(invoice_id=987_654),
    )
    assert "invoice_id" in details and "987654" in details


def test_classify_returns_one_result_row_per_part_as_arrow(client: Client) -> None:
    """The per-part result batch over the wire: a log crossing the March end is two parts (its
    second part after the batch's first parts), each rounded and priced on its own."""
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus, terms={})
    spans = [SEED_SPANS[0], ("2026-03-31T23:30-04:00", "2026-04-01T00:20-04:00")]
    n = len(spans)
    logs = pa.table(
        {
            "log_id": ["A", "B"],
            "support_level": pa.array(["L2"] * n).dictionary_encode(),
            "job_type": pa.array(["support"] * n).dictionary_encode(),
            "priority": pa.array(["MEDIUM"] * n).dictionary_encode(),
            "start": pa.array([at(a) for a, _ in spans], pa.timestamp("s", tz="UTC")),
            "end": pa.array([at(z) for _, z in spans], pa.timestamp("s", tz="UTC")),
            "billable_type": pa.array(["BILLABLE"] * n).dictionary_encode(),
            "approved": [True] * n,
        }
    )
    reply = client.billing.Classify(
        billing_pb2.ClassifyRequest(contract_id=contract.id, arrow_ipc=ipc_bytes(logs))
    )
    results = ipc_table(reply.arrow_ipc)
    assert results.schema.equals(LOG_RESULTS)
    rows = results.to_pylist()
    assert [(r["log_id"], r["part"], r["period"]) for r in rows] == [
        ("A", 0, 0),
        ("B", 0, 0),
        ("B", 1, 1),
    ]
    assert rows[1]["end"] == rows[2]["start"] == at("2026-04-01T00:00-04:00")
    # 7 h regular at $120; 30 min and 20 min → 30 min after hours at $180 per part.
    assert [(r["billed_total"].total_seconds(), r["amount_numerator"]) for r in rows] == [
        (7 * HOUR, 7 * HOUR * 12_000),
        (1_800, 1_800 * 18_000),
        (1_800, 1_800 * 18_000),
    ]
    assert [r["label_after_hours"] for r in rows] == ["AFTER_HOURS"] * 3
