"""ReplayBilling through the API: a month re-priced under a proposed card beside the issued
invoice (Arrow replies), the issued invoice unchanged; bad input named; staff only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pyarrow.parquet as pq

from effigate_client import Client, billing_pb2
from effigate_client.client import ipc_table
from tests.e2e.support import refused
from tests.e2e.test_billing_api import (
    MARCH,
    SEED_CARD,
    billing_setup,
    ingest_and_approve,
    new_contract,
    period,
    seed_logs,
)

EFFIGATE = str(Path(sys.executable).with_name("effigate"))
PROPOSED = {**SEED_CARD, "rules": {"AFTER_HOURS": {"amount": "240.00"}}}


def test_replay_billing_returns_totals_and_moved_lines_as_arrow(
    service, client: Client, tenant
) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    ingest_and_approve(client, seed_logs(contract.id, "R"))
    draft = client.billing.GenerateInvoice(period(contract.id))
    issued = client.billing.IssueInvoice(billing_pb2.IssueInvoiceRequest(invoice_id=draft.id))
    request = billing_pb2.ReplayBillingRequest(
        contract_ids=[contract.id],
        period_from=MARCH,
        period_to="2026-03-31",
        proposed_rate_card_json=json.dumps(PROPOSED),
    )
    reply = client.billing.ReplayBilling(request)
    (total,) = ipc_table(reply.totals_arrow_ipc).to_pylist()
    assert total["contract_id"] == str(contract.id)
    assert total["current_total"] == issued.total_minor
    # 3 h after hours at 240.00 instead of 180.00, plus 10% GST on the difference: +198.00
    assert total["total_change"] == 3 * 6_000 * 11 // 10
    (line,) = ipc_table(reply.lines_arrow_ipc).to_pylist()
    assert (line["condition"], line["current_rate"], line["proposed_rate"]) == (
        "AFTER_HOURS",
        18_000,
        24_000,
    )
    assert line["current_seconds"] == line["proposed_seconds"] == 3 * 3_600
    (client_row,) = ipc_table(reply.by_client_arrow_ipc).to_pylist()
    assert client_row["client_id"] == str(book.nexus)
    assert client.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=issued.id)) == issued

    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.billing.ReplayBilling,
        billing_pb2.ReplayBillingRequest(
            period_from=MARCH,
            period_to="2026-03-31",
            proposed_terms_json=json.dumps({"sla_credits": {"per_breach": {"URGENT": "1.00"}}}),
        ),
    )
    assert "proposed_terms_json.sla_credits.per_breach.URGENT" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.billing.ReplayBilling,
        billing_pb2.ReplayBillingRequest(period_from=MARCH, period_to="2026-03-31"),
    )
    assert "proposed_rate_card_json" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.billing.ReplayBilling,
        billing_pb2.ReplayBillingRequest(
            period_from="2026-04-01", period_to=MARCH, proposed_rate_card_json=json.dumps(PROPOSED)
        ),
    )
    assert "period_to" in details
    details = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.billing.ReplayBilling,
        billing_pb2.ReplayBillingRequest(
            period_from="2026-13-01", period_to=MARCH, proposed_rate_card_json=json.dumps(PROPOSED)
        ),
    )
    assert "period_from" in details and "2026-13-01" in details
    other = refused(
        grpc.StatusCode.NOT_FOUND,
        client.billing.ReplayBilling,
        billing_pb2.ReplayBillingRequest(
            contract_ids=[contract.id + 10_000],
            period_from=MARCH,
            period_to=MARCH,
            proposed_rate_card_json=json.dumps(PROPOSED),
        ),
    )
    assert "contract_id" in other
    with Client(service.address, tenant.portal_token(book.nexus)) as portal:
        refused(grpc.StatusCode.PERMISSION_DENIED, portal.billing.ReplayBilling, request)


def test_replay_billing_command_prints_per_client_and_writes_parquet(
    service, client: Client, tenant, tmp_path
) -> None:
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    ingest_and_approve(client, seed_logs(contract.id, "C"))
    card = tmp_path / "card.json"
    card.write_text(json.dumps(PROPOSED))
    terms = tmp_path / "terms.json"
    terms.write_text(json.dumps({"sla_credits": None}))
    env = {**os.environ, "EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": tenant.token}
    args = ["--from", MARCH, "--to", "2026-03-31", "--contract", str(contract.id)]
    proposed = ["--rate-card", str(card), "--terms", str(terms), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [EFFIGATE, "replay-billing", *args, *proposed],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    reply = client.billing.ReplayBilling(
        billing_pb2.ReplayBillingRequest(
            contract_ids=[contract.id],
            period_from=MARCH,
            period_to="2026-03-31",
            proposed_rate_card_json=json.dumps(PROPOSED),
            proposed_terms_json=json.dumps({"sla_credits": None}),
        )
    )
    (row,) = ipc_table(reply.by_client_arrow_ipc).to_pylist()
    header, line, summary, written = done.stdout.splitlines()
    assert header.split() == ["client", "currency", "current", "proposed", "change"]
    assert written.startswith("written: ") and "by_client.parquet" in written
    assert line.split() == [
        str(book.nexus),
        "USD",
        f"{row['current'] / 100:.2f}",
        f"{row['proposed'] / 100:.2f}",
        f"{row['change'] / 100:.2f}",
    ]
    assert summary.startswith("1 contract periods (1 change)")
    assert pq.read_table(tmp_path / "out" / "totals.parquet").equals(
        ipc_table(reply.totals_arrow_ipc)
    )
    assert pq.read_table(tmp_path / "out" / "lines.parquet").num_rows == 1
    missing = subprocess.run(
        [EFFIGATE, "replay-billing", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert missing.returncode != 0 and "--rate-card" in missing.stderr
