"""Routing and assignment through the API, against a real server process: queues, agents and
rules stored; tickets routed and assigned; the workload and queue-depth reports equal to a
recount of the stored assignment history in plain SQL; re-sent calls record nothing twice;
portal tokens refused; bad rules named by their JSON path; two assignments racing for one
queue (or for one agent through two queues) never exceed an agent's capacity."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import asyncpg
import grpc

from effigate_client import (
    Client,
    billing_pb2,
    catalog_pb2,
    common_pb2,
    routing_pb2,
    tickets_pb2,
    to_timestamp,
)
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant, _tenant
from tests.e2e.support import at, refused
from tests.e2e.test_billing_api import billing_setup, new_contract
from tests.store.helpers import Database

RULES = {
    "fallback_queue": "triage",
    "rules": [
        {"name": "p1 on call", "match": {"priority": "CRITICAL"}, "queue": "oncall"},
        {
            "match": {"requester_domain": "legal-firm-a.com", "subject_contains": "outage"},
            "queue": "oncall",
            "set_priority": "CRITICAL",
            "tags": ["vip"],
        },
        {"match": {"job_type": ["network"], "support_level": ["L2", "L3"]}, "queue": "network"},
        {"match": {"job_type": "endpoint", "priority": ["P3", "P4"]}, "queue": "endpoint"},
    ],
}
NYC = "nyc-business-hours"
#: Monday 2 March 2026, New York: tickets arrive from 09:00, assignment runs at 11:00.
MONDAY = at("2026-03-02T09:00:00-05:00")
ASSIGN_AT = at("2026-03-02T11:00:00-05:00")
EFFIGATE = str(Path(sys.executable).with_name("effigate"))


def _queues() -> list[routing_pb2.Queue]:
    return [
        routing_pb2.Queue(name="triage", calendar=NYC),
        routing_pb2.Queue(name="oncall"),
        routing_pb2.Queue(name="network", calendar=NYC, escalation_queue="oncall"),
        routing_pb2.Queue(name="endpoint", calendar=NYC),
    ]


def _agents() -> list[routing_pb2.Agent]:
    return [
        routing_pb2.Agent(
            id="ana",
            name="Ana",
            support_levels=["L2", "L3"],
            skills=routing_pb2.Skills(job_types=["network"]),
            queues=["network"],
            capacity=2,
        ),
        routing_pb2.Agent(id="bo", name="Bo", queues=["network", "oncall"], capacity=4),
        routing_pb2.Agent(
            id="cy",
            name="Cy",
            support_levels=["L1"],
            skills=routing_pb2.Skills(job_types=["endpoint"]),
            queues=["endpoint"],
            capacity=4,
        ),
        routing_pb2.Agent(id="dee", name="Dee", queues=["triage"], capacity=2, active=False),
    ]


#: (id, minutes after 09:00, priority, support level, job type, requester, subject)
TICKETS = [
    ("N-1", 0, "MEDIUM", "L2", "network", None, None),
    ("N-2", 10, "MEDIUM", "L2", "network", None, None),
    ("N-3", 20, "MEDIUM", "L3", "network", None, None),
    ("N-4", 30, "MEDIUM", "L2", "network", None, None),
    ("N-5", 40, "MEDIUM", "L2", "network", None, None),
    ("N-9", 5, "HIGH", "L3", "network", None, None),
    ("C-1", 50, "CRITICAL", "L1", "endpoint", None, None),
    ("V-1", 55, "LOW", None, None, "ceo@legal-firm-a.com", "Total OUTAGE at HQ"),
    ("E-1", 15, "LOW", "L1", "endpoint", None, None),
    ("E-2", 25, "LOW", "L1", "endpoint", None, None),
    ("E-3", 35, "LOW", "L1", "endpoint", None, None),
    ("E-4", 45, "HIGH", "L1", "endpoint", None, None),
    ("T-1", 60, "MEDIUM", None, None, None, None),
]
EXPECTED_QUEUES = {
    **{f"N-{i}": "network" for i in (1, 2, 3, 4, 5, 9)},
    "C-1": "oncall",
    "V-1": "oncall",
    **{f"E-{i}": "endpoint" for i in (1, 2, 3)},
    "E-4": "triage",
    "T-1": "triage",
}


def _setup(client: Client) -> int:
    """Calendar, policy, contract, queues, agents and rules; the contract's id."""
    book = billing_setup(client)
    contract = new_contract(client, book, book.nexus)
    client.routing.PutQueues(routing_pb2.PutQueuesRequest(queues=_queues()))
    client.routing.PutAgents(routing_pb2.PutAgentsRequest(agents=_agents()))
    return contract.id


def _create_tickets(client: Client, contract_id: int, client_id: int, rows: list) -> None:
    for ticket_id, minutes, priority, level, job, requester, subject in rows:
        request = tickets_pb2.CreateTicketRequest(
            id=ticket_id,
            client_id=client_id,
            contract_id=contract_id,
            priority=priority,
            created_at=to_timestamp(MONDAY + timedelta(minutes=minutes)),
        )
        if level:
            request.support_level = level
        if job:
            request.job_type = job
        if requester:
            request.requester = requester
        if subject:
            request.subject = subject
        client.tickets.CreateTicket(request)


async def _fetch(admin: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(admin)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def fetch(tenant: Tenant, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of ``sql`` run by the owner (``$1`` is the tenant's id)."""
    return asyncio.run(_fetch(tenant.admin, sql, tenant.id, *args))


#: The latest history row of each of the tenant's tickets (where the service left it).
LATEST = """
    WITH latest AS (
        SELECT DISTINCT ON (a.ticket_id) a.ticket_id, a.queue, a.agent_id
        FROM assignments a WHERE a.tenant_id = $1 ORDER BY a.ticket_id, a.id DESC),
    assigned AS (
        SELECT DISTINCT ON (a.ticket_id) a.ticket_id, a.weight
        FROM assignments a WHERE a.tenant_id = $1 AND a.weight IS NOT NULL
        ORDER BY a.ticket_id, a.id DESC)
    SELECT l.ticket_id, l.queue, l.agent_id, s.weight, t.status <> 'RESOLVED' AS open
    FROM latest l
    JOIN tickets t ON t.tenant_id = $1 AND t.id = l.ticket_id
    LEFT JOIN assigned s ON s.ticket_id = l.ticket_id
"""


def _history_count(tenant: Tenant) -> int:
    return fetch(tenant, "SELECT count(*) AS n FROM assignments WHERE tenant_id = $1")[0]["n"]


def test_tickets_are_routed_and_assigned_and_the_reports_equal_a_recount_of_the_history(
    client: Client, tenant: Tenant
) -> None:
    contract_id = _setup(client)
    contract = client.contracts.GetContract(billing_pb2.GetContractRequest(contract_id=contract_id))
    rules = client.routing.PutRoutingRules(
        routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(RULES))
    )
    assert rules.version == 1
    # the same rules again store nothing new
    again = client.routing.PutRoutingRules(
        routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(RULES))
    )
    assert again.version == 1
    stored = client.routing.GetRoutingRules(routing_pb2.GetRoutingRulesRequest())
    assert json.loads(stored.body_json)["fallback_queue"] == "triage"
    _create_tickets(client, contract_id, contract.client_id, TICKETS)
    ids = [t[0] for t in TICKETS]

    routed = client.routing.Route(
        routing_pb2.RouteRequest(ticket_ids=ids, at=to_timestamp(ASSIGN_AT))
    )
    assert routed.rule_version == 1
    assert {r.ticket_id: r.queue for r in routed.results} == EXPECTED_QUEUES
    vip = next(r for r in routed.results if r.ticket_id == "V-1")
    assert (vip.rule, vip.priority, list(vip.tags)) == (1, "CRITICAL", ["vip"])
    assert all(r.changed for r in routed.results)
    assert client.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id="V-1")).priority == (
        "CRITICAL"
    )
    rows_after_routing = _history_count(tenant)
    assert rows_after_routing == len(TICKETS)
    # routing again changes nothing and records nothing
    rerouted = client.routing.Route(
        routing_pb2.RouteRequest(ticket_ids=ids, at=to_timestamp(ASSIGN_AT))
    )
    assert not any(r.changed for r in rerouted.results)
    assert _history_count(tenant) == rows_after_routing

    stamp = to_timestamp(ASSIGN_AT)
    network = client.routing.Assign(routing_pb2.AssignRequest(queue="network", at=stamp))
    endpoint = client.routing.Assign(routing_pb2.AssignRequest(queue="endpoint", at=stamp))
    rest = client.routing.Assign(
        routing_pb2.AssignRequest(ticket_ids=["C-1", "V-1", "E-4", "T-1"], at=stamp)
    )
    results = {r.ticket_id: r for r in [*network.results, *endpoint.results, *rest.results]}
    # worked by hand (weights at 11:00: MEDIUM 2 × urgency 1; N-9 HIGH, its 1 h first
    # response breached: 4 × 4; E-4 HIGH breached: 16): the network queue in id order, each
    # to the least loaded agent, ties to the least recently assigned, then by id; Ana stops
    # at her capacity of 2, Bo at 4, so the on-call queue (Bo only) finds him full; the
    # triage queue's only agent is inactive
    assert {t: (r.queue, r.assignee, r.reason, r.weight) for t, r in results.items()} == {
        "N-1": ("network", "ana", "ASSIGNED", 2),
        "N-2": ("network", "bo", "ASSIGNED", 2),
        "N-3": ("network", "ana", "ASSIGNED", 2),
        "N-4": ("network", "bo", "ASSIGNED", 2),
        "N-5": ("network", "bo", "ASSIGNED", 2),
        "N-9": ("network", "bo", "ASSIGNED", 16),
        "E-1": ("endpoint", "cy", "ASSIGNED", 1),
        "E-2": ("endpoint", "cy", "ASSIGNED", 1),
        "E-3": ("endpoint", "cy", "ASSIGNED", 1),
        "C-1": ("oncall", "", "ALL_AT_CAPACITY", 8),
        "V-1": ("oncall", "", "ALL_AT_CAPACITY", 8),
        "E-4": ("triage", "", "NO_AGENT_IN_QUEUE", 16),
        "T-1": ("triage", "", "NO_AGENT_IN_QUEUE", 2),
    }
    assert all(r.recorded and not r.escalated for r in results.values())
    # a breached ticket no network agent can take escalates to the on-call queue, where
    # Bo is full: it waits there, and its queue change is recorded
    _create_tickets(
        client, contract_id, contract.client_id, [("X-1", 0, "HIGH", "L2", "network", None, None)]
    )
    client.routing.Route(routing_pb2.RouteRequest(ticket_ids=["X-1"], at=stamp))
    (escalated,) = client.routing.Assign(
        routing_pb2.AssignRequest(ticket_ids=["X-1"], at=stamp)
    ).results
    assert (escalated.queue, escalated.assignee, escalated.escalated, escalated.recorded) == (
        "oncall",
        "",
        True,
        True,
    )
    assert client.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id="X-1")).queue == (
        "oncall"
    )
    ids.append("X-1")
    rows_after_assigning = _history_count(tenant)

    # assigning again leaves every ticket as it is and records nothing
    repeat = [
        client.routing.Assign(routing_pb2.AssignRequest(queue=q, at=stamp))
        for q in ("network", "endpoint", "oncall", "triage")
    ]
    repeat.append(client.routing.Assign(routing_pb2.AssignRequest(ticket_ids=ids, at=stamp)))
    assert not any(r.recorded for reply in repeat for r in reply.results)
    assert _history_count(tenant) == rows_after_assigning

    # the stored tickets are where the history left them
    latest = fetch(tenant, LATEST)
    stored_tickets = {
        r["id"]: (r["queue"], r["assignee"])
        for r in fetch(tenant, "SELECT id, queue, assignee FROM tickets WHERE tenant_id = $1")
    }
    assert {r["ticket_id"]: (r["queue"], r["agent_id"]) for r in latest} == stored_tickets

    # resolve one assigned ticket: it leaves the workload and the queue depth
    client.tickets.RecordEvent(
        tickets_pb2.RecordEventRequest(
            event_id="E-1:resolved",
            ticket_id="E-1",
            kind=tickets_pb2.RESOLVED,
            occurred_at=to_timestamp(ASSIGN_AT + timedelta(minutes=5)),
        )
    )
    latest = fetch(tenant, LATEST)
    workload = client.routing.AgentWorkload(
        routing_pb2.AgentWorkloadRequest(now=to_timestamp(ASSIGN_AT))
    )
    recount: dict[str, list[int]] = {}
    for r in latest:
        if r["open"] and r["agent_id"] is not None:
            counts = recount.setdefault(r["agent_id"], [0, 0])
            counts[0] += 1
            counts[1] += r["weight"]
    reported = {a.agent_id: [a.open_tickets, a.load] for a in workload.agents if a.open_tickets}
    assert reported == recount
    assert recount["cy"][0] == 2
    assert {a.agent_id for a in workload.agents} == {"ana", "bo", "cy", "dee"}
    # at risk and breached equal what each assigned ticket's own SLA status says
    risk: dict[str, list[int]] = {}
    for r in latest:
        if not (r["open"] and r["agent_id"]):
            continue
        status = client.tickets.GetTicketStatus(
            tickets_pb2.GetTicketStatusRequest(ticket_id=r["ticket_id"], at=stamp)
        )
        running = {m.status for m in status.metrics if not m.HasField("stopped_at")}
        counts = risk.setdefault(r["agent_id"], [0, 0])
        counts[0] += "WARNING" in running and "BREACHED" not in running
        counts[1] += "BREACHED" in running
    assert {a.agent_id: [a.at_risk, a.breached] for a in workload.agents if a.open_tickets} == risk
    assert any(a.breached for a in workload.agents)

    depth = client.routing.QueueDepth(routing_pb2.QueueDepthRequest())
    queue_recount: dict[str, list[int]] = {q.name: [0, 0] for q in _queues()}
    for r in latest:
        if r["open"]:
            counts = queue_recount.setdefault(r["queue"], [0, 0])
            counts[0] += 1
            counts[1] += r["agent_id"] is None
    assert {q.queue: [q.open_tickets, q.unassigned] for q in depth.queues} == queue_recount

    oldest = client.routing.OldestUnassigned(
        routing_pb2.OldestUnassignedRequest(now=to_timestamp(ASSIGN_AT))
    )
    triage = next(q for q in oldest.queues if q.queue == "triage")
    assert (triage.ticket_id, triage.unassigned) == ("E-4", 2)
    assert triage.waiting_seconds == 75 * 60  # created 09:45, asked at 11:00

    # replaying a proposed rule set: endpoint tickets of any priority to the endpoint queue
    # (compared with the current rules: X-1, escalated to the on-call queue, does not move)
    proposed = json.loads(json.dumps(RULES))
    proposed["rules"][3]["match"].pop("priority")
    replay = client.routing.ReplayRouting(
        routing_pb2.ReplayRoutingRequest(proposed_rules_json=json.dumps(proposed))
    )
    assert replay.tickets == len(TICKETS) + 1  # and X-1
    assert [(m.from_queue, m.to_queue, m.tickets) for m in replay.moves] == [
        ("triage", "endpoint", 1)
    ]


def test_routing_is_staff_only_and_bad_rules_are_named_by_their_path(
    client: Client, tenant: Tenant, service: ServiceProcess
) -> None:
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    client.routing.PutQueues(routing_pb2.PutQueuesRequest(queues=[routing_pb2.Queue(name="q")]))
    with Client(service.address, tenant.portal_token(acme)) as portal:
        for call, request in (
            (portal.routing.PutQueues, routing_pb2.PutQueuesRequest()),
            (portal.routing.ListAgents, routing_pb2.ListAgentsRequest()),
            (portal.routing.QueueDepth, routing_pb2.QueueDepthRequest()),
            (portal.routing.AgentWorkload, routing_pb2.AgentWorkloadRequest()),
            (portal.routing.Assign, routing_pb2.AssignRequest(queue="q")),
            (portal.routing.Route, routing_pb2.RouteRequest(ticket_ids=["x"])),
            (
                portal.routing.PutRoutingRules,
                routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(RULES)),
            ),
        ):
            assert "portal token" in refused(grpc.StatusCode.PERMISSION_DENIED, call, request)

    bad = {
        "fallback_queue": "q",
        "rules": [{"queue": "q"}, {"match": {"priority": "P9"}, "queue": "q"}],
    }
    message = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.routing.PutRoutingRules,
        routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(bad)),
    )
    assert message.startswith("rules[1].match.priority: 'P9'"), message
    unknown_key = {"fallback_queue": "q", "rules": [{"queue": "q", "when": {}}]}
    assert "rules[0].when" in refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.routing.PutRoutingRules,
        routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(unknown_key)),
    )
    assert "rules[0].queue: 'nowhere'" in refused(
        grpc.StatusCode.NOT_FOUND,
        client.routing.PutRoutingRules,
        routing_pb2.PutRoutingRulesRequest(
            body_json=json.dumps({"fallback_queue": "q", "rules": [{"queue": "nowhere"}]})
        ),
    )
    assert "agents[0].capacity" in refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.routing.PutAgents,
        routing_pb2.PutAgentsRequest(agents=[routing_pb2.Agent(id="a", queues=["q"], capacity=-1)]),
    )
    assert "agents[0].queues: 'nope'" in refused(
        grpc.StatusCode.NOT_FOUND,
        client.routing.PutAgents,
        routing_pb2.PutAgentsRequest(
            agents=[routing_pb2.Agent(id="a", queues=["nope"], capacity=1)]
        ),
    )
    assert "queues[1].name: 'q' is given twice" in refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.routing.PutQueues,
        routing_pb2.PutQueuesRequest(
            queues=[routing_pb2.Queue(name="q"), routing_pb2.Queue(name="q", calendar="x")]
        ),
    )
    assert "routing rules" in refused(
        grpc.StatusCode.FAILED_PRECONDITION,
        client.routing.Route,
        routing_pb2.RouteRequest(ticket_ids=["x"]),
    )
    # nothing of the refused calls was stored
    assert [q.name for q in client.routing.ListQueues(routing_pb2.ListQueuesRequest()).queues] == [
        "q"
    ]
    assert client.routing.ListAgents(routing_pb2.ListAgentsRequest()).agents == []


def test_two_assignments_racing_never_exceed_an_agents_capacity(
    client: Client, tenant: Tenant, service: ServiceProcess
) -> None:
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    client.routing.PutQueues(
        routing_pb2.PutQueuesRequest(
            queues=[routing_pb2.Queue(name="desk"), routing_pb2.Queue(name="field")]
        )
    )
    client.routing.PutAgents(
        routing_pb2.PutAgentsRequest(
            agents=[routing_pb2.Agent(id="solo", queues=["desk", "field"], capacity=5)]
        )
    )
    rules = {"fallback_queue": "field", "rules": [{"match": {"priority": "HIGH"}, "queue": "desk"}]}
    client.routing.PutRoutingRules(routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(rules)))
    ids = [f"R-{i:02d}" for i in range(24)]
    for i, ticket_id in enumerate(ids):
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=ticket_id,
                client_id=acme,
                priority="HIGH" if i % 2 else "MEDIUM",
                created_at=to_timestamp(MONDAY + timedelta(minutes=i)),
            )
        )
    client.routing.Route(routing_pb2.RouteRequest(ticket_ids=ids))
    with ThreadPoolExecutor(4) as pool:
        clients = [Client(service.address, tenant.token, timeout=60) for _ in range(4)]
        try:
            # two on one queue, two on the other queue: one agent shared by both queues
            replies = list(
                pool.map(
                    lambda pair: pair[0].routing.Assign(routing_pb2.AssignRequest(queue=pair[1])),
                    zip(clients, ["desk", "desk", "field", "field"], strict=True),
                )
            )
        finally:
            for c in clients:
                c.close()
    assigned = [
        r.ticket_id for reply in replies for r in reply.results if r.recorded and r.assignee
    ]
    assert len(assigned) == len(set(assigned)) == 5
    rows = fetch(
        tenant,
        "SELECT ticket_id, count(*) AS n FROM assignments WHERE tenant_id = $1"
        " AND agent_id IS NOT NULL GROUP BY ticket_id",
    )
    assert sorted(r["ticket_id"] for r in rows) == sorted(assigned)
    assert all(r["n"] == 1 for r in rows)
    workload = client.routing.AgentWorkload(routing_pb2.AgentWorkloadRequest())
    assert [(a.agent_id, a.open_tickets) for a in workload.agents] == [("solo", 5)]
    depth = {
        q.queue: q.unassigned
        for q in client.routing.QueueDepth(routing_pb2.QueueDepthRequest()).queues
    }
    assert depth["desk"] + depth["field"] == 24 - 5


def test_a_tenant_sees_only_its_own_queues_and_agents(
    client: Client, service: ServiceProcess, db: Database
) -> None:
    client.routing.PutQueues(routing_pb2.PutQueuesRequest(queues=[routing_pb2.Queue(name="mine")]))
    other = asyncio.run(_tenant(db.admin))
    with Client(service.address, other.token) as theirs:
        assert theirs.routing.ListQueues(routing_pb2.ListQueuesRequest()).queues == []
        refused(
            grpc.StatusCode.NOT_FOUND,
            theirs.routing.Assign,
            routing_pb2.AssignRequest(queue="mine"),
        )


def test_the_routing_commands(
    client: Client, tenant: Tenant, service: ServiceProcess, tmp_path: Path
) -> None:
    acme = client.catalog.CreateClient(catalog_pb2.CreateClientRequest(name="Acme")).id
    client.routing.PutQueues(
        routing_pb2.PutQueuesRequest(
            queues=[routing_pb2.Queue(name="desk"), routing_pb2.Queue(name="major")]
        )
    )
    client.routing.PutAgents(
        routing_pb2.PutAgentsRequest(
            agents=[
                routing_pb2.Agent(id="ana", name="Ana", queues=["desk"], capacity=1),
                routing_pb2.Agent(id="bo", name="Bo", queues=["desk", "major"], capacity=5),
            ]
        )
    )
    for i, priority in enumerate(("CRITICAL", "LOW", "LOW")):
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                id=f"CLI-{i}",
                client_id=acme,
                priority=priority,
                created_at=to_timestamp(MONDAY + timedelta(minutes=i)),
            )
        )
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {"fallback_queue": "desk", "rules": [{"match": {"priority": "P1"}, "queue": "major"}]}
        )
    )
    env = {"EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": tenant.token}
    assert "routing rules version 1" in effigate("routing-rules", "put", str(rules), env=env)
    shown = effigate("routing-rules", "get", env=env)
    assert json.loads(shown.split("\n", 1)[1])["rules"][0]["queue"] == "major"
    routed = effigate("route", "CLI-0", "CLI-1", "CLI-2", env=env)
    assert "- -> major" in routed and "rule 0" in routed and "fallback" in routed
    assigned = effigate("assign", "--queue", "desk", env=env)
    assert "2 of 2 tickets assigned" in assigned
    assert "1 of 1 tickets assigned" in effigate("assign", "--tickets", "CLI-0", env=env)
    queues = effigate("queues", env=env).splitlines()
    assert queues[1].split()[:3] == ["desk", "2", "0"]
    assert queues[2].split()[:3] == ["major", "1", "0"]
    workload = {
        line.split()[0]: line.split() for line in effigate("workload", env=env).splitlines()[1:]
    }
    assert workload["ana"][2:4] == ["1", "1"] and workload["bo"][2:4] == ["2", "5"]


def effigate(*args: str, env: dict[str, str]) -> str:
    """``effigate`` run with ``env`` added; its standard output (a failure fails the test)."""
    done = subprocess.run(
        [EFFIGATE, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_route_batch_streams_routes_equal_to_the_engine_in_process(
    client: Client, tenant: Tenant
) -> None:
    import random

    import pyarrow as pa

    from effigate_engine import routing

    assert "(none stored)" in refused(
        grpc.StatusCode.NOT_FOUND,
        client.routing.PutQueues,
        routing_pb2.PutQueuesRequest(queues=_queues()),
    )
    names = [routing_pb2.Queue(name=q.name) for q in _queues()]
    client.routing.PutQueues(routing_pb2.PutQueuesRequest(queues=names))
    client.routing.PutRoutingRules(routing_pb2.PutRoutingRulesRequest(body_json=json.dumps(RULES)))
    rng = random.Random(7)
    n = 20_000
    tickets = pa.table(
        {
            "ticket_id": [f"B-{i}" for i in range(n)],
            "priority": [rng.choice(["P1", "HIGH", "MEDIUM", "LOW"]) for _ in range(n)],
            "support_level": [rng.choice(["L1", "L2", "L3", None]) for _ in range(n)],
            "job_type": [rng.choice(["network", "endpoint", None]) for _ in range(n)],
            "requester": [
                rng.choice(["a@legal-firm-a.com", "b@it.legal-firm-a.com", "c@x.org", None])
                for _ in range(n)
            ],
            "subject": [rng.choice(["Outage!", "printer", None]) for _ in range(n)],
        }
    )
    routes = client.route_arrow(tickets, chunk_rows=6_000)
    expected = routing.route(tickets, routing.RoutingRules.from_json(RULES))
    assert routes.num_rows == n
    for name in ("ticket_id", "rule", "queue", "priority", "support_level", "tags"):
        assert routes[name].to_pylist() == expected[name].to_pylist(), name
    assert set(routes["queue"].to_pylist()) == {"oncall", "network", "endpoint", "triage"}
    # a chunk that is not Arrow is named
    message = refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: list(
            client.routing.RouteBatch(iter([common_pb2.ArrowChunk(arrow_ipc=b"not arrow")]))
        ),
    )
    assert message.startswith("chunk[0].arrow_ipc"), message
