"""Typed interface of the compiled routing kernel (``_route.pyx``).

Codes are int32 positions in a field's vocabulary (-1: null or a value no rule mentions);
acceptance tables are uint8 (rules, vocabulary + 1), column 0 for null.
"""

import numpy as np
import numpy.typing as npt

_I8 = npt.NDArray[np.int8]
_I32 = npt.NDArray[np.int32]
_U8 = npt.NDArray[np.uint8]

class RouteTable:
    """The rules flattened: acceptance tables per matched field, the after-hours flag each rule
    requires (-1: any) and each rule's row in the pattern matrix (-1: no patterns)."""

    rules: int
    def __init__(
        self,
        priority_ok: _U8,
        level_ok: _U8,
        job_ok: _U8,
        client_ok: _U8,
        channel_ok: _U8,
        after_required: _I8,
        pattern_row: _I32,
    ) -> None: ...

class RouteColumns:
    """The tickets' matched fields as codes, the after-hours flag (-1 null) and the pattern
    matrix (rules with patterns, tickets)."""

    tickets: int
    def __init__(
        self,
        priority: _I32,
        support_level: _I32,
        job_type: _I32,
        client: _I32,
        channel: _I32,
        after_hours: _I8,
        pattern_ok: _U8,
    ) -> None: ...

def match_rules(tickets: RouteColumns, rules: RouteTable, out: _I32) -> int:
    """out[t] = the first rule matching ticket t (-1: none); returns -1 or the first ticket
    whose codes lie outside the tables."""
