"""The client commands of ``effigate`` against the session's server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from effigate_client import Client, tickets_pb2, to_timestamp
from tests.e2e.support import SAMPLES, at, standard_setup
from tests.e2e.test_sla_api import NOW, generated_tickets

EFFIGATE = str(Path(sys.executable).with_name("effigate"))


def effigate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``effigate`` with ``env`` added; fails the test on a non-zero exit."""
    done = subprocess.run(
        [EFFIGATE, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


def test_token_status_sla_and_replay_commands(service, client: Client, tenant, tmp_path) -> None:
    ids = standard_setup(client)
    client.tickets.CreateTicket(
        tickets_pb2.CreateTicketRequest(
            id="CLI-1",
            client_id=ids.acme,
            priority="HIGH",
            created_at=to_timestamp(at("2026-11-19T23:00+00:00")),
        )
    )
    # a portal token made by the admin command reads its client's ticket status
    made = effigate(
        "token",
        "create",
        "--tenant",
        str(tenant.id),
        "--client",
        str(ids.acme),
        env={"EFFIGATE_ADMIN_DSN": tenant.admin},
    )
    portal = made.stdout.strip().splitlines()[-1]
    assert portal.startswith("efg_") and f"client {ids.acme}" in made.stdout
    env = {"EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": portal}
    status = effigate("status", "CLI-1", "--policy", str(ids.policy), env=env)
    assert "FIRST_RESPONSE" in status.stdout and "RESOLUTION" in status.stdout

    staff = {"EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": tenant.token}
    tickets = generated_tickets(2_000, seed=5)
    source, out = tmp_path / "tickets.parquet", tmp_path / "results.parquet"
    pq.write_table(tickets, source)
    done = effigate(
        "sla",
        str(source),
        "--policy",
        str(ids.policy),
        "--now",
        NOW.isoformat(),
        "--out",
        str(out),
        env=staff,
    )
    assert "2000 tickets" in done.stdout
    assert set(pq.read_table(out).column("ticket_id").to_pylist()) == set(
        tickets.column("ticket_id").to_pylist()
    )
    # the same through Arrow Flight: the same summary and the same results
    assert service.flight_url is not None
    flown = tmp_path / "flight.parquet"
    by_flight = effigate(
        "sla",
        str(source),
        "--policy",
        str(ids.policy),
        "--now",
        NOW.isoformat(),
        "--out",
        str(flown),
        "--flight",
        service.flight_url,
        env=staff,
    )
    assert by_flight.stdout.replace(str(flown), str(out)) == done.stdout
    assert pq.read_table(flown).equals(pq.read_table(out))

    proposed = json.loads((SAMPLES / "policies" / "standard-msp.json").read_text())
    proposed["name"] = "relaxed"
    path = tmp_path / "relaxed.json"
    path.write_text(json.dumps(proposed))
    replay = effigate(
        "replay",
        "--current",
        str(ids.policy),
        "--proposed",
        str(path),
        "--now",
        NOW.isoformat(),
        env=staff,
    )
    assert "hit_rate_change" in replay.stdout
