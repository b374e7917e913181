"""Hand-picked classification cases; each also agrees with the ``decimal`` reference."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from effigate_engine import Calendar, WeeklyEntry
from effigate_engine.billing.schemas import BREACH_RECORDS
from effigate_engine.errors import BatchError
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import (
    Amendment,
    BucketTerms,
    Contract,
    ContractType,
    OutOfScope,
    Scope,
)
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from effigate_engine.ratecard.schemas import LOG_RESULTS, TIME_LINES
from tests.billing.support import (
    HORIZON,
    HOUR,
    assert_matches_reference,
    at,
    business_hours,
    card,
    hourly,
    kernel_lines,
    kernel_parts,
    log_batch,
)

NY = "America/New_York"


def lines_by_condition(result) -> dict[str, tuple[int, int, int]]:
    return {k[3]: (v[0], v[1], v[2]) for k, v in kernel_lines(result).items()}


def test_16_50_to_17_25_with_a_15_minute_increment_is_101_80() -> None:
    c = hourly(business_hours(), card(AFTER_HOURS=15_000))
    rows = [{"start": at("2026-03-03T16:50-05:00"), "end": at("2026-03-03T17:25-05:00")}]
    result = assert_matches_reference([c], log_batch(rows))
    part = kernel_parts(result)[("L0", 0)]
    assert part["actual"] == (600, 1_500, 0, 0)
    assert part["billed"] == (771, 1_929, 0, 0)
    lines = lines_by_condition(result)
    assert lines == {"REGULAR": (771, 10_000, 2_142), "AFTER_HOURS": (1_929, 15_000, 8_038)}
    assert sum(v[2] for v in lines.values()) == 10_180


def test_16_30_to_18_00_is_half_an_hour_regular_and_an_hour_after_hours() -> None:
    c = hourly(business_hours(), card(AFTER_HOURS=15_000))
    rows = [{"start": at("2026-03-03T16:30-05:00"), "end": at("2026-03-03T18:00-05:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["actual"] == (1_800, 3_600, 0, 0)


def test_friday_22_to_saturday_02_under_max_stacking() -> None:
    rc = card(AFTER_HOURS=15_000, WEEKEND=20_000, HIGH_PRIORITY=18_000)
    c = hourly(business_hours(), rc)
    rows = [
        {
            "start": at("2026-03-06T22:00-05:00"),
            "end": at("2026-03-07T02:00-05:00"),
            "priority": "HIGH",
        }
    ]
    result = assert_matches_reference([c], log_batch(rows))
    assert kernel_parts(result)[("L0", 0)]["actual"] == (0, 7_200, 7_200, 0)
    # Friday after hours: priority $180 beats $150 and labels the line; Saturday: $200 wins.
    assert lines_by_condition(result) == {
        "HIGH_PRIORITY": (7_200, 18_000, 36_000),
        "WEEKEND": (7_200, 20_000, 40_000),
    }


def test_priority_inside_business_hours_is_a_high_priority_line() -> None:
    c = hourly(business_hours(), card(HIGH_PRIORITY=("x", 15_000)))
    rows = [
        {
            "start": at("2026-03-03T10:00-05:00"),
            "end": at("2026-03-03T11:00-05:00"),
            "priority": "P1",
        }
    ]
    result = assert_matches_reference([c], log_batch(rows))
    assert lines_by_condition(result) == {"HIGH_PRIORITY": (3_600, 15_000, 15_000)}


def test_compound_stacking_weekend_180_times_1_25_is_225() -> None:
    rc = RateCard(
        "USD",
        {("*", "*"): 12_000},
        {
            Condition.WEEKEND: Rule(absolute=18_000),
            Condition.HIGH_PRIORITY: Rule(multiplier=12_500),
        },
        stacking="compound",
    )
    c = hourly(business_hours(), rc)
    rows = [
        {
            "start": at("2026-03-07T10:00-05:00"),
            "end": at("2026-03-07T11:00-05:00"),
            "priority": "CRITICAL",
        }
    ]
    result = assert_matches_reference([c], log_batch(rows))
    line = result.lines.to_pylist()[0]
    assert (line["condition"], line["high_priority"], line["rate"]) == ("WEEKEND", True, 22_500)


def test_spring_forward_day_counts_real_seconds() -> None:
    # London, Sunday 29 March 2026: 01:00 → 02:00. Open Sunday 00:00–03:00, no weekend days.
    cal = Calendar("Europe/London", (WeeklyEntry(6, 0, 3 * HOUR),))
    rc = RateCard("USD", {("*", "*"): 10_000}, weekend_days=(), increment_seconds=0)
    c = hourly(cal, rc)
    rows = [{"start": at("2026-03-29T00:00+00:00"), "end": at("2026-03-29T04:00+01:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["actual"] == (2 * HOUR, HOUR, 0, 0)


def test_fall_back_day_counts_the_repeated_hour_twice() -> None:
    cal = Calendar("Europe/London", (WeeklyEntry(6, 0, 3 * HOUR),))
    rc = RateCard("USD", {("*", "*"): 10_000}, weekend_days=(), increment_seconds=0)
    c = hourly(cal, rc)
    rows = [{"start": at("2026-10-25T00:00+01:00"), "end": at("2026-10-25T03:00+00:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["actual"] == (4 * HOUR, 0, 0, 0)


def test_a_holiday_on_a_dst_day_holds_23_real_hours() -> None:
    cal = business_hours(NY, holidays=frozenset({date(2026, 3, 8)}))
    c = hourly(cal, card(HOLIDAY=30_000))
    rows = [{"start": at("2026-03-08T00:00-05:00"), "end": at("2026-03-09T00:00-04:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["actual"] == (0, 0, 0, 23 * HOUR)


def test_a_holiday_on_a_weekend_is_holiday_time() -> None:
    cal = business_hours(NY, holidays=frozenset({date(2026, 3, 7)}))
    c = hourly(cal, card(WEEKEND=20_000, HOLIDAY=30_000))
    rows = [{"start": at("2026-03-07T10:00-05:00"), "end": at("2026-03-08T10:00-04:00")}]
    result = assert_matches_reference([c], log_batch(rows))
    # Saturday 10:00–24:00 is the holiday; Sunday 00:00–10:00 (a DST day: 9 real hours) weekend.
    assert kernel_parts(result)[("L0", 0)]["actual"] == (0, 0, 9 * HOUR, 14 * HOUR)


def test_an_extra_opening_on_a_holiday_is_still_holiday_time() -> None:
    from datetime import datetime

    from effigate_engine import LocalRange

    cal = business_hours(
        NY,
        holidays=frozenset({date(2026, 3, 4)}),
        extra_openings=(LocalRange(datetime(2026, 3, 4, 9), datetime(2026, 3, 4, 12)),),
    )
    c = hourly(cal, card(HOLIDAY=30_000))
    rows = [{"start": at("2026-03-04T10:00-05:00"), "end": at("2026-03-04T11:00-05:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["actual"] == (0, 0, 0, HOUR)


def test_overnight_shift_after_midnight_belongs_to_saturday() -> None:
    cal = Calendar(NY, (WeeklyEntry(4, 22 * HOUR, 6 * HOUR),))
    c = hourly(cal, card(WEEKEND=20_000))
    rows = [{"start": at("2026-03-06T23:00-05:00"), "end": at("2026-03-07T01:00-05:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["actual"] == (HOUR, 0, HOUR, 0)


def test_work_on_31_march_in_new_york_is_march_work_and_split_at_local_midnight() -> None:
    c = hourly(business_hours(), card(AFTER_HOURS=15_000))
    rows = [
        {"start": at("2026-03-31T20:30-04:00"), "end": at("2026-03-31T23:30-04:00")},
        {"start": at("2026-03-31T23:30-04:00"), "end": at("2026-04-01T00:20-04:00")},
    ]
    result = assert_matches_reference([c], log_batch(rows))
    parts = kernel_parts(result)
    assert parts[("L0", 0)]["period"] == 2  # March (periods from 2026-01-01)
    assert (parts[("L1", 0)]["period"], parts[("L1", 1)]["period"]) == (2, 3)
    # Rounded once per part: 30 min and 20 min → 30 + 30 billed.
    assert sum(parts[("L1", 0)]["billed"]) == 1_800 and sum(parts[("L1", 1)]["billed"]) == 1_800
    assert result.results.num_rows == 3


def test_ties_in_the_remainder_go_to_the_higher_precedence_condition() -> None:
    rc = RateCard("USD", {("*", "*"): 10_000}, increment_seconds=0, minimum_seconds=301)
    c = hourly(business_hours(), rc)
    rows = [{"start": at("2026-03-03T16:59-05:00"), "end": at("2026-03-03T17:01-05:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert part["billed"] == (150, 151, 0, 0)


def test_minimum_is_a_floor_and_never_rounded() -> None:
    rc = RateCard("USD", {("*", "*"): 10_000}, increment_seconds=900, minimum_seconds=1_000)
    c = hourly(business_hours(), rc)
    rows = [{"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T10:05-05:00")}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert sum(part["billed"]) == 1_000


@pytest.mark.parametrize(
    ("seconds", "billed"), [(449, 0), (450, 900), (1_349, 900), (1_350, 1_800)]
)
def test_nearest_increment_rounds_halves_up(seconds: int, billed: int) -> None:
    from datetime import timedelta

    rc = RateCard("USD", {("*", "*"): 10_000}, increment_mode="nearest")
    c = hourly(business_hours(), rc)
    start = at("2026-03-03T10:00-05:00")
    rows = [{"start": start, "end": start + timedelta(seconds=seconds)}]
    part = kernel_parts(assert_matches_reference([c], log_batch(rows)))[("L0", 0)]
    assert sum(part["billed"]) == billed


def test_five_minutes_at_60_per_hour_without_increment_is_5_00() -> None:
    rc = RateCard("USD", {("*", "*"): 6_000}, increment_seconds=0)
    c = hourly(business_hours(), rc)
    rows = [{"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T10:05-05:00")}]
    result = assert_matches_reference([c], log_batch(rows))
    assert lines_by_condition(result) == {"REGULAR": (300, 6_000, 500)}


def bucket_contract(size_hours: float, **terms) -> Contract:
    rc = RateCard(
        "USD",
        {("*", "*"): 10_000},
        {
            Condition.ADDITIONAL_HOURS: Rule(absolute=16_000),
            Condition.OUT_OF_SCOPE: Rule(absolute=25_000),
        },
        increment_seconds=0,
    )
    return Contract(
        "B1",
        "CL1",
        ContractType.BUCKET,
        business_hours(),
        date(2026, 1, 1),
        rc,
        bucket=BucketTerms(int(size_hours * HOUR), **terms),
        scope=Scope(job_types=frozenset({"support", "devops"})),
    ).activate()


def test_a_log_straddling_exhaustion_is_split_in_weighted_hours() -> None:
    # 1 h left, a 1 h after-hours log burning 2× → 1 weighted hour covered, 1 of overage.
    c = bucket_contract(1, burn_bp={Condition.AFTER_HOURS: 20_000})
    rows = [
        {
            "start": at("2026-03-03T18:00-05:00"),
            "end": at("2026-03-03T19:00-05:00"),
            "contract_id": "B1",
        }
    ]
    result = assert_matches_reference([c], log_batch(rows))
    part = kernel_parts(result)[("L0", 0)]
    assert (part["covered"], part["overage"]) == (HOUR, HOUR)
    assert lines_by_condition(result) == {
        "INCLUDED": (HOUR, 0, 0),
        "ADDITIONAL_HOURS": (HOUR, 16_000, 16_000),
    }


def test_drawdown_follows_work_order_not_input_order() -> None:
    c = bucket_contract(1.5)
    rows = [
        {
            "log_id": "b",
            "start": at("2026-03-04T10:00-05:00"),
            "end": at("2026-03-04T11:00-05:00"),
            "contract_id": "B1",
        },
        {
            "log_id": "a",
            "start": at("2026-03-03T10:00-05:00"),
            "end": at("2026-03-03T11:00-05:00"),
            "contract_id": "B1",
        },
        {
            "log_id": "c",
            "start": at("2026-03-04T10:00-05:00"),
            "end": at("2026-03-04T10:30-05:00"),
            "contract_id": "B1",
        },
    ]
    parts = kernel_parts(assert_matches_reference([c], log_batch(rows)))
    # a (earliest) first, then b and c start together: b before c by log id.
    assert parts[("a", 0)]["covered"] == HOUR
    assert (parts[("b", 0)]["covered"], parts[("b", 0)]["overage"]) == (1_800, 1_800)
    assert (parts[("c", 0)]["covered"], parts[("c", 0)]["overage"]) == (0, 1_800)


def test_ties_follow_log_id_bytes_and_a_repeated_log_id_is_refused() -> None:
    c = bucket_contract(1.5)
    start, end = at("2026-03-04T10:00-05:00"), at("2026-03-04T11:00-05:00")
    rows = [
        {"log_id": name, "start": start, "end": end, "contract_id": "B1"}
        for name in ("ab", "a", "b\u00e9", "b")
    ]
    parts = kernel_parts(assert_matches_reference([c], log_batch(rows)))
    # Work order among equal starts: "a", "ab", "b", "bé" (shorter prefix first).
    assert [parts[(name, 0)]["covered"] for name in ("a", "ab", "b", "b\u00e9")] == [
        HOUR,
        1_800,
        0,
        0,
    ]
    with pytest.raises(BatchError, match="appears twice"):
        classify(ContractBook([c]), log_batch([*rows, rows[1]]))


def test_a_top_up_counts_from_its_effective_date_never_backwards() -> None:
    c = bucket_contract(0).amend(Amendment("A1", date(2026, 3, 5), add_seconds=10 * HOUR))
    rows = [
        {
            "start": at("2026-03-04T10:00-05:00"),
            "end": at("2026-03-04T11:00-05:00"),
            "contract_id": "B1",
        },
        {
            "start": at("2026-03-05T10:00-05:00"),
            "end": at("2026-03-05T11:00-05:00"),
            "contract_id": "B1",
        },
    ]
    parts = kernel_parts(assert_matches_reference([c], log_batch(rows)))
    assert parts[("L0", 0)]["overage"] == HOUR and parts[("L0", 0)]["covered"] == 0
    assert parts[("L1", 0)]["covered"] == HOUR


def test_out_of_scope_non_billable_and_unapproved_never_draw_the_bucket() -> None:
    c = bucket_contract(10)
    base = {"contract_id": "B1"}
    rows = [
        {
            **base,
            "start": at("2026-03-03T10:00-05:00"),
            "end": at("2026-03-03T11:00-05:00"),
            "job_type": "network",
        },
        {
            **base,
            "start": at("2026-03-03T11:00-05:00"),
            "end": at("2026-03-03T12:00-05:00"),
            "billable_type": "NON_BILLABLE",
        },
        {
            **base,
            "start": at("2026-03-03T12:00-05:00"),
            "end": at("2026-03-03T13:00-05:00"),
            "billable_type": "WARRANTY",
        },
        {
            **base,
            "start": at("2026-03-03T13:00-05:00"),
            "end": at("2026-03-03T14:00-05:00"),
            "approved": False,
        },
    ]
    result = assert_matches_reference([c], log_batch(rows))
    parts = kernel_parts(result)
    assert all(p["covered"] == 0 and p["overage"] == 0 for p in parts.values())
    assert parts[("L3", 0)]["status"] == "UNAPPROVED"
    assert lines_by_condition(result) == {
        "OUT_OF_SCOPE": (HOUR, 25_000, 25_000),
        "NON_BILLABLE": (HOUR, 0, 0),
        "WARRANTY": (HOUR, 0, 0),
    }


def test_out_of_scope_under_a_reject_policy_is_rejected_and_unpriced() -> None:
    c = hourly(
        business_hours(),
        card(),
        scope=Scope(support_levels=frozenset({"L1"}), out_of_scope=OutOfScope.REJECT),
    )
    rows = [{"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T11:00-05:00")}]
    result = assert_matches_reference([c], log_batch(rows))
    assert kernel_parts(result)[("L0", 0)]["status"] == "REJECTED"
    assert result.lines.num_rows == 0


def test_an_amendment_never_reprices_work_before_its_date() -> None:
    c = hourly(business_hours(), card()).amend(
        Amendment(
            "R1",
            date(2026, 3, 4),
            rate_card=card(AFTER_HOURS=15_000) and RateCard("USD", {("*", "*"): 20_000}),
        )
    )
    rows = [
        {"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T11:00-05:00")},
        {"start": at("2026-03-04T10:00-05:00"), "end": at("2026-03-04T11:00-05:00")},
    ]
    result = assert_matches_reference([c], log_batch(rows))
    got = {(r["rate_card_version"], r["rate"]) for r in result.lines.to_pylist()}
    assert got == {(1, 10_000), (2, 20_000)}
    hashes = {r["rate_card_hash"] for r in result.lines.to_pylist()}
    assert hashes == {v.content_hash for v in c.versions}


def test_schemas_are_the_documented_contracts() -> None:
    c = hourly(business_hours(), card())
    rows = [{"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T11:00-05:00")}]
    result = classify(ContractBook([c], HORIZON), log_batch(rows))
    assert result.results.schema.equals(LOG_RESULTS)
    assert result.lines.schema.equals(TIME_LINES)
    assert BREACH_RECORDS.names == [
        "breach_id",
        "ticket_id",
        "contract_id",
        "client_id",
        "metric",
        "priority",
        "breached_at",
        "breach_seconds",
        "severity",
    ]
    assert BREACH_RECORDS.field("breached_at").type == pa.timestamp("s", tz="UTC")
    assert BREACH_RECORDS.field("breach_seconds").type == pa.int64()


def test_timestamps_of_any_unit_and_zone_are_accepted() -> None:
    c = hourly(business_hours(), card())
    rows = [{"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T11:00-05:00")}]
    logs = log_batch(rows)
    ms = logs.set_column(5, "start", logs.column("start").cast(pa.timestamp("ms", tz=NY)))
    first = classify(ContractBook([c], HORIZON), logs)
    second = classify(ContractBook([c], HORIZON), ms)
    assert first.lines.equals(second.lines)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"start": at("2026-03-03T11:00-05:00"), "end": at("2026-03-03T11:00-05:00")}, "end"),
        ({"start": at("2025-12-03T11:00-05:00"), "end": at("2025-12-03T12:00-05:00")}, "start"),
        (
            {
                "start": at("2026-03-03T11:00-05:00"),
                "end": at("2026-03-03T12:00-05:00"),
                "contract_id": "nope",
            },
            "contract_id",
        ),
        (
            {
                "start": at("2026-03-03T11:00-05:00"),
                "end": at("2026-03-03T12:00-05:00"),
                "billable_type": "MAYBE",
            },
            "billable_type",
        ),
        (
            {
                "start": at("2026-03-03T11:00-05:00"),
                "end": at("2026-03-03T12:00-05:00"),
                "support_level": "L9",
            },
            "support_level",
        ),
    ],
)
def test_invalid_logs_are_refused_with_their_position(row: dict, field: str) -> None:
    c = hourly(business_hours(), RateCard("USD", {("L2", "*"): 10_000}))
    good = {"start": at("2026-03-03T09:00-05:00"), "end": at("2026-03-03T10:00-05:00")}
    with pytest.raises(BatchError) as err:
        classify(ContractBook([c], HORIZON), log_batch([good, row]))
    assert err.value.field == field and err.value.position == 1


def test_a_log_id_twice_in_a_batch_is_refused() -> None:
    from effigate_engine.ratecard.contracts import BucketTerms as Terms

    rc = RateCard("USD", {("*", "*"): 10_000})
    c = Contract(
        "B1",
        "CL",
        ContractType.BUCKET,
        business_hours(),
        date(2026, 1, 1),
        rc,
        bucket=Terms(10 * HOUR),
    ).activate()
    row = {
        "log_id": "same",
        "contract_id": "B1",
        "start": at("2026-03-03T10:00-05:00"),
        "end": at("2026-03-03T11:00-05:00"),
    }
    with pytest.raises(BatchError, match="twice"):
        classify(ContractBook([c], HORIZON), log_batch([row, dict(row)]))
