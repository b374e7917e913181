"""What the SLA was as known at an instant: evaluating a ticket's full history at *t* equals
evaluating the history cut at *t* (``reference_sla.known_at``), for every metric field; one
instant per ticket equals one call per instant."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effigate_engine import Calendar, CalendarSet, EffigateError, WeeklyEntry, sla
from effigate_engine.sla import Policy
from effigate_engine.sla.schemas import TICKETS
from tests.sla.reference_sla import known_at

H = 3600
DAY = 86_400
T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())  # a Monday
CALENDARS = CalendarSet(
    [
        Calendar.always_open(name="24x7"),
        Calendar(
            "Europe/London", tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)), name="office"
        ),
    ]
)


def _policy(resolution: str, calendar: str = "24x7") -> Policy:
    return Policy.from_json(
        {
            "name": "p",
            "rules": [
                {
                    "metrics": {
                        "FIRST_RESPONSE": {"target": "1h", "calendar": calendar},
                        "RESOLUTION": {
                            "target": resolution,
                            "calendar": calendar,
                            "escalation": [
                                {"at_fraction": "0.5", "notify": "queue:desk"},
                                {"after_deadline": "2h", "notify": "role:manager"},
                            ],
                        },
                    }
                }
            ],
        }
    )


def _table(rows: list[dict]) -> pa.Table:
    def ts(t: int | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp(t, UTC)

    out = []
    for i, r in enumerate(rows):
        item = {k: (ts(v) if k.endswith("_at") else v) for k, v in r.items() if k != "pauses"}
        item["ticket_id"] = r.get("ticket_id") or f"T{i}"
        item["pauses"] = [
            {"start": ts(p["start"]), "end": ts(p["end"]), "status": p["status"]}
            for p in r.get("pauses", [])
        ]
        out.append(item)
    return pa.Table.from_pylist(out, schema=TICKETS)


def _rows(evaluation) -> list[dict]:
    return evaluation.results.to_pylist()


REOPENED = {
    "ticket_id": "INC-1",
    "priority": "HIGH",
    "created_at": T0 + 10 * H,
    "first_response_at": T0 + 10 * H + 600,
    "pauses": [{"start": T0 + 12 * H, "end": T0 + 14 * H, "status": "RESOLVED"}],
}


def test_resolved_then_reopened_later_is_met_as_known_before_the_reopening() -> None:
    """Created 10:00, resolved 12:00, reopened 14:00, 10 h target: at 13:00 RESOLUTION was MET,
    deadline 20:00, elapsed 7,200 s (not PAUSED without a deadline)."""
    result = sla.evaluate(_table([REOPENED]), _policy("10h"), CALENDARS, T0 + 13 * H)
    row = next(r for r in _rows(result) if r["metric"] == "RESOLUTION")
    assert row["status"] == "MET"
    assert int(row["deadline"].timestamp()) == T0 + 20 * H
    assert row["elapsed_seconds"] == 7_200
    assert int(row["stopped_at"].timestamp()) == T0 + 12 * H
    # After the reopening it is open again, the resolved interval paused.
    later = sla.evaluate(_table([REOPENED]), _policy("10h"), CALENDARS, T0 + 15 * H)
    row = next(r for r in _rows(later) if r["metric"] == "RESOLUTION")
    assert row["status"] == "ON_TRACK" and row["elapsed_seconds"] == 3 * H


def test_a_breached_metric_gains_no_escalation_after_its_stop() -> None:
    """Same ticket, 1 h target: at 13:00 it was breached at 11:00 and stopped at 12:00; the
    'after deadline 2 h' step (13:00) came after the stop and did not fire."""
    result = sla.evaluate(_table([REOPENED]), _policy("1h"), CALENDARS, T0 + 13 * H)
    row = next(r for r in _rows(result) if r["metric"] == "RESOLUTION")
    assert row["status"] == "BREACHED"
    assert int(row["breached_at"].timestamp()) == T0 + 11 * H
    assert row["escalation_level"] == 1 and row["next_escalation_at"] is None


def test_an_event_exactly_at_now_is_known() -> None:
    result = sla.evaluate(_table([REOPENED]), _policy("10h"), CALENDARS, T0 + 12 * H)
    row = next(r for r in _rows(result) if r["metric"] == "RESOLUTION")
    assert row["status"] == "MET" and row["elapsed_seconds"] == 2 * H
    reopened = sla.evaluate(_table([REOPENED]), _policy("10h"), CALENDARS, T0 + 14 * H)
    row = next(r for r in _rows(reopened) if r["metric"] == "RESOLUTION")
    assert row["status"] == "ON_TRACK"


@st.composite
def histories(draw: st.DrawFn) -> dict:
    created = T0 + draw(st.integers(0, 4 * DAY))
    row: dict = {"priority": "HIGH", "created_at": created}
    for field in ("first_response_at", "resolved_at"):
        if draw(st.booleans()):
            row[field] = created + draw(st.integers(0, 3 * DAY))
    pauses = []
    for _ in range(draw(st.integers(0, 4))):
        start = created + draw(st.integers(-H, 3 * DAY))
        length = draw(st.one_of(st.none(), st.integers(0, DAY)))
        pauses.append(
            {
                "start": start,
                "end": None if length is None else start + length,
                "status": draw(st.sampled_from(["RESOLVED", "WAITING_ON_CLIENT", "ON_HOLD"])),
            }
        )
    row["pauses"] = pauses
    return row


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(histories(), min_size=1, max_size=12),
    st.lists(st.integers(-H, 6 * DAY), min_size=1, max_size=6),
    st.sampled_from(["24x7", "office"]),
    st.sampled_from(["1h", "10h", "30h"]),
)
def test_full_history_at_t_equals_the_history_cut_at_t(tickets, offsets, calendar, target):
    """Every field of every metric row, at several instants per batch; and per-ticket
    instants in one call equal one call per instant."""
    policy = _policy(target, calendar)
    full = _table(tickets)
    per_row_now, per_row_want = [], []
    for offset in offsets:
        now = T0 + offset
        got = _rows(sla.evaluate(full, policy, CALENDARS, now))
        cut = _rows(
            sla.evaluate(_table([known_at(t, now) for t in tickets]), policy, CALENDARS, now)
        )
        assert got == cut, now
        per_row_now.append(now)
        per_row_want.append(got)
    # One instant per ticket: the batch repeated once per instant, in one call.
    repeated = pa.concat_tables([full] * len(offsets))
    instants = np.repeat(np.array(per_row_now, np.int64), full.num_rows)
    got = _rows(sla.evaluate(repeated, policy, CALENDARS, instants))
    assert got == [row for rows in per_row_want for row in rows]


def test_per_ticket_instants_must_match_the_batch() -> None:
    with pytest.raises(EffigateError, match="2 instants for 1 tickets"):
        sla.evaluate(_table([REOPENED]), _policy("10h"), CALENDARS, np.array([T0, T0 + H]))
    instants = pa.array([datetime.fromtimestamp(T0 + 13 * H, UTC)], pa.timestamp("s", "UTC"))
    row = _rows(sla.evaluate(_table([REOPENED]), _policy("10h"), CALENDARS, instants))
    assert next(r for r in row if r["metric"] == "RESOLUTION")["status"] == "MET"


def test_each_ticket_is_evaluated_at_its_own_instant_not_the_first() -> None:
    """The same reopened ticket twice, at 13:00 (resolved, MET) and at 15:00 (reopened,
    ON_TRACK): each row is what a call at its own instant gives."""
    table = _table([REOPENED, {**REOPENED, "ticket_id": "INC-2"}])
    instants = np.array([T0 + 13 * H, T0 + 15 * H], np.int64)
    rows = _rows(sla.evaluate(table, _policy("10h"), CALENDARS, instants))
    resolution = {r["ticket_id"]: r for r in rows if r["metric"] == "RESOLUTION"}
    assert resolution["INC-1"]["status"] == "MET"
    assert resolution["INC-2"]["status"] == "ON_TRACK"
    assert resolution["INC-2"]["elapsed_seconds"] == 3 * H
    for k, now in enumerate(instants):
        alone = _rows(sla.evaluate(table.slice(k, 1), _policy("10h"), CALENDARS, int(now)))
        assert [r for r in rows if r["ticket_id"] == f"INC-{k + 1}"] == alone


def _state(rows: list[dict], metric: str) -> tuple:
    r = next(x for x in rows if x["metric"] == metric)
    deadline = None if r["deadline"] is None else int(r["deadline"].timestamp())
    return r["status"], deadline, r["escalation_level"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.sampled_from(["24x7", "office"]), st.sampled_from(["1h", "10h"]))
def test_timeline_agrees_with_evaluation_at_each_instant_and_a_second_before(
    ticket, calendar, target
) -> None:
    """Each returned instant: evaluating there gives the entry's state, a second before gives
    the previous entry's (or, at creation, nothing before)."""
    from effigate_engine.sla.timeline import ticket_timeline

    policy = _policy(target, calendar)
    table = _table([ticket])
    until = ticket["created_at"] + 5 * DAY
    timeline = ticket_timeline(table, [ticket["created_at"]], policy, CALENDARS, until)
    last: dict[str, tuple] = {}
    for entry in timeline.to_pylist():
        at = int(entry["at"].timestamp())
        metric = entry["metric"]
        deadline = None if entry["deadline"] is None else int(entry["deadline"].timestamp())
        want = (entry["status"], deadline, entry["escalation_level"])
        assert _state(_rows(sla.evaluate(table, policy, CALENDARS, at)), metric) == want
        if metric in last:
            before = _state(_rows(sla.evaluate(table, policy, CALENDARS, at - 1)), metric)
            assert before == last[metric]
        last[metric] = want
    # Nothing changes after the last entry: the state at `until` is the last one.
    final = _rows(sla.evaluate(table, policy, CALENDARS, until))
    for metric, state in last.items():
        assert _state(final, metric) == state
