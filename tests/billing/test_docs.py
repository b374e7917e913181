"""The example in docs/billing.md runs as written and prints the seed invoice."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "billing.md"


def test_billing_doc_example_runs_and_prints_the_seed_invoice() -> None:
    """The first example prints the seed invoice; the billing-run example, run after it, gets
    the same invoice from a run; the what-if example moves March's after-hours line and
    credit."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    out = io.StringIO()
    namespace = {"__name__": "__doc_example__"}
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], str(DOC), "exec"), namespace)
    printed = out.getvalue()
    assert "Total" in printed and "4136.00" in printed
    assert "3420.00" in printed and "540.00" in printed and "-200.00" in printed
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(blocks[1], str(DOC), "exec"), namespace)
    assert "413600" in out.getvalue()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(blocks[2], str(DOC), "exec"), namespace)
    printed = out.getvalue()
    assert "'current': 413600, 'proposed': 440000, 'change': 26400" in printed
    assert "'amount_change': 9000" in printed and "'amount_change': 15000" in printed
