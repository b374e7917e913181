"""The whole ticket through a real server: generated tickets with support levels, job types,
after-hours cover and their change events evaluate through the service (GetTicketStatus,
Recompute, Compliance) exactly as ``sla.evaluate`` does in this process on tickets built here
from what was sent; the contract's scope refuses values (FAILED_PRECONDITION); bad values are
INVALID_ARGUMENT naming the field; the client and the CLI round-trip every field."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pyarrow as pa

from effigate_client import Client, billing_pb2, catalog_pb2, sla_pb2, tickets_pb2, to_timestamp
from effigate_engine import Calendar, CalendarSet, sla
from tests.e2e.support import SAMPLES, at, refused
from tests.e2e.test_cli import effigate

K = tickets_pb2
NOW = at("2026-11-21T00:00+00:00")
MID = at("2026-11-12T00:00+00:00")
POLICY = {
    "name": "whole-ticket",
    "rules": [
        {
            "name": "solution architects",
            "match": {"support_level": "SA"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "20m", "calendar": "london-24x7"},
                "RESOLUTION": {"target": "5h", "calendar": "london-24x7"},
            },
        },
        {
            "name": "network escalations",
            "match": {"job_type": ["network"], "support_level": ["L2", "L3"]},
            "metrics": {
                "FIRST_RESPONSE": {"target": "30m", "calendar": "sydney-business-hours"},
                "RESOLUTION": {"target": "6h", "calendar": "sydney-business-hours"},
            },
        },
        {
            "name": "urgent with after-hours cover",
            "match": {"after_hours": True, "priority": ["P1", "P2"]},
            "metrics": {
                "FIRST_RESPONSE": {"target": "1h", "calendar": "london-24x7"},
                "RESOLUTION": {"target": "10h", "calendar": "london-24x7"},
            },
        },
        {
            "name": "critical",
            "match": {"priority": "CRITICAL"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "2h", "calendar": "sydney-business-hours"},
                "RESOLUTION_PLAN": {"target": "4h", "calendar": "sydney-business-hours"},
                "RESOLUTION": {"target": "9h", "calendar": "sydney-business-hours"},
            },
        },
        {
            "name": "databases",
            "match": {"job_type": "database"},
            "metrics": {
                "FIRST_RESPONSE": {"target": "3h", "calendar": "sydney-business-hours"},
                "RESOLUTION": {"target": "20h", "calendar": "sydney-business-hours"},
            },
        },
        {
            "name": "everything else",
            "metrics": {
                "FIRST_RESPONSE": {
                    "target": "8h",
                    "calendar": "sydney-business-hours",
                    "warning": "0.6",
                },
                "RESOLUTION": {"target": "30h", "calendar": "sydney-business-hours"},
            },
        },
    ],
}
LEVELS = [None, "L1", "L2", "L3", "SA"]
JOBS = [None, "network", "database", "endpoint"]
PRIORITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "P1", "P3"]


@dataclass
class Sent:
    """What was sent for one ticket: its creation and its events ``(kind, at, extra)``."""

    ticket_id: str
    priority: str
    created_at: datetime
    support_level: str | None
    job_type: str | None
    after_hours: bool
    assignee: str | None
    events: list[tuple[int, datetime, dict[str, Any]]] = field(default_factory=list)


def _generate(rng: random.Random, n: int) -> list[Sent]:
    start = at("2026-11-02T20:00+00:00")
    tickets = []
    for i in range(n):
        created = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 17))
        sent = Sent(
            f"W-{i:04d}",
            rng.choice(PRIORITIES),
            created,
            rng.choice(LEVELS),
            rng.choice(JOBS),
            rng.random() < 0.4,
            rng.choice([None, "agent-1", "agent-2"]),
        )
        t, state = created, "OPEN"
        for _ in range(rng.randint(0, 8)):
            t += timedelta(minutes=rng.choice([5, 20, 45, 90, 240, 600, 1_440, 2_880]))
            if state == "PAUSED":
                kind = rng.choice([K.RESUMED, K.RESOLVED, K.SUPPORT_LEVEL_CHANGED])
            elif state == "RESOLVED":
                kind = rng.choice([K.REOPENED, K.JOB_TYPE_CHANGED])
            else:
                kind = rng.choice(
                    [
                        K.RESPONDED,
                        K.PLAN_PROVIDED,
                        K.PAUSED,
                        K.RESOLVED,
                        K.PRIORITY_CHANGED,
                        K.SUPPORT_LEVEL_CHANGED,
                        K.SUPPORT_LEVEL_CHANGED,
                        K.JOB_TYPE_CHANGED,
                        K.JOB_TYPE_CHANGED,
                        K.ASSIGNED,
                        K.QUEUE_CHANGED,
                        K.TAGS_CHANGED,
                    ]
                )
            extra: dict[str, Any] = {}
            if kind == K.PAUSED:
                extra, state = {"status": "WAITING_ON_CLIENT"}, "PAUSED"
            elif kind == K.RESOLVED:
                state = "RESOLVED"
            elif kind in (K.RESUMED, K.REOPENED):
                state = "OPEN"
            elif kind == K.PRIORITY_CHANGED:
                extra = {"priority": rng.choice(PRIORITIES)}
            elif kind == K.SUPPORT_LEVEL_CHANGED:
                extra = {"support_level": rng.choice(LEVELS[1:]).lower()}
            elif kind == K.JOB_TYPE_CHANGED:
                extra = {"job_type": rng.choice(JOBS[1:])}
            elif kind == K.ASSIGNED:
                extra = {"assignee": rng.choice(["", "agent-1", "agent-3"])}
            elif kind == K.QUEUE_CHANGED:
                extra = {"queue": rng.choice(["network", "triage"])}
            elif kind == K.TAGS_CHANGED:
                extra = {"tags": rng.sample(["vip", "outage", "onsite"], rng.randint(0, 2))}
            sent.events.append((kind, t, extra))
        tickets.append(sent)
    return tickets


_PRIORITY_NAMES = {"P1": "CRITICAL", "P2": "HIGH", "P3": "MEDIUM", "P4": "LOW"}


def _reference_row(sent: Sent, client_id: int, now: datetime) -> dict[str, Any]:
    """The SLA TICKETS row of a ticket as sent, as known at ``now`` (built here, not read)."""
    priority, level, job, assignee = sent.priority, sent.support_level, sent.job_type, sent.assignee
    first_response = plan = resolved = None
    pauses: list[dict[str, Any]] = []
    paused: tuple[datetime, str] | None = None
    for kind, when, extra in sent.events:
        if when > now:
            break
        if kind == K.RESPONDED:
            first_response = first_response or when
        elif kind == K.PLAN_PROVIDED:
            plan = plan or when
        elif kind == K.PAUSED:
            paused = (when, extra["status"])
        elif kind == K.RESUMED:
            assert paused is not None
            pauses.append({"start": paused[0], "end": when, "status": paused[1]})
            paused = None
        elif kind == K.RESOLVED:
            if paused is not None:
                pauses.append({"start": paused[0], "end": when, "status": paused[1]})
                paused = None
            resolved = when
        elif kind == K.REOPENED:
            assert resolved is not None
            pauses.append({"start": resolved, "end": when, "status": "RESOLVED"})
            resolved = None
        elif kind == K.PRIORITY_CHANGED:
            priority = extra["priority"]
        elif kind == K.SUPPORT_LEVEL_CHANGED:
            level = extra["support_level"].upper()
        elif kind == K.JOB_TYPE_CHANGED:
            job = extra["job_type"]
        elif kind == K.ASSIGNED:
            assignee = extra["assignee"] or None
    if paused is not None:
        pauses.append({"start": paused[0], "end": None, "status": paused[1]})
    return {
        "ticket_id": sent.ticket_id,
        "client_id": str(client_id),
        "priority": _PRIORITY_NAMES.get(priority, priority),
        "support_level": level,
        "job_type": job,
        "after_hours": sent.after_hours,
        "assignee": assignee,
        "created_at": sent.created_at,
        "first_response_at": first_response,
        "resolution_plan_at": plan,
        "resolved_at": resolved,
        "pauses": pauses,
    }


def _setup(client: Client) -> tuple[int, int]:
    calendars = {}
    for name in ("sydney-business-hours", "london-24x7"):
        calendars[name] = client.catalog.CreateCalendar(
            catalog_pb2.CreateCalendarRequest(
                name=name, body_json=(SAMPLES / "calendars" / f"{name}.json").read_text()
            )
        ).id
    policy = client.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name="whole-ticket",
            calendar_id=calendars["sydney-business-hours"],
            body_json=json.dumps(POLICY),
        )
    ).id
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    return policy, acme


def _send(client: Client, acme: int, sent: Sent) -> None:
    client.tickets.CreateTicket(
        K.CreateTicketRequest(
            id=sent.ticket_id,
            client_id=acme,
            priority=sent.priority,
            created_at=to_timestamp(sent.created_at),
            support_level=sent.support_level or "",
            job_type=sent.job_type or "",
            after_hours=sent.after_hours,
            assignee=sent.assignee or "",
        )
    )
    for n, (kind, when, extra) in enumerate(sent.events):
        client.tickets.RecordEvent(
            K.RecordEventRequest(
                event_id=f"{sent.ticket_id}/{n}",
                ticket_id=sent.ticket_id,
                kind=kind,
                occurred_at=to_timestamp(when),
                **extra,
            )
        )


def _results(metrics: Any) -> dict[tuple[str, str], tuple]:
    out = {}
    for m in metrics:
        out[(m.ticket_id, m.metric)] = (
            m.rule,
            m.target_seconds,
            m.calendar,
            m.status,
            m.deadline.ToDatetime(tzinfo=UTC) if m.HasField("deadline") else None,
            m.elapsed_seconds,
            m.breach_seconds if m.HasField("breach_seconds") else None,
            m.stopped_at.ToDatetime(tzinfo=UTC) if m.HasField("stopped_at") else None,
        )
    return out


def _expected(results: pa.Table) -> dict[tuple[str, str], tuple]:
    out = {}
    for r in results.to_pylist():
        out[(r["ticket_id"], str(r["metric"]))] = (
            r["rule"],
            r["target_seconds"],
            str(r["calendar"]),
            str(r["status"]),
            r["deadline"],
            r["elapsed_seconds"],
            r["breach_seconds"],
            r["stopped_at"],
        )
    return out


def test_generated_tickets_evaluate_through_the_service_as_in_process(client: Client) -> None:
    """300 generated tickets, sent through the API; at two instants (mid-way, when many later
    level and job-type changes are not known yet, and at the end) the served statuses, the
    recompute's counts and the compliance report by support level and job type equal the
    engine's on the tickets as sent, built here."""
    policy_id, acme = _setup(client)
    sent = _generate(random.Random(20261207), 300)
    for ticket in sent:
        _send(client, acme, ticket)
    kinds = Counter(k for t in sent for k, _, _ in t.events)
    assert kinds[K.SUPPORT_LEVEL_CHANGED] > 50 and kinds[K.JOB_TYPE_CHANGED] > 50
    calendars = CalendarSet(
        [
            Calendar.load(SAMPLES / "calendars" / "sydney-business-hours.json"),
            Calendar.load(SAMPLES / "calendars" / "london-24x7.json"),
        ]
    )
    policy = sla.Policy.from_json(POLICY)
    for now in (MID, NOW):
        known = [t for t in sent if t.created_at <= now]
        later = [t for t in known if any(when > now for _, when, _ in t.events)]
        assert len(later) >= 10, now  # the store's rows already hold values not known then
        reference = pa.Table.from_pylist(
            [_reference_row(t, acme, now) for t in known], schema=sla.TICKETS
        )
        evaluation = sla.evaluate(reference, policy, calendars, now)
        expected = _expected(evaluation.results)
        # every rule is reached by some ticket
        assert {v[0] for v in expected.values()} == set(range(len(POLICY["rules"])))

        served: dict[tuple[str, str], tuple] = {}
        for ticket in known:
            reply = client.tickets.GetTicketStatus(
                K.GetTicketStatusRequest(
                    ticket_id=ticket.ticket_id, policy_id=policy_id, at=to_timestamp(now)
                )
            )
            served.update(_results(reply.metrics))
        assert served == expected

        recomputed = client.sla.Recompute(
            sla_pb2.RecomputeRequest(policy_id=policy_id, now=to_timestamp(now))
        )
        statuses = Counter((key[1], value[3]) for key, value in expected.items())
        assert recomputed.tickets == len(known) and recomputed.failed_count == 0
        assert {(c.metric, c.status): c.count for c in recomputed.counts} == dict(statuses)

        by = ["support_level", "job_type"]
        report = client.report(
            client.reports.Compliance(
                sla_pb2.ReportRequest(policy_id=policy_id, now=to_timestamp(now), group_by=by)
            )
        )
        local = sla.hit_rates(evaluation, by=by)
        order = [(k, "ascending") for k in [*by, "metric"]]
        assert report.sort_by(order).to_pylist() == local.sort_by(order).to_pylist()


def test_ticket_fields_round_trip_through_the_client(client: Client) -> None:
    _, acme = _setup(client)
    created = client.tickets.CreateTicket(
        K.CreateTicketRequest(
            id="RT-1",
            client_id=acme,
            priority="P2",
            created_at=to_timestamp(at("2026-11-20T01:00+00:00")),
            support_level="l2",
            job_type=" network ",
            after_hours=True,
            channel="email",
            subject="VPN down at the Leeds office",
            requester="ana@it.example.com",
            queue="network",
            assignee="agent-7",
            asset="FW-0001",
            tags=["vip", "outage", "vip"],
        )
    )
    assert (created.support_level, created.job_type, created.channel) == ("L2", "network", "EMAIL")
    assert list(created.tags) == ["outage", "vip"] and created.after_hours
    fetched = client.tickets.GetTicket(K.GetTicketRequest(ticket_id="RT-1"))
    assert fetched == created
    listed = client.tickets.ListTickets(K.ListTicketsRequest()).tickets
    assert list(listed) == [created]
    changed = client.tickets.RecordEvent(
        K.RecordEventRequest(
            event_id="RT-1/1",
            ticket_id="RT-1",
            kind=K.TAGS_CHANGED,
            occurred_at=to_timestamp(at("2026-11-20T02:00+00:00")),
            tags=["onsite"],
        )
    )
    assert list(changed.tags) == ["onsite"] and changed.subject == created.subject
    # an identical resend returns the ticket; other content is refused
    again = client.tickets.CreateTicket(
        K.CreateTicketRequest(
            id="RT-1",
            client_id=acme,
            priority="P2",
            created_at=to_timestamp(at("2026-11-20T01:00+00:00")),
            after_hours=True,
            channel="EMAIL",
            subject="VPN down at the Leeds office",
            requester="ana@it.example.com",
            asset="FW-0001",
        )
    )
    assert again == changed
    message = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.tickets.CreateTicket,
        K.CreateTicketRequest(
            id="RT-1",
            client_id=acme,
            priority="P2",
            created_at=to_timestamp(at("2026-11-20T01:00+00:00")),
            subject="another subject",
        ),
    )
    assert "already exists" in message


def test_bad_ticket_fields_are_invalid_arguments_naming_the_field(client: Client) -> None:
    _, acme = _setup(client)

    def create(**fields: Any) -> str:
        return refused(
            grpc.StatusCode.INVALID_ARGUMENT,
            client.tickets.CreateTicket,
            K.CreateTicketRequest(
                id="BAD-1",
                client_id=acme,
                priority="HIGH",
                created_at=to_timestamp(NOW),
                **fields,
            ),
        )

    assert create(support_level="L4") == "support_level: 'L4' is not one of L1, L2, L3, SA"
    assert create(channel="fax") == (
        "channel: 'fax' is not one of EMAIL, PORTAL, PHONE, CHAT, MONITORING, API"
    )
    assert create(requester="nobody") == (
        "requester: 'nobody' is not an e-mail address (local@domain)"
    )
    assert create(job_type="x" * 65).endswith("is longer than 64 characters")
    assert create(subject="s" * 1_001).startswith("subject: ")
    assert "longer than 1,000 characters" in create(subject="s" * 1_001)
    assert create(tags=["a,b"]) == "tags[0]: 'a,b' has a comma (tags are comma-joined)"
    assert create(tags=[f"t{i}" for i in range(101)]).startswith(
        "tags: 101 elements is more than 100"
    )
    client.tickets.CreateTicket(
        K.CreateTicketRequest(
            id="OK-1", client_id=acme, priority="HIGH", created_at=to_timestamp(NOW)
        )
    )
    message = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.tickets.RecordEvent,
        K.RecordEventRequest(
            event_id="OK-1/1",
            ticket_id="OK-1",
            kind=K.SUPPORT_LEVEL_CHANGED,
            occurred_at=to_timestamp(NOW),
        ),
    )
    assert message == "support_level: is required for SUPPORT_LEVEL_CHANGED"


def _scoped_contract(client: Client, acme: int) -> int:
    terms = {"scope": {"support_levels": ["L1", "L2"], "job_types": ["network"]}}
    return client.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=acme,
            contract_type="HOURLY",
            currency="USD",
            starts_on="2026-01-01",
            terms_json=json.dumps(terms),
        )
    ).id


def test_the_contract_scope_refuses_levels_and_job_types_it_does_not_allow(
    client: Client,
) -> None:
    _, acme = _setup(client)
    contract = _scoped_contract(client, acme)

    def ticket(ticket_id: str, **fields: Any) -> K.CreateTicketRequest:
        return K.CreateTicketRequest(
            id=ticket_id,
            client_id=acme,
            contract_id=contract,
            priority="HIGH",
            created_at=to_timestamp(NOW),
            **fields,
        )

    refusal = grpc.StatusCode.FAILED_PRECONDITION
    message = refused(refusal, client.tickets.CreateTicket, ticket("SC-1", support_level="L3"))
    assert message == f"support_level: 'L3' is not allowed by contract {contract} (allowed: L1, L2)"
    message = refused(refusal, client.tickets.CreateTicket, ticket("SC-1", job_type="desktop"))
    assert message == (
        f"job_type: 'desktop' is not allowed by contract {contract} (allowed: network)"
    )
    client.tickets.CreateTicket(ticket("SC-1", support_level="L1", job_type="network"))
    message = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.tickets.RecordEvent,
        K.RecordEventRequest(
            event_id="SC-1/1",
            ticket_id="SC-1",
            kind=K.SUPPORT_LEVEL_CHANGED,
            occurred_at=to_timestamp(NOW + timedelta(hours=1)),
            support_level="sa",
        ),
    )
    assert message == f"support_level: 'SA' is not allowed by contract {contract} (allowed: L1, L2)"
    stored = client.tickets.GetTicket(K.GetTicketRequest(ticket_id="SC-1"))
    assert stored.support_level == "L1"
    rows = pa.table(
        {
            "id": ["SC-2", "SC-3"],
            "client_id": pa.array([acme, acme], pa.int64()),
            "contract_id": pa.array([contract, contract], pa.int64()),
            "priority": ["HIGH", "LOW"],
            "status": ["OPEN", "OPEN"],
            "created_at": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
            "first_response_at": pa.array([None, None], pa.timestamp("us", tz="UTC")),
            "resolved_at": pa.array([None, None], pa.timestamp("us", tz="UTC")),
            "support_level": ["L2", "L3"],
        }
    )
    message = refused(grpc.StatusCode.INVALID_ARGUMENT, client.ingest_tickets, rows)
    assert message == (
        f"tickets.support_level[1] (id 'SC-3'): 'L3' is not allowed by contract {contract}"
        " (allowed: L1, L2)"
    )
    summary = client.ingest_tickets(rows, skip_invalid_rows=True)
    assert summary.inserted == 1
    assert [(r.row, r.field) for r in summary.rejected_rows] == [(1, "tickets.support_level")]


def test_ticket_commands_round_trip_through_the_cli(service, client: Client, tenant) -> None:
    _, acme = _setup(client)
    env = {"EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": tenant.token}
    created = effigate(
        "ticket", "create", "CLI-W1", "--client", str(acme), "--priority", "P1",
        "--created-at", "2026-11-20T01:00:00+00:00", "--support-level", "l3",
        "--job-type", "network", "--after-hours", "--channel", "phone",
        "--subject", "Core switch down", "--requester", "ops@example.com",
        "--queue", "network", "--tag", "outage", "--tag", "vip", env=env,
    ).stdout  # fmt: skip
    lines = dict(line.split(":", 1) for line in created.splitlines())
    fields = {k.strip(): v.strip() for k, v in lines.items()}
    assert fields["priority"] == "CRITICAL" and fields["support level"] == "L3"
    assert fields["job type"] == "network" and fields["after hours"] == "yes"
    assert fields["channel"] == "PHONE" and fields["tags"] == "outage, vip"
    assert fields["assignee"] == "-"
    for _ in range(2):  # the same command twice records one event
        effigate(
            "ticket", "event", "CLI-W1", "assigned", "--assignee", "agent-4",
            "--at", "2026-11-20T02:00:00+00:00", env=env,
        )  # fmt: skip
    shown = effigate("ticket", "show", "CLI-W1", env=env).stdout
    assert "assignee:       agent-4" in shown
    stored = client.tickets.GetTicket(K.GetTicketRequest(ticket_id="CLI-W1"))
    assert (stored.assignee, stored.support_level, list(stored.tags)) == (
        "agent-4",
        "L3",
        ["outage", "vip"],
    )


def test_a_portal_token_raises_tickets_but_does_not_route_or_assign_them(
    service, client: Client, tenant
) -> None:
    _, acme = _setup(client)
    with Client(service.address, tenant.portal_token(acme), timeout=60) as portal:
        created = portal.tickets.CreateTicket(
            K.CreateTicketRequest(
                id="P-1",
                client_id=acme,
                priority="LOW",
                created_at=to_timestamp(NOW),
                support_level="L1",
                job_type="endpoint",
                channel="PORTAL",
                requester="bo@acme.example",
            )
        )
        assert (created.support_level, created.channel) == ("L1", "PORTAL")
        denied = grpc.StatusCode.PERMISSION_DENIED
        message = refused(
            denied,
            portal.tickets.CreateTicket,
            K.CreateTicketRequest(
                id="P-2", client_id=acme, priority="LOW", created_at=to_timestamp(NOW), queue="vip"
            ),
        )
        assert message.endswith("may not set a ticket's queue or assignee")
        for kind, extra in ((K.ASSIGNED, {"assignee": "me"}), (K.QUEUE_CHANGED, {"queue": "vip"})):
            refused(
                denied,
                portal.tickets.RecordEvent,
                K.RecordEventRequest(
                    event_id=f"P-1/{kind}",
                    ticket_id="P-1",
                    kind=kind,
                    occurred_at=to_timestamp(NOW + timedelta(minutes=5)),
                    **extra,
                ),
            )
        tagged = portal.tickets.RecordEvent(
            K.RecordEventRequest(
                event_id="P-1/tags",
                ticket_id="P-1",
                kind=K.TAGS_CHANGED,
                occurred_at=to_timestamp(NOW + timedelta(minutes=5)),
                tags=["printer"],
            )
        )
        assert list(tagged.tags) == ["printer"]
