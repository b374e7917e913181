"""Errors to gRPC status codes, each with a sentence naming the field and value."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc

from effigate_engine.billing.errors import LifecycleError
from effigate_engine.errors import EffigateError
from effigate_engine.service.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from effigate_engine.store.errors import ConnectionLost, InvariantViolation, StoreError

log = logging.getLogger("effigate.server")

#: SQLSTATE classes of input the caller can fix (data exceptions, integrity refusals).
_CALLER_SQLSTATES = ("22", "23")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception raised by a domain operation."""
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc)
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc)
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
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
        return grpc.StatusCode.UNAVAILABLE, f"the database refused the request: {exc}"
    if isinstance(exc, EffigateError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, OSError | ConnectionError):
        return grpc.StatusCode.UNAVAILABLE, f"the database is unreachable: {exc}"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def _report(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("internal error in %s", method, exc_info=exc)
    return code, message


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method (coroutine or async generator) so domain errors become status
    codes; cancellation (deadline, client gone, shutdown) propagates untouched."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in fn(self, request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                code, message = _report(exc, fn.__name__)
                await context.abort(code, message)

        return stream

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            code, message = _report(exc, fn.__name__)
            await context.abort(code, message)

    return unary
