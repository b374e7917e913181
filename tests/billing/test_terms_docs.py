"""The worked examples of docs/contract-terms.md run as written: every Python block of the
section "Worked examples: time, buckets and scope" executes in order and its assertions (the
numbers worked by hand in the text) hold."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract-terms.md"
SECTION = "## Worked examples: time, buckets and scope"


def test_time_bucket_and_scope_examples_run_and_hold() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    blocks = re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)
    assert len(blocks) == 7
    scope: dict = {"__name__": "__doc_example__"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)
