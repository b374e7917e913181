"""The Arrow Flight example of docs/service.md, run as written against the real server, its
answers checked against the typed API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from effigate_client import sla_pb2, tickets_pb2, to_timestamp
from tests.e2e.support import at, standard_setup

SERVICE_MD = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def flight_example() -> str:
    """The first Python block of the *Arrow Flight* section."""
    text = SERVICE_MD.read_text()
    section = text.split("\n## Arrow Flight\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "docs/service.md: the Arrow Flight section has no Python example"
    return blocks[0]


def test_the_flight_example_runs_and_agrees_with_the_typed_api(
    service, client, tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ids = standard_setup(client)
    monkeypatch.setenv("EFFIGATE_FLIGHT", service.flight_url)
    monkeypatch.setenv("EFFIGATE_TOKEN", tenant.token)
    monkeypatch.setenv("POLICY_ID", str(ids.policy))
    monkeypatch.setenv("CLIENT_ID", str(ids.acme))
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(flight_example(), "docs/service.md#arrow-flight", "exec"), namespace)
    assert capsys.readouterr().out.count("\n") == 4  # the four prints

    # DoExchange: what the typed Evaluate answers for the two valid tickets
    request = sla_pb2.EvaluateRequest(
        policy_id=ids.policy, now=to_timestamp(at("2026-11-21T00:00:00+00:00"))
    )
    for ticket_id, priority in (("T-1", "HIGH"), ("T-2", "LOW")):
        request.tickets.add(
            ticket_id=ticket_id,
            priority=priority,
            created_at=to_timestamp(at("2026-11-19T14:00:00+00:00")),
        )
    typed = client.sla.Evaluate(request).results
    results = namespace["results"]
    assert sorted(
        (r["ticket_id"], str(r["metric"]), str(r["status"])) for r in results.to_pylist()
    ) == sorted((m.ticket_id, m.metric, m.status) for m in typed)
    assert [(r["row"], r["id"], r["field"]) for r in namespace["rejected"]] == [
        (2, "T-3", "priority")
    ]

    # DoPut stored the two tickets once
    assert namespace["summary"]["inserted"] == 2
    listed = client.tickets.ListTickets(tickets_pb2.ListTicketsRequest(limit=10))
    assert sorted(t.id for t in listed.tickets) == ["DOC-1", "DOC-2"]

    # DoGet: the results of the stored tickets, as Recompute counts them
    stored = namespace["stored"]
    recomputed = client.recompute(ids.policy)
    assert len(set(stored.column("ticket_id").to_pylist())) == recomputed.tickets == 2
    assert stored.num_rows == sum(c.count for c in recomputed.counts)
