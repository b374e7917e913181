"""The exact combination, without a cluster: reports of an evaluation split into random parts,
combined, equal the reports of the whole (hypothesis); and the jobs run in this process
(``client=None``, the very part functions the cluster runs) equal the single-process engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, CalendarSet, sla
from effigate_engine.cluster import combine, replay_jobs, sla_jobs
from effigate_engine.cluster.sla_jobs import TENANT, report_counts
from effigate_engine.errors import EffigateError
from effigate_engine.sla import BREACH_RECORDS, Policy
from effigate_engine.sla.reports import GROUP_COLUMNS, report_keys
from effigate_engine.sla.schemas import TICKETS
from tests.cluster import synthetic
from tests.cluster.reference import (
    RESULT_ROWS,
    by_ticket,
    of_tenant,
    read_results,
    replay_reference,
    result_files,
    sla_reference,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # the US clocks change on the 8th
H = 3600


@cache
def engine() -> tuple[CalendarSet, Policy, Policy]:
    calendars = CalendarSet(
        [Calendar.from_json({**body, "name": n}) for n, body in synthetic.CALENDARS.items()]
    )
    standard = Policy.from_json({"name": "standard", **synthetic.STANDARD})
    proposed = Policy.from_json({"name": "proposed", **synthetic.PROPOSED})
    return calendars, standard, proposed


hours = st.integers(0, 40)
ticket_rows = st.fixed_dictionaries(
    {
        "created": st.integers(0, 14 * 24),  # hours after T0: whole hours make ties
        "first": st.none() | hours,
        "plan": st.none() | hours,
        "resolved": st.none() | st.integers(1, 90),
        "pause": st.none() | st.tuples(st.integers(0, 10), st.integers(1, 20)),
        "priority": st.sampled_from(synthetic.PRIORITIES),
        "client_id": st.sampled_from(("a", "b", "c")),
        "assignee": st.sampled_from(("x", "y", None)),
        "job_type": st.sampled_from(("network", None)),
    }
)


def ticket_table(rows: list[dict]) -> pa.Table:
    out = []
    for i, r in enumerate(rows):
        created = T0 + timedelta(hours=r["created"])

        def at(offset: int | None, created: datetime = created) -> datetime | None:
            return None if offset is None else created + timedelta(hours=offset)

        pauses = []
        if r["pause"] is not None:
            start, length = r["pause"]
            pauses.append(
                {"start": at(start), "end": at(start + length), "status": "WAITING_ON_CLIENT"}
            )
        out.append(
            {
                "ticket_id": f"T{i:03d}",
                "priority": r["priority"],
                "client_id": r["client_id"],
                "assignee": r["assignee"],
                "job_type": r["job_type"],
                "created_at": created,
                "first_response_at": at(r["first"]),
                "resolution_plan_at": at(r["plan"]),
                "resolved_at": at(r["resolved"]),
                "pauses": pauses,
            }
        )
    return pa.Table.from_pylist(out, schema=TICKETS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(ticket_rows, min_size=1, max_size=40),
    parts=st.integers(1, 5),
    assignment=st.randoms(use_true_random=False),
    by=st.lists(st.sampled_from(GROUP_COLUMNS), min_size=1, max_size=2, unique=True),
    period=st.sampled_from((None, "day", "week", "month")),
    quantiles=st.lists(st.floats(0, 1), min_size=1, max_size=4, unique=True),
    now_hours=st.integers(24, 20 * 24),
)
def test_parts_combined_equal_the_whole(
    rows, parts, assignment, by, period, quantiles, now_hours
) -> None:
    calendars, standard, proposed = engine()
    tickets = ticket_table(rows)
    now = T0 + timedelta(hours=now_hours)
    whole = sla.evaluate(tickets, standard, calendars, now)
    whole_after = sla.evaluate(tickets, proposed, calendars, now)
    keys = (TENANT, *report_keys(by, period))
    # each ticket to a random part (not contiguous runs: any split must combine the same)
    owner = np.array([assignment.randrange(parts) for _ in range(tickets.num_rows)])
    hits, values, hits_after = [], [], []
    for k in range(parts):
        rows_k = np.flatnonzero(owner == k)
        if not len(rows_k):
            continue
        part = tickets.take(pa.array(rows_k))
        h, v = report_counts(sla.evaluate(part, standard, calendars, now), "t", keys, period)
        hits.append(h)
        values.append(v)
        after, _ = report_counts(sla.evaluate(part, proposed, calendars, now), "t", keys, period)
        hits_after.append(after)
    assert of_tenant(combine.hit_rates(hits, keys), "t").equals(sla.hit_rates(whole, by, period))
    assert of_tenant(combine.percentiles(values, keys, quantiles), "t").equals(
        sla.percentiles(whole, by, quantiles, period)
    )
    assert of_tenant(combine.replay(hits, hits_after, keys), "t").equals(
        sla.reports.replay_evaluations(whole, whole_after, by, period)
    )
    # percentiles depend on the values of each group only, not on the order of the rows
    shuffled = tickets.take(pa.array(np.random.default_rng(len(rows)).permutation(len(rows))))
    assert sla.percentiles(sla.evaluate(shuffled, standard, calendars, now), by, quantiles).equals(
        sla.percentiles(whole, by, quantiles)
    )


def test_percentiles_from_counts_read_order_statistics_across_groups() -> None:
    counts = pa.table(
        {
            "g": ["b", "a", "b", "a", "b", "a"],
            "elapsed_seconds": pa.array([7, 1, 3, 2, 7, 1], pa.int64()),
            "count": pa.array([1, 2, 2, 1, 1, 1], pa.int64()),
        }
    )
    table = sla.reports.percentiles_from_counts(counts, ["g"], [0, 0.5, 0.75, 1])
    # a: 1 1 1 2 -> p50 at rank 1.5 = 1, p75 at 2.25 = 1.25; b: 3 3 7 7 -> p50 = 5
    assert table.to_pylist() == [
        {"g": "a", "count": 4, "p0": 1.0, "p50": 1.0, "p75": 1.25, "p100": 2.0},
        {"g": "b", "count": 4, "p0": 3.0, "p50": 5.0, "p75": 7.0, "p100": 7.0},
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> synthetic.Synthetic:
    return synthetic.write_dataset(str(tmp_path_factory.mktemp("dataset")), count=200)


@pytest.mark.parametrize(
    ("policy", "by", "period"),
    [(None, ("priority",), None), ("premium", ("client_id", "assignee"), "month")],
)
def test_in_process_job_equals_single_process(tmp_path, dataset, policy, by, period) -> None:
    out = str(tmp_path / "out")
    job = sla_jobs.recompute(
        None, dataset.url, now=dataset.now, out=out, policy=policy, by=by, period=period
    )
    for tenant in dataset.tenants:
        ref = sla_reference(dataset.url, tenant, dataset.now, policy, by, period)
        written = read_results(out, "sla", tenant, RESULT_ROWS)
        assert written.column("tenant_id").unique().to_pylist() == [tenant]
        assert by_ticket(written.drop_columns(["tenant_id"])).equals(by_ticket(ref.results))
        assert of_tenant(job.hit_rates, tenant).equals(ref.hit_rates)
        assert of_tenant(job.percentiles, tenant).equals(ref.percentiles)
        failed = of_tenant(job.failures, tenant)
        expected = {dataset.bad[tenant]} | (
            {dataset.unknown_policy[tenant]} if not policy else set()
        )
        assert set(failed.column("ticket_id").to_pylist()) == expected
        breaches = read_results(out, "sla_breaches", tenant, BREACH_RECORDS)
        assert by_ticket(breaches).equals(by_ticket(sla.breach_records(ref.screened.evaluation)))


def test_in_process_replay_equals_single_process(tmp_path, dataset) -> None:
    job = replay_jobs.replay(
        None,
        dataset.url,
        current=None,
        proposed=synthetic.PROPOSED,
        now=dataset.now,
        out=str(tmp_path),
        by=("priority", "client_id"),
    )
    for tenant in dataset.tenants:
        left_out = {dataset.bad[tenant]}
        assert set(of_tenant(job.failures, tenant).column("ticket_id").to_pylist()) == left_out
        expected = replay_reference(
            dataset.url,
            tenant,
            dataset.now,
            None,
            synthetic.PROPOSED,
            left_out,
            ("priority", "client_id"),
        )
        assert of_tenant(job.table, tenant).equals(expected)
    written = pq.read_table(tmp_path / replay_jobs.REPLAY_FILE)
    assert written.cast(job.table.schema).equals(job.table)


def test_a_policy_no_tenant_has_is_named(dataset) -> None:
    with pytest.raises(EffigateError, match="policy 'gold': not in tenant"):
        sla_jobs.recompute(None, dataset.url, now=dataset.now, policy="gold")
    with pytest.raises(EffigateError, match=r"rules\[0\]"):
        replay_jobs.replay(None, dataset.url, proposed={"rules": [{"x": 1}]}, now=dataset.now)


def test_a_rerun_replaces_failures_and_removes_leftovers(tmp_path, dataset) -> None:
    out = str(tmp_path)
    first = sla_jobs.recompute(None, dataset.url, now=dataset.now, out=out)
    assert first.failures.num_rows == 2 * len(dataset.tenants)  # the bad and unknown-policy
    before = result_files(out, "sla_failures")
    part = first.parts[0].part
    leftover = tmp_path / "results/sla" / f"tenant={part.tenant}/month={part.key}"
    (leftover / "part-0.parquet.tmp-5e1f").write_bytes(b"half a file")
    # under one policy the unknown-policy tickets are evaluated: their months' failures go
    second = sla_jobs.recompute(None, dataset.url, now=dataset.now, out=out, policy="standard")
    failed = {
        f"tenant={t}/month={m}/part-0.parquet"
        for t, m in zip(
            second.failures.column("tenant_id").to_pylist(),
            second.failures.column("month").to_pylist(),
            strict=True,
        )
    }
    assert result_files(out, "sla_failures") == sorted(failed)
    assert len(failed) < len(before)  # some month had only the unknown-policy ticket
    assert len(result_files(out, "sla")) == len(second.parts)  # the leftover is gone
