"""The contract terms of the second build through the real server and the Python client:
each new term created over gRPC and returned normalised by GetContract; malformed terms and
rate cards refused as INVALID_ARGUMENT naming the field path and value; unit counts recorded
by effective date; and the priced outcomes the engine already had (out-of-scope logs under
REJECT, recurring time with and without included hours)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc
import pyarrow as pa

from effigate_client import Client, billing_pb2, tickets_pb2, to_timestamp
from effigate_client.client import ipc_bytes, ipc_table
from tests.e2e.support import at, refused
from tests.e2e.test_billing_api import (
    HOUR,
    MARCH,
    SEED_CARD,
    SEED_SPANS,
    Book,
    billing_setup,
    ingest_and_approve,
    seed_logs,
)

RECURRING = {"base_fee": "1000.00", "unit_prices": {"endpoint": "10.00"}}


# Helpers shared with the pricing tests --------------------------------------------------------


def publish_card(client: Client, body: dict, name: str = "terms") -> int:
    """A new library rate card with ``body`` published as its version 1; returns its id."""
    card = client.rate_cards.CreateRateCard(billing_pb2.CreateRateCardRequest(name=name)).id
    client.rate_cards.PublishRateCard(
        billing_pb2.PublishRateCardRequest(rate_card_id=card, body_json=json.dumps(body))
    )
    return card


def create(
    client: Client, book: Book, kind: str, terms: dict, rate_card: int | None = None
) -> billing_pb2.Contract:
    """A DRAFT contract of Nexus on the NYC calendar and policy, starting 1 March 2026."""
    return client.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=book.nexus,
            contract_type=kind,
            currency="USD",
            starts_on=MARCH,
            calendar_id=book.calendar,
            sla_policy_id=book.policy,
            rate_card_id=rate_card or book.rate_card,
            terms_json=json.dumps(terms),
        )
    )


def active(
    client: Client, book: Book, kind: str, terms: dict, rate_card: int | None = None
) -> billing_pb2.Contract:
    """An activated contract (see :func:`create`)."""
    draft = create(client, book, kind, terms, rate_card)
    return client.contracts.ActivateContract(
        billing_pb2.ActivateContractRequest(contract_id=draft.id)
    )


def terms_of(client: Client, contract_id: int) -> dict:
    """The stored terms GetContract returns."""
    got = client.contracts.GetContract(billing_pb2.GetContractRequest(contract_id=contract_id))
    return json.loads(got.terms_json)


def log_rows(
    spans: Sequence[tuple[str, str]],
    *,
    level: str = "L2",
    billable: str = "BILLABLE",
    approved: bool = True,
    priority: str = "MEDIUM",
    prefix: str = "W",
) -> list[dict]:
    """Rows of the billing ``TIME_LOGS`` columns (for ``Classify``)."""
    return [
        {
            "log_id": f"{prefix}-{i}",
            "support_level": level,
            "job_type": "support",
            "priority": priority,
            "start": at(a),
            "end": at(b),
            "billable_type": billable,
            "approved": approved,
        }
        for i, (a, b) in enumerate(spans)
    ]


def classify(client: Client, contract_id: int, rows: list[dict]) -> list[dict]:
    """Per-log results of ``Classify`` (first part of each log), as dicts."""
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("log_id", pa.string()),
                ("support_level", pa.string()),
                ("job_type", pa.string()),
                ("priority", pa.string()),
                ("start", pa.timestamp("s", "UTC")),
                ("end", pa.timestamp("s", "UTC")),
                ("billable_type", pa.string()),
                ("approved", pa.bool_()),
            ]
        ),
    )
    answer = client.billing.Classify(
        billing_pb2.ClassifyRequest(contract_id=contract_id, arrow_ipc=ipc_bytes(table))
    )
    return ipc_table(answer.arrow_ipc).to_pylist()


def high_priority_breach(client: Client, contract_id: int, ticket_id: str, day: str) -> str:
    """A HIGH ticket created at 09:00 New York on ``day`` (a Monday to Thursday), answered at
    09:10 and never resolved: its 16 business hours of resolution run out at 17:00 the next
    day. Recomputed a week later; returns the breach id."""
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id=ticket_id,
            client_id=client.contracts.GetContract(
                billing_pb2.GetContractRequest(contract_id=contract_id)
            ).client_id,
            contract_id=contract_id,
            priority="HIGH",
            created_at=to_timestamp(at(f"{day}T09:00-05:00")),
        )
    )
    client.tickets.RecordEvent(
        tickets_pb2.RecordEventRequest(
            event_id=f"{ticket_id}:responded",
            ticket_id=ticket_id,
            kind=tickets_pb2.RESPONDED,
            occurred_at=to_timestamp(at(f"{day}T09:10-05:00")),
            actor="ana",
        )
    )
    return f"{ticket_id}:RESOLUTION"


# Terms created over gRPC, returned normalised -----------------------------------------------


def test_each_new_term_is_created_over_grpc_and_returned_normalised(client: Client) -> None:
    book = billing_setup(client)
    cases = [
        (
            "BUCKET",
            {
                "bucket": {
                    "size_hours": "20",
                    "burn_factors": {"HIGH_PRIORITY": "2.0", "AFTER_HOURS": "1.50"},
                    "per_period": True,
                    "rollover_periods": 2,
                    "rollover_cap_hours": "7.5",
                }
            },
            {
                "bucket": {
                    "size_seconds": 72_000,
                    "low_balance_seconds": [36_000],
                    "burn_factors": {"AFTER_HOURS": "1.5", "HIGH_PRIORITY": "2"},
                    "per_period": True,
                    "rollover_periods": 2,
                    "rollover_cap_seconds": 27_000,
                }
            },
        ),
        (
            "RECURRING",
            {
                "recurring": {**RECURRING, "base_timing": "arrears", "prorate_units": True},
                "sla_credits": {
                    "percent_per_priority": {"P1": 2_000, "high": 1_000},
                    "cap_percent_bp": 2_500,
                },
            },
            {
                "recurring": {
                    "base_fee": "1000.00",
                    "unit_prices": {"endpoint": "10.00"},
                    "included_seconds": None,
                    "prorate": True,
                    "base_timing": "arrears",
                    "prorate_units": True,
                },
                "sla_credits": {
                    "per_breach": {},
                    "percent_per_priority": {"CRITICAL": 2_000, "HIGH": 1_000},
                    "percent_bp": 0,
                    "cap": None,
                    "cap_percent_bp": 2_500,
                },
            },
        ),
        (
            "RECURRING",
            {
                "recurring": {**RECURRING, "included_hours": 0},
                "sla_credits": {"per_breach": {"HIGH": "200"}, "cap_minor": 25_000},
            },
            {
                "recurring": {
                    "base_fee": "1000.00",
                    "unit_prices": {"endpoint": "10.00"},
                    "included_seconds": 0,
                    "prorate": True,
                    "base_timing": "advance",
                    "prorate_units": False,
                },
                "sla_credits": {
                    "per_breach": {"HIGH": "200.00"},
                    "percent_per_priority": {},
                    "percent_bp": 0,
                    "cap": "250.00",
                    "cap_percent_bp": None,
                },
            },
        ),
        (
            "HOURLY",
            {"scope": {"support_levels": ["L1"], "out_of_scope": "REJECT"}},
            {"scope": {"support_levels": ["L1"], "out_of_scope": "REJECT"}},
        ),
    ]
    for kind, given, normalised in cases:
        created = create(client, book, kind, given)
        assert json.loads(created.terms_json) == normalised, kind
        assert terms_of(client, created.id) == normalised, kind
        # the normalised form is accepted as it is and stays the same
        again = create(client, book, kind, normalised)
        assert json.loads(again.terms_json) == normalised
        activated = client.contracts.ActivateContract(
            billing_pb2.ActivateContractRequest(contract_id=created.id)
        )
        assert activated.status == "ACTIVE" and json.loads(activated.terms_json) == normalised


def test_malformed_terms_are_invalid_argument_naming_path_and_value(client: Client) -> None:
    book = billing_setup(client)
    bucket = {"size_hours": 10}
    cases = [
        (
            "BUCKET",
            {"bucket": {**bucket, "burn_factors": {"HIGH_PRIORITY": 1.5}}},
            "terms.bucket.burn_factors.HIGH_PRIORITY",
            "1.5",
        ),
        (
            "BUCKET",
            {"bucket": {**bucket, "rollover_cap_hours": "5"}},
            "terms.bucket.rollover_cap_hours",
            "'5'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "base_timing": "yearly"}},
            "terms.recurring.base_timing",
            "'yearly'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "prorate_units": 1}},
            "terms.recurring.prorate_units",
            "1",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "included_hours": "ten"}},
            "terms.recurring.included_hours",
            "'ten'",
        ),
        (
            "RECURRING",
            {
                "recurring": RECURRING,
                "sla_credits": {"percent_per_priority": {"HIGH": 12_000}},
            },
            "terms.sla_credits.percent_per_priority.HIGH",
            "12000",
        ),
        (
            "RECURRING",
            {
                "recurring": RECURRING,
                "sla_credits": {"per_breach": {"HIGH": "200"}, "percent_per_priority": {"P2": 1}},
            },
            "terms.sla_credits.percent_per_priority.P2",
            "1",
        ),
        (
            "RECURRING",
            {"recurring": RECURRING, "sla_credits": {"cap": "100", "cap_percent_bp": 500}},
            "terms.sla_credits.cap_percent_bp",
            "500",
        ),
        (
            "HOURLY",
            {"sla_credits": {"cap_percent_bp": 500}},
            "terms.sla_credits.cap_percent_bp",
            "500",
        ),
    ]
    for kind, terms, path, value in cases:
        details = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            client.contracts.CreateContract,
            billing_pb2.CreateContractRequest(
                client_id=book.nexus,
                contract_type=kind,
                currency="USD",
                starts_on=MARCH,
                calendar_id=book.calendar,
                rate_card_id=book.rate_card,
                terms_json=json.dumps(terms),
            ),
        )
        assert details.startswith(f"{path}: {value} "), details
    listed = client.contracts.ListContracts(billing_pb2.ListContractsRequest())
    assert list(listed.contracts) == []  # nothing refused was stored


def test_rate_card_precedence_and_malformed_cards_over_grpc(client: Client) -> None:
    book = billing_setup(client)
    bad_cards = [
        ({"precedence": "cheapest"}, "rate_card.precedence", "'cheapest'"),
        ({"precedence": ["WEEKEND", "WEEKEND", "HOLIDAY"]}, "rate_card.precedence[1]", "'WEEKEND'"),
        ({"precedence": ["HOLIDAY"]}, "rate_card.precedence", "['HOLIDAY']"),
        ({"precedance": "highest"}, "rate_card.precedance", "'highest'"),
        ({"rules": ["AFTER_HOURS"]}, "rate_card.rules", "['AFTER_HOURS']"),
        (
            {"rules": {"WEEKEND": {"multiplier_bp": "x"}}},
            "rate_card.rules.WEEKEND.multiplier_bp",
            "'x'",
        ),
        ({"stacking": "sum"}, "rate_card.stacking", "'sum'"),
        ({"base_rates": [{"amount": "NaN"}]}, "rate_card.base_rates[0].amount", "'NaN'"),
        ({"increment_seconds": "15m"}, "rate_card.increment_seconds", "'15m'"),
    ]
    for change, path, value in bad_cards:
        details = refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            client.rate_cards.PublishRateCard,
            billing_pb2.PublishRateCardRequest(
                rate_card_id=book.rate_card, body_json=json.dumps({**SEED_CARD, **change})
            ),
        )
        assert details.startswith(f"{path}: {value} "), details
    version = client.rate_cards.PublishRateCard(
        billing_pb2.PublishRateCardRequest(
            rate_card_id=book.rate_card,
            body_json=json.dumps({**SEED_CARD, "precedence": "highest"}),
        )
    )
    assert version.version == 2  # none of the refused cards was stored

    contract = active(client, book, "HOURLY", {})
    assert contract.frozen_rate_card_version == 2

    def amend(body: dict) -> billing_pb2.AmendContractResponse:
        return client.contracts.AmendContract(
            billing_pb2.AmendContractRequest(
                contract_id=contract.id,
                kind="RATE_CARD",
                effective_on="2026-04-01",
                body_json=json.dumps(body),
            )
        )

    for body, path, value in (
        ({**SEED_CARD, "precedence": "lowest"}, "body.precedence", "'lowest'"),
        (
            {"rate_card": {**SEED_CARD, "precedence": ["HOLIDAY", "AFTER_HOURS", "HOLIDAY"]}},
            "body.rate_card.precedence[2]",
            "'HOLIDAY'",
        ),
        ({"rate_card": {**SEED_CARD, "stacking": 2}}, "body.rate_card.stacking", "2"),
        ({"rate_card_id": "standard"}, "body.rate_card_id", "'standard'"),
    ):
        details = refused(grpc.StatusCode.INVALID_ARGUMENT, amend, body)
        assert details.startswith(f"{path}: {value} "), details
    explicit = amend({**SEED_CARD, "precedence": ["AFTER_HOURS", "WEEKEND", "HOLIDAY"]})
    library = amend({"rate_card_id": book.rate_card, "version": 1, "note": "back to default"})
    assert library.amendment_id > explicit.amendment_id > 0


def test_unit_counts_are_recorded_by_effective_date(client: Client) -> None:
    book = billing_setup(client)
    contract = active(client, book, "RECURRING", {"recurring": RECURRING})

    def record(count: int, **fields: object) -> int:
        return client.contracts.RecordUnitCount(
            billing_pb2.RecordUnitCountRequest(
                contract_id=contract.id, unit_type="endpoint", count=count, **fields
            )
        ).id

    first = record(10, effective_on="2026-03-01")
    assert record(10, effective_on="2026-03-01") == first  # a resend changes nothing
    later = record(16, effective_on="2026-03-11")
    assert later != first
    for fields, path in (
        ({"effective_on": "2026-03-32"}, "effective_on"),
        ({"effective_on": "2026-02-28"}, "effective_on"),
        ({}, "effective_on"),
        (
            {"effective_on": "2026-03-01", "cycle_end": to_timestamp(at("2026-04-01T00:00-04:00"))},
            "cycle_end",
        ),
    ):
        details = refused(grpc.StatusCode.INVALID_ARGUMENT, record, 1, **fields)
        assert details.startswith(path), details
    invoice = client.invoice(contract.id, MARCH)
    (units,) = [line for line in invoice.lines if line.kind == "RECURRING_UNITS"]
    assert units.amount_minor == 16 * 1_000  # the count in force on the cycle's last day
    assert json.loads(units.evidence_json)["unit_count"] == 16


# Priced outcomes the engine already had --------------------------------------------------------


def test_out_of_scope_log_under_reject_is_listed_as_rejected_and_never_billed(
    client: Client,
) -> None:
    book = billing_setup(client)
    terms = {"scope": {"support_levels": ["L1"], "out_of_scope": "REJECT"}}
    contract = active(client, book, "HOURLY", terms)
    span = [SEED_SPANS[0]]
    results = classify(
        client,
        contract.id,
        log_rows(span, level="L1", prefix="IN") + log_rows(span, level="L2", prefix="OUT"),
    )
    assert [(r["log_id"], r["status"], r["out_of_scope"]) for r in results] == [
        ("IN-0", "PRICED", False),
        ("OUT-0", "REJECTED", True),
    ]
    logs = seed_logs(contract.id, "R")  # level L2: out of scope
    ingest_and_approve(client, logs)
    invoice = client.invoice(contract.id, MARCH)
    assert [line.kind for line in invoice.lines] == []
    assert invoice.total_minor == 0


def test_recurring_time_with_an_empty_allowance_is_all_overage(client: Client) -> None:
    """``included_hours: 0`` (as every recurring contract stored before the key was optional):
    all billable time is overage at ``ADDITIONAL_HOURS``, here the base $120 (no rule)."""
    book = billing_setup(client)
    contract = active(client, book, "RECURRING", {"recurring": {**RECURRING, "included_hours": 0}})
    ingest_and_approve(client, seed_logs(contract.id, "Z"))
    invoice = client.invoice(contract.id, MARCH)
    time = [line for line in invoice.lines if line.kind == "TIME"]
    assert [(x.time_condition, x.billed_seconds) for x in time] == [
        ("ADDITIONAL_HOURS", 31 * HOUR + 1_800)
    ]
    assert sum(x.amount_minor for x in time) == 378_000  # 31.5 h × $120


def test_recurring_time_without_included_hours_is_time_and_materials(client: Client) -> None:
    """No ``included_hours``: the seed's 28.5 h regular at $120 and 3 h after hours at $180,
    beside the base fee (in advance: March's and April's on the first invoice)."""
    book = billing_setup(client)
    contract = active(client, book, "RECURRING", {"recurring": {"base_fee": "1000.00"}})
    ingest_and_approve(client, seed_logs(contract.id, "TM"))
    invoice = client.invoice(contract.id, MARCH)
    assert [
        (x.kind, x.time_condition, x.rate_minor_per_hour, x.amount_minor) for x in invoice.lines
    ] == [
        ("TIME", "REGULAR", 12_000, 342_000),
        ("TIME", "AFTER_HOURS", 18_000, 54_000),
        ("RECURRING_BASE", "", 0, 100_000),
        ("RECURRING_BASE", "", 0, 100_000),
    ]
    assert invoice.subtotal_minor == 596_000
