"""Every Python example in the README runs as written, from the repository root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
