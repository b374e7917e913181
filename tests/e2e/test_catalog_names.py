"""Calendar and SLA-policy names through the real server: unique per tenant, versions with
history used by every evaluation, deletion refused while in use."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import grpc
import pyarrow as pa
import pytest

from effigate_client import (
    AsyncClient,
    Client,
    billing_pb2,
    catalog_pb2,
    sla_pb2,
    tickets_pb2,
    to_timestamp,
)
from effigate_server.process import ServiceProcess
from tests.e2e.support import SAMPLES, at, refused, standard_setup

T = TypeVar("T")

NINE_TO_FIVE = {
    "timezone": "UTC",
    "weekly": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in ("mon", "tue", "wed")],
}
SEVEN_TO_FIVE = {
    "timezone": "UTC",
    "weekly": [{"weekday": d, "start": "07:00", "end": "17:00"} for d in ("mon", "tue", "wed")],
}
MONDAY_6AM = at("2026-03-02T06:00:00+00:00")


def one_rule(target: str, calendar: str) -> dict:
    """A policy whose single rule gives every ticket a first-response ``target`` in
    ``calendar``."""
    return {
        "rules": [
            {"match": {}, "metrics": {"FIRST_RESPONSE": {"target": target, "calendar": calendar}}}
        ]
    }


def create_calendar(client: Client, name: str, body: dict) -> catalog_pb2.CalendarInfo:
    return client.catalog.CreateCalendar(
        catalog_pb2.CreateCalendarRequest(name=name, body_json=json.dumps(body))
    )


def create_policy(
    client: Client, name: str, calendar_id: int, body: dict
) -> catalog_pb2.PolicyInfo:
    return client.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name=name, calendar_id=calendar_id, body_json=json.dumps(body)
        )
    )


def evaluate(client: Client, policy_id: int) -> sla_pb2.MetricStatus:
    """First response of a HIGH ticket raised Monday 06:00 UTC, seen at 06:00."""
    reply = client.sla.Evaluate(
        sla_pb2.EvaluateRequest(
            policy_id=policy_id,
            now=to_timestamp(MONDAY_6AM),
            tickets=[
                sla_pb2.TicketInput(
                    ticket_id="T-1", priority="HIGH", created_at=to_timestamp(MONDAY_6AM)
                )
            ],
        )
    )
    (result,) = [r for r in reply.results if r.metric == "FIRST_RESPONSE"]
    return result


def soon(call: Callable[[], T], done: Callable[[T], bool], within: float = 2.0) -> T:
    """``call()``'s answer once ``done`` holds for it, failing after ``within`` seconds."""
    limit = time.monotonic() + within
    while True:
        answer = call()
        if done(answer):
            return answer
        assert time.monotonic() < limit, f"not within {within} s: {answer}"
        time.sleep(0.01)


def deadline(result: sla_pb2.MetricStatus) -> datetime:
    return result.deadline.ToDatetime().replace(tzinfo=MONDAY_6AM.tzinfo)


# 1. a reused name ---------------------------------------------------------------------------


def test_a_reused_name_is_refused_and_the_tenant_keeps_evaluating(client: Client) -> None:
    ids = standard_setup(client)
    body = (SAMPLES / "calendars" / "sydney-business-hours.json").read_text()
    details = refused(
        grpc.StatusCode.ALREADY_EXISTS,
        client.catalog.CreateCalendar,
        catalog_pb2.CreateCalendarRequest(name="sydney-business-hours", body_json=body),
    )
    assert "'sydney-business-hours'" in details and str(ids.sydney) in details
    details = refused(
        grpc.StatusCode.ALREADY_EXISTS,
        client.catalog.CreatePolicy,
        catalog_pb2.CreatePolicyRequest(
            name="standard-msp",
            calendar_id=ids.sydney,
            body_json=(SAMPLES / "policies" / "standard-msp.json").read_text(),
        ),
    )
    assert "'standard-msp'" in details and str(ids.policy) in details
    names = [
        c.name for c in client.catalog.ListCalendars(catalog_pb2.ListCalendarsRequest()).calendars
    ]
    assert sorted(names) == ["london-24x7", "sydney-business-hours"]
    # nothing was poisoned: evaluation, deadlines and new policies still work
    assert evaluate(client, ids.policy).status == "ON_TRACK"
    reply = client.catalog.ComputeDeadline(
        catalog_pb2.ComputeDeadlineRequest(
            calendar_id=ids.london, start=to_timestamp(MONDAY_6AM), business_seconds=3600
        )
    )
    assert reply.deadline.ToDatetime().hour == 7
    other = create_policy(client, "another", ids.london, one_rule("1h", "london-24x7"))
    assert evaluate(client, other.id).calendar == "london-24x7"


def test_the_readme_client_example_runs_twice_on_one_tenant(
    service, tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example creates its calendars and policy; run again, they exist already."""
    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), re.S)
    (example,) = [b for b in blocks if "save_calendar" in b]
    monkeypatch.chdir(root)
    monkeypatch.setenv("EFFIGATE_ADDRESS", service.address)
    monkeypatch.setenv("EFFIGATE_TOKEN", tenant.token)
    for _ in range(2):
        exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})
        assert "FIRST_RESPONSE MET" in capsys.readouterr().out


# 2. two creates of one name race -------------------------------------------------------------


def test_of_two_concurrent_creates_of_one_name_exactly_one_wins(service, tenant) -> None:
    names = [f"race-{i}" for i in range(6)]
    outcomes: dict[str, list[str]] = {n: [] for n in names}
    clients = [Client(service.address, tenant.token, timeout=60) for _ in range(2)]
    try:
        for name in names:
            barrier = threading.Barrier(2)

            def create(c: Client, name: str = name, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    create_calendar(c, name, NINE_TO_FIVE)
                    outcomes[name].append("created")
                except grpc.RpcError as exc:
                    outcomes[name].append(exc.code().name)

            threads = [threading.Thread(target=create, args=(c,)) for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        listed = clients[0].catalog.ListCalendars(catalog_pb2.ListCalendarsRequest()).calendars
    finally:
        for c in clients:
            c.close()
    assert {n: sorted(o) for n, o in outcomes.items()} == {
        n: ["ALREADY_EXISTS", "created"] for n in names
    }
    assert sorted(c.name for c in listed) == names


# 3. versions ---------------------------------------------------------------------------------


def test_an_update_is_a_new_version_used_from_then_on_with_its_history_kept(
    client: Client, tenant
) -> None:
    calendar = create_calendar(client, "desk-hours", NINE_TO_FIVE)
    policy = create_policy(client, "desk", calendar.id, one_rule("1h", "desk-hours"))
    assert (calendar.version, policy.version) == (1, 1)
    first = evaluate(client, policy.id)
    assert deadline(first) == at("2026-03-02T10:00:00+00:00")
    assert (first.policy_version, first.calendar_version) == (1, 1)

    updated = client.catalog.UpdateCalendar(
        catalog_pb2.UpdateCalendarRequest(name="desk-hours", body_json=json.dumps(SEVEN_TO_FIVE))
    )
    assert (updated.id, updated.version) == (calendar.id, 2)
    second = evaluate(client, policy.id)
    assert deadline(second) == at("2026-03-02T08:00:00+00:00")
    assert (second.policy_version, second.calendar_version) == (1, 2)
    deadline_reply = client.catalog.ComputeDeadline(
        catalog_pb2.ComputeDeadlineRequest(
            calendar_id=calendar.id, start=to_timestamp(MONDAY_6AM), business_seconds=3600
        )
    )
    assert deadline_reply.deadline.ToDatetime().hour == 8

    # re-sending the same update stores nothing
    again = client.catalog.UpdateCalendar(
        catalog_pb2.UpdateCalendarRequest(name="desk-hours", body_json=json.dumps(SEVEN_TO_FIVE))
    )
    assert again.version == 2

    revised = client.catalog.UpdatePolicy(
        catalog_pb2.UpdatePolicyRequest(
            name="desk", body_json=json.dumps(one_rule("2h", "desk-hours"))
        )
    )
    assert (revised.id, revised.version, revised.calendar_id) == (policy.id, 2, calendar.id)
    third = evaluate(client, policy.id)
    assert third.target_seconds == 7200 and deadline(third) == at("2026-03-02T09:00:00+00:00")
    assert (third.policy_version, third.calendar_version) == (2, 2)

    streamed = client.evaluate_arrow(
        policy.id,
        pa.table(
            {
                "ticket_id": ["S-1"],
                "priority": ["HIGH"],
                "created_at": pa.array([MONDAY_6AM], pa.timestamp("s", tz="UTC")),
            }
        ),
        MONDAY_6AM,
    )
    metadata = streamed.schema.metadata
    assert metadata[b"effigate.policy_id"] == str(policy.id).encode()
    assert metadata[b"effigate.policy_version"] == b"2"
    assert json.loads(metadata[b"effigate.calendar_versions"]) == {"desk-hours": 2}

    # history: each version as it was stored; lists show the current one
    old = client.catalog.GetCalendar(
        catalog_pb2.GetCalendarRequest(calendar_id=calendar.id, version=1)
    )
    assert old.version == 1 and json.loads(old.body_json)["weekly"][0]["start"] == "09:00"
    now = client.catalog.GetCalendar(catalog_pb2.GetCalendarRequest(calendar_id=calendar.id))
    assert now.version == 2 and json.loads(now.body_json)["weekly"][0]["start"] == "07:00"
    old_policy = client.catalog.GetPolicy(
        catalog_pb2.GetPolicyRequest(policy_id=policy.id, version=1)
    )
    assert (
        json.loads(old_policy.body_json)["rules"][0]["metrics"]["FIRST_RESPONSE"]["target"] == 3600
    )
    listed = client.catalog.ListCalendars(catalog_pb2.ListCalendarsRequest()).calendars
    assert [(c.name, c.version) for c in listed] == [("desk-hours", 2)]
    listed_policies = client.catalog.ListPolicies(catalog_pb2.ListPoliciesRequest()).policies
    assert [(p.name, p.version) for p in listed_policies] == [("desk", 2)]
    refused(
        grpc.StatusCode.NOT_FOUND,
        client.catalog.GetCalendar,
        catalog_pb2.GetCalendarRequest(calendar_id=calendar.id, version=3),
    )
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.catalog.GetPolicy,
        catalog_pb2.GetPolicyRequest(policy_id=policy.id, version=-1),
    )
    assert details.startswith("version: -1")
    refused(
        grpc.StatusCode.NOT_FOUND,
        client.catalog.UpdateCalendar,
        catalog_pb2.UpdateCalendarRequest(name="no-such", body_json=json.dumps(NINE_TO_FIVE)),
    )

    # stored tickets: the status and the recorded breach name the versions
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id="V-1", client_id=acme, priority="HIGH", created_at=to_timestamp(MONDAY_6AM)
        )
    )
    late = at("2026-03-02T12:00:00+00:00")
    status = client.tickets.GetTicketStatus(
        tickets_pb2.GetTicketStatusRequest(
            ticket_id="V-1", policy_id=policy.id, at=to_timestamp(late)
        )
    )
    (metric,) = status.metrics
    assert (metric.status, metric.policy_version, metric.calendar_version) == ("BREACHED", 2, 2)
    outcome = client.sla.Recompute(
        sla_pb2.RecomputeRequest(policy_id=policy.id, now=to_timestamp(late))
    )
    assert outcome.new_breaches == 1
    evidence = asyncio.run(_breach_evidence(tenant, "V-1:FIRST_RESPONSE"))
    assert {
        k: evidence[k] for k in ("policy_id", "policy_version", "calendar", "calendar_version")
    } == {
        "policy_id": policy.id,
        "policy_version": 2,
        "calendar": "desk-hours",
        "calendar_version": 2,
    }


async def _breach_evidence(tenant, breach_id: str) -> dict:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(tenant.admin)
    try:
        raw = await conn.fetchval(
            "SELECT evidence FROM breach_records WHERE tenant_id = $1 AND id = $2",
            tenant.id,
            breach_id,
        )
    finally:
        await conn.close()
    return json.loads(raw)


# 4. deletion -----------------------------------------------------------------------------------


def test_deleting_what_is_in_use_is_refused_naming_its_users(client: Client) -> None:
    ids = standard_setup(client)
    contract = client.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=ids.acme,
            contract_type="HOURLY",
            currency="USD",
            starts_on="2026-03-01",
            calendar_id=ids.sydney,
            sla_policy_id=ids.policy,
        )
    )
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.catalog.DeleteCalendar,
        catalog_pb2.DeleteCalendarRequest(calendar_id=ids.sydney),
    )
    assert "'sydney-business-hours'" in details
    assert f"policy 'standard-msp' (id {ids.policy})" in details
    assert f"contract {contract.id}" in details
    # london-24x7 is named by the policy's metrics only
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.catalog.DeleteCalendar,
        catalog_pb2.DeleteCalendarRequest(calendar_id=ids.london),
    )
    assert f"policy 'standard-msp' (id {ids.policy})" in details and "contract" not in details
    details = refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.catalog.DeletePolicy,
        catalog_pb2.DeletePolicyRequest(policy_id=ids.policy),
    )
    assert "'standard-msp'" in details and f"contract {contract.id} (DRAFT)" in details
    # nothing was retired
    assert len(client.catalog.ListCalendars(catalog_pb2.ListCalendarsRequest()).calendars) == 2
    assert evaluate(client, ids.policy).status == "ON_TRACK"


def test_deleting_what_is_unused_retires_it_and_frees_its_name(client: Client) -> None:
    kept = create_calendar(client, "kept", NINE_TO_FIVE)
    gone = create_calendar(client, "gone", SEVEN_TO_FIVE)
    policy = create_policy(client, "uses-gone", gone.id, one_rule("1h", "gone"))
    unused_policy = create_policy(client, "unused", kept.id, one_rule("1h", "kept"))
    refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.catalog.DeleteCalendar,
        catalog_pb2.DeleteCalendarRequest(calendar_id=gone.id),
    )
    client.catalog.DeletePolicy(catalog_pb2.DeletePolicyRequest(policy_id=policy.id))
    client.catalog.DeleteCalendar(catalog_pb2.DeleteCalendarRequest(calendar_id=gone.id))
    client.catalog.DeletePolicy(catalog_pb2.DeletePolicyRequest(policy_id=unused_policy.id))

    listed = client.catalog.ListCalendars(catalog_pb2.ListCalendarsRequest()).calendars
    assert [c.name for c in listed] == ["kept"]
    assert client.catalog.ListPolicies(catalog_pb2.ListPoliciesRequest()).policies == []
    for call, request in (
        (client.catalog.GetCalendar, catalog_pb2.GetCalendarRequest(calendar_id=gone.id)),
        (client.catalog.GetPolicy, catalog_pb2.GetPolicyRequest(policy_id=policy.id)),
        (client.catalog.DeleteCalendar, catalog_pb2.DeleteCalendarRequest(calendar_id=gone.id)),
        (
            client.catalog.ComputeDeadline,
            catalog_pb2.ComputeDeadlineRequest(
                calendar_id=gone.id, start=to_timestamp(MONDAY_6AM), business_seconds=60
            ),
        ),
        (
            client.sla.Evaluate,
            sla_pb2.EvaluateRequest(policy_id=policy.id, now=to_timestamp(MONDAY_6AM)),
        ),
        (
            client.catalog.CreatePolicy,
            catalog_pb2.CreatePolicyRequest(
                name="late", calendar_id=gone.id, body_json=json.dumps(one_rule("1h", "kept"))
            ),
        ),
    ):
        refused(grpc.StatusCode.NOT_FOUND, call, request)

    # the deleted calendar left the tenant's calendar set: a policy naming it cannot evaluate
    stale = create_policy(client, "names-gone", kept.id, one_rule("1h", "gone"))
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.sla.Evaluate,
        sla_pb2.EvaluateRequest(policy_id=stale.id, now=to_timestamp(MONDAY_6AM)),
    )
    assert "'gone'" in details
    # the name is free again: a new calendar, version 1, that evaluations pick up
    reborn = create_calendar(client, "gone", NINE_TO_FIVE)
    assert reborn.id != gone.id and reborn.version == 1
    result = evaluate(client, stale.id)
    assert (result.calendar, result.calendar_version) == ("gone", 1)
    assert deadline(result) == at("2026-03-02T10:00:00+00:00")


def test_save_creates_then_stores_a_version_only_on_change(service, tenant) -> None:
    """``save_calendar`` / ``save_policy`` of both clients: create, then a new version when
    the content changed, and nothing new when it did not."""
    first, second = json.dumps(NINE_TO_FIVE), json.dumps(SEVEN_TO_FIVE)
    with Client(service.address, tenant.token) as c:
        created = c.save_calendar("saved", first)
        again = c.save_calendar("saved", first)
        changed = c.save_calendar("saved", second)
        policy = c.save_policy("saved", created.id, json.dumps(one_rule("1h", "saved")))
    assert (created.version, again.version, changed.version) == (1, 1, 2)
    assert created.id == again.id == changed.id

    async def from_async() -> tuple[int, int, int]:
        async with AsyncClient(service.address, tenant.token) as c:
            calendar = await c.save_calendar("saved", second)
            same = await c.save_policy("saved", created.id, json.dumps(one_rule("1h", "saved")))
            revised = await c.save_policy("saved", created.id, json.dumps(one_rule("2h", "saved")))
            assert same.id == revised.id == policy.id
            return calendar.version, same.version, revised.version

    assert asyncio.run(from_async()) == (2, 1, 2)


def test_a_version_stored_through_one_server_is_used_by_another(db, service, tenant) -> None:
    """Servers side by side: one has the policy and calendars compiled; an update and a
    deletion made through the other are used by it once the change's notification arrived
    (within milliseconds of the commit; a couple of seconds are allowed here for a loaded
    machine)."""
    other = ServiceProcess.start(db.app, admin_dsn=db.admin)
    try:
        with Client(service.address, tenant.token) as a, Client(other.address, tenant.token) as b:
            calendar = create_calendar(a, "shared", NINE_TO_FIVE)
            policy = create_policy(a, "shared", calendar.id, one_rule("1h", "shared"))
            assert deadline(evaluate(b, policy.id)) == at("2026-03-02T10:00:00+00:00")
            a.save_calendar("shared", json.dumps(SEVEN_TO_FIVE))
            result = soon(lambda: evaluate(b, policy.id), lambda r: r.calendar_version == 2)
            assert deadline(result) == at("2026-03-02T08:00:00+00:00")
            a.save_policy("shared", calendar.id, json.dumps(one_rule("2h", "shared")))
            soon(lambda: evaluate(b, policy.id), lambda r: r.policy_version == 2)
            a.catalog.DeletePolicy(catalog_pb2.DeletePolicyRequest(policy_id=policy.id))
            request = sla_pb2.EvaluateRequest(policy_id=policy.id, now=to_timestamp(MONDAY_6AM))

            def still_there() -> bool:
                try:
                    b.sla.Evaluate(request)
                except grpc.RpcError as exc:
                    return exc.code() != grpc.StatusCode.NOT_FOUND
                return True

            soon(still_there, lambda there: not there)
            refused(grpc.StatusCode.NOT_FOUND, b.sla.Evaluate, request)
    finally:
        other.stop()
