"""The kernel against the ``decimal`` reference on hypothesis-generated contracts and logs, and
the properties every classification must have (order invariance, idempotence, conservation).

Each example draws contracts (all five types, calendars in zones with DST changes, 30-minute
DST and quarter-hour offsets, overnight shifts, holidays on weekdays and weekends, closures,
extra openings on holidays, both stackings, increments up/nearest, minimums, burn factors,
top-ups, per-period buckets with rollover, amendments re-pricing from a date, out-of-scope
policies) and :data:`LOGS_PER_EXAMPLE` logs between 2026-02-25 and 2026-04-10 (US and EU DST,
Lord Howe's half-hour change, two month ends). ``EFFIGATE_BILLING_EXAMPLES`` scales the number
of examples (default 40 per test, three tests: 52,800 logs compared in all).
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, LocalRange, WeeklyEntry
from effigate_engine.billing.buckets import bucket_statement
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import (
    BURN_CONDITIONS,
    Amendment,
    BucketTerms,
    Contract,
    ContractType,
    Deliverable,
    Milestone,
    OutOfScope,
    RecurringTerms,
    Scope,
)
from effigate_engine.ratecard.model import RULE_CONDITIONS, RateCard, Rule
from tests.billing.reference import Conditions
from tests.billing.support import (
    HORIZON,
    HOUR,
    assert_matches_reference,
    kernel_parts,
)

EXAMPLES = int(os.environ.get("EFFIGATE_BILLING_EXAMPLES", "40"))
LOGS_PER_EXAMPLE = 440
ZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Sao_Paulo",
)
WINDOW_START = int(datetime.fromisoformat("2026-02-25T00:00:00+00:00").timestamp())
WINDOW_END = int(datetime.fromisoformat("2026-04-11T00:00:00+00:00").timestamp())
CONDITIONS = Conditions(WINDOW_START - 86_400, WINDOW_END + 2 * 86_400)
LEVELS = ("L1", "L2", "L3", "SA")
JOBS = ("support", "devops", "network")
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "P1", "P3")
QUARTER = 900


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    zone = draw(st.sampled_from(ZONES))
    entries = []
    for day in draw(st.sets(st.integers(0, 6), min_size=0, max_size=7)):
        start = draw(st.integers(0, 95)) * QUARTER
        end = draw(st.integers(0, 96)) * QUARTER
        if end == 96 * QUARTER and start == 0:
            end = 86_400
        entries.append(WeeklyEntry(day, start, end % 86_400 if end != 86_400 else end))
    days = [date(2026, 2, 24) + timedelta(days=k) for k in range(48)]
    holidays = frozenset(draw(st.lists(st.sampled_from(days), max_size=4)))
    closures, openings = [], []
    if draw(st.booleans()):
        d = draw(st.sampled_from(days))
        h = draw(st.integers(0, 20))
        closures.append(LocalRange(datetime.combine(d, time(h)), datetime.combine(d, time(h + 3))))
    if draw(st.booleans()):
        d = draw(st.sampled_from(sorted(holidays) or days))
        h = draw(st.integers(0, 18))
        openings.append(LocalRange(datetime.combine(d, time(h)), datetime.combine(d, time(h + 5))))
    return Calendar(
        zone,
        tuple(entries),
        holidays=holidays,
        closures=tuple(closures),
        extra_openings=tuple(openings),
    )


@st.composite
def rate_cards(draw: st.DrawFn) -> RateCard:
    base = {("*", "*"): draw(st.integers(1_000, 30_000))}
    for level in draw(st.sets(st.sampled_from(LEVELS), max_size=2)):
        base[(level, "*")] = draw(st.integers(1_000, 40_000))
    for job in draw(st.sets(st.sampled_from(JOBS), max_size=1)):
        base[("*", job)] = draw(st.integers(1_000, 40_000))
    if draw(st.booleans()):
        base[("L3", "network")] = draw(st.integers(1_000, 40_000))
    rules = {}
    for cond in draw(st.sets(st.sampled_from(RULE_CONDITIONS))):
        if draw(st.booleans()):
            rules[cond] = Rule(absolute=draw(st.integers(0, 50_000)))
        else:
            rules[cond] = Rule(multiplier=draw(st.integers(5_000, 30_000)))
    return RateCard(
        "USD",
        base,
        rules,
        high_priorities=frozenset(draw(st.sets(st.sampled_from(("CRITICAL", "HIGH", "MEDIUM"))))),
        weekend_days=tuple(draw(st.sampled_from([(5, 6), (5, 6), (4, 5), (6,), ()]))),
        stacking=draw(st.sampled_from(["max", "compound"])),
        increment_seconds=draw(st.sampled_from([0, 60, 360, 900, 900, 1_800, 3_600])),
        increment_mode=draw(st.sampled_from(["up", "nearest"])),
        minimum_seconds=draw(st.sampled_from([0, 0, 301, 900, 1_800, 3_601])),
        precedence=draw(
            st.sampled_from(
                [
                    "default",
                    "default",
                    "highest",
                    "highest",
                    ("WEEKEND", "HOLIDAY", "AFTER_HOURS"),
                    ("AFTER_HOURS", "WEEKEND", "HOLIDAY"),
                    ("HOLIDAY", "AFTER_HOURS", "WEEKEND"),
                ]
            )
        ),
    )


@st.composite
def contracts(draw: st.DrawFn, cid: str, kinds: tuple[ContractType, ...]) -> Contract:
    kind = draw(st.sampled_from(kinds))
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 54)))
    extra: dict = {}
    if kind == ContractType.BUCKET:
        per_period = draw(st.booleans())
        extra["bucket"] = BucketTerms(
            size_seconds=draw(st.integers(0, 60)) * QUARTER * 4,
            low_balance_seconds=(36_000,),
            burn_bp={
                c: draw(st.sampled_from([10_000, 12_500, 15_000, 20_000]))
                for c in draw(st.sets(st.sampled_from(BURN_CONDITIONS)))
            },
            per_period=per_period,
            rollover_periods=draw(st.integers(0, 2)),
            rollover_cap_seconds=draw(
                st.one_of(st.none(), st.integers(0, 30).map(lambda h: h * HOUR))
            )
            if per_period
            else None,
        )
    elif kind == ContractType.RECURRING:
        extra["recurring"] = RecurringTerms(
            base_fee=100_000,
            included_seconds=draw(st.one_of(st.none(), st.integers(0, 40).map(lambda h: h * HOUR))),
        )
    elif kind == ContractType.FIXED_PRICE:
        extra["milestones"] = (Milestone("M1", "all", 500_000),)
    elif kind == ContractType.SCOPE:
        extra["deliverables"] = (Deliverable("D1", "all", 500_000),)
    if draw(st.booleans()):
        extra["scope"] = Scope(
            support_levels=frozenset(draw(st.sets(st.sampled_from(LEVELS), min_size=1)))
            if draw(st.booleans())
            else None,
            job_types=frozenset(draw(st.sets(st.sampled_from(JOBS), min_size=1))),
            out_of_scope=draw(st.sampled_from(list(OutOfScope))),
        )
    contract = Contract(
        cid,
        "CL",
        kind,
        draw(calendars()),
        start,
        draw(rate_cards()),
        anchor_day=draw(st.one_of(st.none(), st.integers(1, 31))),
        **extra,
    ).activate()
    days = [date(2026, 2, 26) + timedelta(days=k) for k in range(40)]
    for n in range(draw(st.integers(0, 2))):
        new_card = draw(rate_cards()) if draw(st.booleans()) else None
        top_up = draw(st.integers(0, 30)) * HOUR if kind == ContractType.BUCKET else 0
        if new_card is None and not top_up:
            continue
        contract = contract.amend(
            Amendment(f"A{n}", draw(st.sampled_from(days)), rate_card=new_card, add_seconds=top_up)
        )
    return contract


@st.composite
def scenarios(draw: st.DrawFn, kinds: tuple[ContractType, ...]) -> tuple[list[Contract], pa.Table]:
    n_contracts = draw(st.integers(1, 3))
    book = [draw(contracts(f"K{i}", kinds)) for i in range(n_contracts)]
    seed = draw(st.integers(0, 2**32 - 1))
    granular = draw(st.sampled_from([1, 60, 900]))
    max_minutes = draw(st.sampled_from([4, 30, 240, 720, 1_500]))
    return book, generated_logs(book, seed, granular, max_minutes)


def generated_logs(book: list[Contract], seed: int, granular: int, max_minutes: int) -> pa.Table:
    """Logs from a seeded generator: starts on a ``granular``-second grid (ties in start times
    happen), lengths up to ``max_minutes``; some unapproved, non-billable or warranty."""
    rng = np.random.default_rng(seed)
    n = LOGS_PER_EXAMPLE
    span = (WINDOW_END - WINDOW_START - 2 * 86_400) // granular
    start = WINDOW_START + rng.integers(0, span, n) * granular
    length = rng.integers(1, max(2, max_minutes * 60 // granular + 1), n) * granular
    length = np.maximum(length, 1)
    ids = [f"log-{x:06d}" for x in rng.permutation(10 * n)[:n]]
    pick = lambda values: [values[i] for i in rng.integers(0, len(values), n)]  # noqa: E731
    return pa.table(
        {
            "log_id": ids,
            "contract_id": [book[i].id for i in rng.integers(0, len(book), n)],
            "support_level": pick(LEVELS),
            "job_type": pick(JOBS),
            "priority": pick(PRIORITIES),
            "start": pa.array(start, pa.timestamp("s", tz="UTC")),
            "end": pa.array(start + length, pa.timestamp("s", tz="UTC")),
            "billable_type": [
                ("BILLABLE", "NON_BILLABLE", "WARRANTY")[i]
                for i in rng.choice(3, n, p=[0.8, 0.12, 0.08])
            ],
            "approved": rng.random(n) < 0.92,
        }
    )


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _compare(kinds: tuple[ContractType, ...]) -> int:
    compared = []

    @SETTINGS
    @given(scenarios(kinds))
    def check(scenario: tuple[list[Contract], pa.Table]) -> None:
        book, logs = scenario
        result = assert_matches_reference(book, logs, CONDITIONS)
        for contract in book:
            if contract.type == ContractType.BUCKET:
                # The statement replays the drawdown on its own and must agree with it.
                st_ = bucket_statement(contract, result, WINDOW_END + 2 * 86_400)
                granted = st_.purchased_seconds + st_.top_up_seconds
                assert st_.burned_seconds + st_.remaining_seconds + st_.expired_seconds == granted
        compared.append(logs.num_rows)

    check()
    return sum(compared)


def test_kernel_matches_reference_on_priced_contracts() -> None:
    """Hourly, fixed-price and scope contracts: every part and line equals the reference."""
    kinds = (ContractType.HOURLY, ContractType.HOURLY, ContractType.FIXED_PRICE, ContractType.SCOPE)
    assert _compare(kinds) >= EXAMPLES * LOGS_PER_EXAMPLE


def test_kernel_matches_reference_on_drawdown_contracts() -> None:
    """Bucket and recurring contracts (drawdown in work order, straddles, burn factors,
    high-priority burn, top-ups, rollover with and without a cap, recurring time with and
    without included hours): every part and line equals the reference."""
    kinds = (ContractType.BUCKET, ContractType.BUCKET, ContractType.RECURRING, ContractType.HOURLY)
    assert _compare(kinds) >= EXAMPLES * LOGS_PER_EXAMPLE


def test_kernel_matches_reference_across_all_terms() -> None:
    """Every contract type in one book, with every term drawn (precedence default, highest or
    an explicit order; reject or price out-of-scope time; burn factors; rollover caps;
    recurring with and without included hours): every part and line equals the reference."""
    assert _compare(tuple(ContractType)) >= EXAMPLES * LOGS_PER_EXAMPLE


ALL_KINDS = tuple(ContractType)


@settings(
    max_examples=max(4, EXAMPLES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(ALL_KINDS), st.integers(0, 2**32 - 1))
def test_input_order_never_changes_the_output(scenario, seed) -> None:
    """Shuffling the batch changes neither the lines nor any part's result."""
    book, logs = scenario
    compiled = ContractBook(book, HORIZON)
    first = classify(compiled, logs, evidence=True)
    order = np.random.default_rng(seed).permutation(logs.num_rows)
    second = classify(compiled, logs.take(pa.array(order)), evidence=True)
    assert first.lines.equals(second.lines)
    assert kernel_parts(first) == kernel_parts(second)


@settings(
    max_examples=max(4, EXAMPLES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(ALL_KINDS))
def test_classification_is_idempotent_and_conserves_time(scenario) -> None:
    """Classifying twice gives the same result; per part the conditions sum to the duration,
    billed seconds to the rounded total, covered + overage to the weighted draw; lines sum the
    parts they price."""
    book, logs = scenario
    compiled = ContractBook(book, HORIZON)
    before = logs.to_pydict()
    first = classify(compiled, logs, evidence=True)
    again = classify(compiled, logs, evidence=True)
    assert logs.to_pydict() == before  # billing never edits a log
    assert first.lines.equals(again.lines)
    assert first.results.equals(again.results)
    # Recycling a finished classification's arrays gives the same result and empties it.
    recycled = classify(compiled, logs, evidence=True, reuse=again)
    assert again.parts == {}
    assert recycled.lines.equals(first.lines)
    assert kernel_parts(recycled) == kernel_parts(first)
    assert (recycled.slot_keys == first.slot_keys).all()
    p = first.parts
    duration = p["part_end"] - p["part_start"]
    assert (p["actual"].sum(axis=1) == duration).all()
    assert (p["actual"] >= 0).all() and (p["billed"] >= 0).all()
    # Parts of one log tile it exactly.
    starts = logs.column("start").cast(pa.int64()).to_numpy()
    ends = logs.column("end").cast(pa.int64()).to_numpy()
    assert (
        np.bincount(p["part_log"], weights=duration, minlength=logs.num_rows)
        .astype(np.int64)
        .tolist()
        == (ends - starts).tolist()
    )
    # Every priced second of a line comes from its parts, and every part slot names a line.
    assert set(np.unique(first.slot_keys[first.slot_keys >= 0]).tolist()) == set(
        first.line_keys.tolist()
    )
    line_seconds = first.lines.column("billed_seconds").cast(pa.int64()).to_numpy()
    assert int(line_seconds.sum()) == _slot_seconds(first)
    # Amounts follow the rates exactly: amount = round_half_up(seconds × rate / 3600).
    rates = first.lines.column("rate").to_numpy()
    amounts = first.lines.column("amount").to_numpy()
    assert ((2 * line_seconds * rates + 3_600) // 7_200 == amounts).all()
    # Per-part amount numerators add up to the lines' exact (unrounded) amounts.
    assert int(first.amount_numerators().sum()) == int((line_seconds * rates).sum())
    results = first.results
    assert results.num_rows == p["part_log"].size
    assert (
        results.column("log_id").to_pylist()[: logs.num_rows] == logs.column("log_id").to_pylist()
    )


def _slot_seconds(result) -> int:
    """Seconds the priced parts put on lines, recomputed from the per-part arrays."""
    p = result.parts
    priced = p["status"] == 0
    billable = p["log_billable"][p["part_log"]] == 0
    mode = result.book.mode[p["log_contract"][p["part_log"]]]
    total = p["billed"].sum(axis=1)
    drawing = priced & billable & ~p["out_of_scope"] & (mode == 1)
    others = priced & ~drawing
    return int(total[others].sum() + p["covered"][drawing].sum() + p["overage"][drawing].sum())


@settings(
    max_examples=max(3, EXAMPLES // 6),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(ALL_KINDS))
def test_hash_table_lines_equal_dense_lines(scenario) -> None:
    """Large key spaces aggregate in a hash table instead of the dense array: same lines."""
    from effigate_engine.ratecard import classify as module

    book, logs = scenario
    compiled = ContractBook(book, HORIZON)
    dense = classify(compiled, logs, evidence=True)
    saved = module.DENSE_MAX_ENTRIES
    module.DENSE_MAX_ENTRIES = 0
    try:
        hashed = classify(compiled, logs, evidence=True)
    finally:
        module.DENSE_MAX_ENTRIES = saved
    assert dense.lines.equals(hashed.lines)
    assert (dense.slot_keys == hashed.slot_keys).all()
