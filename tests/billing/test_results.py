"""The per-part result batch (``LOG_RESULTS``, one fused pass over the kernels' own arrays)
against the slow column-by-column builder of ``tests/billing/reference_results.py``, value for
value: on hypothesis-generated scenarios (every contract type and term the generator draws)
and on hand-picked cases whose numbers are worked by hand.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from effigate_engine.ratecard import part_results
from effigate_engine.ratecard.book import ContractBook
from effigate_engine.ratecard.classification import Classification, PartArrays
from effigate_engine.ratecard.classify import classify
from effigate_engine.ratecard.contracts import (
    BucketTerms,
    Contract,
    ContractType,
    Milestone,
    OutOfScope,
    Scope,
)
from effigate_engine.ratecard.model import Condition, RateCard, Rule
from effigate_engine.ratecard.schemas import LOG_RESULTS
from tests.billing.reference_results import amount_numerators, rate_columns, reference_results
from tests.billing.support import HORIZON, HOUR, at, business_hours, card, hourly, log_batch, run
from tests.billing.test_generated import ALL_KINDS, EXAMPLES, scenarios


def assert_matches_reference_batch(result: Classification) -> list[dict]:
    """The fast batch equals the reference batch column by column and value for value, on one
    thread and on three (slices cut at odd places); returns its rows."""
    fast = result.results
    want = reference_results(result)
    assert fast.schema.equals(LOG_RESULTS) and want.schema.equals(LOG_RESULTS)
    assert fast.num_rows == want.num_rows
    for name in LOG_RESULTS.names:
        assert fast.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert fast.equals(want)
    # The per-part rate, label and amount views read the same columns.
    p = result.parts
    assert isinstance(p, PartArrays)
    fresh = PartArrays(result.book, result._tables, p.log_starts, p.log_ends, p.stored)
    want_rates, want_labels, _ = rate_columns(result, fresh)
    rates, labels = result.rates()
    assert (rates == np.stack(want_rates, axis=1)).all()
    assert (labels == np.stack(want_labels, axis=1)).all()
    assert (result.amount_numerators() == amount_numerators(result, fresh)).all()
    saved = part_results.PARALLEL_MIN_PARTS
    part_results.PARALLEL_MIN_PARTS = 0
    try:
        assert result.build_results(threads=3).equals(want)
    finally:
        part_results.PARALLEL_MIN_PARTS = saved
    return fast.to_pylist()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios(ALL_KINDS))
def test_result_batch_equals_the_reference_builder_on_generated_scenarios(scenario) -> None:
    """Every contract type, calendars with DST changes and holidays, both stackings, burn
    factors, top-ups, rollover, amendments, scope policies, unapproved / non-billable /
    warranty time and logs split at period ends: the same batch, value for value."""
    contracts, logs = scenario
    assert_matches_reference_batch(classify(ContractBook(contracts, HORIZON), logs))


def by_part(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["log_id"], r["part"]): r for r in rows}


def seconds(row: dict, name: str) -> int:
    return int(row[name].total_seconds())


def test_split_logs_have_one_row_per_part_after_the_first_parts() -> None:
    c = hourly(business_hours(), card(AFTER_HOURS=15_000))
    rows = [
        {"start": at("2026-03-31T23:30-04:00"), "end": at("2026-04-01T00:20-04:00")},
        {"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T11:00-05:00")},
        # 31 January 23:00 to 1 March 01:00: three parts (January, February, March).
        {"start": at("2026-01-31T23:00-05:00"), "end": at("2026-03-01T01:00-05:00")},
    ]
    rows_out = assert_matches_reference_batch(run([c], rows))
    assert [(r["log_id"], r["part"]) for r in rows_out] == [
        ("L0", 0),
        ("L1", 0),
        ("L2", 0),
        ("L0", 1),
        ("L2", 1),
        ("L2", 2),
    ]
    parts = by_part(rows_out)
    # A split log's first part ends at the local midnight where its second part starts.
    assert parts[("L0", 0)]["end"] == parts[("L0", 1)]["start"] == at("2026-04-01T00:00-04:00")
    assert parts[("L2", 1)]["start"] == at("2026-02-01T00:00-05:00")
    assert parts[("L2", 1)]["end"] == parts[("L2", 2)]["start"] == at("2026-03-01T00:00-05:00")
    assert [parts[("L2", k)]["period"] for k in range(3)] == [0, 1, 2]
    assert {r["contract_id"] for r in rows_out} == {"C1"}
    # 30 min after hours and 20 min after hours, each rounded up to 30 min at $150/h.
    for k in (0, 1):
        assert seconds(parts[("L0", k)], "billed_after_hours") == 1_800
        assert parts[("L0", k)]["amount_numerator"] == 1_800 * 15_000


def test_drawdown_with_overage_prices_the_overage_at_the_additional_hours_rate() -> None:
    rc = RateCard(
        "USD",
        {("*", "*"): 10_000},
        {Condition.ADDITIONAL_HOURS: Rule(absolute=16_000)},
        increment_seconds=0,
    )
    c = Contract(
        "B1",
        "CL1",
        ContractType.BUCKET,
        business_hours(),
        date(2026, 1, 1),
        rc,
        bucket=BucketTerms(HOUR, burn_bp={Condition.AFTER_HOURS: 20_000}),
    ).activate()
    rows = [
        # 30 min regular: covered. Then 1 h after hours burning 2×: 30 min left, 90 min over.
        {"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T10:30-05:00")},
        {"start": at("2026-03-03T18:00-05:00"), "end": at("2026-03-03T19:00-05:00")},
    ]
    rows_out = assert_matches_reference_batch(run([c], [{**r, "contract_id": "B1"} for r in rows]))
    first, second = rows_out
    assert (seconds(first, "covered_seconds"), seconds(first, "overage_seconds")) == (1_800, 0)
    assert first["amount_numerator"] == 0
    assert (seconds(second, "covered_seconds"), seconds(second, "overage_seconds")) == (
        1_800,
        5_400,
    )
    assert second["amount_numerator"] == 5_400 * 16_000
    assert (second["rate_after_hours"], second["label_after_hours"]) == (10_000, "AFTER_HOURS")


def test_out_of_scope_unapproved_non_billable_and_warranty_parts() -> None:
    rc = RateCard(
        "USD",
        {("*", "*"): 10_000},
        {Condition.OUT_OF_SCOPE: Rule(absolute=25_000)},
        increment_seconds=900,
    )
    priced = hourly(business_hours(), rc, scope=Scope(job_types=frozenset({"support"})))
    rejecting = hourly(
        business_hours(),
        rc,
        "C2",
        scope=Scope(job_types=frozenset({"support"}), out_of_scope=OutOfScope.REJECT),
    )
    hour = {"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T10:50-05:00")}
    rows = [
        {**hour, "job_type": "network"},
        {**hour, "job_type": "network", "contract_id": "C2"},
        {**hour, "approved": False},
        {**hour, "billable_type": "NON_BILLABLE"},
        {**hour, "billable_type": "WARRANTY"},
        hour,
    ]
    out = assert_matches_reference_batch(run([priced, rejecting], rows))
    assert [(r["status"], r["billable_type"], r["out_of_scope"]) for r in out] == [
        ("PRICED", "BILLABLE", True),
        ("REJECTED", "BILLABLE", True),
        ("UNAPPROVED", "BILLABLE", False),
        ("PRICED", "NON_BILLABLE", False),
        ("PRICED", "WARRANTY", False),
        ("PRICED", "BILLABLE", False),
    ]
    # 50 min rounds up to 1 h: out of scope at $250/h, in scope at $100/h, the rest unpriced.
    assert [r["amount_numerator"] for r in out] == [
        HOUR * 25_000,
        0,
        0,
        0,
        0,
        HOUR * 10_000,
    ]
    assert all(seconds(r, "billed_total") == HOUR for r in out)
    assert all(seconds(r, "actual_regular") == 3_000 for r in out)


def test_fixed_price_time_is_covered_and_priority_time_is_labelled() -> None:
    fixed = Contract(
        "F1",
        "CL1",
        ContractType.FIXED_PRICE,
        business_hours(),
        date(2026, 1, 1),
        card(HIGH_PRIORITY=18_000),
        milestones=(Milestone("M1", "all", 500_000),),
    ).activate()
    rows = [
        {
            "start": at("2026-03-03T16:00-05:00"),
            "end": at("2026-03-03T18:00-05:00"),
            "contract_id": "F1",
            "priority": "HIGH",
        }
    ]
    (row,) = assert_matches_reference_batch(run([fixed], rows))
    assert row["high_priority"]
    assert (row["label_regular"], row["rate_regular"]) == ("HIGH_PRIORITY", 18_000)
    assert (seconds(row, "covered_seconds"), row["amount_numerator"]) == (2 * HOUR, 0)


def test_first_parts_share_the_input_buffers() -> None:
    """Log ids, starts and contract codes of the first parts are the input's own memory."""
    c = hourly(business_hours(), card())
    rows = [
        {"start": at("2026-03-31T23:30-04:00"), "end": at("2026-04-01T00:20-04:00")},
        {"start": at("2026-03-03T10:00-05:00"), "end": at("2026-03-03T11:00-05:00")},
    ]
    logs = log_batch(rows)
    logs = logs.set_column(
        logs.schema.get_field_index("contract_id"),
        "contract_id",
        logs.column("contract_id").dictionary_encode(),
    )
    result = classify(ContractBook([c], HORIZON), logs)
    batch = result.results

    def data(column: pa.ChunkedArray) -> int:
        first = column.chunk(0)
        if pa.types.is_dictionary(first.type):
            first = first.indices
        return first.buffers()[-1].address

    for name in ("log_id", "start", "contract_id"):
        assert data(batch.column(name)) == data(logs.column(name)), name
    assert_matches_reference_batch(result)


@pytest.mark.parametrize("form", ["record batch", "chunked table"])
def test_record_batches_and_chunked_tables_give_the_same_batch(form: str) -> None:
    c = hourly(business_hours(), card(AFTER_HOURS=15_000))
    rows = [
        {"start": at(f"2026-03-{d:02d}T16:30-05:00"), "end": at(f"2026-03-{d:02d}T18:00-05:00")}
        for d in range(2, 31)
    ]
    rows.append({"start": at("2026-03-31T23:30-04:00"), "end": at("2026-04-01T00:20-04:00")})
    logs = log_batch(rows)
    whole = classify(ContractBook([c], HORIZON), logs).results
    if form == "record batch":
        given_logs = logs.combine_chunks().to_batches()[0]
    else:
        given_logs = pa.concat_tables([logs.slice(0, 7), logs.slice(7, 5), logs.slice(12)])
    result = classify(ContractBook([c], HORIZON), given_logs)
    assert_matches_reference_batch(result)
    assert result.results.equals(whole)


def test_a_built_batch_survives_recycling_of_its_classification() -> None:
    """``classify(..., reuse=previous)`` recycles the previous run's arrays; a result batch
    built before shares none of them."""
    c = hourly(business_hours(), card(AFTER_HOURS=15_000))
    book = ContractBook([c], HORIZON)
    first_rows = [
        {"start": at("2026-03-03T16:30-05:00"), "end": at("2026-03-03T18:00-05:00")},
        {"start": at("2026-03-31T23:30-04:00"), "end": at("2026-04-01T00:20-04:00")},
    ]
    previous = classify(book, log_batch(first_rows))
    batch = previous.results
    before = batch.to_pylist()
    other = [{"start": at("2026-03-07T10:00-05:00"), "end": at("2026-03-07T14:00-05:00")}] * 2
    recycled = classify(book, log_batch(other), reuse=previous)
    assert recycled.results.num_rows == 2
    assert batch.to_pylist() == before
    with pytest.raises(ValueError, match="recycled"):
        previous.build_results()
