"""Ticket priorities: the one vocabulary SLA policies, tickets, rate cards and contract terms
share, and the one function that reads a priority.

A priority is ``CRITICAL``, ``HIGH``, ``MEDIUM`` or ``LOW``; ``P1``–``P4`` are their aliases;
case and surrounding spaces do not matter (``docs/sla.md``, ``docs/contract-terms.md``).
"""

from __future__ import annotations

from effigate_engine.errors import EffigateError

PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
PRIORITY_ALIASES = {"P1": "CRITICAL", "P2": "HIGH", "P3": "MEDIUM", "P4": "LOW"}
#: How a refusal names the accepted values.
ACCEPTED = "is not CRITICAL/HIGH/MEDIUM/LOW or P1–P4"


class PriorityError(EffigateError):
    """A value that names no priority: ``field`` is its path, ``value`` the value."""

    def __init__(self, field: str, value: object, problem: str = ACCEPTED) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


def priority_name(value: object) -> str:
    """The priority ``value`` spells, as its name: ``" p1 "`` and ``"critical"`` are
    ``"CRITICAL"``. A value naming no priority comes back in the same spelling (upper case,
    stripped), so batches can be screened and reported on; :func:`normalise_priority`
    refuses it instead."""
    key = str(value).strip().upper()
    return PRIORITY_ALIASES.get(key, key)


def normalise_priority(value: object, field: str = "priority") -> str:
    """The name of the priority ``value`` spells (see :func:`priority_name`);
    :class:`PriorityError` naming ``field`` and the value when it names none (``None`` and
    ``""`` included)."""
    name = priority_name("" if value is None else value)
    if name not in PRIORITIES:
        raise PriorityError(field, value)
    return name
