"""The Python client: asyncio client, retry policy, and the demo MSP driven through it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from effigate.v1 import (
    billing_pb2,
    catalog_pb2,
    events_pb2,
    routing_pb2,
    sla_pb2,
    tickets_pb2,
    webhooks_pb2,
)
from effigate_client import AsyncClient, Client
from effigate_client.client import IDEMPOTENT, service_config
from tests.e2e.support import standard_setup
from tests.e2e.test_sla_api import NOW, generated_tickets

MODULES = {
    "CatalogService": catalog_pb2,
    "TicketService": tickets_pb2,
    "SlaService": sla_pb2,
    "ReportService": sla_pb2,
    "RateCardService": billing_pb2,
    "ContractService": billing_pb2,
    "TimeLogService": billing_pb2,
    "BillingService": billing_pb2,
    "RoutingService": routing_pb2,
    "WebhookService": webhooks_pb2,
    "EventService": events_pb2,
}
#: Calls that repeat an effect if sent twice: never retried.
EFFECTFUL = {
    "CreateClient",
    "CreateCalendar",
    "CreatePolicy",
    "CreateRateCard",
    "PublishRateCard",
    "CreateContract",
    "ActivateContract",
    "AmendContract",
    "AddMilestone",
    "AddDeliverable",
    "IssueInvoice",
    "VoidInvoice",
    "RecordPayment",
    "CreateCreditNote",
    "CreateWebhookEndpoint",
    "DeleteWebhookEndpoint",
    "RotateWebhookSecret",
    "RedeliverWebhook",
}


def test_retry_policy_names_only_existing_idempotent_calls() -> None:
    config = json.loads(service_config())
    names = config["methodConfig"][0]["name"]
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    for entry in names:
        service = entry["service"].removeprefix("effigate.v1.")
        descriptor = MODULES[service].DESCRIPTOR.services_by_name[service]
        assert entry["method"] in descriptor.methods_by_name, entry
        assert entry["method"] not in EFFECTFUL, entry
    assert sum(len(m) for m in IDEMPOTENT.values()) == len(names)


def test_async_client_streams_like_the_blocking_one(service, client: Client, tenant) -> None:
    ids = standard_setup(client)
    tickets = generated_tickets(1_200, seed=21)
    blocking = client.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=500)

    async def run():
        async with AsyncClient(service.address, tenant.token) as aio:
            listed = await aio.catalog.ListPolicies(catalog_pb2.ListPoliciesRequest())
            streamed = await aio.evaluate_arrow(ids.policy, tickets, NOW, chunk_rows=300)
            return listed, streamed

    listed, streamed = asyncio.run(run())
    assert [p.id for p in listed.policies] == [ids.policy]
    assert streamed.equals(blocking)


def test_demo_runs_through_the_client(service, tenant) -> None:
    effigate = str(Path(sys.executable).with_name("effigate"))
    env = {**os.environ, "EFFIGATE_TOKEN": tenant.token}
    done = subprocess.run(
        [effigate, "demo", "--tickets", "400", "--address", service.address],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "5 contracts (HOURLY, BUCKET, RECURRING, FIXED_PRICE, SCOPE), 400 tickets" in out
    assert "SLA compliance by client and priority" in out
    assert out.count("  DRAFT ") == 5  # one invoice per contract for October
    assert "Total" in out
