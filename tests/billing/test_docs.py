"""The example in docs/billing.md runs as written and prints the seed invoice."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "billing.md"


def test_billing_doc_example_runs_and_prints_the_seed_invoice() -> None:
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(DOC), "exec"), {"__name__": "__doc_example__"})
    printed = out.getvalue()
    assert "Total" in printed and "4136.00" in printed
    assert "3420.00" in printed and "540.00" in printed and "-200.00" in printed
