"""Each policy's rules compiled into a decision table: the first matching rule of every
combination of matched values, so matching a ticket is one lookup whatever the number of rules.

Per matched field (priority, support level, job type, client, after-hours) and policy, values
that the same rules of the policy accept are one *class*: a value no rule of the policy names,
a null and a value only other policies name fall in the class of "only the rules that leave
the field open". A field no rule of the policy constrains has one class. The policy's table is
the dense product of its fields' classes; each cell holds the global index of the first rule
accepting it (-1: none). It is painted from the last rule to the first, each rule writing
itself into the product of the classes it accepts, so an earlier rule overwrites a later one:
first match, without scanning the rules per cell.

A ticket's cell is ``table_base[p]`` plus, per field, ``cell_of[map_offset[p, f] + code + 1]``
(its class times the field's stride; a field the policy leaves open reads the shared zero
segment at offset 0). A policy whose table would exceed :data:`MAX_CELLS` cells, or whose
painting would write more than :data:`MAX_PAINTED` cells, keeps the first-match scan
(``table_base[p] = -1``): correctness first, and such policies are rare (several fields with
hundreds of distinct classes each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The most cells (int32 each) one policy's decision table may have; a larger one keeps the scan.
MAX_CELLS = 1 << 22
#: The most cells painting one policy's table may write (the sum over its rules of the cells
#: each accepts); beyond it the policy keeps the scan (compile time stays under a second).
MAX_PAINTED = 1 << 26


@dataclass(frozen=True)
class RuleIndex:
    """The decision tables of every policy, as ``_evaluate.RuleIndex`` reads them."""

    table_base: np.ndarray  # int64 per policy: its table's first cell in `decision`; -1: scan
    map_offset: np.ndarray  # int64 (policies, fields): its class map's offset in `cell_of`
    cell_of: np.ndarray  # int32: per (policy, field) and code + 1, class × stride
    decision: np.ndarray  # int32: per cell, the global index of the first matching rule, or -1

    @property
    def indexed(self) -> np.ndarray:
        """Per policy: whether it is matched through its table (else by the scan)."""
        return self.table_base >= 0


def after_hours_table(after_required: np.ndarray) -> np.ndarray:
    """(rules, 3) acceptance table of the after-hours flag, column ``flag + 1`` (-1 null, 0,
    1): a rule that requires a flag accepts only that flag, a null never."""
    table = np.ones((len(after_required), 3), np.uint8)
    required = after_required >= 0
    table[required] = 0
    table[required, after_required[required].astype(np.int64) + 1] = 1
    return table


def _classes(accepts: np.ndarray) -> tuple[np.ndarray, int, list[np.ndarray | None]] | None:
    """One field of one policy: per column (code + 1) its class, the number of classes, and
    per rule the classes it accepts (``None``: every class, the rule leaves the field open);
    ``None`` when no rule of the policy constrains the field. Columns accepted by the same
    rules are one class. Works from the accepted (rule, column) pairs, never the dense table."""
    constraining = np.flatnonzero(~accepts.all(axis=1))
    if constraining.size == 0:
        return None
    rows, cols = np.nonzero(accepts[constraining])  # by rule, then column
    order = np.argsort(cols, kind="stable")  # by column, then rule
    rows, cols = rows[order], cols[order]
    width = accepts.shape[1]
    bounds = np.searchsorted(cols, np.arange(width + 1))
    ids: dict[bytes, int] = {b"": 0}  # the class of columns only open rules accept
    of_column = np.zeros(width, np.int64)
    for c in range(width):
        key = rows[bounds[c] : bounds[c + 1]].tobytes()
        of_column[c] = ids.setdefault(key, len(ids))
    # Per constraining rule, the distinct classes of the columns it accepts.
    pairs = np.unique(rows * len(ids) + of_column[cols])
    owner, classes = np.divmod(pairs, len(ids))
    split = np.searchsorted(owner, np.arange(constraining.size + 1))
    accepted: list[np.ndarray | None] = [None] * len(accepts)
    for k, g in enumerate(constraining.tolist()):
        accepted[g] = classes[split[k] : split[k + 1]]
    return of_column, len(ids), accepted


def _policy_table(
    fields: list[np.ndarray], first: int, max_cells: int, max_painted: int
) -> tuple[np.ndarray, list[np.ndarray | None]] | None:
    """One policy's decision table (int32, raveled) and per field its map code + 1 -> class ×
    stride (``None``: the policy leaves the field open); ``None`` past the bounds."""
    classes = [_classes(accepts) for accepts in fields]
    dims = [c for c in classes if c is not None]
    shape = tuple(n for _, n, _ in dims)
    if int(np.prod(shape, dtype=np.float64)) > max_cells:
        return None
    rules = len(fields[0])
    every = [np.arange(n) for _, n, _ in dims]
    picks = [  # per rule and dimension, the classes it accepts
        [every[k] if acc[r] is None else acc[r] for k, (_, _, acc) in enumerate(dims)]
        for r in range(rules)
    ]
    painted = [math.prod(len(a) for a in pick) for pick in picks]
    if sum(painted) > max_painted:
        return None
    decision = np.full(shape, -1, np.int32)
    for r in range(rules - 1, -1, -1):
        if painted[r]:
            decision[np.ix_(*picks[r])] = first + r
    strides = [int(np.prod(shape[k + 1 :], dtype=np.int64)) for k in range(len(shape))]
    maps: list[np.ndarray | None] = []
    k = 0
    for c in classes:
        if c is None:
            maps.append(None)
        else:
            maps.append((c[0] * strides[k]).astype(np.int32))
            k += 1
    return decision.ravel(), maps


def rule_index(
    rule_first: np.ndarray,
    rule_count: np.ndarray,
    fields: list[np.ndarray],
    *,
    max_cells: int | None = None,
    max_painted: int | None = None,
) -> RuleIndex:
    """Compile every policy's decision table from the per-field acceptance tables of all rules
    (``(rules, codes + 1)`` uint8, column 0 = null / not mentioned, in the order the kernel
    reads the fields: priority, support level, job type, client, after-hours). The bounds
    default to :data:`MAX_CELLS` and :data:`MAX_PAINTED`."""
    max_cells = MAX_CELLS if max_cells is None else max_cells
    max_painted = MAX_PAINTED if max_painted is None else max_painted
    policies = len(rule_first)
    table_base = np.full(policies, -1, np.int64)
    map_offset = np.zeros((policies, len(fields)), np.int64)
    zero = max(accepts.shape[1] for accepts in fields)
    cell_parts: list[np.ndarray] = [np.zeros(zero, np.int32)]
    cell_size = zero
    decision_parts: list[np.ndarray] = []
    decision_size = 0
    for p in range(policies):
        lo, hi = int(rule_first[p]), int(rule_first[p] + rule_count[p])
        built = _policy_table([a[lo:hi] for a in fields], lo, max_cells, max_painted)
        if built is None:
            continue
        decision, maps = built
        table_base[p] = decision_size
        decision_parts.append(decision)
        decision_size += len(decision)
        for f, cells in enumerate(maps):
            if cells is not None:
                map_offset[p, f] = cell_size
                cell_parts.append(cells)
                cell_size += len(cells)
    return RuleIndex(
        table_base,
        map_offset,
        np.concatenate(cell_parts),
        np.concatenate(decision_parts) if decision_parts else np.zeros(0, np.int32),
    )
