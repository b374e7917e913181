"""Failures of the ``effigate`` commands: one line on standard error, an exit code per class,
no traceback unless asked for (``--debug``, ``EFFIGATE_DEBUG=1``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from effigate_cli.failures import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

EFFIGATE = str(Path(sys.executable).with_name("effigate"))
SETTINGS = (
    "EFFIGATE_ADDRESS",
    "EFFIGATE_TOKEN",
    "EFFIGATE_DEBUG",
    "EFFIGATE_DSN",
    "EFFIGATE_CLUSTER",
)


def effigate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``effigate`` with ``env`` (and none of the client settings of this process)."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run(
        [EFFIGATE, *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command wrote to standard error."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("effigate: ")
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_missing_contract_is_one_line_with_the_not_found_code(service, tenant) -> None:
    env = {"EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": tenant.token}
    done = effigate("bill", "--contract", "99", "--period", "2026-10-01", **env)
    assert done.returncode == EXIT_NOT_FOUND
    assert one_line(done).startswith("effigate: NOT_FOUND: contract_id: 99 ")
    status = effigate("status", "INC-NONE", **env)
    assert status.returncode == EXIT_NOT_FOUND
    assert "'INC-NONE'" in one_line(status)


def test_debug_shows_the_traceback(service, tenant) -> None:
    env = {"EFFIGATE_ADDRESS": service.address, "EFFIGATE_TOKEN": tenant.token}
    bill = ("bill", "--contract", "99", "--period", "2026-10-01")
    flagged = effigate("--debug", *bill, **env)
    by_env = effigate(*bill, EFFIGATE_DEBUG="1", **env)
    for done in (flagged, by_env):
        assert done.returncode != 0
        assert "Traceback" in done.stderr and "NOT_FOUND" in done.stderr


def test_tokens_missing_or_unknown_are_auth_failures(service) -> None:
    missing = effigate("status", "INC-1", EFFIGATE_ADDRESS=service.address)
    assert missing.returncode == EXIT_AUTH
    assert "no token" in one_line(missing)
    wrong = effigate(
        "status", "INC-1", EFFIGATE_ADDRESS=service.address, EFFIGATE_TOKEN="efg_not-a-token"
    )
    assert wrong.returncode == EXIT_AUTH
    assert one_line(wrong).startswith("effigate: UNAUTHENTICATED: ")


def test_no_server_is_one_line_naming_the_address(closed_port: int) -> None:
    address = f"127.0.0.1:{closed_port}"
    for args in (
        ("status", "INC-1"),
        ("bill", "--contract", "1", "--period", "2026-10-01"),
        ("replay", "--current", "1", "--proposed", "2"),
    ):
        done = effigate(*args, "--address", address, "--token", "efg_x")
        assert done.returncode == EXIT_UNREACHABLE, done.stderr
        assert one_line(done).startswith(
            f"effigate: cannot reach the server at {address} (connection refused)"
        )


def test_a_bad_calendar_file_is_one_line(tmp_path: Path) -> None:
    missing = effigate("calendar", str(tmp_path / "none.json"))
    assert missing.returncode == EXIT_USAGE
    one_line(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"timezone": "Mars/Olympus", "weekly": []}')
    done = effigate("calendar", str(bad))
    assert done.returncode == EXIT_USAGE
    assert "Mars/Olympus" in one_line(done)


def test_serve_on_a_busy_port_says_so_before_starting_anything(listening: int) -> None:
    # the database is unreachable too: the port is checked first, so only it is reported
    done = effigate(
        "serve",
        "--address",
        f"127.0.0.1:{listening}",
        EFFIGATE_DSN="postgresql://effigate_app@127.0.0.1:1/none",
    )
    assert done.returncode == EXIT_UNREACHABLE
    line = one_line(done)
    assert f"port {listening} is in use on 127.0.0.1" in line
    assert "--address" in line and "EFFIGATE_ADDRESS" in line
    assert done.stdout == ""


def test_serve_without_its_database_is_one_line(closed_port: int) -> None:
    done = effigate(
        "serve",
        "--address",
        "127.0.0.1:0",
        "--http-address",
        "127.0.0.1:0",
        "--flight-address",
        "127.0.0.1:0",
        EFFIGATE_DSN=f"postgresql://effigate_app@127.0.0.1:{closed_port}/none",
    )
    assert done.returncode == EXIT_UNREACHABLE
    assert "cannot reach the database" in one_line(done)
