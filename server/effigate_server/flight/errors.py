"""Domain errors to Flight errors.

A handler's exception is first given its gRPC status by
:func:`effigate_server.errors.status_for` (the same code and sentence as the typed API), then
raised as the Flight error whose gRPC status is closest:

===================== ====================================== ===========================
status_for            raised in the handler                  the Flight client sees
===================== ====================================== ===========================
UNAUTHENTICATED       ``FlightUnauthenticatedError``         UNAUTHENTICATED
PERMISSION_DENIED     ``FlightUnauthorizedError``            PERMISSION_DENIED
INVALID_ARGUMENT      ``pyarrow.ArrowInvalid``               INVALID_ARGUMENT
NOT_FOUND             ``pyarrow.ArrowKeyError``              NOT_FOUND
UNAVAILABLE           ``FlightUnavailableError``             UNAVAILABLE
FAILED_PRECONDITION,  ``FlightServerError``, message         UNKNOWN
ALREADY_EXISTS        prefixed with the code's name
INTERNAL              ``FlightInternalError`` (request id)   INTERNAL
===================== ====================================== ===========================
"""

from __future__ import annotations

import grpc
import pyarrow as pa
import pyarrow.flight as flight

from effigate_server.errors import reported


def flight_error(code: grpc.StatusCode, message: str) -> Exception:
    """The Flight (or Arrow) exception carrying gRPC status ``code`` and ``message``."""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return flight.FlightUnauthenticatedError(message)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return flight.FlightUnauthorizedError(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return pa.ArrowInvalid(message)
    if code == grpc.StatusCode.NOT_FOUND:
        return pa.ArrowKeyError(message)
    if code == grpc.StatusCode.UNAVAILABLE:
        return flight.FlightUnavailableError(message)
    if code == grpc.StatusCode.INTERNAL:
        return flight.FlightInternalError(message)
    return flight.FlightServerError(f"{code.name}: {message}")


def translated(exc: BaseException, method: str) -> Exception:
    """The Flight error of a domain exception raised by ``method``; an internal error is
    logged with a request id, which alone the caller sees."""
    if isinstance(exc, flight.FlightError):
        return exc  # already a Flight error (refused by the middleware, cancelled)
    if isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError | pa.ArrowNotImplementedError):
        # the client's record batches cannot be read as the operation's columns
        return pa.ArrowInvalid(f"stream: {exc}")
    return flight_error(*reported(exc, f"flight/{method}"))
