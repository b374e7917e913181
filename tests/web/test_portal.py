"""The client portal over a real server's HTTP port: each page against the gRPC API's answer
for the same client (staff token), and two clients' pages kept apart."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from effigate.v1 import billing_pb2, catalog_pb2, tickets_pb2
from effigate_client import Client
from effigate_engine.money import currency
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant, _token
from tests.e2e.test_billing_api import MARCH, billing_setup, ingest_and_approve, time_log
from tests.store.helpers import Database
from tests.web.conftest import Demo

#: Invoice states the portal shows (a draft or one in review may still change).
ISSUED = ("ISSUED", "OVERDUE", "PAID", "VOID")


@dataclass
class Side:
    """One client of the demo as its portal sees it, and as staff see it through gRPC."""

    client_id: int
    name: str
    token: str
    contracts: list[Any]
    ticket_ids: list[str]
    invoices: list[Any]


def _tickets(c: Client, client_id: int) -> list[Any]:
    out: list[Any] = []
    after = ""
    while True:
        page = c.tickets.ListTickets(
            tickets_pb2.ListTicketsRequest(client_id=client_id, limit=10_000, after_id=after)
        ).tickets
        out.extend(page)
        if len(page) < 10_000:
            return out
        after = page[-1].id


def _side(c: Client, demo: Demo, db: Database, client_id: int) -> Side:
    names = {k.id: k.name for k in c.catalog.ListClients(catalog_pb2.ListClientsRequest()).clients}
    known = dict(zip([k for k, _ in demo.clients], demo.portal_tokens, strict=True))
    token = known.get(client_id) or asyncio.run(_token(db.admin, demo.tenant_id, client_id))
    contracts = list(
        c.contracts.ListContracts(billing_pb2.ListContractsRequest(client_id=client_id)).contracts
    )
    ids = {k.id for k in contracts}
    # the client sees issued invoices: issue the demo's drafts of this client (once)
    invoices = []
    for inv in c.billing.ListInvoices(billing_pb2.ListInvoicesRequest()).invoices:
        if inv.contract_id not in ids:
            continue
        if inv.status in ("DRAFT", "REVIEW"):
            inv = c.billing.IssueInvoice(billing_pb2.IssueInvoiceRequest(invoice_id=inv.id))
        invoices.append(inv)
    tickets = [t.id for t in _tickets(c, client_id)]
    return Side(client_id, names[client_id], token, contracts, tickets, invoices)


@pytest.fixture(scope="session")
def sides(service: ServiceProcess, demo: Demo, db: Database) -> tuple[Side, Side]:
    """Client A: the client of the demo's HOURLY contract (SLA credits on its invoice);
    client B: the client of its BUCKET contract (a prepaid bucket)."""
    with Client(service.address, demo.token, timeout=120) as c:
        contracts = c.contracts.ListContracts(billing_pb2.ListContractsRequest()).contracts
        by_type = {k.contract_type: k.client_id for k in contracts}
        a = _side(c, demo, db, by_type["HOURLY"])
        b = _side(c, demo, db, by_type["BUCKET"])
    assert a.client_id != b.client_id and a.ticket_ids and b.ticket_ids
    assert a.invoices and b.invoices
    return a, b


@contextmanager
def _web(service: ServiceProcess, token: str | None) -> Iterator[httpx.Client]:
    """An HTTP client of the service, signed in with ``token`` through the login form."""
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url, timeout=120) as web:
        if token is not None:
            signed = web.post("/login", data={"token": token}, follow_redirects=False)
            assert signed.status_code == 303 and signed.headers["location"] == "/portal"
        yield web


def _get(web: httpx.Client, path: str) -> str:
    answer = web.get(path)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    return answer.text


def _attrs(html: str, name: str) -> list[str]:
    return re.findall(rf'{name}="([^"]*)"', html)


def _money(minor: int, code: str) -> str:
    return f"{code} {currency(code).format(minor)}"


def _iso(ts: Any) -> str:
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_ticket_list_is_exactly_the_clients_tickets_open_first(
    service: ServiceProcess, sides: tuple[Side, Side]
) -> None:
    for side in sides:
        with _web(service, side.token) as web:
            html = _get(web, "/portal")
        listed = _attrs(html, "data-ticket-id")
        assert sorted(listed) == sorted(side.ticket_ids)
        assert side.name in html
        assert "<main" in html and "data-live-region" in html
        assert 'class="countdown" data-due="' in html
        rows = re.findall(r'<tr data-ticket-id="[^"]*"( class="closed")?>', html)
        closed = [bool(r) for r in rows]
        assert closed == sorted(closed), "open tickets come before closed ones"


def test_a_ticket_page_shows_the_apis_timeline_and_its_pauses(
    service: ServiceProcess, demo: Demo, sides: tuple[Side, Side]
) -> None:
    a, _ = sides
    with Client(service.address, demo.token, timeout=120) as c:
        listed = _tickets(c, a.client_id)
        paused = [t for t in listed if t.status not in ("OPEN", "RESOLVED")]
        chosen = ([paused[0]] if paused else []) + [listed[0], listed[-1]]
        with _web(service, a.token) as web:
            for ticket in chosen:
                html = _get(web, f"/portal/tickets/{ticket.id}")
                api = c.tickets.GetTicketTimeline(
                    tickets_pb2.GetTicketTimelineRequest(ticket_id=ticket.id)
                )
                shown = list(
                    zip(
                        _attrs(html, "data-at"),
                        _attrs(html, "data-metric"),
                        _attrs(html, "data-status"),
                        strict=True,
                    )
                )
                expected = [(_iso(e.at), e.metric, e.status) for e in api.entries]
                assert shown == expected and expected
                assert '<th scope="col">' in html and "<ol" in html
                if ticket in paused:
                    assert (
                        "<strong>Paused</strong>: " + ticket.status.replace("_", " ").lower()
                        in html
                    )
                    assert "status-paused" in html


def test_the_bucket_page_equals_the_apis_balance_and_its_history_adds_up(
    service: ServiceProcess, demo: Demo, sides: tuple[Side, Side]
) -> None:
    _, b = sides
    buckets = [k for k in b.contracts if k.contract_type == "BUCKET"]
    with _web(service, b.token) as web:
        html = _get(web, "/portal/bucket")
    with Client(service.address, demo.token, timeout=120) as c:
        for contract in buckets:
            api = c.billing.GetBucketBalance(
                billing_pb2.BucketBalanceRequest(contract_id=contract.id)
            )
            part = html.split(f'data-contract-id="{contract.id}"', 1)[1].split("</article>")[0]

            def seconds(name: str, part: str = part) -> int:
                return int(re.search(rf'data-seconds="(\d+)" class="{name}"', part).group(1))

            assert seconds("purchased") == api.purchased_seconds
            assert seconds("top-up") == api.top_up_seconds
            assert seconds("burned") == api.burned_seconds
            assert seconds("remaining") == api.remaining_seconds
            moves = re.findall(r'data-kind="(\w+)" data-seconds="(\d+)"', part)
            added = sum(int(s) for k, s in moves if k in ("PURCHASE", "PERIOD_GRANT", "TOP_UP"))
            used = sum(int(s) for k, s in moves if k == "DRAWDOWN")
            expired = sum(int(s) for k, s in moves if k == "EXPIRY")
            assert added == api.purchased_seconds + api.top_up_seconds
            assert used == api.burned_seconds
            assert added - used - expired == api.remaining_seconds
            assert any(k == "DRAWDOWN" for k, _ in moves)
            assert int(_attrs(part, "data-balance-after")[-1]) == api.remaining_seconds


def test_invoice_pages_equal_the_apis_invoices(
    service: ServiceProcess, demo: Demo, sides: tuple[Side, Side]
) -> None:
    with Client(service.address, demo.token, timeout=120) as c:
        for side in sides:
            with _web(service, side.token) as web:
                listing = _get(web, "/portal/invoices")
                issued = [i for i in side.invoices if i.status in ISSUED]
                assert sorted(map(int, _attrs(listing, "data-invoice-id"))) == sorted(
                    i.id for i in issued
                )
                for inv in issued:
                    api = c.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=inv.id))
                    assert f"Invoice {api.number}<" in listing
                    assert _money(api.total_minor, api.currency) in listing
                    html = _get(web, f"/portal/invoices/{inv.id}")
                    lines = list(
                        zip(
                            map(int, _attrs(html, "data-invoice-line")),
                            map(int, _attrs(html, "data-amount-minor")),
                            strict=True,
                        )
                    )
                    assert lines == [(x.id, x.amount_minor) for x in api.lines]
                    for x in api.lines:
                        assert _money(x.amount_minor, api.currency) in html
                    total = re.search(r'data-total-minor="(-?\d+)">([^<]*)<', html)
                    assert int(total.group(1)) == api.total_minor
                    assert total.group(2) == _money(api.total_minor, api.currency)
                    for tax in api.taxes:
                        assert _money(tax.amount_minor, api.currency) in html
                    credits = [x for x in api.lines if x.kind == "SLA_CREDIT"]
                    for x in credits:
                        for breach in re.findall(r'"breach_ids": \[([^\]]*)\]', x.evidence_json):
                            for bid in re.findall(r'"([^"]+)"', breach):
                                assert f'data-breach-id="{bid}"' in html
                                assert bid.split(":")[0] in html
                    logged = [x for x in api.lines if x.time_log_ids]
                    for x in logged[:3]:
                        evidence = html.split(f'<details class="evidence" data-line-id="{x.id}"')
                        assert len(evidence) == 2
                        section = evidence[1].split("</details>")[0]
                        for log_id in x.time_log_ids[:20]:
                            assert log_id in section


def test_an_hourly_invoice_shows_its_sla_credits(
    service: ServiceProcess, demo: Demo, sides: tuple[Side, Side]
) -> None:
    a, _ = sides
    with Client(service.address, demo.token, timeout=120) as c:
        credited = [
            api
            for api in (
                c.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=i.id))
                for i in a.invoices
            )
            if any(x.kind == "SLA_CREDIT" for x in api.lines)
        ]
    if not credited:
        pytest.skip("the demo's invoices of this client carry no SLA credit")
    with _web(service, a.token) as web:
        html = _get(web, f"/portal/invoices/{credited[0].id}")
    assert "<h2>SLA credits</h2>" in html and "credit rule" in html
    assert "per breach" in html


def test_one_clients_pages_show_nothing_of_the_other(
    service: ServiceProcess, sides: tuple[Side, Side]
) -> None:
    for me, other in (sides, sides[::-1]):
        with _web(service, me.token) as web:
            pages = ["/portal", "/portal/bucket", "/portal/invoices"]
            pages += [f"/portal/invoices/{i.id}" for i in me.invoices if i.status in ISSUED]
            pages += [f"/portal/tickets/{t}" for t in me.ticket_ids[:3]]
            for path in pages:
                html = _get(web, path)
                assert other.name not in html, path
                leaked = set(re.findall(r"INC-\d+", html)) & set(other.ticket_ids)
                assert not leaked, (path, sorted(leaked)[:5])
                for inv in other.invoices:
                    assert not re.search(rf"Invoice {inv.number}\b", html), path
                    assert f"/portal/invoices/{inv.id}" not in html, path
                for contract in other.contracts:
                    assert not re.search(rf"Contract {contract.id}\b", html), path
                    assert f'data-contract-id="{contract.id}"' not in html, path


def test_another_clients_ids_are_not_found_and_bad_ids_are_named(
    service: ServiceProcess, sides: tuple[Side, Side]
) -> None:
    a, b = sides
    with _web(service, a.token) as web:
        for path in (
            f"/portal/tickets/{b.ticket_ids[0]}",
            f"/portal/invoices/{b.invoices[0].id}",
            f"/portal/invoices/{b.invoices[0].id}.pdf",
            "/portal/tickets/NO-SUCH-TICKET",
            "/portal/invoices/999999999",
        ):
            answer = web.get(path)
            assert answer.status_code == 404, path
            assert "There is no such page in your portal." in answer.text
            assert b.name not in answer.text and b.ticket_ids[0] not in answer.text
        bad = web.get("/portal/invoices/12x")
        assert bad.status_code == 400
        assert "invoice_id: &#39;12x&#39; is not a positive whole number" in bad.text
        assert web.get("/portal/invoices/-3.pdf").status_code == 400
        assert web.get(f"/portal/invoices/{2**63}").status_code == 400
        assert web.get("/portal/tickets/").status_code == 400
        for odd in ("%00", "a%0Ab", "%F0%9F%92%A5", "x" * 5000, "..%2F..%2Fetc"):
            answer = web.get(f"/portal/tickets/{odd}")
            assert answer.status_code in (400, 404), (odd, answer.status_code)


def test_staff_go_to_the_dashboard_and_strangers_to_sign_in(
    service: ServiceProcess, demo: Demo
) -> None:
    with _web(service, None) as web:
        for path in ("/portal", "/portal/invoices", "/portal/bucket", "/portal/tickets/INC-1"):
            answer = web.get(path, follow_redirects=False)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login?next=")
        staff = web.get(
            "/portal", headers={"Authorization": f"Bearer {demo.token}"}, follow_redirects=False
        )
        assert staff.status_code == 303 and staff.headers["location"] == "/dashboard"


def test_the_invoice_pdf_carries_the_number_and_the_apis_total(
    service: ServiceProcess, demo: Demo, sides: tuple[Side, Side]
) -> None:
    with Client(service.address, demo.token, timeout=120) as c:
        for side in sides:
            inv = next(i for i in side.invoices if i.status in ISSUED)
            api = c.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=inv.id))
            with _web(service, side.token) as web:
                page = _get(web, f"/portal/invoices/{inv.id}")
                started = datetime.now(UTC)
                answer = web.get(f"/portal/invoices/{inv.id}.pdf")
                took = (datetime.now(UTC) - started).total_seconds()
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/pdf"
            assert (
                answer.headers["content-disposition"] == f'attachment; filename="{api.number}.pdf"'
            )
            text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(answer.content)).pages)
            total = _money(api.total_minor, api.currency)
            assert f"Invoice {api.number}" in text
            assert total in text and total in page
            assert side.name in text
            assert took < 60


def test_a_rolling_buckets_top_ups_and_expiries_add_up_to_its_balance(
    service: ServiceProcess, client: Client, tenant: Tenant
) -> None:
    """A per-period bucket (10 h a month, unused hours valid two more months, at most 5 h
    carried into a month) with a top-up: the history lists the grants, the top-up, the
    expiries of the cap and of lapsed grants, and adds up to GetBucketBalance."""
    book = billing_setup(client)
    terms = {
        "bucket": {
            "size_hours": 10,
            "per_period": True,
            "rollover_periods": 2,
            "rollover_cap_hours": "5",
            "low_balance_hours": [2],
        }
    }
    draft = client.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=book.nexus,
            contract_type="BUCKET",
            currency="USD",
            starts_on=MARCH,
            calendar_id=book.calendar,
            sla_policy_id=book.policy,
            rate_card_id=book.rate_card,
            terms_json=json.dumps(terms),
        )
    )
    contract = client.contracts.ActivateContract(
        billing_pb2.ActivateContractRequest(contract_id=draft.id)
    )
    client.contracts.AmendContract(
        billing_pb2.AmendContractRequest(
            contract_id=contract.id,
            kind="TOP_UP",
            effective_on="2026-04-10",
            body_json=json.dumps({"hours": 4}),
        )
    )
    spans = [
        ("2026-03-03T09:00-05:00", "2026-03-03T11:00-05:00"),
        ("2026-04-14T09:00-04:00", "2026-04-14T17:00-04:00"),
        ("2026-04-15T09:00-04:00", "2026-04-15T17:00-04:00"),
        ("2026-05-05T09:00-04:00", "2026-05-05T10:00-04:00"),
    ]
    ingest_and_approve(
        client, [time_log(f"roll-{i}", contract.id, span) for i, span in enumerate(spans)]
    )
    api = client.billing.GetBucketBalance(billing_pb2.BucketBalanceRequest(contract_id=contract.id))
    with _web(service, tenant.portal_token(book.nexus)) as web:
        html = _get(web, "/portal/bucket")
    assert f'data-contract-id="{contract.id}"' in html
    moves = re.findall(r'data-kind="(\w+)" data-seconds="(\d+)"', html)
    kinds = {k for k, _ in moves}
    assert {"PERIOD_GRANT", "TOP_UP", "DRAWDOWN", "EXPIRY"} <= kinds
    added = sum(int(s) for k, s in moves if k in ("PURCHASE", "PERIOD_GRANT", "TOP_UP"))
    used = sum(int(s) for k, s in moves if k == "DRAWDOWN")
    expired = sum(int(s) for k, s in moves if k == "EXPIRY")
    assert added == api.purchased_seconds + api.top_up_seconds
    assert used == api.burned_seconds
    assert added - used - expired == api.remaining_seconds
    assert int(_attrs(html, "data-balance-after")[-1]) == api.remaining_seconds
    assert re.search(rf'data-seconds="{api.remaining_seconds}" class="remaining"', html)
