"""Errors raised by the store. Each names the field at fault and the offending value."""

from __future__ import annotations

from effigate_engine.errors import EffigateError


class StoreError(EffigateError):
    """The database refused a change.

    ``field`` is ``table.column`` (or a batch field such as ``time_logs.id[3]``), ``value`` the
    offending value when known, ``sqlstate`` the PostgreSQL error code.
    """

    def __init__(
        self, field: str, value: object, problem: str, sqlstate: str | None = None
    ) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.sqlstate = sqlstate
        shown = "" if value is None else f"{value!r} "
        super().__init__(f"{field}: {shown}{problem}")


class InvariantViolation(StoreError):
    """A money invariant enforced by the database refused the change (SQLSTATE 23514/23505)."""


class MigrationError(StoreError):
    """The migrations on disk and those recorded in the database disagree."""


#: SQLSTATEs of refused changes: check, unique, foreign key and exclusion violations.
_INTEGRITY = frozenset({"23514", "23505", "23503", "23P01"})


def _field(table: str, column: str) -> str:
    """``table.column`` from whichever of the two the server reported."""
    if column:
        return f"{table}.{column}" if table else column
    return table or "database"


def from_asyncpg(exc: BaseException) -> StoreError:
    """Translate an asyncpg ``PostgresError`` into a :class:`StoreError` naming the field."""
    sqlstate = getattr(exc, "sqlstate", None)
    table = getattr(exc, "table_name", None) or ""
    column = getattr(exc, "column_name", None) or ""
    constraint = getattr(exc, "constraint_name", None) or ""
    message = getattr(exc, "message", None) or str(exc)
    detail = getattr(exc, "detail", None)
    problem = message if not detail else f"{message} ({detail})"
    cls = InvariantViolation if sqlstate in _INTEGRITY else StoreError
    return cls(_field(table, column or constraint), None, problem, sqlstate)


def from_adbc(exc: BaseException) -> StoreError:
    """Translate an ADBC driver error into a :class:`StoreError`, using the server's fields."""
    fields: dict[str, str] = {}
    for key, value in getattr(exc, "details", None) or []:
        name = key.decode() if isinstance(key, bytes) else str(key)
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        fields[name.removeprefix("PG_DIAG_")] = text
    sqlstate = getattr(exc, "sqlstate", None) or fields.get("SQLSTATE")
    table = fields.get("TABLE_NAME", "")
    column = fields.get("COLUMN_NAME", "") or fields.get("CONSTRAINT_NAME", "")
    message = fields.get("MESSAGE_PRIMARY") or str(exc)
    detail = fields.get("MESSAGE_DETAIL")
    problem = message if not detail else f"{message} ({detail})"
    cls = InvariantViolation if sqlstate in _INTEGRITY else StoreError
    return cls(_field(table, column), None, problem, sqlstate)
