"""Import directions of the engine's domain packages: ``clock`` ← ``sla``; ``ratecard`` ←
``billing``. A module may import from its own layer or a lower one, never a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "effigate_engine"
CLOCK_LEVEL = ["clock", "calendar", "calendar_set", "zone", "intervals", "instants"]
SHARED = ["errors", "money", "parallel"]
HIGHER = ["sla", "ratecard", "billing", "service", "store", "cli", "cli_failures"]

#: module or package -> the engine packages it must not import
FORBIDDEN = {
    **{name: HIGHER for name in CLOCK_LEVEL + SHARED},
    "sla": ["ratecard", "billing", "service", "store", "cli", "cli_failures"],
    "ratecard": ["sla", "billing", "service", "store", "cli", "cli_failures"],
    "billing": ["service", "store", "cli", "cli_failures"],
}


def _sources(name: str) -> list[Path]:
    package = PACKAGE / name
    return sorted(package.rglob("*.py")) if package.is_dir() else [PACKAGE / f"{name}.py"]


def _imported(path: Path) -> set[str]:
    """The engine modules ``path`` imports (absolute or relative), as dotted names below
    ``effigate_engine``."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(["effigate_engine", *base, *filter(None, [node.module])])
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n.removeprefix("effigate_engine.") for n in names
                  if n.startswith("effigate_engine.")}
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    offending = [
        f"{path.relative_to(PACKAGE)} imports effigate_engine.{module}"
        for path in _sources(layer)
        for module in sorted(_imported(path))
        if module.split(".")[0] in FORBIDDEN[layer]
    ]
    assert offending == []
