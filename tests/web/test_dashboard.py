"""The operations dashboard over a real server's HTTP port: every number on the page equals what
the gRPC API answers for the same tenant at the same instant, computed here independently."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
import pyarrow as pa

from effigate.v1 import billing_pb2, catalog_pb2, routing_pb2, sla_pb2, tickets_pb2
from effigate_client import Client, to_timestamp
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant
from tests.store.helpers import Database
from tests.web.conftest import Demo

#: The compliance period asked for: the demo's tickets were raised before its fixed "now".
PERIOD = ("2026-08-01", "2026-11-03")


def _at() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(service: ServiceProcess, token: str, **params: str) -> str:
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url, timeout=120) as web:
        web.post("/login", data={"token": token})
        response = web.get("/dashboard", params=params)
    assert response.status_code == 200, response.text[:2000]
    return response.text


def _attrs(text: str, tag_pattern: str) -> list[dict[str, str]]:
    """The ``data-*`` attributes of each element whose opening tag matches ``tag_pattern``."""
    found = []
    for tag in re.findall(tag_pattern, text):
        found.append({k: html.unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', tag)})
    return found


def _section(text: str, section_id: str) -> str:
    start = text.index(f'id="{section_id}"')
    end = text.find("</section>", start)
    return text[start:end]


def _report(c: Client, policy_id: int, at: datetime, key: str) -> dict[str, tuple[int, int]]:
    reply = c.reports.Compliance(
        sla_pb2.ReportRequest(
            policy_id=policy_id, now=to_timestamp(at), group_by=[key], period="day"
        )
    )
    table = pa.ipc.open_stream(reply.arrow_ipc).read_all()
    low = datetime.combine(date.fromisoformat(PERIOD[0]), datetime.min.time(), UTC)
    high = datetime.combine(date.fromisoformat(PERIOD[1]), datetime.min.time(), UTC) + timedelta(
        days=1
    )
    sums: dict[str, list[int]] = {}
    for row in table.to_pylist():
        if low <= row["period"] < high:
            s = sums.setdefault(str(row[key]), [0, 0])
            s[0] += row["met"]
            s[1] += row["breached"]
    return {k: (m, b) for k, (m, b) in sums.items()}


def _open_statuses(c: Client, at: datetime) -> list[tuple[str, str, datetime | None, bool]]:
    """(ticket, status, deadline, stopped) of every metric of every open ticket at ``at``, one
    GetTicketStatus call per open ticket."""
    tickets = []
    after = ""
    while True:
        page = c.tickets.ListTickets(tickets_pb2.ListTicketsRequest(limit=10_000, after_id=after))
        tickets += list(page.tickets)
        if len(page.tickets) < 10_000:
            break
        after = page.tickets[-1].id
    metrics = []
    for t in tickets:
        if t.status == "RESOLVED":
            continue
        status = c.tickets.GetTicketStatus(
            tickets_pb2.GetTicketStatusRequest(ticket_id=t.id, at=to_timestamp(at))
        )
        for m in status.metrics:
            deadline = m.deadline.ToDatetime(UTC) if m.HasField("deadline") else None
            metrics.append((t.id, m.status, deadline, m.HasField("stopped_at")))
    return metrics


def test_signed_out_callers_go_to_login_and_portal_tokens_to_their_portal(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url) as web:
        away = web.get("/dashboard", follow_redirects=False)
        assert away.status_code == 303
        assert away.headers["location"].startswith("/login?next=/dashboard")
    with httpx.Client(base_url=service.http_url) as web:
        web.post("/login", data={"token": demo.portal_tokens[0]})
        portal = web.get("/dashboard", follow_redirects=False)
        assert portal.status_code == 303 and portal.headers["location"] == "/portal"


def test_every_panel_equals_what_the_api_answers_at_the_same_instant(
    service: ServiceProcess, demo: Demo
) -> None:
    at = _at()
    text = _page(service, demo.token, at=_iso(at), **{"from": PERIOD[0], "to": PERIOD[1]})
    with Client(service.address, demo.token, timeout=120) as c:
        metrics = _open_statuses(c, at)
        priority = _report(c, demo.summary.policy_id, at, "priority")
        clients = _report(c, demo.summary.policy_id, at, "client_id")
        invoices = list(c.billing.ListInvoices(billing_pb2.ListInvoicesRequest()).invoices)
        contracts = c.contracts.ListContracts(billing_pb2.ListContractsRequest()).contracts
        workload = c.routing.AgentWorkload(routing_pb2.AgentWorkloadRequest(now=to_timestamp(at)))
        figures = _attrs(text, r'<figure class="bucket"[^>]*>')
        assert {int(f["contract"]) for f in figures} == {
            k.id for k in contracts if k.contract_type == "BUCKET" and k.status != "DRAFT"
        }
        assert figures, "the demo has a prepaid bucket"
        balances = {}
        for figure in figures:
            contract = int(figure["contract"])
            balances[contract] = c.billing.GetBucketBalance(
                billing_pb2.BucketBalanceRequest(contract_id=contract, at=to_timestamp(at))
            ).remaining_seconds
            assert int(figure["remaining"]) == balances[contract], contract

    # agents' workload: open tickets, warnings and breaches as AgentWorkload reports them
    agents = {
        a["agent"]: (int(a["open"]), int(a["warning"]), int(a["breached"]))
        for a in _attrs(_section(text, "workload"), r"<tr data-agent[^>]*>")
    }
    assert agents == {
        a.agent_id: (a.open_tickets, a.at_risk, a.breached)
        for a in workload.agents
        if a.open_tickets or a.active
    }
    assert any(breached for _, _, breached in agents.values())

    # status counts: every metric of every open ticket, as GetTicketStatus says
    expected = Counter(status for _, status, _, _ in metrics)
    shown = {a["status"]: int(a["count"]) for a in _attrs(text, r'<dd id="count-[^>]*>')}
    assert shown == {s: expected.get(s, 0) for s in shown}
    assert set(shown) == {"ON_TRACK", "WARNING", "PAUSED", "MET", "BREACHED"}
    assert sum(shown.values()) == len(metrics) > 0
    assert shown["BREACHED"] > 0  # the demo's open tickets are long past their deadlines

    # the at-risk list: its total, and most overdue first
    risky = [m for m in metrics if m[1] in ("BREACHED", "WARNING") and not m[3]]
    total = _attrs(text, r'<span class="muted" id="at-risk-total"[^>]*>')[0]
    assert int(total["total"]) == len(risky)
    rows = _attrs(_section(text, "at-risk"), r"<tr data-ticket[^>]*>")
    assert 0 < len(rows) <= 50
    order = [(r["status"] != "BREACHED", r["deadline"]) for r in rows]
    assert order == sorted(order)
    first_breach = min(d for _, s, d, stopped in risky if s == "BREACHED" and d is not None)
    assert rows[0]["status"] == "BREACHED"
    assert rows[0]["deadline"] == _iso(first_breach)

    # compliance: the report's met and breached over the days of the period
    policy = re.search(r"under SLA policy (\d+)", text)
    assert policy is not None and int(policy.group(1)) == demo.summary.policy_id
    for key, report in (("priority", priority), ("client", clients)):
        table = _attrs(text, rf'<table class="numbers" id="compliance-{key}">(?s:.*?)</table>')
        assert table, key
        block = re.search(rf'id="compliance-{key}">(.*?)</table>', text, re.S)
        assert block is not None
        page_rows = {
            a["key"]: (int(a["met"]), int(a["breached"]))
            for a in _attrs(block.group(1), r"<tr data-key[^>]*>")
        }
        assert page_rows == report and report, key

    # invoices by state: counts and totals as ListInvoices reports them
    states = _attrs(_section(text, "invoices"), r"<tr data-state[^>]*>")
    assert {s["state"]: int(s["count"]) for s in states} == dict(
        Counter(i.status for i in invoices)
    )
    totals = Counter()
    for i in invoices:
        totals[i.status] += i.total_minor
    block = _section(text, "invoices")
    for state in states:
        row = re.search(rf'data-state="{state["state"]}"(.*?)</tr>', block, re.S)
        assert row is not None
        shown_total = sum(int(v) for v in re.findall(r'data-total-minor="(-?\d+)"', row.group(1)))
        assert shown_total == totals[state["state"]]


def test_a_bad_instant_or_date_is_a_400_page_naming_the_field(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url) as web:
        web.post("/login", data={"token": demo.token})
        for params, field, value in (
            ({"at": "yesterday"}, "at", "yesterday"),
            ({"at": "2026-12-07T10:00:00"}, "at", "2026-12-07T10:00:00"),
            ({"from": "2026-13-01"}, "from", "2026-13-01"),
            ({"from": "2026-11-02", "to": "2026-11-01"}, "to", "2026-11-01"),
            ({"policy": "fast"}, "policy", "fast"),
        ):
            page = web.get("/dashboard", params=params)
            assert page.status_code == 400, params
            message = html.unescape(re.search(r'id="error">(.*?)</p>', page.text).group(1))
            assert message.startswith(f"{field}: ") and value in message, message
        for far in ("1900-01-01T00:00:00Z", "2999-12-31T00:00:00+10:00"):
            page = web.get("/dashboard", params={"at": far})
            assert page.status_code in (200, 400), (far, page.text[-2000:])
            if page.status_code == 400:
                message = html.unescape(re.search(r'id="error">(.*?)</p>', page.text).group(1))
                assert message.startswith("at: "), message


ALWAYS = {
    "timezone": "UTC",
    "weekly": [
        {"weekday": d, "start": "00:00", "end": "24:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ],
}


def fast(calendar: str) -> dict:
    """A policy whose first response is due an hour after a ticket is raised, in business
    seconds of ``calendar`` (warning at half of it)."""
    target = {"target": 3600, "calendar": calendar, "warning": "0.5"}
    return {"rules": [{"match": {}, "metrics": {"FIRST_RESPONSE": target}}]}


def fast_contract(c: Client, name: str = "Contoso") -> tuple[int, int]:
    """A client called ``name`` and a contract under :func:`fast` (a 24x7 calendar), each
    with a calendar and a policy of its own."""
    tag = name.lower()
    calendar = c.catalog.CreateCalendar(
        catalog_pb2.CreateCalendarRequest(name=f"always-{tag}", body_json=json.dumps(ALWAYS))
    ).id
    policy = c.catalog.CreatePolicy(
        catalog_pb2.CreatePolicyRequest(
            name=f"fast-{tag}", calendar_id=calendar, body_json=json.dumps(fast(f"always-{tag}"))
        )
    ).id
    client_id = c.catalog.CreateClient(catalog_pb2.CreateClientRequest(name=name)).id
    contract = c.contracts.CreateContract(
        billing_pb2.CreateContractRequest(
            client_id=client_id,
            contract_type="HOURLY",
            currency="USD",
            starts_on="2026-01-01",
            calendar_id=calendar,
            sla_policy_id=policy,
        )
    ).id
    return client_id, contract


def open_ticket(c: Client, client_id: int, contract: int, ticket_id: str) -> None:
    """A ticket raised now: its first response is on track (no event yet)."""
    c.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id=ticket_id,
            client_id=client_id,
            contract_id=contract,
            priority="HIGH",
            created_at=to_timestamp(_at()),
        )
    )


def respond(c: Client, ticket_id: str) -> None:
    """The first response to ``ticket_id``, now: its FIRST_RESPONSE metric is met, and the
    server announces SLA_MET in the same transaction."""
    c.tickets.RecordEvent(
        tickets_pb2.RecordEventRequest(
            event_id=f"{ticket_id}-responded",
            ticket_id=ticket_id,
            kind=tickets_pb2.RESPONDED,
            occurred_at=to_timestamp(_at()),
        )
    )


def test_the_event_stream_delivers_the_callers_news_and_refuses_strangers(
    service: ServiceProcess, tenant: Tenant
) -> None:
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url, timeout=10) as web:
        assert web.get("/live/events").status_code == 401
    with Client(service.address, tenant.token, timeout=60) as c:
        client_id, contract = fast_contract(c)
        lines: list[str] = []
        opened = threading.Event()

        def read() -> None:
            headers = {"Authorization": f"Bearer {tenant.token}"}
            with (
                httpx.Client(base_url=service.http_url, timeout=30) as web,
                web.stream("GET", "/live/events", headers=headers) as stream,
            ):
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    opened.set()
                    lines.append(line)
                    if line.startswith("data: ") and "SLA_MET" in "".join(lines[-3:]):
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        open_ticket(c, client_id, contract, "INC-SSE1")
        assert opened.wait(10), "the stream did not open"
        respond(c, "INC-SSE1")
        reader.join(10)
    assert not reader.is_alive(), f"no SLA_MET event within 10 s: {lines}"
    events = [i for i, line in enumerate(lines) if line == "event: SLA_MET"]
    assert events
    i = events[-1]
    assert re.fullmatch(r"id: \d+\.\d+", lines[i - 1])
    data = json.loads(lines[i + 1].removeprefix("data: "))
    assert data["subject"].startswith("INC-SSE1") or "INC-SSE1" in json.dumps(data)


def test_an_open_event_stream_ends_when_the_server_shuts_down(db: Database, tenant: Tenant) -> None:
    own = ServiceProcess.start(db.app)
    assert own.http_url is not None
    ended = threading.Event()
    opened = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {tenant.token}"}
        try:
            with (
                httpx.Client(base_url=own.http_url, timeout=30) as web,
                web.stream("GET", "/live/events", headers=headers) as stream,
            ):
                for _ in stream.iter_lines():
                    opened.set()
        except httpx.HTTPError:
            pass
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert opened.wait(10), "the stream did not open"
    finally:
        began = time.monotonic()
        code = own.stop()
    assert ended.wait(5), "the stream outlived the server"
    assert code == 0 and time.monotonic() - began < 10


def test_a_ticket_link_of_the_at_risk_list_opens_its_sla_metrics(
    service: ServiceProcess, demo: Demo
) -> None:
    at = _at()
    text = _page(service, demo.token, at=_iso(at))
    first = _attrs(_section(text, "at-risk"), r"<tr data-ticket[^>]*>")[0]
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url, timeout=60) as web:
        web.post("/login", data={"token": demo.token})
        page = web.get(f"/dashboard/tickets/{first['ticket']}", params={"at": _iso(at)})
        missing = web.get("/dashboard/tickets/NO-SUCH-TICKET")
    assert page.status_code == 200
    assert f"Ticket {first['ticket']}" in page.text and "Breached" in page.text
    assert missing.status_code == 404 and "NO-SUCH-TICKET" in html.unescape(missing.text)


def test_a_portal_token_streams_only_its_own_clients_events(
    service: ServiceProcess, tenant: Tenant
) -> None:
    assert service.http_url is not None
    with Client(service.address, tenant.token, timeout=60) as c:
        ours, our_contract = fast_contract(c, "Contoso")
        theirs, their_contract = fast_contract(c, "Fabrikam")
        open_ticket(c, ours, our_contract, "INC-OURS")
        open_ticket(c, theirs, their_contract, "INC-THEIRS")
        portal = tenant.portal_token(ours)
        lines: list[str] = []
        opened = threading.Event()

        def read() -> None:
            with (
                httpx.Client(base_url=service.http_url, timeout=30) as web,
                web.stream(
                    "GET", "/live/events", headers={"Authorization": f"Bearer {portal}"}
                ) as stream,
            ):
                assert stream.status_code == 200
                for line in stream.iter_lines():
                    opened.set()
                    lines.append(line)
                    if line.startswith("data: ") and "INC-OURS" in line:
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert opened.wait(10), "the stream did not open"
        respond(c, "INC-THEIRS")  # first: the other client's news must not come through
        respond(c, "INC-OURS")
        reader.join(10)
    assert not reader.is_alive(), f"no event of the portal's client within 10 s: {lines}"
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert data and all("INC-THEIRS" not in json.dumps(d) for d in data)
