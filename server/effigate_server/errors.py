"""Errors to gRPC status codes, each with a sentence naming the field and value."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import grpc

from effigate_engine.errors import EffigateError, LifecycleError
from effigate_engine.service.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from effigate_engine.store.errors import (
    ConnectionLost,
    InvariantViolation,
    StoreError,
    TokenRefused,
)
from effigate_server.fields import check_request

log = logging.getLogger("effigate.server")

#: SQLSTATE classes of input the caller can fix (data exceptions, integrity refusals).
_CALLER_SQLSTATES = ("22", "23")
#: SQLSTATE classes of a database that cannot serve now: connection exceptions, transaction
#: rollbacks (serialization, deadlock), insufficient resources, operator intervention (shutdown),
#: system errors. Anything else the database refuses is a bug of ours (INTERNAL).
_UNAVAILABLE_SQLSTATES = ("08", "40", "53", "57", "58")
#: Exceptions of a database that cannot be reached (refused or dropped connections).
_UNREACHABLE = (
    ConnectionError,
    OSError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.PostgresConnectionError,
)
#: Marks an INTERNAL status: the caller sees only the request id, the log has the rest.
INTERNAL_PREFIX = "internal error"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception raised by a domain operation."""
    if isinstance(exc, Unauthenticated | TokenRefused):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc)
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc)
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, AlreadyExists):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, FailedPrecondition | LifecycleError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, InvariantViolation):
        if exc.sqlstate == "23503":  # a reference to a row that does not exist
            return grpc.StatusCode.NOT_FOUND, str(exc)
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, ConnectionLost):
        return grpc.StatusCode.UNAVAILABLE, f"the database is unreachable, retry: {exc}"
    if isinstance(exc, StoreError):
        # no SQLSTATE: the batch was refused before it reached the database
        if exc.sqlstate is None or exc.sqlstate.startswith(_CALLER_SQLSTATES):
            return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        if exc.sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return grpc.StatusCode.UNAVAILABLE, f"the database cannot serve now: {exc}"
        return grpc.StatusCode.INTERNAL, INTERNAL_PREFIX
    if isinstance(exc, EffigateError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, asyncpg.DataError):
        # a value the driver cannot encode for its column: caller input, never an outage
        return grpc.StatusCode.INVALID_ARGUMENT, f"request: {exc}"
    if isinstance(exc, _UNREACHABLE):
        return grpc.StatusCode.UNAVAILABLE, f"the database is unreachable: {exc}"
    return grpc.StatusCode.INTERNAL, INTERNAL_PREFIX


def reported(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """:func:`status_for` of ``exc`` raised by ``method``; an internal error is logged with a
    request id, which alone the caller is told."""
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        request = uuid.uuid4().hex[:16]
        log.error(
            "internal error in %s (request %s)",
            method,
            request,
            exc_info=exc,
            extra={"rpc": method, "request_id": request},
        )
        message = f"{INTERNAL_PREFIX} (request {request})"
    return code, message


async def _checked(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose every message passes :func:`check_request` first; the field path
    of an error is prefixed with the message's position (``chunk[2].now``)."""
    position = 0
    async for message in messages:
        try:
            check_request(message)
        except EffigateError as exc:
            raise EffigateError(f"chunk[{position}].{exc}") from None
        position += 1
        yield message


def _validated(request: Any) -> Any:
    """The request after the boundary checks: a message is checked whole, a client stream
    message by message as it is read."""
    if hasattr(request, "DESCRIPTOR"):
        check_request(request)
        return request
    return _checked(request)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method (coroutine or async generator) so every request field is checked
    first (``fields``) and domain errors become status codes; cancellation (deadline, client
    gone, shutdown) propagates untouched."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in fn(self, _validated(request), context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                code, message = reported(exc, fn.__name__)
                await context.abort(code, message)

        return stream

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, _validated(request), context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            code, message = reported(exc, fn.__name__)
            await context.abort(code, message)

    return unary
