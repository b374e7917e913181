"""How the ``effigate`` command reports a failure: one line on standard error, an exit code
per class of failure, and a traceback only when asked for (``--debug`` or
``EFFIGATE_DEBUG=1``).

Exit codes (README, *CLI*):

- 0: success.
- 1: the service or the database refused the request (``INVALID_ARGUMENT``,
  ``FAILED_PRECONDITION``, ``ALREADY_EXISTS``, ``OUT_OF_RANGE``, ``ABORTED``, …).
- 2: a bad command line or input file (usage, an invalid calendar, a missing file).
- 3: the server cannot be reached (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``), or ``serve``
  cannot listen on its port or reach its database.
- 4: no token, or one the service does not accept (``UNAUTHENTICATED``,
  ``PERMISSION_DENIED``).
- 5: what was asked for does not exist (``NOT_FOUND``).
- 70: a bug: ``INTERNAL``, ``UNKNOWN`` or ``UNIMPLEMENTED`` from the service, or an
  unexpected error in the command.
"""

from __future__ import annotations

import os

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_BUG = 70
ENV_DEBUG = "EFFIGATE_DEBUG"

_BY_STATUS = {
    "NOT_FOUND": EXIT_NOT_FOUND,
    "UNAUTHENTICATED": EXIT_AUTH,
    "PERMISSION_DENIED": EXIT_AUTH,
    "UNAVAILABLE": EXIT_UNREACHABLE,
    "DEADLINE_EXCEEDED": EXIT_UNREACHABLE,
    "INTERNAL": EXIT_BUG,
    "UNKNOWN": EXIT_BUG,
    "UNIMPLEMENTED": EXIT_BUG,
    "DATA_LOSS": EXIT_BUG,
}


class CommandFailure(Exception):
    """A failure the command explains itself: ``message`` (one line) and ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def debug_requested(flag: bool = False) -> bool:
    """Whether tracebacks are wanted: ``--debug`` or ``EFFIGATE_DEBUG`` set (not ``0``)."""
    return flag or os.environ.get(ENV_DEBUG, "") not in ("", "0")


def describe(exc: BaseException, address: str | None = None) -> tuple[str, int] | None:
    """The one-line message and exit code of ``exc``, or ``None`` when it is a bug (nothing
    the user can act on). ``address`` is the server a client command talked to."""
    from effigate_engine.errors import EffigateError
    from effigate_engine.service.errors import (
        FailedPrecondition,
        NotFound,
        PermissionDenied,
        Unauthenticated,
    )
    from effigate_engine.store.errors import TokenRefused

    if isinstance(exc, CommandFailure):
        return str(exc), exc.exit_code
    code = getattr(exc, "code", None)
    if callable(code) and type(exc).__module__.startswith("grpc"):
        return _rpc_failure(exc, code().name, address)
    if isinstance(exc, NotFound):
        return str(exc), EXIT_NOT_FOUND
    if isinstance(exc, Unauthenticated | TokenRefused | PermissionDenied):
        return str(exc), EXIT_AUTH
    if isinstance(exc, FailedPrecondition):
        return str(exc), EXIT_REFUSED
    if isinstance(exc, EffigateError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ConnectionError):
        return f"cannot reach the database ({exc})", EXIT_UNREACHABLE
    if isinstance(exc, OSError):
        return str(exc), EXIT_USAGE
    if type(exc).__module__.startswith("asyncpg") and type(exc).__name__ != "InternalClientError":
        return f"the database refused: {exc}", EXIT_REFUSED
    return None


def _rpc_failure(exc: BaseException, status: str, address: str | None) -> tuple[str, int]:
    details_of = getattr(exc, "details", None)
    details = (details_of() if callable(details_of) else None) or ""
    where = f" at {address}" if address else ""
    if status == "UNAVAILABLE" and (
        "failed to connect" in details.lower() or "connection refused" in details.lower()
    ):
        reason = "connection refused" if "refused" in details.lower() else details
        return (
            f"cannot reach the server{where} ({reason}): is it running (`make run`, or"
            " `.venv/bin/effigate serve`)? Else set --address or EFFIGATE_ADDRESS",
            EXIT_UNREACHABLE,
        )
    if status == "DEADLINE_EXCEEDED":
        return f"DEADLINE_EXCEEDED: the server{where} did not answer in time", EXIT_UNREACHABLE
    if status == "UNAUTHENTICATED":
        return f"UNAUTHENTICATED: {details} (check --token or EFFIGATE_TOKEN)", EXIT_AUTH
    exit_code = _BY_STATUS.get(status, EXIT_REFUSED)
    if exit_code == EXIT_BUG:
        details += " (a bug in the service: its log has the details)"
    return f"{status}: {details}", exit_code
