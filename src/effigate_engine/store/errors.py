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


class ConnectionLost(StoreError):
    """The database could not be reached, or the connection broke (a restart, a crash, a
    fail-over): the request may be retried. A change in flight is either committed whole or
    not at all; for a write idempotent by the caller's key, retrying is always safe."""


class TokenRefused(StoreError):
    """The database does not accept the caller's bearer token (unknown or revoked since it was
    resolved; SQLSTATE 28000): nothing was bound, read or written."""


class MigrationError(StoreError):
    """The migrations on disk and those recorded in the database disagree."""


#: SQLSTATEs of refused changes: check, unique, foreign key and exclusion violations.
_INTEGRITY = frozenset({"23514", "23505", "23503", "23P01"})
#: SQLSTATEs of a server going away: shutdown (fast or immediate), crash, not yet accepting
#: connections; besides the whole class 08 (connection exceptions).
_GONE = frozenset({"57P01", "57P02", "57P03"})
#: ADBC's status code of an I/O failure (the socket to the server broke, or never opened).
_ADBC_IO = 10


def connection_lost(sqlstate: str | None) -> bool:
    """Whether ``sqlstate`` says the connection to the server is gone or cannot be made."""
    return sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _GONE)


def lost(problem: str, sqlstate: str | None = None) -> ConnectionLost:
    """A :class:`ConnectionLost` for the database connection, saying ``problem``."""
    return ConnectionLost("database", None, f"connection lost: {problem}", sqlstate or "08006")


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
    if connection_lost(sqlstate):
        return lost(problem, sqlstate)
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
    if connection_lost(sqlstate) or (sqlstate is None and _adbc_io(exc)):
        return lost(problem.strip(), sqlstate)
    cls = InvariantViolation if sqlstate in _INTEGRITY else StoreError
    return cls(_field(table, column), None, problem, sqlstate)


def _adbc_io(exc: BaseException) -> bool:
    """Whether an ADBC error is an I/O failure (libpq lost or could not open its socket)."""
    return getattr(exc, "status_code", None) == _ADBC_IO
