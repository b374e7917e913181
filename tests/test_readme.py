"""Every Python example in the README runs as written, from the repository root; and
``effigate serve --demo`` (``make run``), run again and again over one data directory, keeps its
tenant, token and ids, and every command it and the README print works each time."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from effigate_server.demo import read_demo_env
from tests.store.conftest import db, server_dsn  # noqa: F401  (fixtures)
from tests.store.helpers import Database

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.fixture
def service_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """For examples that talk to the service: a real server process over the test database
    and a fresh tenant's token, in ``EFFIGATE_ADDRESS`` / ``EFFIGATE_TOKEN``."""
    if "EFFIGATE_ADDRESS" not in request.node.callspec.params["block"]:
        return
    import asyncio

    from effigate_server.process import ServiceProcess
    from tests.e2e.conftest import _tenant

    database: Database = request.getfixturevalue("db")
    service = ServiceProcess.start(database.app, admin_dsn=database.admin)
    request.addfinalizer(service.stop)
    monkeypatch.setenv("EFFIGATE_ADDRESS", service.address)
    monkeypatch.setenv("EFFIGATE_TOKEN", asyncio.run(_tenant(database.admin)).token)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example-{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(block: str, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str], service_env: None) -> None:
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    for expected in re.findall(r"^# (\S.*)$", block, re.M):
        if expected.split()[0].isupper() or expected[:1].isdigit():
            assert expected in printed, f"README promises {expected!r}"

# --- `make run` as a newcomer meets it: `effigate serve --demo`, run again and again ----------

EFFIGATE = Path(sys.executable).with_name("effigate")
#: Tickets of the demo in these tests (``make run`` loads 20,000; the path is the same).
DEMO_TICKETS = 300
#: Tickets of the load that is interrupted: enough that it is still ingesting when stopped.
INTERRUPTED_TICKETS = 20_000
SETTINGS = ("EFFIGATE_DSN", "EFFIGATE_ADMIN_DSN", "EFFIGATE_ADDRESS", "EFFIGATE_TOKEN")


@dataclass
class DemoRun:
    """One ``effigate serve --demo`` process: what it printed, and ``demo.env`` after it."""

    process: subprocess.Popen[str]
    stdout: list[str]
    stderr: Path
    settings: dict[str, str]
    lines: queue.Queue[str | None]
    code: int | None = None
    commands_output: list[str] | None = None

    def printed(self) -> str:
        return "\n".join(self.stdout)

    def commands(self) -> list[str]:
        """The shell commands printed under "Try it"."""
        start = next(i for i, line in enumerate(self.stdout) if line.startswith("Try it"))
        commands = []
        for line in self.stdout[start + 1 :]:
            if not line.startswith("  "):
                break
            commands.append(line.strip())
        return commands

    def screens(self) -> dict[str, tuple[str, str]]:
        """The screens printed (``dashboard``, ``portal``): each one's URL and token."""
        found = {}
        for line in self.stdout:
            match = re.match(r"  (dashboard|portal) +(http://\S+) .* (efg_\S+)$", line)
            if match:
                found[match.group(1)] = (match.group(2), match.group(3))
        return found

    def stop(self) -> int:
        """SIGTERM it, collect what it printed until it exited; returns its exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        while (line := self.lines.get(timeout=10)) is not None:
            self.stdout.append(line)
        return code


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_demo(home: Path, port: int, tickets: int, until: str, http_port: int = 0) -> DemoRun:
    """Start ``effigate serve --demo`` over the embedded server in ``home`` (as ``make run``
    does, from the repository root) and read its output until a line starts with ``until``."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env.update(EFFIGATE_DATA_DIR=str(home / "pgdata"), PYTHONUNBUFFERED="1")
    stderr = home / f"serve-{time.monotonic_ns()}.err"
    with open(stderr, "w") as errors:
        process = subprocess.Popen(
            [str(EFFIGATE), "serve", "--demo", "--demo-tickets", str(tickets),
             "--address", f"127.0.0.1:{port}", "--http-address", f"127.0.0.1:{http_port}",
             "--flight-address", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=errors, text=True, env=env, cwd=ROOT,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    run = DemoRun(process, [], stderr, {}, lines)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        line = lines.get(timeout=deadline - time.monotonic())
        assert line is not None, f"serve --demo ended: {run.printed()}\n{stderr.read_text()}"
        run.stdout.append(line)
        assert "did not load" not in line, run.printed()
        if line.startswith(until):
            break
    else:
        raise AssertionError(f"no {until!r} line: {run.printed()}")
    run.settings = read_demo_env(home / "demo.env")
    return run


def only_json_lines(path: Path) -> None:
    """The service's standard error holds its JSON log lines and nothing else."""
    for line in path.read_text().splitlines():
        assert isinstance(json.loads(line), dict), line


def as_pasted(command: str, home: Path) -> str:
    """A README or printed command as the user pastes it, here: the repository's ``.venv``
    and ``.effigate`` are this interpreter's and the test's data directory."""
    return command.replace(".venv/bin/", f"{EFFIGATE.parent}/").replace(".effigate/", f"{home}/")


def bash(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    done = subprocess.run(
        ["bash", "-ec", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done


QUICKSTART = next(
    b for b in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if "demo.env" in b
)


def works(run: DemoRun, home: Path) -> list[str]:
    """Run every command the run printed, then the README's quickstart commands; both work
    and print the same invoice. Returns the invoice's header line."""
    commands = run.commands()
    assert commands[0].startswith("source ") and any(" bill " in c for c in commands)
    printed = bash("\n".join(commands)).stdout
    readme = bash(as_pasted(QUICKSTART, home)).stdout
    headers = []
    for out in (printed, readme):
        assert "INC-100000" in out and "FIRST_RESPONSE" in out
        headers.append([line for line in out.splitlines() if line.startswith("Invoice draft")])
    assert headers[0] == headers[1] and len(headers[0]) == 1
    return headers[0]


@dataclass
class DemoRuns:
    """Three ``serve --demo`` runs over one data directory ``home``: ``cut`` (interrupted while
    loading), ``first`` (loads the demo; stopped) and ``second`` (reuses it; still serving)."""

    home: Path
    cut: DemoRun
    first: DemoRun
    second: DemoRun


@pytest.fixture(scope="module")
def demo_runs() -> Iterator[DemoRuns]:
    """The data directory is not under pytest's base directory: pytest resets that to mode
    0700 when it starts, and the embedded server's own user must traverse the ancestors of
    its data directory."""
    import shutil
    import tempfile

    from effigate_engine.store.embedded import start_embedded

    home = Path(tempfile.mkdtemp(prefix="effigate-demo-"))
    port = _free_port()
    running: list[DemoRun] = []
    try:
        cut = serve_demo(home, port, INTERRUPTED_TICKETS, "demo: generate:")
        cut.code = cut.stop()
        running.append(first := serve_demo(home, port, DEMO_TICKETS, "  HTTP/JSON"))
        first.commands_output = works(first, home)
        first.code = first.stop()
        running.append(second := serve_demo(home, port, DEMO_TICKETS, "  HTTP/JSON"))
        yield DemoRuns(home, cut, first, second)
    finally:
        for run in running:
            if run.process.poll() is None:
                run.stop()
        start_embedded(home / "pgdata").stop()  # a run killed by a failure left it running
        shutil.rmtree(home, ignore_errors=True)


def test_serve_demo_twice_keeps_its_tenant_token_and_ids(demo_runs: DemoRuns) -> None:
    cut, first, second = demo_runs.cut, demo_runs.first, demo_runs.second
    # a first load cut short: its tenant stays unused, the next run loads a new one
    assert cut.code == 0 and "demo load interrupted" in cut.printed()
    assert "half-loaded" in first.printed() and "demo: loading" in first.printed()
    for stage in ("setup", "generate", "ingest tickets", "ingest time logs", "SLA recompute",
                  "invoices"):
        assert f"demo: {stage}: " in first.printed()
    assert f"{DEMO_TICKETS} tickets" in first.printed()
    # a clean SIGTERM: the service's standard error holds its JSON log lines only
    assert first.code == 0
    only_json_lines(cut.stderr)
    only_json_lines(first.stderr)

    assert "already loaded" in second.printed() and "demo: setup:" not in second.printed()
    assert f"{DEMO_TICKETS} tickets" in second.printed()
    assert second.settings == first.settings
    assert set(second.settings) >= {
        "EFFIGATE_ADDRESS", "EFFIGATE_TOKEN", "EFFIGATE_DEMO_TENANT", "EFFIGATE_DEMO_CONTRACT"
    }
    assert stat.S_IMODE((demo_runs.home / "demo.env").stat().st_mode) == 0o600
    assert second.commands() == first.commands()
    assert works(second, demo_runs.home) == first.commands_output


def test_serve_demo_prints_the_screens_and_their_tokens_which_sign_in(
    demo_runs: DemoRuns,
) -> None:
    """``make run`` prints the dashboard's and the portal's URL with a token each: the staff
    token opens the dashboard, the portal token its client's portal (and not the dashboard);
    the portal token is kept across runs like the staff token."""
    import httpx

    first, second = demo_runs.first.screens(), demo_runs.second.screens()
    assert set(second) == {"dashboard", "portal"}
    assert {k: t for k, (_, t) in second.items()} == {k: t for k, (_, t) in first.items()}
    assert second["dashboard"][1] == demo_runs.second.settings["EFFIGATE_TOKEN"]
    for screen, (url, token) in second.items():
        base, _, path = url.rpartition("/")
        with httpx.Client(base_url=base, timeout=60, follow_redirects=True) as web:
            signed = web.post("/login", data={"token": token, "next": "/" + path})
            assert signed.status_code == 200, (screen, signed.text[:500])
            assert str(signed.url).endswith("/" + path)
            other = "/portal" if screen == "dashboard" else "/dashboard"
            assert str(web.get(other).url).endswith("/" + path)


def test_every_demo_run_raises_live_sla_tickets(demo_runs: DemoRuns) -> None:
    """Each run (loading or reusing the demo) raises five new live tickets whose SLA
    transitions fall in the next minutes, and says which."""
    from effigate_client import Client, tickets_pb2

    runs = []
    for run in (demo_runs.first, demo_runs.second):
        assert "Live SLA: 5 tickets of 'Litware (live SLA)'" in run.printed()
        runs.append(sorted(set(re.findall(r"LIVE-[0-9A-F]{6}-[1-5]", run.printed()))))
        assert [i[-2:] for i in runs[-1]] == ["-1", "-5"]
    assert runs[0][0] != runs[1][0]  # new tickets each run
    settings = demo_runs.second.settings
    with Client(settings["EFFIGATE_ADDRESS"], settings["EFFIGATE_TOKEN"]) as client:
        status = client.tickets.GetTicketStatus(
            tickets_pb2.GetTicketStatusRequest(ticket_id=runs[1][0]))
    # its first response is due 10 minutes after it was raised
    assert len(status.metrics) == 1
    assert status.metrics[0].deadline.ToSeconds() == status.ticket.created_at.ToSeconds() + 600


def test_readme_client_example_runs_twice_against_the_demo(demo_runs: DemoRuns) -> None:
    """The README's client example runs twice in a row against the demo tenant."""
    from effigate_client import Client, billing_pb2, catalog_pb2, tickets_pb2

    settings = demo_runs.second.settings
    block = next(b for b in BLOCKS if "EFFIGATE_ADDRESS" in b)
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS} | settings
    expected = [e for e in re.findall(r"^# (\S.*)$", block, re.M) if e.split()[0].isupper()]
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == expected
    with Client(settings["EFFIGATE_ADDRESS"], settings["EFFIGATE_TOKEN"]) as client:
        policies = client.catalog.ListPolicies(catalog_pb2.ListPoliciesRequest()).policies
        policy = next(p for p in policies if p.name == "standard-msp")
        status = client.tickets.GetTicketStatus(
            tickets_pb2.GetTicketStatusRequest(ticket_id="INC-2001", policy_id=policy.id)
        )
        assert status.ticket.id == "INC-2001"
        # the demo's own data is untouched: still its five contracts (beside the one of the
        # live SLA tickets, under its own policy)
        live = next(p.id for p in policies if p.name == "live-demo")
        listed = client.contracts.ListContracts(billing_pb2.ListContractsRequest())
        assert len([k for k in listed.contracts if k.sla_policy_id != live]) == 5
