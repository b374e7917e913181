"""Screening: every evaluable ticket is evaluated as evaluate() would, the others named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from effigate_engine import sla
from effigate_engine.sla.screening import evaluate_rows
from tests.e2e.test_sla_api import local_engine

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def test_kernel_refusals_are_found_per_row_and_the_rest_evaluated_as_evaluate_would() -> None:
    policy, calendars = local_engine()
    rows = []
    for i in range(300):
        created = datetime(2026, 11, 2, 22, tzinfo=UTC) + timedelta(hours=i)
        if i % 7 == 3:  # its deadline falls past the horizon: only the kernel can tell
            created = datetime(2099, 12, 31, 20, tzinfo=UTC)
        if i % 11 == 5:
            created = datetime(1999, 6, 1, tzinfo=UTC)
        rows.append({"ticket_id": f"T-{i}", "priority": "HIGH", "created_at": created})
    table = pa.Table.from_pylist(rows, schema=sla.TICKETS)
    screened = evaluate_rows(table, policy, calendars, NOW)
    bad = sorted({i for i in range(300) if i % 7 == 3 or i % 11 == 5})
    assert screened.rejected.column("row").to_pylist() == bad
    fields = dict(
        zip(
            screened.rejected.column("row").to_pylist(),
            screened.rejected.column("field").to_pylist(),
            strict=True,
        )
    )
    assert fields[3] == "deadline" and fields[5] == "created_at"
    good = [i for i in range(300) if i not in set(bad)]
    assert screened.kept.tolist() == good
    expected = sla.evaluate(table.take(pa.array(good)), policy, calendars, NOW).results
    assert screened.evaluation.results.equals(expected)
