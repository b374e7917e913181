"""Small Arrow tables as aligned text: the demo's compliance table and ``effigate replay``."""

from __future__ import annotations

from typing import Any


def format_table(table: Any) -> str:
    """A small Arrow table as aligned text columns (floats to 4 decimals)."""

    def text(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = [table.column_names] + [[text(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
