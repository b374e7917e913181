"""Hand-picked cases for the contract terms the classification prices, and the regressions of
the bugs that reached users: a time log billed twice when its id repeats in a batch, a missed
low-balance alert after a top-up, an alert without a crossing. Each case is checked against
the ``decimal`` reference too, where the reference prices it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effigate_engine import WeeklyEntry
from effigate_engine.billing.buckets import bucket_statement
from effigate_engine.errors import BatchError
from effigate_engine.ratecard.contracts import (
    Amendment,
    BucketTerms,
    Contract,
    ContractType,
    OutOfScope,
    RecurringTerms,
    Scope,
)
from effigate_engine.ratecard.log_ids import repeated_id
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from effigate_engine.ratecard.rejections import rejected_logs
from effigate_engine.ratecard.time_logs import string_buffers
from tests.billing.reference import Conditions
from tests.billing.support import (
    HOUR,
    assert_matches_reference,
    at,
    business_hours,
    card,
    hourly,
    kernel_lines,
    kernel_parts,
    log_batch,
    run,
)

NY = "America/New_York"
REFERENCE = Conditions(
    int(at("2026-05-25T00:00:00+00:00").timestamp()),
    int(at("2026-09-10T00:00:00+00:00").timestamp()),
)


def _log(start: str, end: str, **kw) -> dict:
    return {"start": at(start, NY), "end": at(end, NY), **kw}


def _amounts(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in result.lines.to_pylist():
        out[r["condition"]] = out.get(r["condition"], 0) + r["amount"]
    return out


# Repeated log ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "contract_type, row",
    [
        ("HOURLY", {}),
        ("HOURLY", {"approved": False}),
        ("HOURLY", {"billable_type": "NON_BILLABLE"}),
        ("HOURLY", {"billable_type": "WARRANTY"}),
        ("HOURLY", {"job_type": "devops"}),  # out of scope, priced
        ("BUCKET", {}),
        ("FIXED_PRICE", {}),
    ],
)
def test_a_log_id_repeated_in_a_batch_is_refused_naming_both_rows(contract_type, row) -> None:
    """Two hours billed where one is due: the same log id twice in one batch is a BatchError
    naming the id and both rows, for every contract type and status."""
    extra: dict = {"scope": Scope(job_types=frozenset({"support"}))}
    if contract_type == "BUCKET":
        extra["bucket"] = BucketTerms(size_seconds=10 * HOUR)
    if contract_type == "FIXED_PRICE":
        from effigate_engine.ratecard.contracts import Milestone

        extra["milestones"] = (Milestone("M1", "all", 100_000),)
    contract = Contract(
        "C1",
        "CL1",
        ContractType(contract_type),
        business_hours(NY),
        date(2026, 1, 1),
        card(),
        **extra,
    ).activate()
    rows = [
        _log("2026-06-01T10:00", "2026-06-01T11:00", log_id="A", **row),
        _log("2026-06-02T10:00", "2026-06-02T11:00", log_id="B"),
        _log("2026-06-01T10:00", "2026-06-01T11:00", log_id="A", **row),
    ]
    with pytest.raises(BatchError) as caught:
        run([contract], rows)
    assert caught.value.field == "log_id" and caught.value.value == "A"
    assert "rows 0 and 2" in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=0, max_size=300), st.data())
def test_repeated_id_kernel_finds_a_repeat_exactly_when_there_is_one(ids, data) -> None:
    """The hashing, partitioned check against a set: a pair is reported iff an id repeats,
    and the pair it reports holds equal ids in row order."""
    if ids and data.draw(st.booleans()):
        ids = [*ids, data.draw(st.sampled_from(ids))]
    offsets, raw = string_buffers(pa.array(ids, pa.string()))
    n = len(ids)
    first, again = repeated_id(
        offsets, raw, np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.int32)
    )
    if len(set(ids)) == n:
        assert (first, again) == (-1, -1)
    else:
        assert 0 <= first < again and ids[first] == ids[again]


def test_repeated_id_kernel_over_many_partitions() -> None:
    """Past one partition (2**15 rows) a repeat far apart in the batch is still found."""
    n = 200_000
    ids = [f"log-{i}" for i in range(n)]
    ids[150_001] = "log-7"
    offsets, raw = string_buffers(pa.array(ids))
    found = repeated_id(
        offsets, raw, np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.int32)
    )
    assert found == (7, 150_001)


# Low-balance alerts ---------------------------------------------------------------------------


def _bucket(size_h: int, threshold_h: int, **kw) -> Contract:
    return Contract(
        "C1",
        "CL1",
        ContractType.BUCKET,
        business_hours(NY),
        date(2026, 6, 1),
        card(),
        bucket=BucketTerms(
            size_seconds=size_h * HOUR, low_balance_seconds=(threshold_h * HOUR,), **kw
        ),
    ).activate()


def test_alert_fires_again_after_a_top_up_lifts_the_balance_above_the_threshold() -> None:
    """10 h bucket, 2 h threshold: 9 h logged (alert at 1 h), a 10 h top-up (11 h), 10 h
    logged (1 h): a second alert."""
    contract = _bucket(10, 2).amend(Amendment("T1", date(2026, 6, 10), add_seconds=10 * HOUR))
    rows = [
        _log("2026-06-02T08:00", "2026-06-02T17:00", log_id="nine"),
        _log("2026-06-15T07:00", "2026-06-15T17:00", log_id="ten"),
    ]
    result = run([contract], rows)
    statement = bucket_statement(contract, result, at("2026-06-30T00:00", NY))
    assert [(a.log_id, a.balance_seconds) for a in statement.alerts] == [
        ("nine", 1 * HOUR),
        ("ten", 1 * HOUR),
    ]
    assert statement.remaining_seconds == 1 * HOUR


@pytest.mark.parametrize("threshold_h", [10, 12])
def test_no_alert_without_a_crossing(threshold_h: int) -> None:
    """A threshold at or above the bucket size: the balance was never above it, so the first
    draw does not alert (nor any later one)."""
    contract = _bucket(10, threshold_h)
    rows = [
        _log("2026-06-02T10:00", "2026-06-02T12:00"),
        _log("2026-06-03T10:00", "2026-06-03T20:00"),
    ]
    statement = bucket_statement(contract, run([contract], rows), at("2026-06-30T00:00", NY))
    assert statement.alerts == ()


def test_a_new_periods_grant_re_arms_the_alert() -> None:
    """Per-period 5 h bucket, 1 h threshold: June drawn to 0 (alert), July's grant lifts the
    balance to 5 h, July drawn to 0.5 h (alert again)."""
    contract = _bucket(5, 1, per_period=True)
    rows = [
        _log("2026-06-02T10:00", "2026-06-02T15:00", log_id="june"),
        _log("2026-07-02T10:00", "2026-07-02T14:30", log_id="july"),
    ]
    statement = bucket_statement(contract, run([contract], rows), at("2026-07-31T00:00", NY))
    assert [a.log_id for a in statement.alerts] == ["june", "july"]


# Rate-card precedence -------------------------------------------------------------------------


def _precedence_card(precedence) -> RateCard:
    return RateCard(
        "USD",
        {("*", "*"): 10_000},
        {Condition.WEEKEND: Rule(absolute=15_000), Condition.AFTER_HOURS: Rule(absolute=18_000)},
        precedence=precedence,
    )


JULY_4 = frozenset({date(2026, 7, 4)})  # a Saturday


@pytest.mark.parametrize(
    "precedence, saturday, holiday_saturday",
    [
        ("default", {"WEEKEND": 30_000}, {"HOLIDAY": 20_000}),
        ("highest", {"AFTER_HOURS": 36_000}, {"AFTER_HOURS": 36_000}),
        (["WEEKEND", "HOLIDAY", "AFTER_HOURS"], {"WEEKEND": 30_000}, {"WEEKEND": 30_000}),
        (["AFTER_HOURS", "HOLIDAY", "WEEKEND"], {"AFTER_HOURS": 36_000}, {"AFTER_HOURS": 36_000}),
        (["HOLIDAY", "AFTER_HOURS", "WEEKEND"], {"AFTER_HOURS": 36_000}, {"HOLIDAY": 20_000}),
    ],
)
def test_precedence_picks_the_condition_that_prices_the_time(
    precedence, saturday, holiday_saturday
) -> None:
    """Two hours on a Saturday (weekend, calendar closed) and on a holiday Saturday: WEEKEND
    $150, AFTER_HOURS $180, no HOLIDAY rule (base $100)."""
    contract = hourly(business_hours(NY, holidays=JULY_4), _precedence_card(precedence))
    plain = run([contract], [_log("2026-06-27T10:00", "2026-06-27T12:00")])
    holiday = run([contract], [_log("2026-07-04T10:00", "2026-07-04T12:00")])
    assert _amounts(plain) == saturday
    assert _amounts(holiday) == holiday_saturday
    for day in ("2026-06-27", "2026-07-04"):
        assert_matches_reference(
            [contract], log_batch([_log(f"{day}T10:00", f"{day}T12:00")]), REFERENCE
        )


def test_highest_compares_rates_on_the_logs_own_base_rate() -> None:
    """A multiplier WEEKEND rule (×2) against an absolute AFTER_HOURS $180: for an L1 log
    ($80 base) after hours wins ($180 > $160); for an L3 log ($120 base) the weekend does
    ($240 > $180)."""
    rate_card = RateCard(
        "USD",
        {("L1", "*"): 8_000, ("L3", "*"): 12_000},
        {Condition.WEEKEND: Rule(multiplier=20_000), Condition.AFTER_HOURS: Rule(absolute=18_000)},
        precedence="highest",
    )
    contract = hourly(business_hours(NY), rate_card)
    rows = [
        _log("2026-06-27T10:00", "2026-06-27T11:00", support_level="L1"),
        _log("2026-06-27T12:00", "2026-06-27T13:00", support_level="L3"),
    ]
    result = run([contract], rows)
    assert {(k[3], k[4]): v[1] for k, v in kernel_lines(result).items()} == {
        ("AFTER_HOURS", "L1"): 18_000,
        ("WEEKEND", "L3"): 24_000,
    }
    assert_matches_reference([contract], log_batch(rows), REFERENCE)


def test_weekend_opening_hours_leave_only_the_weekend_applicable() -> None:
    """A calendar open Saturday 09–13: inside it only WEEKEND applies, so ``highest`` prices
    Saturday 10–11 at WEEKEND and 13–14 (closed) at AFTER_HOURS."""
    calendar = business_hours(NY)
    calendar = type(calendar)(NY, (*calendar.weekly, WeeklyEntry(5, 9 * HOUR, 13 * HOUR)))
    contract = hourly(calendar, _precedence_card("highest"))
    rows = [
        _log("2026-06-27T10:00", "2026-06-27T11:00"),
        _log("2026-06-27T13:00", "2026-06-27T14:00"),
    ]
    assert _amounts(run([contract], rows)) == {"WEEKEND": 15_000, "AFTER_HOURS": 18_000}
    assert_matches_reference([contract], log_batch(rows), REFERENCE)


def test_default_precedence_keeps_the_card_hash() -> None:
    """Cards written before precedence existed hash as before; a non-default one differs."""
    default = _precedence_card("default")
    assert "precedence" not in default.to_json()
    assert _precedence_card("highest").content_hash() != default.content_hash()
    assert RateCard.from_json(
        _precedence_card(["WEEKEND", "HOLIDAY", "AFTER_HOURS"]).to_json()
    ) == _precedence_card(("WEEKEND", "HOLIDAY", "AFTER_HOURS"))


@pytest.mark.parametrize(
    "value, path",
    [
        ("loudest", "rate_card.precedence"),
        (["WEEKEND", "HOLIDAY"], "rate_card.precedence"),
        (["WEEKEND", "WEEKEND", "HOLIDAY"], "rate_card.precedence[1]"),
        (["REGULAR", "WEEKEND", "HOLIDAY"], "rate_card.precedence[0]"),
        (7, "rate_card.precedence"),
    ],
)
def test_malformed_precedence_is_refused_naming_the_field(value, path) -> None:
    body = {**_precedence_card("default").to_json(), "precedence": value}
    with pytest.raises(Exception) as caught:
        RateCard.from_json(body)
    assert str(caught.value).startswith(path)


# Bucket burn for high priority, rollover cap ---------------------------------------------------


def test_high_priority_logs_burn_at_the_higher_factor() -> None:
    """10 h bucket; after hours burns 1.5×, high priority 2×. Regular MEDIUM 2 h → 2 h;
    after-hours MEDIUM 2 h → 3 h; regular HIGH 2 h → 4 h; after-hours CRITICAL 2 h → 4 h
    (max(1.5, 2)): 13 weighted hours, 10 covered, 3 of overage at $120."""
    rate_card = RateCard(
        "USD", {("*", "*"): 10_000}, {Condition.ADDITIONAL_HOURS: Rule(absolute=12_000)}
    )
    contract = Contract(
        "C1",
        "CL1",
        ContractType.BUCKET,
        business_hours(NY),
        date(2026, 6, 1),
        rate_card,
        bucket=BucketTerms(
            size_seconds=10 * HOUR,
            burn_bp={Condition.AFTER_HOURS: 15_000, Condition.HIGH_PRIORITY: 20_000},
        ),
    ).activate()
    rows = [
        _log("2026-06-01T10:00", "2026-06-01T12:00", log_id="a"),
        _log("2026-06-01T18:00", "2026-06-01T20:00", log_id="b"),
        _log("2026-06-02T10:00", "2026-06-02T12:00", log_id="c", priority="HIGH"),
        _log("2026-06-02T18:00", "2026-06-02T20:00", log_id="d", priority="CRITICAL"),
    ]
    result = run([contract], rows)
    parts = kernel_parts(result)
    assert [(parts[(x, 0)]["covered"], parts[(x, 0)]["overage"]) for x in "abcd"] == [
        (2 * HOUR, 0),
        (3 * HOUR, 0),
        (4 * HOUR, 0),
        (1 * HOUR, 3 * HOUR),
    ]
    assert _amounts(result) == {"INCLUDED": 0, "ADDITIONAL_HOURS": 36_000}
    assert_matches_reference([contract], log_batch(rows), REFERENCE)


def test_rollover_cap_expires_the_excess_oldest_first() -> None:
    """10 h a month, unused hours valid two more months, at most 5 h carried: June uses 2 h;
    on 1 July 8 h would carry, 3 h expire; July's 12 h take June's 5 h, then 7 of July's 10;
    on 1 August 3 h carry (under the cap)."""
    contract = _bucket(10, 0, per_period=True, rollover_periods=2, rollover_cap_seconds=5 * HOUR)
    rows = [
        _log("2026-06-02T10:00", "2026-06-02T12:00", log_id="june"),
        _log("2026-07-02T08:00", "2026-07-02T20:00", log_id="july"),
    ]
    result = run([contract], rows)
    assert kernel_parts(result)[("july", 0)]["covered"] == 12 * HOUR
    statement = bucket_statement(contract, result, at("2026-08-01T00:00", NY))
    assert statement.purchased_seconds == 30 * HOUR
    assert statement.burned_seconds == 14 * HOUR
    assert statement.expired_seconds == 3 * HOUR
    assert statement.remaining_seconds == 13 * HOUR
    assert_matches_reference([contract], log_batch(rows), REFERENCE)


def test_without_a_cap_the_same_hours_all_roll_over() -> None:
    contract = _bucket(10, 0, per_period=True, rollover_periods=2)
    rows = [
        _log("2026-06-02T10:00", "2026-06-02T12:00", log_id="june"),
        _log("2026-07-02T06:00", "2026-07-02T23:00", log_id="july"),
    ]
    result = run([contract], rows)
    assert kernel_parts(result)[("july", 0)]["covered"] == 17 * HOUR
    statement = bucket_statement(contract, result, at("2026-08-01T00:00", NY))
    assert (statement.burned_seconds, statement.expired_seconds) == (19 * HOUR, 0)


# Recurring time, out of scope under REJECT ----------------------------------------------------


@pytest.mark.parametrize(
    "included, amounts",
    [
        (None, {"REGULAR": 10_000, "AFTER_HOURS": 18_000}),
        (0, {"ADDITIONAL_HOURS": 20_000}),
        (HOUR, {"INCLUDED": 0, "ADDITIONAL_HOURS": 10_000}),
    ],
)
def test_recurring_time_is_time_and_materials_without_included_hours(included, amounts) -> None:
    """16:00–18:00 on a weekday, $100 base, $180 after hours, no overage rule: without
    included hours $100 + $180; with 0 included both hours are overage at the base; with 1 h
    included one hour is covered."""
    contract = Contract(
        "C1",
        "CL1",
        ContractType.RECURRING,
        business_hours(NY),
        date(2026, 6, 1),
        card(AFTER_HOURS=18_000),
        recurring=RecurringTerms(base_fee=100_000, included_seconds=included),
    ).activate()
    rows = [_log("2026-06-01T16:00", "2026-06-01T18:00")]
    assert _amounts(run([contract], rows)) == amounts
    assert_matches_reference([contract], log_batch(rows), REFERENCE)


def test_out_of_scope_under_reject_refuses_the_log_whatever_its_state() -> None:
    """Scope: job type support only, REJECT. Unapproved, non-billable and warranty devops logs
    are rejected too, listed with the reason; the in-scope log is priced."""
    contract = hourly(
        business_hours(NY),
        card(),
        scope=Scope(job_types=frozenset({"support"}), out_of_scope=OutOfScope.REJECT),
    )
    rows = [
        _log("2026-06-01T10:00", "2026-06-01T11:00", log_id="ok"),
        _log(
            "2026-06-01T11:00",
            "2026-06-01T12:00",
            log_id="draft",
            job_type="devops",
            approved=False,
        ),
        _log(
            "2026-06-01T12:00",
            "2026-06-01T13:00",
            log_id="free",
            job_type="devops",
            billable_type="NON_BILLABLE",
        ),
        _log(
            "2026-06-01T13:00",
            "2026-06-01T14:00",
            log_id="fix",
            job_type="devops",
            billable_type="WARRANTY",
            support_level="L9",
        ),
    ]
    result = run([contract], rows)
    assert {k[0]: v["status"] for k, v in kernel_parts(result).items()} == {
        "ok": "PRICED",
        "draft": "REJECTED",
        "free": "REJECTED",
        "fix": "REJECTED",
    }
    assert _amounts(result) == {"REGULAR": 10_000}
    listed = rejected_logs(result).to_pylist()
    assert [r["log_id"] for r in listed] == ["draft", "free", "fix"]
    assert listed[0]["reason"] == (
        "job type 'devops' not in contract C1's scope (out of scope: REJECT)"
    )
    assert_matches_reference([contract], log_batch(rows), REFERENCE)
