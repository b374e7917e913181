"""Rate cards and contracts through the store: the terms codec, activation freezing the card,
amendments that never re-price earlier work, milestones, unit counts, visibility."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from effigate_engine.billing.terms_json import build_contract, validate_terms
from effigate_engine.calendar import Calendar
from effigate_engine.errors import ConfigurationError, EffigateError
from effigate_engine.ratecard.contracts import ContractStatus, ContractType
from effigate_engine.ratecard.model import RateCard
from effigate_engine.service import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    catalog,
    contracts,
    invoicing,
)
from tests.service.support import new_tenant, open_store
from tests.service.test_invoicing import (
    MARCH,
    SEED_CARD,
    SEED_SPANS,
    add_logs,
    new_contract,
    run,
    setup,
)
from tests.store.helpers import Database

# The terms codec ----------------------------------------------------------------------------


def test_terms_are_normalised() -> None:
    terms = validate_terms(
        "BUCKET",
        "USD",
        {
            "anchor_day": 15,
            "scope": {"support_levels": ["L2", "L1"], "job_types": ["network"]},
            "bucket": {
                "size_hours": "62.5",
                "low_balance_hours": [10, "5"],
                "burn_factors": {"AFTER_HOURS": "1.50"},
                "per_period": True,
                "rollover_periods": 2,
            },
            "sla_credits": {"per_breach": {"p2": "200", "critical": "500.00"}, "cap_minor": 90_000},
            "tax": [{"name": "GST", "rate_ppm": 100_000}],
        },
    )
    assert terms == {
        "anchor_day": 15,
        "scope": {
            "support_levels": ["L1", "L2"],
            "job_types": ["network"],
            "out_of_scope": "PRICE",
        },
        "bucket": {
            "size_seconds": 225_000,
            "low_balance_seconds": [36_000, 18_000],
            "burn_factors": {"AFTER_HOURS": "1.5"},
            "per_period": True,
            "rollover_periods": 2,
            "rollover_cap_seconds": None,
        },
        "sla_credits": {
            "per_breach": {"CRITICAL": "500.00", "HIGH": "200.00"},
            "percent_per_priority": {},
            "percent_bp": 0,
            "cap": "900.00",
            "cap_percent_bp": None,
        },
        "tax": [{"name": "GST", "rate_ppm": 100_000}],
    }
    assert validate_terms("BUCKET", "USD", terms) == terms  # a fixed point
    recurring = validate_terms(
        "RECURRING",
        "JPY",
        {"recurring": {"base_fee_minor": 150_000, "unit_prices": {"endpoint": "1200"}}},
    )
    assert recurring["recurring"] == {
        "base_fee": "150000",
        "unit_prices": {"endpoint": "1200"},
        "included_seconds": None,
        "prorate": True,
        "base_timing": "advance",
        "prorate_units": False,
    }


@pytest.mark.parametrize(
    ("kind", "terms", "path"),
    [
        ("BUCKET", {}, "terms.bucket"),
        ("BUCKET", {"bucket": {"size_hours": 1.5}}, "terms.bucket.size_hours"),
        ("BUCKET", {"bucket": {"size_hours": "1.00001"}}, "terms.bucket.size_hours"),
        ("BUCKET", {"bucket": {"size_hours": 10, "colour": 1}}, "terms.bucket.colour"),
        (
            "BUCKET",
            {"bucket": {"size_hours": 10, "burn_factors": {"OUT_OF_SCOPE": "2"}}},
            "terms.bucket.burn_factors.OUT_OF_SCOPE",
        ),
        ("HOURLY", {"bucket": {"size_hours": 10}}, "terms.bucket"),
        ("RECURRING", {"recurring": {}}, "terms.recurring.base_fee"),
        ("RECURRING", {"recurring": {"base_fee": "9.999"}}, "terms.recurring.base_fee"),
        (
            "HOURLY",
            {"sla_credits": {"per_breach": {"URGENT": "1"}}},
            "terms.sla_credits.per_breach.URGENT",
        ),
        ("HOURLY", {"tax": [{"name": "VAT", "rate_ppm": 2_000_000}]}, "terms.tax[0].rate_ppm"),
        ("HOURLY", {"anchor_day": 32}, "terms.anchor_day"),
        ("HOURLY", {"scope": {"out_of_scope": "IGNORE"}}, "terms.scope.out_of_scope"),
        ("HOURLY", {"discount": 1}, "terms.discount"),
    ],
)
def test_terms_errors_name_the_path(kind: str, terms: dict, path: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        validate_terms(kind, "USD", terms)
    assert err.value.field == path


def test_build_contract_from_rows() -> None:
    card = SEED_CARD
    frozen = RateCard.from_json(card)
    row = {
        "id": 7,
        "client_id": 3,
        "contract_type": "FIXED_PRICE",
        "status": "AMENDED",
        "currency": "USD",
        "time_zone": "America/New_York",
        "starts_on": MARCH,
        "ends_on": None,
        "terms": validate_terms("FIXED_PRICE", "USD", {"anchor_day": 1}),
        "frozen_rate_card": frozen.to_json(),
        "frozen_rate_card_sha256": frozen.content_hash(),
    }
    new_card = {**card, "base_rates": [{"support_level": "*", "job_type": "*", "rate": 15_000}]}
    amendment = {
        "id": 11,
        "kind": "RATE_CARD",
        "effective_at": datetime(2026, 4, 1, 4, tzinfo=UTC),
        "body": {"rate_card": RateCard.from_json(new_card).to_json()},
    }
    milestone = {
        "id": 5,
        "name": "Design",
        "amount_minor": 100_000,
        "approved_at": datetime(2026, 3, 2, 5, tzinfo=UTC),
    }
    contract = build_contract(
        row, Calendar.always_open("America/New_York"), [amendment], [milestone], []
    )
    assert contract.type == ContractType.FIXED_PRICE and contract.status == ContractStatus.AMENDED
    assert [v.version for v in contract.versions] == [1, 2]
    assert contract.version_at(date(2026, 3, 31)).card.base_rate("L1", "x") == 12_000
    assert contract.version_at(date(2026, 4, 1)).card.base_rate("L1", "x") == 15_000
    assert contract.milestones[0].id == "milestone:5"
    assert contract.milestones[0].approved_on == date(2026, 3, 2)
    with pytest.raises(EffigateError, match="frozen_rate_card_sha256"):
        build_contract(
            {**row, "frozen_rate_card_sha256": "0" * 64}, Calendar.always_open(), [], [], []
        )


# Through the store -----------------------------------------------------------------------------


def test_activation_freezes_the_card_and_a_later_publish_changes_nothing(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            draft = await new_contract(store, s, activate=False)
            assert draft.status == "DRAFT" and draft.frozen_rate_card_version is None
            active = await contracts.activate_contract(store, p, draft.id)
            assert (active.status, active.frozen_rate_card_version) == ("ACTIVE", 1)
            assert active.activated_at is not None and len(active.frozen_rate_card_sha256) == 64
            with pytest.raises(FailedPrecondition) as err:
                await contracts.activate_contract(store, p, draft.id)
            assert err.value.field == "contract.status"

            dearer = {
                **SEED_CARD,
                "base_rates": [{"support_level": "*", "job_type": "*", "amount": "200.00"}],
            }
            v2 = await contracts.publish_rate_card(store, p, s.rate_card_id, dearer)
            assert v2.version == 2 and v2.content_sha256 != active.frozen_rate_card_sha256
            await add_logs(store, p, active.id, SEED_SPANS[:1], f"F{active.id}")
            preview = await invoicing.preview_invoice(store, p, active.id, MARCH)
            assert preview.lines[0].rate == 12_000  # still the frozen $120
            assert (await contracts.get_contract(store, p, active.id)).frozen_rate_card_version == 1

            later = await new_contract(store, s)  # activated now: the latest version
            assert later.frozen_rate_card_version == 2
            pinned = await new_contract(store, s, activate=False)
            pinned = await contracts.activate_contract(store, p, pinned.id, rate_card_version=1)
            assert pinned.frozen_rate_card_sha256 == active.frozen_rate_card_sha256
            with pytest.raises(NotFound):
                await contracts.activate_contract(
                    store, p, (await new_contract(store, s, activate=False)).id, rate_card_version=9
                )

    run(scenario())


def test_rate_card_amendment_never_reprices_earlier_work(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s)
            await add_logs(
                store,
                p,
                c.id,
                [
                    ("2026-03-31T09:00-04:00", "2026-03-31T10:00-04:00"),
                    ("2026-04-01T09:00-04:00", "2026-04-01T10:00-04:00"),
                ],
                f"A{c.id}",
            )
            new_card = {
                **SEED_CARD,
                "base_rates": [{"support_level": "*", "job_type": "*", "amount": "150.00"}],
            }
            amendment = await contracts.amend_contract(
                store, p, c.id, kind="RATE_CARD", effective_on=date(2026, 4, 1), body=new_card
            )
            assert amendment > 0
            assert (await contracts.get_contract(store, p, c.id)).status == "AMENDED"
            march = await invoicing.generate_invoice(store, p, c.id, MARCH)
            april = await invoicing.generate_invoice(store, p, c.id, date(2026, 4, 1))
            assert [(x.rate_minor_per_hour, x.rate_card_version) for x in march.lines[:1]] == [
                (12_000, 1)
            ]
            assert [(x.rate_minor_per_hour, x.rate_card_version) for x in april.lines[:1]] == [
                (15_000, 2)
            ]
            assert april.lines[0].evidence["rate_card_source"] == {"amendment_id": amendment}

            with pytest.raises(ConfigurationError):
                await contracts.amend_contract(
                    store,
                    p,
                    c.id,
                    kind="RATE_CARD",
                    effective_on=date(2026, 5, 1),
                    body={**SEED_CARD, "currency": "EUR"},
                )
            with pytest.raises(FailedPrecondition):
                await contracts.amend_contract(
                    store, p, c.id, kind="TOP_UP", effective_on=date(2026, 5, 1), body={"hours": 5}
                )
            note = await contracts.amend_contract(
                store, p, c.id, kind="NOTE", effective_on=date(2026, 5, 1), body={"note": "renewal"}
            )
            assert note > amendment

    run(scenario())


def test_fixed_price_milestones_are_invoiced_once(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s, "FIXED_PRICE", terms={}, activate=False)
            with pytest.raises(FailedPrecondition) as err:
                await contracts.activate_contract(store, p, c.id)
            assert err.value.field == "milestones"
            design = await contracts.add_milestone(store, p, c.id, "Design", 333_334)
            build = await contracts.add_milestone(store, p, c.id, "Build", 333_333)
            await contracts.activate_contract(store, p, c.id)
            with pytest.raises(FailedPrecondition):
                await contracts.add_deliverable(store, p, c.id, "Report", 1)
            await contracts.approve_milestone(store, p, design, date(2026, 3, 20))
            with pytest.raises(FailedPrecondition):
                await contracts.approve_milestone(store, p, design, date(2026, 3, 21))
            with pytest.raises(NotFound):
                await contracts.approve_milestone(store, p, 10**9, date(2026, 3, 21))
            march = await invoicing.generate_invoice(store, p, c.id, MARCH)
            assert [(x.kind, x.amount_minor) for x in march.lines] == [("MILESTONE", 333_334)]
            assert march.lines[0].evidence["item_ids"] == [f"milestone:{design}"]
            await invoicing.issue_invoice(store, p, march.id)
            await contracts.approve_milestone(store, p, build, date(2026, 4, 2))
            april = await invoicing.generate_invoice(store, p, c.id, date(2026, 4, 1))
            assert [x.evidence["item_ids"] for x in april.lines] == [[f"milestone:{build}"]]

    run(scenario())


def test_recurring_contract_bills_base_fee_in_advance_and_units(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            terms = {"recurring": {"base_fee": "1000.00", "unit_prices": {"endpoint": "12.50"}}}
            c = await new_contract(store, s, "RECURRING", terms)
            cycle_end = datetime(2026, 4, 1, 4, tzinfo=UTC)  # local midnight in New York
            await contracts.record_unit_count(store, p, c.id, "endpoint", 39, cycle_end=cycle_end)
            await contracts.record_unit_count(store, p, c.id, "endpoint", 40, cycle_end=cycle_end)
            with pytest.raises(ConfigurationError):
                await contracts.record_unit_count(store, p, c.id, "mailbox", 3, cycle_end=cycle_end)
            inv = await invoicing.generate_invoice(store, p, c.id, MARCH)
            assert [(x.kind, x.amount_minor) for x in inv.lines] == [
                ("RECURRING_BASE", 100_000),
                ("RECURRING_BASE", 100_000),
                ("RECURRING_UNITS", 50_000),
            ]
            assert inv.lines[2].evidence["unit_count"] == 40
            assert inv.total_minor == 250_000

    run(scenario())


def test_contract_reads_and_portal_visibility(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            mine = await new_contract(store, s)
            other_client = await catalog.create_client(store, p, "Other Co")
            theirs = await new_contract(store, s, client_id=other_client)
            assert [c.id for c in await contracts.list_contracts(store, p)] == [mine.id, theirs.id]
            assert [c.id for c in await contracts.list_contracts(store, p, other_client)] == [
                theirs.id
            ]
            portal = replace(p, client_id=s.client_id)
            assert [c.id for c in await contracts.list_contracts(store, portal)] == [mine.id]
            assert (await contracts.get_contract(store, portal, mine.id)).id == mine.id
            with pytest.raises(NotFound):
                await contracts.get_contract(store, portal, theirs.id)
            with pytest.raises(PermissionDenied):
                await contracts.create_rate_card(store, portal, "x")
            with pytest.raises(NotFound):
                await contracts.get_contract(store, await new_tenant(db), mine.id)
            with pytest.raises(NotFound):
                await contracts.create_contract(
                    store,
                    p,
                    client_id=10**9,
                    contract_type="HOURLY",
                    currency="USD",
                    starts_on=MARCH,
                )
            with pytest.raises(ConfigurationError):
                await contracts.create_contract(
                    store,
                    p,
                    client_id=s.client_id,
                    contract_type="HOURLY",
                    currency="USD",
                    starts_on=MARCH,
                    calendar_id=s.calendar_id,
                    time_zone="Europe/London",
                )
            utc = await contracts.create_contract(
                store,
                p,
                client_id=s.client_id,
                contract_type="HOURLY",
                currency="USD",
                starts_on=MARCH,
            )
            assert utc.time_zone == "UTC" and utc.terms == {}

    run(scenario())
