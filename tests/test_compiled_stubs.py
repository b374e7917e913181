"""The ``.pyi`` stubs beside the compiled modules describe what the modules export: the same
public names, the same function parameters, the same class attributes, and they ship with the
package. The grouped kernel arguments refuse columns of mismatched lengths."""

from __future__ import annotations

import ast
import inspect
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from effigate_engine import _clock
from effigate_engine.routing import _assign, _route
from effigate_engine.sla import _evaluate

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def _stub(module: ModuleType) -> ast.Module:
    path = SRC / (module.__name__.replace(".", "/") + ".pyi")
    return ast.parse(path.read_text())


def _public(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }


def _stub_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", [_clock, _evaluate, _route, _assign], ids=lambda m: m.__name__)
def test_stub_lists_every_public_name_of_the_compiled_module(module: ModuleType) -> None:
    assert _stub_names(_stub(module)) == _public(module)


@pytest.mark.parametrize("module", [_clock, _evaluate, _route, _assign], ids=lambda m: m.__name__)
def test_stub_functions_take_the_compiled_functions_parameters(module: ModuleType) -> None:
    for node in _stub(module).body:
        if isinstance(node, ast.FunctionDef):
            compiled = inspect.signature(getattr(module, node.name))
            assert [a.arg for a in node.args.args] == list(compiled.parameters), node.name


@pytest.mark.parametrize("module", [_clock, _evaluate, _route, _assign], ids=lambda m: m.__name__)
def test_stub_class_members_exist_on_the_compiled_classes(module: ModuleType) -> None:
    for node in _stub(module).body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, node.name)
        for member in node.body:
            if isinstance(member, ast.FunctionDef):
                assert hasattr(cls, member.name), f"{node.name}.{member.name}"
            elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                assert hasattr(cls, member.target.id), f"{node.name}.{member.target.id}"


def test_stubs_and_marker_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    for module in (_clock, _evaluate, _route, _assign):
        package, _, name = module.__name__.rpartition(".")
        assert any(fnmatch(f"{name}.pyi", p) for p in package_data[package]), module.__name__
    assert "py.typed" in package_data["effigate_engine"]
    assert (SRC / "effigate_engine" / "py.typed").exists()


def _i64(n: int) -> np.ndarray:
    return np.zeros(n, np.int64)


def test_ticket_columns_refuse_columns_of_other_lengths() -> None:
    with pytest.raises(ValueError, match="one entry per ticket"):
        _evaluate.TicketColumns(
            _i64(3), _i64(3), _i64(2), _i64(3), _i64(3), _i64(3), _i64(4), _i64(0), _i64(0),
            _i64(0),
        )
    with pytest.raises(ValueError, match="pause_offsets"):
        _evaluate.TicketColumns(*[_i64(3)] * 6, _i64(3), _i64(0), _i64(0), _i64(0))
    with pytest.raises(ValueError, match="within the pause columns"):
        offsets = np.array([0, 1, 2, 5], np.int64)
        _evaluate.TicketColumns(*[_i64(3)] * 6, offsets, _i64(4), _i64(4), _i64(4))


def test_ticket_columns_count_the_most_pauses_on_one_ticket() -> None:
    offsets = np.array([0, 1, 4, 4], np.int64)
    columns = _evaluate.TicketColumns(*[_i64(3)] * 6, offsets, _i64(4), _i64(4), _i64(4))
    assert columns.max_pauses == 3


def test_ticket_columns_find_the_first_pause_ending_before_its_start() -> None:
    offsets = np.array([0, 1, 3, 3], np.int64)
    start = np.array([10, 20, 30], np.int64)
    open_end = np.iinfo(np.int64).min  # an open pause never ends before its start
    columns = _evaluate.TicketColumns(
        *[_i64(3)] * 6, offsets, start, np.array([open_end, 15, 25], np.int64), _i64(3)
    )
    assert columns.first_backwards == 1
    fine = np.array([open_end, 20, 31], np.int64)
    assert (
        _evaluate.TicketColumns(*[_i64(3)] * 6, offsets, start, fine, _i64(3)).first_backwards == -1
    )


def test_rule_table_refuses_a_spec_grid_without_a_column_per_metric() -> None:
    ok = np.ones((2, 1), np.uint8)
    with pytest.raises(ValueError, match="one column per metric"):
        _evaluate.RuleTable(
            _i64(1), _i64(1), ok, ok, ok, ok, np.zeros(2, np.int8), np.zeros((2, 2), np.int64)
        )


def test_result_buffers_allocate_the_rows_asked_for() -> None:
    out = _evaluate.ResultBuffers(5)
    assert out.rows == 5
    assert out.ticket.dtype == np.int64 and out.notify.dtype == np.int32 and len(out.next) == 5


def test_route_columns_refuse_columns_of_other_lengths() -> None:
    codes = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match="one entry per ticket"):
        _route.RouteColumns(
            codes,
            codes,
            codes,
            np.zeros(2, np.int32),
            codes,
            np.zeros(3, np.int8),
            np.ones((0, 3), np.uint8),
        )


def test_roster_refuses_slots_the_queues_do_not_cover() -> None:
    with pytest.raises(ValueError, match="slots"):
        _assign.Roster(
            np.array([0, 2], np.int64),
            np.zeros(1, np.int32),
            np.zeros(1, np.int32),
            np.full(1, -1, np.int32),
            np.zeros(1, np.uint8),
            np.zeros(1, np.int64),
        )
