"""Outbound webhooks against real server processes, a real database and a real HTTP receiver
on loopback that verifies every delivery with the ``standardwebhooks`` library alone.

The webhook tests run their servers over databases of their own: a delivery worker serves
every tenant of its database, so another test module's server on the shared database would
take their deliveries (and without ``EFFIGATE_WEBHOOK_ALLOW_PRIVATE`` refuse the loopback
receiver). Events are written as every writer writes them: ``append_events`` in a transaction
bound with the tenant's token, the deliveries created in that same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest

from effigate_client import Client, catalog_pb2, webhooks_pb2
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_engine.store import webhooks as stored_webhooks
from effigate_engine.store.dsn import APP_ROLE, with_database, with_user
from effigate_engine.store.events import NewEvent, append_events
from effigate_engine.store.migrate import migrate
from effigate_engine.store.tenant import TenantKey, tenant_transaction
from effigate_engine.webhooks.backoff import Backoff
from effigate_server.process import ServiceProcess
from tests.e2e.support import refused
from tests.e2e.webhook_receiver import HANG, Receiver
from tests.store.conftest import app_password, create_database, drop_database
from tests.store.helpers import Database

pb = webhooks_pb2
#: Fast schedules for tests: retries within a second or two, short leases.
FAST = {
    "EFFIGATE_WEBHOOK_ALLOW_PRIVATE": "1",
    "EFFIGATE_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "EFFIGATE_WEBHOOK_RETRY_CAP_SECONDS": "0.8",
    "EFFIGATE_WEBHOOK_TIMEOUT_SECONDS": "2",
    "EFFIGATE_WEBHOOK_LEASE_SECONDS": "3",
    "EFFIGATE_WEBHOOK_POLL_SECONDS": "0.5",
}
T0 = datetime(2026, 12, 7, 14, 23, tzinfo=UTC)


@contextlib.contextmanager
def fresh_database(server_dsn: str) -> Iterator[Database]:
    name = f"effigate_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(create_database(server_dsn, name))
    admin = with_database(server_dsn, name)
    try:
        asyncio.run(migrate(admin))
        yield Database(name, admin, with_user(admin, APP_ROLE, app_password(server_dsn)))
    finally:
        asyncio.run(drop_database(server_dsn, name))


def start_server(db: Database, **settings: str) -> ServiceProcess:
    """An ``effigate serve`` over ``db`` with the :data:`FAST` webhook settings (and
    ``settings`` over them), as the environment gives them to a real server."""
    saved = dict(os.environ)
    os.environ.update({**FAST, **settings})
    try:
        return ServiceProcess.start(db.app, admin_dsn=db.admin)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Tenant:
    id: uuid.UUID
    token: str
    db: Database

    def portal_token(self, client_id: int) -> str:
        return asyncio.run(_token(self.db.admin, self.id, client_id))


async def _token(admin: str, tenant: uuid.UUID, client_id: int | None) -> str:
    conn = await asyncpg.connect(admin)
    try:
        return (await create_token(conn, tenant, client_id)).secret
    finally:
        await conn.close()


def new_tenant(db: Database) -> Tenant:
    async def make() -> Tenant:
        conn = await asyncpg.connect(db.admin)
        try:
            tenant = await create_tenant(conn, f"MSP {uuid.uuid4().hex[:6]}", "USD", "[]")
            token = (await create_token(conn, tenant)).secret
        finally:
            await conn.close()
        return Tenant(tenant, token, db)

    return asyncio.run(make())


def event(kind: str, subject: str, client_id: int | None = None, **data: object) -> NewEvent:
    return NewEvent(
        type=kind,
        dedupe_key=f"test:{uuid.uuid4()}",
        subject=subject,
        occurred_at=T0,
        data={"ticket_id": subject, "metric": "RESOLUTION", **data},
        client_id=client_id,
    )


def append(tenant: Tenant, rows: list[NewEvent]) -> list[str]:
    """Commit ``rows`` as the tenant (one transaction); their event ids."""

    async def write() -> list[str]:
        conn = await asyncpg.connect(tenant.db.app)
        try:
            async with tenant_transaction(conn, TenantKey(tenant.id, tenant.token)):
                await append_events(conn, rows)
                ids = await conn.fetch(
                    "SELECT id FROM events WHERE dedupe_key = ANY($1::text[])",
                    [r.dedupe_key for r in rows],
                )
        finally:
            await conn.close()
        by_key = {r.dedupe_key: r for r in rows}
        assert len(ids) == len(by_key)
        return [str(r["id"]) for r in ids]

    return asyncio.run(write())


def deliveries(client: Client, **filters: object) -> list[webhooks_pb2.WebhookDelivery]:
    return list(
        client.webhooks.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(**filters)  # type: ignore[arg-type]
        ).deliveries
    )


def add_endpoint(
    client: Client, receiver: Receiver, path: str, script: list[int] | None = None, **fields: object
) -> webhooks_pb2.WebhookEndpointWithSecret:
    created = client.webhooks.CreateWebhookEndpoint(
        pb.CreateWebhookEndpointRequest(url=receiver.url(path), **fields)  # type: ignore[arg-type]
    )
    receiver.expect(path, [created.secret], script)
    return created


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def hooks(server_dsn: str) -> Iterator[tuple[Database, ServiceProcess]]:
    """A database of the module's own and a server over it with the fast settings."""
    with fresh_database(server_dsn) as db:
        running = start_server(db)
        try:
            yield db, running
        finally:
            running.stop()


@pytest.fixture
def staff(hooks: tuple[Database, ServiceProcess]) -> Iterator[tuple[Tenant, Client]]:
    db, running = hooks
    tenant = new_tenant(db)
    with Client(running.address, tenant.token, timeout=30) as client:
        yield tenant, client


STATE = pb.WebhookDeliveryState


def test_a_receiver_failing_three_times_then_succeeding_gets_it_once(
    server_dsn: str, receiver: Receiver
) -> None:
    seed, base, cap = 11, 0.4, 3.2
    with fresh_database(server_dsn) as db:
        running = start_server(
            db,
            EFFIGATE_WEBHOOK_SEED=str(seed),
            EFFIGATE_WEBHOOK_RETRY_BASE_SECONDS=str(base),
            EFFIGATE_WEBHOOK_RETRY_CAP_SECONDS=str(cap),
        )
        try:
            tenant = new_tenant(db)
            with Client(running.address, tenant.token, timeout=30) as client:
                add_endpoint(client, receiver, "/flaky", [500, 503, 500])
                (event_id,) = append(tenant, [event("SLA_BREACHED", "INC-100000")])
                receiver.wait_for(lambda: receiver.processed("/flaky"), what="the 4th attempt")
                (delivery,) = deliveries(client)
        finally:
            running.stop()
    got = receiver.received("/flaky")
    assert [r.answered for r in got] == [500, 503, 500, 204]
    assert all(r.verified for r in got)
    assert {r.webhook_id for r in got} == {event_id}
    assert receiver.processed("/flaky") == [event_id]
    assert len({r.body for r in got}) == 1
    assert delivery.state == STATE.WEBHOOK_DELIVERY_STATE_DELIVERED and delivery.attempts == 4
    # the waits are the seeded full-jitter draws, each under its doubling ceiling: an attempt
    # comes no earlier than its wait, and late only by the worker's round trips
    schedule = Backoff(base, cap, random.Random(seed))
    waits = [schedule.delay(n) for n in (1, 2, 3)]
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    for n, (wait, gap) in enumerate(zip(waits, gaps, strict=True), start=1):
        assert wait <= schedule.ceiling(n)
        assert wait - 0.05 <= gap <= wait + 1.0, (n, wait, gap)


def test_the_server_killed_between_commit_and_delivery_delivers_after_restart_once_per_id(
    server_dsn: str, receiver: Receiver
) -> None:
    with fresh_database(server_dsn) as db:
        tenant = new_tenant(db)
        first = start_server(db)
        with Client(first.address, tenant.token, timeout=30) as client:
            add_endpoint(client, receiver, "/crash")
        first.process.kill()  # SIGKILL: no graceful anything
        first.process.wait()
        # committed while no server runs: the deliveries wait in the database
        ids = append(tenant, [event("SLA_WARNING", f"INC-{i}") for i in range(3)])
        second = start_server(db)
        try:
            receiver.wait_for(lambda: len(receiver.processed("/crash")) == 3, what="3 events")
            # an attempt in flight when the server dies: the receiver holds the request
            receiver.answer("/crash", [HANG])
            (held,) = append(tenant, [event("SLA_BREACHED", "INC-9")])
            receiver.wait_for(lambda: len(receiver.received("/crash")) == 4, what="the held one")
        finally:
            second.process.kill()
            second.process.wait()
        receiver.release()
        third = start_server(db)
        try:
            # tried again once the dead server's lease ran out, with the same webhook-id
            receiver.wait_for(lambda: len(receiver.received("/crash")) == 5, what="the retry")
            with Client(third.address, tenant.token, timeout=30) as client:
                receiver.wait_for(
                    lambda: all(
                        d.state == STATE.WEBHOOK_DELIVERY_STATE_DELIVERED
                        for d in deliveries(client)
                    ),
                    what="every delivery DELIVERED",
                )
                listed = deliveries(client)
        finally:
            third.stop()
    got = receiver.received("/crash")
    assert all(r.verified for r in got)
    assert [r.webhook_id for r in got[:3]] and sorted(r.webhook_id for r in got[:3]) == sorted(ids)
    assert got[3].webhook_id == got[4].webhook_id == held and got[3].body == got[4].body
    # each webhook-id was processed once by the receiver
    assert sorted(receiver.processed("/crash")) == sorted([*ids, held])
    assert {d.event_id: d.attempts for d in listed} == {**dict.fromkeys(ids, 1), held: 2}


def test_a_dead_letter_after_max_attempts_then_redeliver(
    staff: tuple[Tenant, Client], receiver: Receiver
) -> None:
    tenant, client = staff
    endpoint = add_endpoint(client, receiver, "/dead", [500] * 3, max_attempts=3).endpoint
    (event_id,) = append(tenant, [event("SLA_BREACHED", "INC-1")])
    receiver.wait_for(
        lambda: (
            deliveries(client, endpoint_id=endpoint.id)[0].state
            == STATE.WEBHOOK_DELIVERY_STATE_DEAD
        ),
        what="DEAD",
    )
    (dead,) = deliveries(client, endpoint_id=endpoint.id, state=STATE.WEBHOOK_DELIVERY_STATE_DEAD)
    assert dead.attempts == 3 and dead.last_status == 500 and "HTTP 500" in dead.last_error
    assert not dead.HasField("next_attempt_at")
    assert [r.answered for r in receiver.received("/dead")] == [500, 500, 500]
    assert receiver.processed("/dead") == []

    again = client.webhooks.RedeliverWebhook(pb.RedeliverWebhookRequest(delivery_id=dead.id))
    assert again.state == STATE.WEBHOOK_DELIVERY_STATE_PENDING and again.attempts == 0
    receiver.wait_for(lambda: receiver.processed("/dead") == [event_id], what="the redelivery")
    receiver.wait_for(
        lambda: (
            deliveries(client, endpoint_id=endpoint.id)[0].state
            == STATE.WEBHOOK_DELIVERY_STATE_DELIVERED
        ),
        what="DELIVERED",
    )
    (delivered,) = deliveries(client, endpoint_id=endpoint.id)
    assert delivered.attempts == 1 and delivered.last_status == 204
    # a delivered one may be sent again too, with the same webhook-id
    client.webhooks.RedeliverWebhook(pb.RedeliverWebhookRequest(delivery_id=dead.id))
    receiver.wait_for(lambda: len(receiver.received("/dead")) == 5, what="the second redelivery")
    assert {r.webhook_id for r in receiver.received("/dead")} == {event_id}
    assert all(r.verified for r in receiver.received("/dead"))
    refused(
        grpc.StatusCode.NOT_FOUND,
        client.webhooks.RedeliverWebhook,
        pb.RedeliverWebhookRequest(delivery_id=dead.id + 1_000_000_000),
    )


def test_slack_and_teams_endpoints_get_their_shapes_signed(
    staff: tuple[Tenant, Client], receiver: Receiver
) -> None:
    tenant, client = staff
    add_endpoint(client, receiver, "/slack", format=pb.WEBHOOK_FORMAT_SLACK)
    add_endpoint(client, receiver, "/teams", format=pb.WEBHOOK_FORMAT_TEAMS)
    add_endpoint(client, receiver, "/standard")
    (event_id,) = append(
        tenant, [event("SLA_ESCALATION", "INC-42", step=2, notify=["lead@acme.example"])]
    )
    receiver.wait_for(
        lambda: all(receiver.processed(p) for p in ("/slack", "/teams", "/standard")),
        what="three formats",
    )
    (slack,) = receiver.received("/slack")
    (teams,) = receiver.received("/teams")
    (standard,) = receiver.received("/standard")
    assert all(r.verified and r.webhook_id == event_id for r in (slack, teams, standard))
    assert all(r.headers["content-type"] == "application/json" for r in (slack, teams))
    body = slack.json()
    assert body["text"].endswith("SLA escalation: INC-42 (resolution, step 2)")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    assert {"type": "mrkdwn", "text": "*Notify*\nlead@acme.example"} in body["blocks"][1]["fields"]
    card = teams.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert card["content"]["body"][0]["text"] == "SLA escalation: INC-42 (resolution, step 2)"
    cloud = standard.json()
    assert cloud["id"] == event_id and cloud["type"] == "com.effigate.sla.escalation"
    assert cloud["source"] == f"effigate://tenants/{tenant.id}" and cloud["data"]["step"] == 2


def test_subscriptions_by_event_type_and_client(
    staff: tuple[Tenant, Client], receiver: Receiver
) -> None:
    tenant, client = staff
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    globex = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Globex")).id
    subscriptions = {
        "/all": ((), None),
        "/breaches": (("SLA_BREACHED", "INVOICE_PAID"), None),
        "/acme": ((), acme),
        "/globex-warnings": (("SLA_WARNING",), globex),
    }
    for path, (types, client_id) in subscriptions.items():
        fields: dict[str, object] = {"event_types": list(types)}
        if client_id is not None:
            fields["client_id"] = client_id
        add_endpoint(client, receiver, path, **fields)
    rows = [
        event(kind, f"{kind}-{who}", who)
        for kind in ("SLA_WARNING", "SLA_BREACHED", "INVOICE_PAID", "BUCKET_EXHAUSTED")
        for who in (acme, globex, None)
    ]
    append(tenant, rows)
    expected = {
        path: sorted(
            r.subject
            for r in rows
            if (not types or r.type in types) and (client_id is None or r.client_id == client_id)
        )
        for path, (types, client_id) in subscriptions.items()
    }
    total = sum(len(v) for v in expected.values())
    receiver.wait_for(
        lambda: sum(len(receiver.processed(p)) for p in subscriptions) == total, what="all"
    )
    got = {p: sorted(r.json()["subject"] for r in receiver.received(p)) for p in subscriptions}
    assert got == expected
    assert len(expected["/all"]) == 12 and len(expected["/globex-warnings"]) == 1


def test_tenants_never_see_or_touch_each_others_webhooks(
    hooks: tuple[Database, ServiceProcess], receiver: Receiver
) -> None:
    db, running = hooks
    mine, theirs = new_tenant(db), new_tenant(db)
    with (
        Client(running.address, mine.token, timeout=30) as me,
        Client(running.address, theirs.token, timeout=30) as them,
    ):
        my_endpoint = add_endpoint(me, receiver, "/mine").endpoint
        add_endpoint(them, receiver, "/theirs")
        (my_event,) = append(mine, [event("SLA_BREACHED", "INC-MINE")])
        (their_event,) = append(theirs, [event("SLA_BREACHED", "INC-THEIRS")])
        receiver.wait_for(
            lambda: receiver.processed("/mine") and receiver.processed("/theirs"), what="both"
        )
        assert receiver.processed("/mine") == [my_event]
        assert receiver.processed("/theirs") == [their_event]
        (my_delivery,) = deliveries(me)
        assert [d.event_id for d in deliveries(them)] == [their_event]
        assert [
            e.id
            for e in them.webhooks.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest()).endpoints
        ] != [my_endpoint.id]
        for call, request in (
            (
                them.webhooks.RedeliverWebhook,
                pb.RedeliverWebhookRequest(delivery_id=my_delivery.id),
            ),
            (
                them.webhooks.UpdateWebhookEndpoint,
                pb.UpdateWebhookEndpointRequest(
                    id=my_endpoint.id, update_mask=["active"], active=False
                ),
            ),
            (them.webhooks.RotateWebhookSecret, pb.RotateWebhookSecretRequest(id=my_endpoint.id)),
            (
                them.webhooks.DeleteWebhookEndpoint,
                pb.DeleteWebhookEndpointRequest(id=my_endpoint.id),
            ),
        ):
            refused(grpc.StatusCode.NOT_FOUND, call, request)
        assert deliveries(them, endpoint_id=my_endpoint.id) == []
        (still,) = me.webhooks.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest()).endpoints
        assert still.active and still.id == my_endpoint.id
        # a portal token administers nothing
        acme = me.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
        with Client(running.address, mine.portal_token(acme), timeout=30) as portal:
            for call, request in (
                (
                    portal.webhooks.CreateWebhookEndpoint,
                    pb.CreateWebhookEndpointRequest(url=receiver.url("/portal")),
                ),
                (portal.webhooks.ListWebhookEndpoints, pb.ListWebhookEndpointsRequest()),
                (portal.webhooks.ListWebhookDeliveries, pb.ListWebhookDeliveriesRequest()),
                (
                    portal.webhooks.RedeliverWebhook,
                    pb.RedeliverWebhookRequest(delivery_id=my_delivery.id),
                ),
                (
                    portal.webhooks.RotateWebhookSecret,
                    pb.RotateWebhookSecretRequest(id=my_endpoint.id),
                ),
            ):
                assert "staff-only" in refused(grpc.StatusCode.PERMISSION_DENIED, call, request)


def test_a_delivery_whose_endpoint_was_deactivated_is_not_sent(
    staff: tuple[Tenant, Client], receiver: Receiver
) -> None:
    tenant, client = staff
    endpoint = add_endpoint(client, receiver, "/off").endpoint

    async def commit_then_deactivate_in_one_transaction() -> None:
        conn = await asyncpg.connect(tenant.db.app)
        try:
            async with tenant_transaction(conn, TenantKey(tenant.id, tenant.token)):
                await append_events(conn, [event("SLA_BREACHED", "INC-OFF")])
                await stored_webhooks.update_endpoint(conn, endpoint.id, {"active": False})
        finally:
            await conn.close()

    asyncio.run(commit_then_deactivate_in_one_transaction())
    (pending,) = deliveries(client, endpoint_id=endpoint.id)
    assert pending.state == STATE.WEBHOOK_DELIVERY_STATE_PENDING
    # several of the worker's polls pass: nothing is sent
    asyncio.run(asyncio.sleep(2.0))
    assert receiver.received("/off") == []
    (still,) = deliveries(client, endpoint_id=endpoint.id)
    assert still.state == STATE.WEBHOOK_DELIVERY_STATE_PENDING and still.attempts == 0
    refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.webhooks.RedeliverWebhook,
        pb.RedeliverWebhookRequest(delivery_id=still.id),
    )
    # events committed while it is inactive get no delivery at all
    append(tenant, [event("SLA_WARNING", "INC-OFF-2")])
    assert len(deliveries(client, endpoint_id=endpoint.id)) == 1
    # re-activated, the pending delivery goes out
    client.webhooks.UpdateWebhookEndpoint(
        pb.UpdateWebhookEndpointRequest(id=endpoint.id, update_mask=["active"], active=True)
    )
    receiver.wait_for(lambda: receiver.processed("/off") == [still.event_id], what="resumed")


def test_a_rotated_secret_signs_alongside_the_previous_one(
    staff: tuple[Tenant, Client], receiver: Receiver
) -> None:
    tenant, client = staff
    created = add_endpoint(client, receiver, "/rotated")
    rotated = client.webhooks.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.endpoint.id, keep_previous_seconds=600)
    )
    assert rotated.secret.startswith("whsec_") and rotated.secret != created.secret
    assert rotated.endpoint.HasField("previous_secret_expires_at")
    receiver.expect("/rotated", [rotated.secret, created.secret])  # both must verify
    append(tenant, [event("INVOICE_PAID", "INV-1")])
    receiver.wait_for(lambda: receiver.processed("/rotated"), what="a delivery")
    (got,) = receiver.received("/rotated")
    assert got.verified and len(got.headers["webhook-signature"].split(" ")) == 2
    # rotated again with no overlap: only the newest secret signs
    newest = client.webhooks.RotateWebhookSecret(
        pb.RotateWebhookSecretRequest(id=created.endpoint.id, keep_previous_seconds=0)
    )
    assert not newest.endpoint.HasField("previous_secret_expires_at")
    receiver.expect("/rotated", [newest.secret])
    append(tenant, [event("INVOICE_PAID", "INV-2")])
    receiver.wait_for(lambda: len(receiver.processed("/rotated")) == 1, what="one more")
    latest = receiver.received("/rotated")[-1]
    assert latest.verified and len(latest.headers["webhook-signature"].split(" ")) == 1
    listed = client.webhooks.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest())
    assert "whsec_" not in str(listed)


def test_bad_endpoints_are_refused_naming_the_field(staff: tuple[Tenant, Client]) -> None:
    _, client = staff
    create = client.webhooks.CreateWebhookEndpoint
    cases = [
        (pb.CreateWebhookEndpointRequest(url="ftp://example.com/x"), "url: 'ftp://"),
        (pb.CreateWebhookEndpointRequest(url="https://user:pw@example.com/"), "credentials"),
        (
            pb.CreateWebhookEndpointRequest(url="https://example.com", event_types=["NOPE"]),
            "event_types[0]: 'NOPE'",
        ),
        (pb.CreateWebhookEndpointRequest(url="https://example.com", max_attempts=0), "max_attem"),
        (pb.CreateWebhookEndpointRequest(url="https://example.com", format=9), "format: 9"),
    ]
    for request, words in cases:
        assert words in refused(grpc.StatusCode.INVALID_ARGUMENT, create, request)
    assert "client_id: 999" in refused(
        grpc.StatusCode.NOT_FOUND,
        create,
        pb.CreateWebhookEndpointRequest(url="https://example.com", client_id=999),
    )
    assert client.webhooks.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest()).endpoints == []


def test_private_addresses_are_refused_unless_the_server_allows_them(service, tenant) -> None:
    # the session's server runs without EFFIGATE_WEBHOOK_ALLOW_PRIVATE
    with Client(service.address, tenant.token, timeout=30) as client:
        for url in ("http://127.0.0.1:8080/hook", "http://169.254.169.254/", "http://[::1]/"):
            details = refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                client.webhooks.CreateWebhookEndpoint,
                pb.CreateWebhookEndpointRequest(url=url),
            )
            assert "EFFIGATE_WEBHOOK_ALLOW_PRIVATE=1" in details


def test_the_webhooks_commands_add_list_show_deliveries_and_redeliver(
    hooks: tuple[Database, ServiceProcess], receiver: Receiver
) -> None:
    from tests.e2e.test_cli import effigate

    db, running = hooks
    tenant = new_tenant(db)
    env = {"EFFIGATE_ADDRESS": running.address, "EFFIGATE_TOKEN": tenant.token}
    added = effigate(
        "webhooks",
        "add",
        receiver.url("/cli"),
        "--format",
        "SLACK",
        "--type",
        "SLA_BREACHED",
        "--max-attempts",
        "1",
        env=env,
    ).stdout
    endpoint_id = added.split()[0]
    secret = next(w for w in added.split() if w.startswith("whsec_"))
    assert "SLACK" in added and "SLA_BREACHED / all clients" in added
    receiver.expect("/cli", [secret], [500])
    listed = effigate("webhooks", "list", env=env).stdout
    assert endpoint_id in listed and "whsec_" not in listed
    (event_id,) = append(tenant, [event("SLA_BREACHED", "INC-CLI")])
    receiver.wait_for(lambda: receiver.received("/cli"), what="the one attempt")

    def dead() -> str:
        return effigate("webhooks", "deliveries", "--state", "DEAD", env=env).stdout

    receiver.wait_for(lambda: event_id in dead(), what="DEAD")
    line = dead().strip()
    assert "attempts 1" in line and "last 500" in line
    again = effigate("webhooks", "redeliver", line.split()[0], env=env).stdout
    assert "PENDING" in again
    receiver.wait_for(lambda: receiver.processed("/cli") == [event_id], what="redelivered")
    off = effigate("webhooks", "disable", endpoint_id, env=env).stdout
    assert "inactive" in off
    assert "removed" in effigate("webhooks", "remove", endpoint_id, env=env).stdout
    assert effigate("webhooks", "list", env=env).stdout.strip() == ""


def test_an_attempt_without_an_answer_in_time_fails_and_counts(
    staff: tuple[Tenant, Client], receiver: Receiver
) -> None:
    tenant, client = staff
    endpoint = add_endpoint(client, receiver, "/slow", [HANG], max_attempts=1).endpoint
    append(tenant, [event("SLA_BREACHED", "INC-SLOW")])
    receiver.wait_for(
        lambda: (
            [d.state for d in deliveries(client, endpoint_id=endpoint.id)]
            == [STATE.WEBHOOK_DELIVERY_STATE_DEAD]
        ),
        what="DEAD after the timeout",
    )
    (dead,) = deliveries(client, endpoint_id=endpoint.id)
    assert dead.last_error == "no answer within 2 s" and not dead.HasField("last_status")
    receiver.release()
