"""As known at an instant, through a real server: GetTicketStatus(at) folds only the events at
or before ``at`` (priority changes and reopenings after it included), equals the status of a
ticket that only ever received those events, and GetTicketTimeline agrees with GetTicketStatus
at each instant it returns and a second before."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from effigate_client import Client, catalog_pb2, tickets_pb2, to_timestamp
from tests.e2e.support import SAMPLES, at

K = tickets_pb2
POLICY = {
    "name": "as-of",
    "rules": [
        {
            "match": {"priority": "HIGH"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "1h", "calendar": "london-24x7"},
                "RESOLUTION": {
                    "target": "10h",
                    "calendar": "london-24x7",
                    "escalation": [{"at_fraction": "0.5", "notify": "queue:desk"}],
                },
            },
        },
        {
            "metrics": {
                "FIRST_RESPONSE": {"target": "4h", "calendar": "london-24x7"},
                "RESOLUTION": {"target": "10h", "calendar": "london-24x7"},
            }
        },
    ],
}


def _setup(client: Client) -> tuple[int, int]:
    calendar = client.catalog.CreateCalendar(
        catalog_pb2.CreateCalendarRequest(
            name="london-24x7", body_json=(SAMPLES / "calendars" / "london-24x7.json").read_text()
        )
    ).id
    policy = client.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name="as-of", calendar_id=calendar, body_json=json.dumps(POLICY)
        )
    ).id
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    return policy, acme


def _ticket(client: Client, acme: int, ticket_id: str, created: datetime, events) -> None:
    client.tickets.CreateTicket(
        K.CreateTicketRequest(
            id=ticket_id, client_id=acme, priority="HIGH", created_at=to_timestamp(created)
        )
    )
    for n, (kind, when, extra) in enumerate(events):
        client.tickets.RecordEvent(
            K.RecordEventRequest(
                event_id=f"{ticket_id}:{n}",
                ticket_id=ticket_id,
                kind=kind,
                occurred_at=to_timestamp(when),
                **extra,
            )
        )


def _status(client: Client, policy: int, ticket_id: str, when: datetime) -> dict:
    reply = client.tickets.GetTicketStatus(
        K.GetTicketStatusRequest(ticket_id=ticket_id, policy_id=policy, at=to_timestamp(when))
    )
    out = {}
    for m in reply.metrics:
        out[m.metric] = (
            m.status,
            m.target_seconds,
            m.deadline.ToDatetime(tzinfo=UTC) if m.HasField("deadline") else None,
            m.elapsed_seconds,
            m.breach_seconds if m.HasField("breach_seconds") else None,
            m.escalation_level,
            m.stopped_at.ToDatetime(tzinfo=UTC) if m.HasField("stopped_at") else None,
        )
    return out


def test_a_later_priority_change_and_reopening_are_not_known_earlier(client: Client) -> None:
    """Created HIGH at 10:00 (first response due in 1 h), changed to LOW at 15:00: at 11:30 it
    was HIGH's 1 h target, BREACHED at 11:00. Resolved 12:00, reopened 14:00: at 13:00
    RESOLUTION was MET, deadline 20:00, elapsed 7,200 s."""
    policy, acme = _setup(client)
    day = at("2026-03-02T00:00+00:00")
    _ticket(
        client,
        acme,
        "INC-1",
        day + timedelta(hours=10),
        [
            (K.RESOLVED, day + timedelta(hours=12), {}),
            (K.REOPENED, day + timedelta(hours=14), {}),
            (K.PRIORITY_CHANGED, day + timedelta(hours=15), {"priority": "LOW"}),
        ],
    )
    early = _status(client, policy, "INC-1", day + timedelta(hours=11, minutes=30))
    assert early["FIRST_RESPONSE"][:2] == ("BREACHED", 3_600)
    assert early["FIRST_RESPONSE"][2] == day + timedelta(hours=11)
    mid = _status(client, policy, "INC-1", day + timedelta(hours=13))
    assert mid["RESOLUTION"][0] == "MET"
    assert mid["RESOLUTION"][2] == day + timedelta(hours=20)
    assert mid["RESOLUTION"][3] == 7_200
    late = _status(client, policy, "INC-1", day + timedelta(hours=16))
    assert late["FIRST_RESPONSE"][:2] == ("BREACHED", 4 * 3_600)
    assert late["RESOLUTION"][0] == "ON_TRACK"


def _history(rng: random.Random, start: datetime) -> list:
    """A valid random event sequence (10–30 minute steps), ending anywhere."""
    events, t, state = [], start, "OPEN"
    for _ in range(rng.randint(1, 7)):
        t += timedelta(minutes=rng.choice([10, 20, 30, 45, 90]))
        if state == "OPEN":
            kind = rng.choice([K.RESPONDED, K.PAUSED, K.RESOLVED, K.PRIORITY_CHANGED])
        elif state == "PAUSED":
            kind = rng.choice([K.RESUMED, K.RESOLVED])
        else:
            kind = K.REOPENED
        extra = {}
        if kind == K.PAUSED:
            extra, state = {"status": "WAITING_ON_CLIENT"}, "PAUSED"
        elif kind == K.PRIORITY_CHANGED:
            extra = {"priority": rng.choice(["LOW", "HIGH", "MEDIUM"])}
        elif kind == K.RESOLVED:
            state = "RESOLVED"
        elif kind in (K.RESUMED, K.REOPENED):
            state = "OPEN"
        events.append((kind, t, extra))
    return events


def test_full_history_at_t_equals_a_ticket_that_only_saw_the_events_up_to_t(
    client: Client,
) -> None:
    policy, acme = _setup(client)
    rng = random.Random(7)
    start = at("2026-03-02T09:00+00:00")
    compared = 0
    for n in range(6):
        created = start + timedelta(hours=6 * n)
        events = _history(rng, created)
        _ticket(client, acme, f"T{n}", created, events)
        instants = sorted(
            {created, *(e[1] for e in events), *(e[1] - timedelta(seconds=1) for e in events)}
            | {created + timedelta(minutes=rng.randint(0, 600)) for _ in range(4)}
        )
        for k, when in enumerate(instants):
            cut = [e for e in events if e[1] <= when]
            _ticket(client, acme, f"T{n}@{k}", created, cut)
            assert _status(client, policy, f"T{n}", when) == _status(
                client, policy, f"T{n}@{k}", when
            ), (n, when, events)
            compared += 1
    assert compared >= 40


def test_timeline_agrees_with_the_status_at_each_instant_and_a_second_before(
    client: Client,
) -> None:
    policy, acme = _setup(client)
    rng = random.Random(11)
    start = at("2026-03-02T09:00+00:00")
    for n in range(4):
        created = start + timedelta(hours=5 * n)
        _ticket(client, acme, f"TL{n}", created, _history(rng, created))
        until = created + timedelta(hours=14)
        reply = client.tickets.GetTicketTimeline(
            K.GetTicketTimelineRequest(
                ticket_id=f"TL{n}", policy_id=policy, until=to_timestamp(until)
            )
        )
        assert reply.entries
        last: dict[str, tuple] = {}
        for e in reply.entries:
            when = e.at.ToDatetime(tzinfo=UTC)
            deadline = e.deadline.ToDatetime(tzinfo=UTC) if e.HasField("deadline") else None
            state = (e.status, deadline, e.escalation_level)
            now = _status(client, policy, f"TL{n}", when)[e.metric]
            assert (now[0], now[2], now[5]) == state
            if e.metric in last:
                before = _status(client, policy, f"TL{n}", when - timedelta(seconds=1))[e.metric]
                assert (before[0], before[2], before[5]) == last[e.metric]
            last[e.metric] = state
