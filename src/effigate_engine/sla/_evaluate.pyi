"""Typed interface of the compiled SLA evaluation kernels (``_evaluate.pyx``).

Every array is a C-contiguous NumPy array of the dtype named; instants are UTC epoch seconds
(``NO_INSTANT`` = INT64_MIN for none), durations business seconds. The grouping classes check
their columns' lengths against each other when built (``ValueError`` otherwise), so the
kernels index them unchecked.
"""

import numpy as np
import numpy.typing as npt

from effigate_engine._clock import PackedClock

_I8 = npt.NDArray[np.int8]
_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]
_U64 = npt.NDArray[np.uint64]

class RuleIndex:
    """Per policy its decision table (``sla.rule_index``): ``table_base`` (int64 per policy,
    the table's first cell in ``decision``; -1: matched by the scan), ``map_offset`` (int64,
    policies × 5 matched fields: priority, support level, job type, client, after-hours) into
    ``cell_of`` (int32, per field code + 1 its class × stride), ``decision`` (int32, per cell
    the global index of the first matching rule, -1 none). Refuses negative ``cell_of``."""

    def __init__(
        self, table_base: _I64, map_offset: _I64, cell_of: _I32, decision: _I32
    ) -> None: ...

class RuleTable:
    """The policies' rules: per policy its rule range, per rule and matched field which
    dictionary codes it accepts (``(rules, values + 1)`` uint8 tables, column 0 = null), the
    after-hours flag it requires (-1 any, 0, 1) and the spec of each metric (-1: none); with
    ``index`` the policies that have a decision table are matched through it (checked to lie
    within its arrays and to name rules), the others by a first-match scan."""

    def __init__(
        self,
        rule_first: _I64,
        rule_count: _I64,
        priority_ok: _U8,
        level_ok: _U8,
        job_ok: _U8,
        client_ok: _U8,
        after_required: _I8,
        spec_grid: _I64,
        index: RuleIndex | None = None,
    ) -> None: ...

class MatchColumns:
    """Per ticket: policy index (-2 unknown policy), dictionary codes of priority, support
    level, job type and client (-1 null / not mentioned), after-hours flag (-1, 0, 1)."""

    def __init__(
        self,
        policy: _I64,
        priority: _I64,
        support_level: _I64,
        job_type: _I64,
        client: _I64,
        after_hours: _I8,
    ) -> None: ...

class SpecTable:
    """Per spec: calendar index, target and warning threshold (business seconds), pausing
    status bitmask, ladder (-1 none), policy index and the rule's index within its policy
    (int32, copied to the result rows); per ladder its step range; per step the fraction
    (numerator / denominator) or the offset after the deadline (seconds; -1 for a fraction
    step); ``resolved_status`` the status bit of a resolution (-1 none)."""

    @property
    def resolved_status(self) -> int: ...
    def __init__(
        self,
        grid: _I64,
        cal: _I64,
        target: _I64,
        warning: _I64,
        mask: _U64,
        ladder: _I64,
        policy: _I32,
        rule: _I32,
        ladder_offsets: _I64,
        step_numerator: _I64,
        step_denominator: _I64,
        step_offset: _I64,
        resolved_status: int,
    ) -> None: ...

class TicketColumns:
    """Per ticket: created, the three metrics' stops, matched rule (-1 none), first result
    row; pauses as CSR (``pause_offsets`` one longer than the tickets; start, end, status
    bit per pause). ``max_pauses`` is computed from the offsets; ``first_backwards`` is the
    position of the first pause ending before its start (-1: none)."""

    @property
    def max_pauses(self) -> int: ...
    @property
    def first_backwards(self) -> int: ...
    def __init__(
        self,
        created: _I64,
        stop_first_response: _I64,
        stop_resolution_plan: _I64,
        stop_resolution: _I64,
        rule: _I64,
        row_offset: _I64,
        pause_offsets: _I64,
        pause_start: _I64,
        pause_end: _I64,
        pause_status: _I64,
    ) -> None: ...

class ResultBuffers:
    """``rows`` result rows, allocated here and filled by :func:`evaluate_tickets`: one array
    per column of the results table, and for each column that may be null an Arrow validity
    bitmap (``uint8``, bit r of byte r // 8, least significant bit first; 1 = valid), zeroed
    here; ``breached_valid`` serves the breached instant and the breach seconds."""

    ticket: _I64
    metric: _I8
    policy: _I32
    rule: _I32
    calendar: _I32
    target: _I64
    deadline: _I64
    elapsed: _I64
    remaining: _I64
    status: _I8
    stopped: _I64
    breach: _I64
    level: _I32
    notify: _I32
    next: _I64
    warning_at: _I64
    deadline_valid: _U8
    stopped_valid: _U8
    breached_valid: _U8
    notify_valid: _U8
    next_valid: _U8
    warning_valid: _U8
    @property
    def rows(self) -> int: ...
    def __init__(self, rows: int) -> None: ...

def match_rules(tickets: MatchColumns, rules: RuleTable) -> tuple[_I64, _I64]:
    """Per ticket: the global index of the first matching rule of its policy (-1 none) and
    how many result rows (metrics) that rule defines; one decision-table lookup for a policy
    that has a table, a first-match scan otherwise."""

def evaluate_tickets(
    clock: PackedClock,
    now_rows: _I64,
    now_per_ticket: bool,
    tickets: TicketColumns,
    specs: SpecTable,
    out: ResultBuffers,
    ticket_base: int,
) -> tuple[int, int]:
    """Evaluate every metric of the tickets into ``out``; returns (first bad ticket or -1,
    error code; 0 none)."""
