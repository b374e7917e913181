"""Contract scope on tickets: a ticket whose contract's terms name ``scope.support_levels`` /
``scope.job_types`` (docs/contract-terms.md) may carry only those values (or none).

A unary request carrying another value is refused with :class:`FailedPrecondition`
(``support_level: 'L3' is not allowed by contract 7 (allowed: L1, L2)``); a bulk row is an
invalid row named by its position and field (:func:`ticket_rows_check`,
:func:`event_rows_check`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effigate_engine import ticket_fields
from effigate_engine.service.errors import FailedPrecondition
from effigate_engine.store.batches import RowCheck
from effigate_engine.store.tickets import Scope

#: The ticket fields a scope restricts, with the events that change them.
SCOPED = {"support_level": "SUPPORT_LEVEL_CHANGED", "job_type": "JOB_TYPE_CHANGED"}


def scope_problem(scope: Scope, field: str, value: str | None) -> str | None:
    """Why ``value`` of ``field`` is out of ``scope`` (``None``: it is allowed)."""
    allowed = scope.support_levels if field == "support_level" else scope.job_types
    if value is None or allowed is None or value in allowed:
        return None
    shown = ", ".join(allowed) if allowed else "none"
    return f"is not allowed by contract {scope.contract_id} (allowed: {shown})"


def require_in_scope(scope: Scope | None, field: str, value: str | None) -> None:
    """Refuse (FAILED_PRECONDITION) a value the contract's scope does not allow."""
    if scope is None:
        return
    problem = scope_problem(scope, field, value)
    if problem is not None:
        raise FailedPrecondition(field, value, problem)


def ticket_rows_check(scopes: Mapping[int, Scope]) -> RowCheck:
    """The bulk check of ticket rows (normal form) against their contracts' ``scopes``."""

    def check(table: pa.Table) -> dict[int, tuple[str, object, str]]:
        faults: dict[int, tuple[str, object, str]] = {}
        if not scopes:
            return faults
        contracts = table.column("contract_id").to_pylist()
        columns = {f: table.column(f).to_pylist() for f in SCOPED if f in table.column_names}
        for k, contract in enumerate(contracts):
            scope = scopes.get(contract) if contract is not None else None
            if scope is None:
                continue
            for name, values in columns.items():
                problem = scope_problem(scope, name, values[k])
                if problem is not None:
                    faults.setdefault(k, (name, values[k], problem))
        return faults

    return check


def event_rows_check(scopes: Mapping[str, Scope]) -> RowCheck:
    """The bulk check of ticket-event rows: a ``SUPPORT_LEVEL_CHANGED`` or
    ``JOB_TYPE_CHANGED`` detail in normal form and within the ticket's contract ``scopes``."""

    def check(table: pa.Table) -> dict[int, tuple[str, object, str]]:
        faults: dict[int, tuple[str, object, str]] = {}
        kinds = table.column("kind")
        wanted = pc.is_in(kinds, value_set=pa.array(list(SCOPED.values()), pa.string()))
        rows = np.flatnonzero(pc.fill_null(wanted, False).to_numpy(zero_copy_only=False))
        if not len(rows):
            return faults
        kind_of = {v: k for k, v in SCOPED.items()}
        tickets = table.column("ticket_id").to_pylist()
        details = table.column("detail").to_pylist()
        kind_list = kinds.to_pylist()
        for k in map(int, rows):
            field = kind_of[kind_list[k]]
            detail = details[k]
            try:
                normal = (
                    ticket_fields.support_level(detail)
                    if field == "support_level"
                    else ticket_fields.job_type(detail)
                )
            except ticket_fields.FieldError as exc:
                faults[k] = ("detail", detail, f"({field}) {exc.problem}")
                continue
            if normal != detail and not (normal is None and detail in (None, "")):
                faults[k] = ("detail", detail, f"is not in normal form (send {normal!r})")
                continue
            scope = scopes.get(tickets[k])
            problem = None if scope is None else scope_problem(scope, field, normal)
            if problem is not None:
                faults[k] = ("detail", detail, f"({field}) {problem}")
        return faults

    return check
