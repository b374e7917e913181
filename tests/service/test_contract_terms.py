"""The contract terms of the second build through the terms codec and the store: every new key
validated and normalised (a fixed point), refused with its path and value, stored and read
back, turned into the domain's objects; rate-card precedence from publication and amendment
bodies; unit counts as a timeline per unit type."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effigate_engine.billing.rate_card_json import amendment_rate_card, rate_card_from_json
from effigate_engine.billing.terms_json import _terms_objects, validate_terms
from effigate_engine.errors import ConfigurationError
from effigate_engine.money import currency
from effigate_engine.priority import normalise_priority
from effigate_engine.ratecard.contracts import BaseTiming, ContractType
from effigate_engine.ratecard.model import Condition, RateCard
from effigate_engine.ratecard.periods import Period
from effigate_engine.service import FailedPrecondition, contracts, invoice_evidence, invoicing
from tests.service.support import open_store
from tests.service.test_invoicing import MARCH, SEED_CARD, fetch_all, new_contract, run, setup
from tests.store.helpers import Database

HOUR = 3_600
BUCKET = {"size_hours": 10}
RECURRING = {"base_fee": "1000.00", "unit_prices": {"endpoint": "10.00"}}
#: The section each contract type requires.
REQUIRED = {"BUCKET": {"bucket": BUCKET}, "RECURRING": {"recurring": RECURRING}}


def section(kind: str, key: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The normalised ``key`` section of terms holding ``raw`` (checked to be a fixed point)."""
    terms = validate_terms(kind, "USD", {**REQUIRED.get(kind, {}), key: raw})
    assert validate_terms(kind, "USD", terms) == terms
    assert validate_terms(kind, "USD", json.loads(json.dumps(terms))) == terms
    return terms[key]


# Normalised forms ---------------------------------------------------------------------------


def test_bucket_high_priority_burn_and_rollover_cap_are_normalised() -> None:
    bucket = section(
        "BUCKET",
        "bucket",
        {
            **BUCKET,
            "burn_factors": {"HIGH_PRIORITY": "2.0", "AFTER_HOURS": "1.50"},
            "per_period": True,
            "rollover_periods": 2,
            "rollover_cap_hours": "12.5",
        },
    )
    assert bucket == {
        "size_seconds": 10 * HOUR,
        "low_balance_seconds": [36_000],
        "burn_factors": {"AFTER_HOURS": "1.5", "HIGH_PRIORITY": "2"},
        "per_period": True,
        "rollover_periods": 2,
        "rollover_cap_seconds": 45_000,
    }
    seconds = section("BUCKET", "bucket", {**BUCKET, "per_period": True, "rollover_cap_seconds": 0})
    assert seconds["rollover_cap_seconds"] == 0  # a cap of nothing: every carry expires
    assert section("BUCKET", "bucket", BUCKET)["rollover_cap_seconds"] is None
    assert section("BUCKET", "bucket", {**BUCKET, "rollover_cap_hours": None}) == section(
        "BUCKET", "bucket", BUCKET
    )


@pytest.mark.parametrize(
    ("given", "included"),
    [
        ({}, None),  # no allowance: time and materials
        ({"included_hours": None}, None),
        ({"included_seconds": None}, None),
        ({"included_hours": 0}, 0),  # an empty allowance: all time is overage
        ({"included_hours": "2.5"}, 9_000),
        ({"included_seconds": 600}, 600),
    ],
)
def test_recurring_included_hours_are_optional(given: dict, included: int | None) -> None:
    recurring = section("RECURRING", "recurring", {**RECURRING, **given})
    assert recurring["included_seconds"] == included


def test_recurring_base_timing_and_unit_proration_are_normalised() -> None:
    assert section("RECURRING", "recurring", RECURRING) == {
        "base_fee": "1000.00",
        "unit_prices": {"endpoint": "10.00"},
        "included_seconds": None,
        "prorate": True,
        "base_timing": "advance",
        "prorate_units": False,
    }
    given = {**RECURRING, "base_timing": "arrears", "prorate_units": True, "prorate": False}
    recurring = section("RECURRING", "recurring", given)
    assert (recurring["base_timing"], recurring["prorate_units"], recurring["prorate"]) == (
        "arrears",
        True,
        False,
    )


def test_sla_credit_percent_per_priority_and_caps_are_normalised() -> None:
    credits = section(
        "RECURRING",
        "sla_credits",
        {
            "per_breach": {"p1": "500"},
            "percent_per_priority": {"p2": 1_000, "medium": 250},
            "cap_percent_bp": 2_500,
        },
    )
    assert credits == {
        "per_breach": {"CRITICAL": "500.00"},
        "percent_per_priority": {"HIGH": 1_000, "MEDIUM": 250},
        "percent_bp": 0,
        "cap": None,
        "cap_percent_bp": 2_500,
    }
    amount_cap = section("HOURLY", "sla_credits", {"per_breach": {"HIGH": "200"}, "cap": "900"})
    assert (amount_cap["cap"], amount_cap["cap_percent_bp"]) == ("900.00", None)
    assert section("RECURRING", "sla_credits", {"percent_bp": 500, "cap_percent_bp": 0}) == {
        "per_breach": {},
        "percent_per_priority": {},
        "percent_bp": 500,
        "cap": None,
        "cap_percent_bp": 0,
    }


def test_scope_reject_is_stored_as_given() -> None:
    scope = section("HOURLY", "scope", {"support_levels": ["L1"], "out_of_scope": "REJECT"})
    assert scope == {"support_levels": ["L1"], "out_of_scope": "REJECT"}


DOC = Path(__file__).resolve().parents[2] / "docs" / "contract-terms.md"
DOC_EXAMPLES = re.findall(
    r"A `(\w+)` contract[^\n]*\n(?:[^\n]+\n)*\n```json\n(.*?)```"
    r"\n\nnormalises to\n\n```json\n(.*?)```",
    DOC.read_text(),
    re.S,
)


@pytest.mark.parametrize(("kind", "given", "normalised"), DOC_EXAMPLES)
def test_the_documented_examples_normalise_as_shown(kind: str, given: str, normalised: str) -> None:
    assert validate_terms(kind, "USD", json.loads(given)) == json.loads(normalised)


def test_the_document_has_its_examples() -> None:
    assert [kind for kind, _, _ in DOC_EXAMPLES] == ["BUCKET", "RECURRING"]


def _optional(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of ``keys`` (a key given may also be ``null``)."""
    return st.fixed_dictionaries({}, optional={k: st.one_of(st.none(), v) for k, v in keys.items()})


HOURS = st.one_of(st.integers(0, 500), st.sampled_from(["0", "2.5", "62.5", "0.25"]))
FACTOR = st.sampled_from(["1", "1.5", "2.00", "0.75", "3"])
PRIORITY = st.sampled_from(["CRITICAL", "high", "P3", "low"])
BP = st.integers(0, 10_000)


@st.composite
def mixed_terms(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A contract type and terms mixing every key its type allows, old and new."""
    kind = draw(st.sampled_from(["HOURLY", "BUCKET", "RECURRING", "FIXED_PRICE", "SCOPE"]))
    terms: dict[str, Any] = draw(
        _optional(
            {
                "anchor_day": st.integers(1, 31),
                "scope": _optional(
                    {
                        "support_levels": st.lists(st.sampled_from(["L1", "L2", "L3", "SA"])),
                        "out_of_scope": st.sampled_from(["PRICE", "REJECT"]),
                    }
                ),
                "tax_exemption": st.just("export"),
            }
        )
    )
    if kind == "BUCKET":
        per_period = draw(st.booleans())
        bucket = draw(
            _optional(
                {
                    "burn_factors": st.dictionaries(
                        st.sampled_from(["REGULAR", "AFTER_HOURS", "HIGH_PRIORITY"]), FACTOR
                    ),
                    "rollover_periods": st.integers(0, 6),
                    "low_balance_hours": st.lists(HOURS, min_size=1, max_size=3),
                }
            )
        )
        bucket.update(size_hours=draw(HOURS), per_period=per_period)
        if per_period:
            bucket.update(draw(_optional({"rollover_cap_hours": HOURS})))
        terms["bucket"] = bucket
    if kind == "RECURRING":
        recurring = draw(
            _optional(
                {
                    "included_hours": HOURS,
                    "base_timing": st.sampled_from(["advance", "arrears"]),
                    "prorate_units": st.booleans(),
                    "prorate": st.booleans(),
                    "unit_prices": st.dictionaries(
                        st.sampled_from(["endpoint", "mailbox"]), st.sampled_from(["1", "2.50"])
                    ),
                }
            )
        )
        recurring["base_fee"] = draw(st.sampled_from(["0", "99.99", "4500"]))
        terms["recurring"] = recurring
    fixed = draw(st.dictionaries(PRIORITY, st.sampled_from(["50", "200.00"]), max_size=2))
    names = {normalise_priority(p) for p in fixed}  # PRIORITY holds no two aliases
    credits: dict[str, Any] = {"per_breach": fixed}
    if kind == "RECURRING":
        percent = draw(st.dictionaries(PRIORITY, BP, max_size=2))
        percent = {p: bp for p, bp in percent.items() if normalise_priority(p) not in names}
        credits.update(percent_per_priority=percent, percent_bp=draw(BP))
        if draw(st.booleans()):
            credits["cap_percent_bp"] = draw(BP)
        elif draw(st.booleans()):
            credits["cap"] = "250"
    elif draw(st.booleans()):
        credits["cap"] = "250"
    if draw(st.booleans()):
        terms["sla_credits"] = credits
    return kind, terms


@settings(max_examples=300, deadline=None)
@given(mixed_terms())
def test_any_mix_of_terms_normalises_to_a_fixed_point_that_builds(
    case: tuple[str, dict[str, Any]],
) -> None:
    kind, terms = case
    normalised = validate_terms(kind, "USD", terms)
    assert validate_terms(kind, "USD", normalised) == normalised
    assert validate_terms(kind, "USD", json.loads(json.dumps(normalised))) == normalised
    built = _terms_objects(ContractType(kind), currency("USD"), normalised)
    if kind == "RECURRING":
        given_included = terms["recurring"].get("included_hours")
        assert (built["recurring"].included_seconds is None) == (given_included is None)


# Errors name the path and the value ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "terms", "path", "value"),
    [
        (
            "BUCKET",
            {"bucket": {**BUCKET, "burn_factors": {"HIGH_PRIORITY": "0"}}},
            "terms.bucket.burn_factors.HIGH_PRIORITY",
            "'0'",
        ),
        (
            "BUCKET",
            {"bucket": {**BUCKET, "burn_factors": {"HIGH_PRIORITY": 2.5}}},
            "terms.bucket.burn_factors.HIGH_PRIORITY",
            "2.5",
        ),
        (
            "BUCKET",
            {"bucket": {**BUCKET, "burn_factors": {"URGENT": "2"}}},
            "terms.bucket.burn_factors.URGENT",
            "'2'",
        ),
        (
            "BUCKET",
            {"bucket": {**BUCKET, "rollover_cap_hours": 5}},
            "terms.bucket.rollover_cap_hours",
            "5",
        ),
        (
            "BUCKET",
            {"bucket": {**BUCKET, "per_period": True, "rollover_cap_seconds": -1}},
            "terms.bucket.rollover_cap_seconds",
            "-1",
        ),
        (
            "BUCKET",
            {"bucket": {**BUCKET, "per_period": True, "rollover_cap_hours": "1.00001"}},
            "terms.bucket.rollover_cap_hours",
            "'1.00001'",
        ),
        (
            "BUCKET",
            {
                "bucket": {
                    **BUCKET,
                    "per_period": True,
                    "rollover_cap_hours": 1,
                    "rollover_cap_seconds": 3600,
                }
            },
            "terms.bucket.rollover_cap_hours",
            "1",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "included_hours": "-1"}},
            "terms.recurring.included_hours",
            "'-1'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "included_hours": 1.5}},
            "terms.recurring.included_hours",
            "1.5",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "base_timing": "monthly"}},
            "terms.recurring.base_timing",
            "'monthly'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "base_timing": "ARREARS"}},
            "terms.recurring.base_timing",
            "'ARREARS'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "prorate_units": "yes"}},
            "terms.recurring.prorate_units",
            "'yes'",
        ),
        (
            "RECURRING",
            {"sla_credits": {"percent_per_priority": {"URGENT": 100}}},
            "terms.sla_credits.percent_per_priority.URGENT",
            "'URGENT'",
        ),
        (
            "RECURRING",
            {"sla_credits": {"percent_per_priority": {"HIGH": 10_001}}},
            "terms.sla_credits.percent_per_priority.HIGH",
            "10001",
        ),
        (
            "RECURRING",
            {"sla_credits": {"percent_per_priority": {"HIGH": "10"}}},
            "terms.sla_credits.percent_per_priority.HIGH",
            "'10'",
        ),
        (
            "RECURRING",
            {"sla_credits": {"per_breach": {"P2": "200"}, "percent_per_priority": {"HIGH": 500}}},
            "terms.sla_credits.percent_per_priority.HIGH",
            "500",
        ),
        (
            "RECURRING",
            {"sla_credits": {"percent_per_priority": {"P2": 500, "HIGH": 600}}},
            "terms.sla_credits.percent_per_priority.HIGH",
            "600",
        ),
        (
            "RECURRING",
            {"sla_credits": {"cap": "100", "cap_percent_bp": 1_000}},
            "terms.sla_credits.cap_percent_bp",
            "1000",
        ),
        (
            "RECURRING",
            {"sla_credits": {"cap_minor": 100, "cap_percent_bp": 1_000}},
            "terms.sla_credits.cap_percent_bp",
            "1000",
        ),
        (
            "RECURRING",
            {"sla_credits": {"cap_percent_bp": 10_001}},
            "terms.sla_credits.cap_percent_bp",
            "10001",
        ),
        (
            "HOURLY",
            {"sla_credits": {"percent_per_priority": {"HIGH": 500}}},
            "terms.sla_credits.percent_per_priority",
            "{'HIGH': 500}",
        ),
        (
            "BUCKET",
            {"bucket": BUCKET, "sla_credits": {"cap_percent_bp": 500}},
            "terms.sla_credits.cap_percent_bp",
            "500",
        ),
        (
            "HOURLY",
            {"sla_credits": {"percent_bp": 500}},
            "terms.sla_credits.percent_bp",
            "500",
        ),
        ("HOURLY", {"scope": {"out_of_scope": "reject"}}, "terms.scope.out_of_scope", "'reject'"),
        # numbers that would overflow or poison the arithmetic are refused, never an internal error
        (
            "RECURRING",
            {"recurring": {**RECURRING, "base_fee": "Infinity"}},
            "terms.recurring.base_fee",
            "'Infinity'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "base_fee": "1E+999999"}},
            "terms.recurring.base_fee",
            "'1E+999999'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "unit_prices": {"endpoint": "sNaN"}}},
            "terms.recurring.unit_prices.endpoint",
            "'sNaN'",
        ),
        (
            "RECURRING",
            {"recurring": {**RECURRING, "base_fee": "-5"}},
            "terms.recurring.base_fee",
            "'-5'",
        ),
        (
            "BUCKET",
            {"bucket": {"size_hours": "1E+20"}},
            "terms.bucket.size_hours",
            "'1E+20'",
        ),
        (
            "HOURLY",
            {"sla_credits": {"cap": "1e999999999"}},
            "terms.sla_credits.cap",
            "'1e999999999'",
        ),
    ],
)
def test_new_term_errors_name_the_path_and_value(
    kind: str, terms: dict, path: str, value: str
) -> None:
    with pytest.raises(ConfigurationError) as err:
        validate_terms(kind, "USD", {**REQUIRED.get(kind, {}), **terms})
    assert err.value.field == path
    assert str(err.value).startswith(f"{path}: {value} ")


# Terms → domain -------------------------------------------------------------------------------


def test_normalised_terms_build_the_domain_objects() -> None:
    money = currency("USD")
    bucket_terms = validate_terms(
        "BUCKET",
        "USD",
        {
            "bucket": {
                **BUCKET,
                "burn_factors": {"HIGH_PRIORITY": "2", "WEEKEND": "1.5"},
                "per_period": True,
                "rollover_periods": 3,
                "rollover_cap_hours": 4,
            }
        },
    )
    bucket = _terms_objects(ContractType.BUCKET, money, bucket_terms)["bucket"]
    assert bucket.burn_bp == {Condition.HIGH_PRIORITY: 20_000, Condition.WEEKEND: 15_000}
    assert bucket.rollover_cap_seconds == 4 * HOUR
    assert bucket.priority_burn(Condition.WEEKEND) == 20_000

    recurring_terms = validate_terms(
        "RECURRING",
        "USD",
        {
            "recurring": {**RECURRING, "base_timing": "arrears", "prorate_units": True},
            "sla_credits": {"percent_per_priority": {"HIGH": 1_000}, "cap_percent_bp": 2_500},
        },
    )
    built = _terms_objects(ContractType.RECURRING, money, recurring_terms)
    recurring, credits = built["recurring"], built["sla_credits"]
    assert recurring.included_seconds is None  # time and materials
    assert (recurring.base_timing, recurring.prorate_units) == (BaseTiming.ARREARS, True)
    assert recurring.unit_prices == {"endpoint": 1_000}
    assert (credits.percent_per_priority, credits.cap_percent_bp) == ({"HIGH": 1_000}, 2_500)
    assert credits.cap_per_period is None

    included = validate_terms("RECURRING", "USD", {"recurring": {**RECURRING, "included_hours": 0}})
    assert (
        _terms_objects(ContractType.RECURRING, money, included)["recurring"].included_seconds == 0
    )


def test_terms_stored_before_the_new_keys_keep_their_meaning() -> None:
    """Rows normalised by the earlier codec always wrote ``included_seconds`` (0 when none was
    given): an empty allowance stays an empty allowance; the other new keys take defaults."""
    money = currency("USD")
    stored = {
        "recurring": {
            "base_fee": "1000.00",
            "unit_prices": {"endpoint": "10.00"},
            "included_seconds": 0,
            "prorate": True,
        },
        "sla_credits": {"per_breach": {"HIGH": "200.00"}, "percent_bp": 0, "cap": "900.00"},
    }
    built = _terms_objects(ContractType.RECURRING, money, stored)
    recurring, credits = built["recurring"], built["sla_credits"]
    assert recurring.included_seconds == 0
    assert (recurring.base_timing, recurring.prorate_units) == (BaseTiming.ADVANCE, False)
    assert (credits.cap_per_period, credits.cap_percent_bp) == (90_000, None)
    assert credits.percent_per_priority == {}
    old_bucket = {"size_seconds": 36_000, "burn_factors": {}, "per_period": True}
    bucket = _terms_objects(ContractType.BUCKET, money, {"bucket": old_bucket})["bucket"]
    assert bucket.rollover_cap_seconds is None
    # stored terms re-validate unchanged but for the keys they did not have
    again = validate_terms("RECURRING", "USD", stored)
    assert again["recurring"]["included_seconds"] == 0
    assert again["sla_credits"]["cap"] == "900.00"


# Rate-card JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precedence", "normalised"),
    [
        ("default", "default"),
        ("Highest", "highest"),
        (["HOLIDAY", "WEEKEND", "AFTER_HOURS"], "default"),
        (["after_hours", "HOLIDAY", "WEEKEND"], ("AFTER_HOURS", "HOLIDAY", "WEEKEND")),
    ],
)
def test_rate_card_precedence_is_parsed_and_stored_canonically(
    precedence: object, normalised: object
) -> None:
    card = rate_card_from_json({**SEED_CARD, "precedence": precedence})
    stored = card.to_json()
    if normalised == "default":
        assert "precedence" not in stored  # a default card keeps the hash it always had
        assert card.content_hash() == rate_card_from_json(SEED_CARD).content_hash()
    elif isinstance(normalised, str):
        assert stored["precedence"] == normalised
    else:
        assert stored["precedence"] == list(normalised)
        assert card.precedence == tuple(Condition[c] for c in normalised)
    assert RateCard.from_json(stored).content_hash() == card.content_hash()


@pytest.mark.parametrize(
    ("change", "path", "value"),
    [
        ({"precedence": "lowest"}, "rate_card.precedence", "'lowest'"),
        ({"precedence": 3}, "rate_card.precedence", "3"),
        ({"precedence": ["HOLIDAY", "HOLIDAY", "WEEKEND"]}, "rate_card.precedence[1]", "'HOLIDAY'"),
        ({"precedence": ["REGULAR", "HOLIDAY", "WEEKEND"]}, "rate_card.precedence[0]", "'REGULAR'"),
        ({"precedence": ["HOLIDAY", "WEEKEND"]}, "rate_card.precedence", "['HOLIDAY', 'WEEKEND']"),
        ({"precendence": "highest"}, "rate_card.precendence", "'highest'"),
        ({"stacking": "min"}, "rate_card.stacking", "'min'"),
        ({"increment_mode": "down"}, "rate_card.increment_mode", "'down'"),
        ({"increment_seconds": "900"}, "rate_card.increment_seconds", "'900'"),
        ({"increment_seconds": 900.5}, "rate_card.increment_seconds", "900.5"),
        ({"minimum_seconds": -1}, "rate_card.minimum_seconds", "-1"),
        ({"base_rates": {"*": 1}}, "rate_card.base_rates", "{'*': 1}"),
        ({"base_rates": ["x"]}, "rate_card.base_rates[0]", "'x'"),
        (
            {"base_rates": [{"support_level": "*", "job_type": "*", "amount": "Infinity"}]},
            "rate_card.base_rates[0].amount",
            "'Infinity'",
        ),
        (
            {"base_rates": [{"support_level": "*", "job_type": "*", "amount": "1E+999999"}]},
            "rate_card.base_rates[0].amount",
            "'1E+999999'",
        ),
        (
            {"base_rates": [{"support_level": 2, "job_type": "*", "rate": 100}]},
            "rate_card.base_rates[0].support_level",
            "2",
        ),
        (
            {"base_rates": [{"support_level": "*", "job_type": "*", "rate": "100"}]},
            "rate_card.base_rates[0].rate",
            "'100'",
        ),
        ({"rules": []}, "rate_card.rules", "[]"),
        ({"rules": {"BOGUS": {"rate": 1}}}, "rate_card.rules.BOGUS", "{'rate': 1}"),
        ({"rules": {"INCLUDED": {"rate": 1}}}, "rate_card.rules.INCLUDED", "{'rate': 1}"),
        ({"rules": {"WEEKEND": 2}}, "rate_card.rules.WEEKEND", "2"),
        (
            {"rules": {"WEEKEND": {"multiplier_bp": "1.5"}}},
            "rate_card.rules.WEEKEND.multiplier_bp",
            "'1.5'",
        ),
        (
            {"rules": {"WEEKEND": {"multiplier_bp": 15_000, "amount": "1"}}},
            "rate_card.rules.WEEKEND",
            "{'multiplier_bp': 15000, 'amount': '1'}",
        ),
        (
            {"rules": {"AFTER_HOURS": {"amount": "33.333"}}},
            "rate_card.rules.AFTER_HOURS.amount",
            "'33.333'",
        ),
        ({"high_priorities": ["URGENT"]}, "rate_card.high_priorities[0]", "'URGENT'"),
        ({"high_priorities": "HIGH"}, "rate_card.high_priorities", "'HIGH'"),
        ({"weekend_days": [5, 7]}, "rate_card.weekend_days[1]", "7"),
        ({"currency": "XXY"}, "rate_card.currency", "'XXY'"),
        ({"currency": None}, "rate_card.currency", "None"),
        ({"name": 5}, "rate_card.name", "5"),
    ],
)
def test_rate_card_errors_name_the_path_and_value(change: dict, path: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        rate_card_from_json({**SEED_CARD, **change})
    assert err.value.field == path
    assert str(err.value).startswith(f"{path}: {value} ")


def test_rate_card_without_currency_and_amendment_bodies() -> None:
    with pytest.raises(ConfigurationError) as err:
        rate_card_from_json({"base_rates": []})
    assert err.value.field == "rate_card.currency"
    with pytest.raises(ConfigurationError) as err:
        rate_card_from_json(["not", "a", "card"], "body")
    assert err.value.field == "body"
    card = {**SEED_CARD, "precedence": "highest"}
    assert amendment_rate_card({**card, "note": "2027 prices"}).precedence == "highest"
    assert amendment_rate_card({"rate_card": card, "note": "x"}).precedence == "highest"
    assert amendment_rate_card({"rate_card_id": 4}) == (4, None)
    assert amendment_rate_card({"rate_card_id": 4, "version": 2, "note": "x"}) == (4, 2)
    for body, path in (
        ({**SEED_CARD, "precedence": "lowest"}, "body.precedence"),
        ({"rate_card": {**SEED_CARD, "precedence": "lowest"}}, "body.rate_card.precedence"),
        ({"rate_card": SEED_CARD, "effective": "now"}, "body.effective"),
        ({"rate_card_id": "four"}, "body.rate_card_id"),
        ({"rate_card_id": 4, "version": 0}, "body.version"),
        ({"rate_card_id": 4, "rate_card": SEED_CARD}, "body.rate_card"),
    ):
        with pytest.raises(ConfigurationError) as err:
            amendment_rate_card(body)
        assert err.value.field == path


# Through the store ---------------------------------------------------------------------------


def test_every_new_term_is_stored_and_read_back_normalised(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            bucket_terms = {
                "bucket": {
                    "size_hours": 20,
                    "burn_factors": {"HIGH_PRIORITY": "2.0"},
                    "per_period": True,
                    "rollover_periods": 1,
                    "rollover_cap_hours": 5,
                },
                "scope": {"support_levels": ["L1", "L2"], "out_of_scope": "REJECT"},
            }
            recurring_terms = {
                "recurring": {
                    **RECURRING,
                    "base_timing": "arrears",
                    "prorate_units": True,
                },
                "sla_credits": {
                    "percent_per_priority": {"P1": 2_000, "HIGH": 1_000},
                    "cap_percent_bp": 5_000,
                },
            }
            for kind, terms in (("BUCKET", bucket_terms), ("RECURRING", recurring_terms)):
                c = await new_contract(store, s, kind, terms)
                stored = (await contracts.get_contract(store, p, c.id)).terms
                assert stored == c.terms == validate_terms(kind, "USD", terms)
                async with store.transaction(p) as conn:
                    domain = await contracts.load_contract(conn, c.id)
                if kind == "BUCKET":
                    assert domain.bucket.burn_bp == {Condition.HIGH_PRIORITY: 20_000}
                    assert domain.bucket.rollover_cap_seconds == 5 * HOUR
                    assert domain.scope.out_of_scope.value == "REJECT"
                else:
                    assert domain.recurring.included_seconds is None
                    assert domain.recurring.base_timing == BaseTiming.ARREARS
                    assert domain.recurring.prorate_units is True
                    assert domain.sla_credits.percent_per_priority == {
                        "CRITICAL": 2_000,
                        "HIGH": 1_000,
                    }
                    assert domain.sla_credits.cap_percent_bp == 5_000
            with pytest.raises(ConfigurationError) as err:
                await new_contract(
                    store, s, "RECURRING", {"recurring": {**RECURRING, "base_timing": "later"}}
                )
            assert err.value.field == "terms.recurring.base_timing"

    run(scenario())


def test_rate_card_precedence_through_publication_and_amendment(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db, {**SEED_CARD, "precedence": "highest"})
            p = s.principal
            c = await new_contract(store, s)
            async with store.transaction(p) as conn:
                assert (await contracts.load_contract(conn, c.id)).rate_card.precedence == (
                    "highest"
                )
            with pytest.raises(ConfigurationError) as err:
                await contracts.publish_rate_card(
                    store, p, s.rate_card_id, {**SEED_CARD, "precedence": ["WEEKEND"]}
                )
            assert err.value.field == "rate_card.precedence"
            versions = await fetch_all(
                db, "SELECT version FROM rate_card_versions WHERE rate_card_id = $1", s.rate_card_id
            )
            assert [r["version"] for r in versions] == [1]  # the refused card stored nothing

            order = ["AFTER_HOURS", "WEEKEND", "HOLIDAY"]
            await contracts.amend_contract(
                store,
                p,
                c.id,
                kind="RATE_CARD",
                effective_on=date(2026, 4, 1),
                body={"rate_card": {**SEED_CARD, "precedence": order}, "note": "night first"},
            )
            async with store.transaction(p) as conn:
                domain = await contracts.load_contract(conn, c.id)
            assert domain.version_at(date(2026, 4, 1)).card.precedence == tuple(
                Condition[name] for name in order
            )
            for body, path in (
                ({**SEED_CARD, "precedence": "lowest"}, "body.precedence"),
                (
                    {"rate_card": {**SEED_CARD, "precedence": ["AFTER_HOURS"] * 3}},
                    "body.rate_card.precedence[1]",
                ),
                ({"rate_card_id": "one"}, "body.rate_card_id"),
            ):
                with pytest.raises(ConfigurationError) as err:
                    await contracts.amend_contract(
                        store, p, c.id, kind="RATE_CARD", effective_on=date(2026, 5, 1), body=body
                    )
                assert err.value.field == path
            amendments = await fetch_all(
                db, "SELECT kind FROM contract_amendments WHERE contract_id = $1", c.id
            )
            assert [r["kind"] for r in amendments] == ["RATE_CARD"]

    run(scenario())


# Unit counts ---------------------------------------------------------------------------------


def test_unit_counts_form_a_timeline_and_a_resend_changes_nothing(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            c = await new_contract(store, s, "RECURRING", {"recurring": RECURRING})
            record = contracts.record_unit_count
            first = await record(store, p, c.id, "endpoint", 10, effective_on=MARCH)
            change = await record(store, p, c.id, "endpoint", 16, effective_on=date(2026, 3, 11))
            assert first != change
            # the same count again: the same row, nothing audited
            assert await record(store, p, c.id, "endpoint", 16, effective_on=date(2026, 3, 11)) == (
                change
            )
            # a corrected count for a date replaces it, and the correction is audited
            assert await record(store, p, c.id, "endpoint", 15, effective_on=date(2026, 3, 11)) == (
                change
            )
            # the older form: the count in force on the last day of the cycle ending then
            legacy = await record(
                store, p, c.id, "endpoint", 18, cycle_end=datetime(2026, 4, 1, 4, tzinfo=UTC)
            )
            rows = await fetch_all(
                db,
                "SELECT id, effective_on, unit_count FROM unit_counts WHERE contract_id = $1"
                " ORDER BY effective_on",
                c.id,
            )
            assert [(r["id"], r["effective_on"], r["unit_count"]) for r in rows] == [
                (first, MARCH, 10),
                (change, date(2026, 3, 11), 15),
                (legacy, date(2026, 3, 31), 18),
            ]
            audits = await fetch_all(
                db,
                "SELECT detail FROM audit_log WHERE action = 'record_unit_count'"
                " AND entity_id = $1 ORDER BY id",
                str(c.id),
            )
            details = [json.loads(r["detail"]) for r in audits]
            assert [(d["count"], d["replaced"]) for d in details] == [
                (10, None),
                (16, None),
                (15, 16),
                (18, None),
            ]
            assert details[2]["effective_on"] == "2026-03-11"

            for kwargs, field in (
                ({"effective_on": date(2026, 2, 28)}, "effective_on"),
                ({"cycle_end": datetime(2026, 3, 1, 5, tzinfo=UTC)}, "cycle_end"),
                ({}, "effective_on"),
                (
                    {"effective_on": MARCH, "cycle_end": datetime(2026, 4, 1, tzinfo=UTC)},
                    "cycle_end",
                ),
                ({"cycle_end": datetime(2026, 4, 1)}, "cycle_end"),
            ):
                with pytest.raises(ConfigurationError) as err:
                    await record(store, p, c.id, "endpoint", 1, **kwargs)
                assert err.value.field == field
            with pytest.raises(ConfigurationError) as err:
                await record(store, p, c.id, "endpoint", -1, effective_on=MARCH)
            assert err.value.field == "count"
            hourly = await new_contract(store, s)
            with pytest.raises(FailedPrecondition):
                await record(store, p, hourly.id, "endpoint", 1, effective_on=MARCH)

    run(scenario())


def test_unit_line_evidence_keeps_the_cycles_part_of_a_timeline() -> None:
    timeline = [(MARCH, 10), (date(2026, 3, 11), 16), (date(2026, 4, 1), 12)]
    april = Period(1, date(2026, 4, 1), date(2026, 5, 1))
    assert invoice_evidence._cycle_counts(timeline, Period(0, MARCH, april.start)) == [
        ["2026-03-01", 10],
        ["2026-03-11", 16],
    ]
    assert invoice_evidence._cycle_counts(timeline, april) == [["2026-04-01", 12]]
    may = Period(2, date(2026, 5, 1), date(2026, 6, 1))
    assert invoice_evidence._cycle_counts(timeline, may) == [["2026-05-01", 12]]


def test_invoicing_takes_the_count_at_the_cycle_end_or_the_timeline(db: Database) -> None:
    async def scenario() -> None:
        async with open_store(db) as store:
            s = await setup(store, db)
            p = s.principal
            prices = {"endpoint": "10.00", "mailbox": "2.00"}
            plain = await new_contract(
                store, s, "RECURRING", {"recurring": {**RECURRING, "unit_prices": prices}}
            )
            prorating = await new_contract(
                store,
                s,
                "RECURRING",
                {"recurring": {**RECURRING, "unit_prices": prices, "prorate_units": True}},
            )
            march = Period(0, MARCH, date(2026, 4, 1))
            april = Period(1, date(2026, 4, 1), date(2026, 5, 1))
            for c in (plain, prorating):
                for unit, day, n in (
                    ("endpoint", date(2026, 3, 1), 10),
                    ("endpoint", date(2026, 3, 11), 16),
                    ("endpoint", date(2026, 4, 1), 12),  # the next cycle's opening count
                    ("mailbox", date(2026, 3, 20), 4),
                ):
                    await contracts.record_unit_count(store, p, c.id, unit, n, effective_on=day)
            async with store.transaction(p) as conn:
                plain_stored = await contracts.load_stored(conn, plain.id)
                prorating_stored = await contracts.load_stored(conn, prorating.id)
                assert invoice_evidence.unit_counts(plain_stored, march) == {
                    "endpoint": 16,
                    "mailbox": 4,
                }
                # the count holds until the next one: April bills the mailbox count of March
                assert invoice_evidence.unit_counts(plain_stored, april) == {
                    "endpoint": 12,
                    "mailbox": 4,
                }
                # the timeline up to the cycle's end; no mailbox before the first count
                assert invoice_evidence.unit_counts(prorating_stored, march) == {
                    "endpoint": [(MARCH, 10), (date(2026, 3, 11), 16)],
                    "mailbox": [(MARCH, 0), (date(2026, 3, 20), 4)],
                }
                assert invoice_evidence.unit_counts(prorating_stored, april) == {
                    "endpoint": [(MARCH, 10), (date(2026, 3, 11), 16), (date(2026, 4, 1), 12)],
                    "mailbox": [(MARCH, 0), (date(2026, 3, 20), 4)],
                }
            invoice = await invoicing.generate_invoice(store, p, plain.id, MARCH)
            units = [x for x in invoice.lines if x.kind == "RECURRING_UNITS"]
            assert sorted((x.evidence["unit_type"], x.evidence["unit_count"]) for x in units) == [
                ("endpoint", 16),
                ("mailbox", 4),
            ]
            assert sum(x.amount_minor for x in units) == 16 * 1_000 + 4 * 200

    run(scenario())
