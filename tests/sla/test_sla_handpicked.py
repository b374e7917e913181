"""Hand-picked SLA cases: the seeds' examples, docs/sla.md's boundary rules, and the bugs other
engines shipped (pauses in wall-clock time, pauses lost on re-target, tickets raised
after hours, overnight shifts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from effigate_engine import Calendar, CalendarSet, EffigateError, WeeklyEntry, sla
from effigate_engine.sla import Policy, PolicyError, TicketError
from effigate_engine.sla.schemas import TICKETS
from effigate_engine.zone import zone as bundled_zone

H = 3600
LONDON = bundled_zone("Europe/London")
NEW_YORK = bundled_zone("America/New_York")


@pytest.fixture(scope="module")
def calendars() -> CalendarSet:
    office = Calendar(
        "Europe/London", tuple(WeeklyEntry(d, 9 * H, 17 * H) for d in range(5)), name="office"
    )
    overnight = Calendar(
        "America/New_York", tuple(WeeklyEntry(d, 22 * H, 6 * H) for d in range(5)), name="overnight"
    )
    return CalendarSet([office, overnight, Calendar.always_open(name="24x7")])


SEED_POLICY = {
    "name": "seed",
    "rules": [
        {
            "match": {"priority": "CRITICAL"},
            "metrics": {
                "FIRST_RESPONSE": {
                    "target": "4h",
                    "calendar": "24x7",
                    "escalation": [
                        {"at_fraction": "0.5", "notify": "queue:service-desk"},
                        {"at_fraction": "1", "notify": "role:team-lead"},
                        {"after_deadline": "30m", "notify": "role:service-manager"},
                    ],
                },
                "RESOLUTION": {"target": "8h", "calendar": "24x7"},
            },
        },
        {
            "match": {"priority": "HIGH"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "8h", "calendar": "office"},
                "RESOLUTION": {"target": "16h", "calendar": "office"},
            },
        },
        {
            "match": {"priority": "MEDIUM"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "24h", "calendar": "office"},
                "RESOLUTION": {"target": "48h", "calendar": "office"},
            },
        },
        {
            "match": {"priority": "LOW", "job_type": "night-ops"},
            "metrics": {"FIRST_RESPONSE": {"target": "4h", "calendar": "overnight"}},
        },
    ],
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_json(SEED_POLICY)


def london(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def ticket(ticket_id: str = "T1", **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"ticket_id": ticket_id, "priority": "HIGH", "pauses": [], **fields}
    return row


def pause(start: datetime, end: datetime | None, status: str = "WAITING_ON_CLIENT") -> dict:
    return {"start": start, "end": end, "status": status}


def run(
    calendars: CalendarSet, policy: Policy, rows: list[dict], now: datetime, **kwargs: Any
) -> dict[tuple[str, str], dict]:
    evaluation = sla.evaluate(
        pa.Table.from_pylist(rows, schema=TICKETS), policy, calendars, now, **kwargs
    )
    return {(r["ticket_id"], r["metric"]): r for r in evaluation.results.to_pylist()}


def test_seed_critical_ticket_breaches_response_and_resolution(calendars, policy) -> None:
    created = london("2026-11-16 09:00")
    rows = [
        ticket(
            priority="CRITICAL",
            created_at=created,
            first_response_at=created + timedelta(hours=5),
            resolved_at=created + timedelta(hours=9),
        )
    ]
    out = run(calendars, policy, rows, created + timedelta(hours=10))
    fr, res = out["T1", "FIRST_RESPONSE"], out["T1", "RESOLUTION"]
    assert fr["status"] == res["status"] == "BREACHED"
    assert fr["deadline"] == created + timedelta(hours=4) == fr["breached_at"]
    assert fr["breach_seconds"] == H and res["breach_seconds"] == H
    assert fr["escalation_level"] == 3 and fr["escalation_notify"] == "role:service-manager"
    assert res["remaining_seconds"] == -H


def test_seed_high_ticket_enters_warning_exactly_at_three_quarters(calendars, policy) -> None:
    created = london("2026-11-16 09:00")  # Monday
    rows = [ticket(created_at=created)]
    before = run(calendars, policy, rows, london("2026-11-16 14:59:59"))["T1", "FIRST_RESPONSE"]
    at = run(calendars, policy, rows, london("2026-11-16 15:00"))["T1", "FIRST_RESPONSE"]
    assert before["status"] == "ON_TRACK" and at["status"] == "WARNING"
    assert at["elapsed_seconds"] == 6 * H and at["remaining_seconds"] == 2 * H
    assert at["deadline"] == london("2026-11-16 17:00")


def test_seed_medium_ticket_on_track(calendars, policy) -> None:
    created = london("2026-11-16 09:00")
    out = run(
        calendars, policy, [ticket(priority="P3", created_at=created)], london("2026-11-17 12:00")
    )
    fr = out["T1", "FIRST_RESPONSE"]
    assert fr["status"] == "ON_TRACK" and fr["elapsed_seconds"] == 11 * H
    assert fr["deadline"] == london("2026-11-18 17:00")  # 24 business hours = three 8-hour days
    assert out["T1", "RESOLUTION"]["deadline"] == london("2026-11-23 17:00")


def test_weekend_pause_is_measured_in_business_time(calendars, policy) -> None:
    # Waiting on the client from Friday 16:00 to Monday 10:00 is 2 business hours, not 66.
    rows = [
        ticket(
            created_at=london("2026-11-13 14:00"),
            pauses=[pause(london("2026-11-13 16:00"), london("2026-11-16 10:00"))],
        )
    ]
    res = run(calendars, policy, rows, london("2026-11-16 12:00"))["T1", "RESOLUTION"]
    assert res["elapsed_seconds"] == 4 * H  # Fri 14–16 and Mon 10–12
    assert res["deadline"] == london("2026-11-17 16:00")
    fr = run(calendars, policy, rows, london("2026-11-16 12:00"))["T1", "FIRST_RESPONSE"]
    assert fr["elapsed_seconds"] == 6 * H  # first response does not pause by default


def test_priority_change_retargets_from_creation_and_keeps_pauses(calendars, policy) -> None:
    base = dict(
        created_at=london("2026-11-16 09:00"),
        pauses=[pause(london("2026-11-16 10:00"), london("2026-11-16 12:00"))],
    )
    now = london("2026-11-16 16:00")
    medium = run(calendars, policy, [ticket(priority="MEDIUM", **base)], now)["T1", "RESOLUTION"]
    high = run(calendars, policy, [ticket(priority="HIGH", **base)], now)["T1", "RESOLUTION"]
    assert medium["elapsed_seconds"] == high["elapsed_seconds"] == 5 * H
    assert high["target_seconds"] == 16 * H and high["deadline"] == london("2026-11-18 11:00")
    assert high["status"] == "ON_TRACK"


def test_ticket_raised_friday_evening_counts_from_monday_opening(calendars, policy) -> None:
    rows = [ticket(created_at=london("2026-11-13 18:00"))]
    out = run(calendars, policy, rows, london("2026-11-16 00:00"))["T1", "FIRST_RESPONSE"]
    assert out["elapsed_seconds"] == 0 and out["status"] == "ON_TRACK"
    assert out["deadline"] == london("2026-11-16 17:00")


def test_overnight_shift_calendar(calendars, policy) -> None:
    created = datetime(2026, 11, 17, 23, 0, tzinfo=NEW_YORK)  # Tuesday 23:00
    rows = [ticket(priority="LOW", job_type="night-ops", created_at=created)]
    out = run(calendars, policy, rows, created)["T1", "FIRST_RESPONSE"]
    assert out["deadline"] == datetime(2026, 11, 18, 3, 0, tzinfo=NEW_YORK)
    # Friday 05:00: 1 h left in Thursday's shift, the rest in Friday's, past midnight.
    friday = datetime(2026, 11, 20, 5, 0, tzinfo=NEW_YORK)
    out = run(
        calendars, policy, [ticket(priority="LOW", job_type="night-ops", created_at=friday)], friday
    )["T1", "FIRST_RESPONSE"]
    assert out["deadline"] == datetime(2026, 11, 21, 1, 0, tzinfo=NEW_YORK)


def test_straight_from_paused_to_resolved(calendars, policy) -> None:
    rows = [
        ticket(
            created_at=london("2026-11-16 09:00"),
            pauses=[pause(london("2026-11-16 11:00"), None)],
            resolved_at=london("2026-11-16 15:00"),
        )
    ]
    res = run(calendars, policy, rows, london("2026-11-17 09:00"))["T1", "RESOLUTION"]
    assert res["elapsed_seconds"] == 2 * H and res["status"] == "MET"
    assert res["stopped_at"] == london("2026-11-16 15:00")


def test_paused_status_and_a_pause_after_a_breach_stays_breached(calendars) -> None:
    policy = Policy.from_json(
        {
            "name": "p",
            "rules": [
                {
                    "metrics": {
                        "RESOLUTION": {
                            "target": "1h",
                            "calendar": "24x7",
                            "escalation": [
                                {"at_fraction": "0.5", "notify": "a"},
                                {"after_deadline": 600, "notify": "b"},
                            ],
                        }
                    }
                }
            ],
        }
    )
    created = datetime(2026, 11, 16, 9, tzinfo=UTC)
    paused_early = [
        ticket(created_at=created, pauses=[pause(created + timedelta(minutes=20), None)])
    ]
    out = run(calendars, policy, paused_early, created + timedelta(hours=3))["T1", "RESOLUTION"]
    assert out["status"] == "PAUSED" and out["deadline"] is None
    assert out["elapsed_seconds"] == 20 * 60 and out["next_escalation_at"] is None
    paused_late = [ticket(created_at=created, pauses=[pause(created + timedelta(hours=2), None)])]
    out = run(calendars, policy, paused_late, created + timedelta(hours=3))["T1", "RESOLUTION"]
    assert out["status"] == "BREACHED" and out["breach_seconds"] == H
    assert out["escalation_level"] == 2


def test_boundaries_stop_at_deadline_is_met_now_at_deadline_is_breached(calendars, policy) -> None:
    created = london("2026-11-16 09:00")
    deadline = london("2026-11-16 17:00")
    met = run(
        calendars,
        policy,
        [ticket(created_at=created, first_response_at=deadline)],
        deadline + timedelta(hours=1),
    )["T1", "FIRST_RESPONSE"]
    assert met["status"] == "MET" and met["breach_seconds"] is None
    due = run(calendars, policy, [ticket(created_at=created)], deadline)["T1", "FIRST_RESPONSE"]
    assert due["status"] == "BREACHED" and due["breach_seconds"] == 0
    assert due["breached_at"] == deadline


def test_escalation_steps_fraction_offset_and_stop_on_the_step(calendars, policy) -> None:
    created = datetime(2026, 11, 16, 9, tzinfo=UTC)
    rows = [ticket(priority="P1", created_at=created)]
    out = run(calendars, policy, rows, created + timedelta(hours=2))["T1", "FIRST_RESPONSE"]
    assert out["escalation_level"] == 1 and out["escalation_notify"] == "queue:service-desk"
    assert out["next_escalation_at"] == created + timedelta(hours=4)
    out = run(calendars, policy, rows, created + timedelta(hours=4, minutes=29))
    assert out["T1", "FIRST_RESPONSE"]["escalation_level"] == 2
    assert out["T1", "FIRST_RESPONSE"]["next_escalation_at"] == created + timedelta(
        hours=4, minutes=30
    )
    responded = [
        ticket(priority="P1", created_at=created, first_response_at=created + timedelta(hours=2))
    ]
    out = run(calendars, policy, responded, created + timedelta(hours=6))["T1", "FIRST_RESPONSE"]
    assert out["escalation_level"] == 0 and out["status"] == "MET"  # the stop wins the tie
    assert out["next_escalation_at"] is None


def test_zero_target_is_due_at_creation(calendars) -> None:
    policy = Policy.from_json(
        {
            "name": "z",
            "rules": [{"metrics": {"FIRST_RESPONSE": {"target": 0, "calendar": "office"}}}],
        }
    )
    created = london("2026-11-14 10:00")  # Saturday: closed
    out = run(
        calendars,
        policy,
        [ticket(created_at=created), ticket("T2", created_at=created, first_response_at=created)],
        created,
    )
    assert out["T1", "FIRST_RESPONSE"]["deadline"] == created
    assert out["T1", "FIRST_RESPONSE"]["status"] == "BREACHED"
    assert out["T2", "FIRST_RESPONSE"]["status"] == "MET"


def test_reopen_pauses_between_resolution_and_reopening(calendars, policy) -> None:
    rows = [
        ticket(
            created_at=london("2026-11-16 09:00"),
            pauses=[pause(london("2026-11-16 11:00"), london("2026-11-17 11:00"), "RESOLVED")],
            resolved_at=london("2026-11-17 12:00"),
        )
    ]
    res = run(calendars, policy, rows, london("2026-11-18 09:00"))["T1", "RESOLUTION"]
    assert res["elapsed_seconds"] == 3 * H and res["status"] == "MET"


def test_overlapping_and_unsorted_pauses_count_once(calendars, policy) -> None:
    rows = [
        ticket(
            created_at=london("2026-11-16 09:00"),
            pauses=[
                pause(london("2026-11-16 13:00"), london("2026-11-16 15:00")),
                pause(london("2026-11-16 10:00"), london("2026-11-16 14:00")),
                pause(london("2026-11-16 11:00"), london("2026-11-16 12:00"), "ON_HOLD_VENDOR"),
            ],
        )
    ]
    res = run(calendars, policy, rows, london("2026-11-16 17:00"))["T1", "RESOLUTION"]
    assert res["elapsed_seconds"] == 3 * H


def test_unmatched_tickets_are_reported_not_dropped(calendars, policy) -> None:
    rows = [
        ticket(priority="LOW", created_at=london("2026-11-16 09:00"), client_id="acme"),
        ticket("T2", created_at=london("2026-11-16 09:00"), policy="missing"),
    ]
    evaluation = sla.evaluate(
        pa.Table.from_pylist(rows, schema=TICKETS),
        {"seed": policy},
        calendars,
        london("2026-11-16 10:00"),
    )
    reasons = {r["ticket_id"]: r["reason"] for r in evaluation.unmatched.to_pylist()}
    assert "no rule of policy 'seed' matches priority='LOW'" in reasons["T1"]
    assert "'missing' is not among the policies" in reasons["T2"]
    assert evaluation.results.num_rows == 0


def test_bad_tickets_are_named(calendars, policy) -> None:
    created = london("2026-11-16 09:00")
    with pytest.raises(TicketError, match=r"ticket 'T9': resolved_at .* is before created_at"):
        run(
            calendars,
            policy,
            [ticket("T9", created_at=created, resolved_at=created - timedelta(hours=1))],
            created,
        )
    with pytest.raises(TicketError, match=r"ticket 'T8': pauses.end .* is before its start"):
        run(
            calendars,
            policy,
            [
                ticket(
                    "T8", created_at=created, pauses=[pause(created, created - timedelta(hours=1))]
                )
            ],
            created,
        )
    with pytest.raises(TicketError, match=r"ticket 'T7': created_at .* outside"):
        run(calendars, policy, [ticket("T7", created_at=datetime(1999, 1, 1, tzinfo=UTC))], created)


def test_policy_validation_names_rule_field_and_value() -> None:
    bad = {
        "name": "x",
        "rules": [
            {"metrics": {"RESOLUTION": {"target": "8h", "calendar": "office"}}},
            {
                "match": {"priority": "URGENT"},
                "metrics": {"RESOLUTION": {"target": "8h", "calendar": "c"}},
            },
        ],
    }
    with pytest.raises(PolicyError) as err:
        Policy.from_json(bad)
    assert err.value.field == "rules[1].match.priority" and err.value.value == "URGENT"
    with pytest.raises(PolicyError, match=r"rules\[0\].metrics.RESOLUTION.warning: '1.5'"):
        Policy.from_json(
            {
                "name": "x",
                "rules": [
                    {"metrics": {"RESOLUTION": {"target": 60, "calendar": "c", "warning": "1.5"}}}
                ],
            }
        )
    with pytest.raises(PolicyError, match=r"escalation\[1\].at_fraction"):
        Policy.from_json(
            {
                "name": "x",
                "rules": [
                    {
                        "metrics": {
                            "RESOLUTION": {
                                "target": 60,
                                "calendar": "c",
                                "escalation": [
                                    {"at_fraction": "0.75", "notify": "a"},
                                    {"at_fraction": "0.5", "notify": "b"},
                                ],
                            }
                        }
                    }
                ],
            }
        )


def test_policy_json_round_trip(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "policy.json"
    policy.save(path)
    assert Policy.load(path) == policy


def test_same_answer_every_time_in_any_order_and_thread_count(calendars, policy) -> None:
    rng = np.random.default_rng(3)
    base = int(london("2026-11-02 00:00").timestamp())
    rows = []
    for i in range(40_000):
        created = base + int(rng.integers(0, 20 * 86_400))
        rows.append(
            ticket(
                f"T{i}",
                priority=["P1", "P2", "P3"][i % 3],
                created_at=datetime.fromtimestamp(created, UTC),
                first_response_at=datetime.fromtimestamp(
                    created + int(rng.integers(0, 86_400)), UTC
                )
                if i % 2
                else None,
            )
        )
    table = pa.Table.from_pylist(rows, schema=TICKETS)
    now = london("2026-11-21 12:00")
    one = sla.evaluate(table, policy, calendars, now, threads=1).results
    two = sla.evaluate(table, policy, calendars, now, threads=2).results
    assert one.equals(two)
    shuffled = table.take(pa.array(rng.permutation(table.num_rows)))
    again = sla.evaluate(shuffled, policy, calendars, now).results

    def by_key(results: pa.Table) -> dict:
        return {(r["ticket_id"], r["metric"]): r for r in results.to_pylist()}

    assert by_key(again) == by_key(one)


def test_parquet_in_arrow_out(tmp_path: Path, calendars, policy) -> None:
    rows = [ticket(created_at=london("2026-11-16 09:00"))]
    path = tmp_path / "tickets.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=TICKETS), path)
    evaluation = sla.evaluate(path, policy, calendars, london("2026-11-16 10:00"))
    assert evaluation.results.schema.equals(sla.SLA_RESULTS)
    assert (
        evaluation.results.schema.metadata[b"effigate.tzdata"] == evaluation.tzdata_version.encode()
    )


def _report_fixture(calendars: CalendarSet, policy: Policy) -> sla.Evaluation:
    created = london("2026-11-16 09:00")
    rows = []
    # HIGH first responses after 1, 2, 3, 4, 5 business hours; the 8 h target is met by all.
    for k in range(1, 6):
        rows.append(
            ticket(
                f"H{k}",
                created_at=created,
                client_id="acme",
                assignee="ana",
                first_response_at=created + timedelta(hours=k),
            )
        )
    # CRITICAL: one met (3 h), one breached (5 h), one open.
    for k, hours in enumerate([3, 5, None]):
        rows.append(
            ticket(
                f"C{k}",
                priority="P1",
                created_at=created,
                client_id="zen",
                assignee="bo",
                first_response_at=None if hours is None else created + timedelta(hours=hours),
            )
        )
    return sla.evaluate(
        pa.Table.from_pylist(rows, schema=TICKETS), policy, calendars, created + timedelta(hours=6)
    )


def test_hit_rates_percentiles_at_risk_and_recommended_targets(calendars, policy) -> None:
    evaluation = _report_fixture(calendars, policy)
    rates = {(r["priority"], r["metric"]): r for r in sla.hit_rates(evaluation).to_pylist()}
    crit = rates["CRITICAL", "FIRST_RESPONSE"]
    assert (crit["met"], crit["breached"], crit["open"]) == (1, 2, 1)  # C2: open, breached
    assert crit["hit_rate"] == pytest.approx(1 / 3)
    assert rates["HIGH", "FIRST_RESPONSE"]["hit_rate"] == 1.0
    by_agent = {
        (r["assignee"], r["metric"]): r
        for r in sla.hit_rates(evaluation, by="assignee").to_pylist()
    }
    assert by_agent["ana", "FIRST_RESPONSE"]["met"] == 5
    pct = {(r["priority"], r["metric"]): r for r in sla.percentiles(evaluation).to_pylist()}
    high = pct["HIGH", "FIRST_RESPONSE"]
    assert (high["count"], high["p50"], high["p75"], high["p95"]) == (5, 3 * H, 4 * H, 4.8 * H)
    risky = sla.at_risk(evaluation).to_pylist()
    assert [(r["ticket_id"], r["metric"], r["status"]) for r in risky][:1] == [
        ("C2", "FIRST_RESPONSE", "BREACHED")
    ]
    assert {(r["ticket_id"], r["metric"]) for r in risky} >= {("C2", "RESOLUTION")}
    rec = {
        (r["priority"], r["metric"]): r
        for r in sla.recommended_targets(evaluation, days=30).to_pylist()
    }
    assert rec["HIGH", "FIRST_RESPONSE"]["recommended_seconds"] == 4 * H


def test_replay_reports_the_difference(calendars, policy) -> None:
    proposed = Policy.from_json(
        {
            **SEED_POLICY,
            "name": "lenient",
            "rules": [
                {
                    "match": {"priority": "CRITICAL"},
                    "metrics": {"FIRST_RESPONSE": {"target": "6h", "calendar": "24x7"}},
                },
                *SEED_POLICY["rules"][1:],
            ],
        }
    )
    created = london("2026-11-16 09:00")
    rows = [
        ticket(
            f"C{k}",
            priority="P1",
            created_at=created,
            first_response_at=created + timedelta(hours=h),
        )
        for k, h in enumerate([3, 5])
    ]
    table = pa.Table.from_pylist(rows, schema=TICKETS)
    out = {
        (r["priority"], r["metric"]): r
        for r in sla.replay(
            table, policy, proposed, calendars, created + timedelta(hours=7)
        ).to_pylist()
    }
    fr = out["CRITICAL", "FIRST_RESPONSE"]
    assert (fr["hit_rate_current"], fr["hit_rate_proposed"], fr["hit_rate_change"]) == (
        0.5,
        1.0,
        0.5,
    )
    assert fr["breached_change"] == -1


def test_breach_records_once_per_breach_with_severity(calendars, policy) -> None:
    created = london("2026-11-16 09:00")
    rows = [
        ticket(
            "C1",
            priority="P1",
            created_at=created,
            client_id="acme",
            contract_id="K-7",
            first_response_at=created + timedelta(hours=4, minutes=30),
        )
    ]
    evaluation = sla.evaluate(
        pa.Table.from_pylist(rows, schema=TICKETS), policy, calendars, created + timedelta(hours=20)
    )
    records = sla.breach_records(evaluation).to_pylist()
    by_id = {r["breach_id"]: r for r in records}
    assert set(by_id) == {"C1:FIRST_RESPONSE", "C1:RESOLUTION"}
    fr = by_id["C1:FIRST_RESPONSE"]
    assert fr["breach_seconds"] == 1800 and fr["severity"] == "MINOR"
    assert fr["contract_id"] == "K-7" and fr["priority"] == "CRITICAL"
    assert by_id["C1:RESOLUTION"]["severity"] == "SEVERE"  # 12 h past an 8 h target


def test_any_timestamp_unit_and_zone_naive_refused(calendars, policy) -> None:
    created = datetime(2026, 11, 16, 9, 0, 0, 750_000, tzinfo=LONDON)
    table = pa.table(
        {
            "ticket_id": ["T1"],
            "priority": ["HIGH"],
            "created_at": pa.array([created], pa.timestamp("ms", tz="America/Chicago")),
        }
    )
    out = sla.evaluate(table, policy, calendars, london("2026-11-16 10:00")).results.to_pylist()
    assert out[0]["elapsed_seconds"] == 3600  # 09:00:00.750 floors to 09:00:00
    naive = pa.table(
        {
            "ticket_id": ["T1"],
            "priority": ["HIGH"],
            "created_at": pa.array([datetime(2026, 11, 16, 9)], pa.timestamp("s")),
        }
    )
    with pytest.raises(EffigateError, match=r"created_at.*without a time zone"):
        sla.evaluate(naive, policy, calendars, london("2026-11-16 10:00"))
