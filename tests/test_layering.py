"""The code's directions, checked on every test run (``make lint`` runs the same contract).

The layers and their allowed exceptions are one contract, the import-linter configuration in
``pyproject.toml`` (``docs/architecture.md``): the CLI on top, then the server, the service,
the store, the billing and rating domain, the SLA engine, the clock. This test runs that
contract, and checks the rule the contract cannot: SQL text lives in ``store/`` only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A string literal that starts an SQL statement (what a query passed to a driver looks like).
SQL = re.compile(
    r"""["'](?:SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|WITH \w+ AS|COPY \w+|CREATE |ALTER |"""
    r"""LOCK TABLE|BEGIN|COMMIT|ROLLBACK)\b"""
)


def test_the_import_contract_holds() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_sql_outside_the_store() -> None:
    store = ROOT / "src" / "effigate_engine" / "store"
    found = []
    for folder in (ROOT / "src", ROOT / "server"):
        for path in sorted(folder.rglob("*.py")):
            if store in path.parents:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if SQL.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_sql_check_sees_a_query() -> None:
    """The pattern above recognises the statements the store sends."""
    text = (ROOT / "src" / "effigate_engine" / "store" / "catalog.py").read_text()
    assert SQL.search(text)
