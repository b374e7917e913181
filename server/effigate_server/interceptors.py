"""Server interceptors: bearer-token authentication, metrics and structured request logs.

The authenticated :class:`~effigate_engine.service.Principal` reaches the servicers through a
context variable set around each call's handler. Health checks and reflection need no token.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from effigate_engine.service.context import Principal
from effigate_engine.service.errors import Unauthenticated
from effigate_engine.service.tokens import TokenResolver
from effigate_server.errors import status_for
from effigate_server.fields import LIMITS
from effigate_server.metrics import LATENCY, REQUESTS

log = logging.getLogger("effigate.server")

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "effigate_principal", default=None
)
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def current_principal() -> Principal:
    """The caller of the running RPC (set by :class:`AuthInterceptor`)."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("authorization", None, "is missing: send 'Bearer <token>'")
    return principal


def _bearer(metadata: tuple[Any, ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, secret = text.partition(" ")
            return secret.strip() if scheme.lower() == "bearer" else None
    return None


class _Refused:
    """What a request decoded to when its bytes are refused: too large for a unary call, or
    not a message of the method's type. The call answers ``code`` with ``message``."""

    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message


def _decoder(
    deserializer: Callable[[bytes], Any] | None, limit: int | None
) -> Callable[[bytes], Any] | None:
    """``deserializer`` that never raises: bytes over ``limit`` (unary calls) or bytes that
    do not decode become a :class:`_Refused` the call then answers."""
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        if limit is not None and len(raw) > limit:
            return _Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request: {len(raw):,} bytes is more than the {limit:,} a unary call accepts"
                " (bulk rows go through the streaming calls)",
            )
        try:
            return deserializer(raw)
        except Exception as exc:  # any decoding failure is the caller's bytes
            return _Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: {len(raw):,} bytes are not a valid message ({type(exc).__name__})",
            )

    return decode


async def _refuse_if(request: Any, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Refused):
        await context.abort(request.code, request.message)


async def _decoded(messages: Any, context: grpc.aio.ServicerContext) -> Any:
    """A client stream with refused messages answered before a servicer sees them."""
    async for message in messages:
        await _refuse_if(message, context)
        yield message


class Calls:
    """The API calls in flight, and whether the server is draining: once :meth:`drain` is
    called, new calls are refused with ``UNAVAILABLE`` (a client retries them elsewhere) while
    the calls already running finish (:meth:`idle`)."""

    def __init__(self) -> None:
        self.running = 0
        self.draining = False
        #: set by :meth:`drain`: calls that would wait indefinitely (event watches) end then
        self.stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.running += 1
        self._idle.clear()

    def leave(self) -> None:
        self.running -= 1
        if self.running == 0:
            self._idle.set()

    def drain(self) -> None:
        """Refuse new calls from now on, and end the calls that wait for news."""
        self.draining = True
        self.stopping.set()

    async def idle(self, timeout: float) -> bool:
        """Wait until no call is running (at most ``timeout`` seconds); whether none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


#: What a call refused while the server drains is told.
DRAINING = "the server is shutting down: retry the call (on another server)"


def _code_of(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    return "OK" if code is None else code.name


def _wrap(
    handler: grpc.RpcMethodHandler, method: str, principal: Principal | None, calls: Calls
) -> grpc.RpcMethodHandler:
    """The same handler with the principal set, counted in ``calls`` while it runs, and
    timing/logging around the call."""

    def done(started: float, context: grpc.aio.ServicerContext, failed: str | None) -> None:
        elapsed = time.perf_counter() - started
        code = failed or _code_of(context)
        REQUESTS.labels(method, code).inc()
        LATENCY.labels(method).observe(elapsed)
        log.info(
            "rpc",
            extra={
                "rpc": method,
                "code": code,
                "ms": round(elapsed * 1000, 3),
                "tenant": None if principal is None else str(principal.tenant_id),
            },
        )

    def unary(
        behavior: Callable[..., Awaitable[Any]], unary_request: bool
    ) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = _principal.set(principal)
            started = time.perf_counter()
            failed: str | None = None
            calls.enter()
            try:
                if unary_request:
                    await _refuse_if(request, context)
                else:
                    request = _decoded(request, context)
                return await behavior(request, context)
            except BaseException as exc:
                failed = _code_of(context) if context.code() else type(exc).__name__
                raise
            finally:
                calls.leave()
                _principal.reset(token)
                done(started, context, failed)

        return call

    def streaming(behavior: Callable[..., Any], unary_request: bool) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = _principal.set(principal)
            started = time.perf_counter()
            failed: str | None = None
            calls.enter()
            try:
                if unary_request:
                    await _refuse_if(request, context)
                else:
                    request = _decoded(request, context)
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                failed = _code_of(context) if context.code() else type(exc).__name__
                raise
            finally:
                calls.leave()
                _principal.reset(token)
                done(started, context, failed)

        return call

    unary_in = _decoder(handler.request_deserializer, LIMITS.unary_message_bytes)
    stream_in = _decoder(handler.request_deserializer, None)
    out = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary, True), unary_in, out)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            unary(handler.stream_unary, False), stream_in, out
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(handler.unary_stream, True), unary_in, out
        )
    return grpc.stream_stream_rpc_method_handler(
        streaming(handler.stream_stream, False), stream_in, out
    )


def _refusal(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler of the same shape that refuses the call with ``code`` (UNAUTHENTICATED, or
    UNAVAILABLE when the token could not be resolved because the database is unreachable)."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        REQUESTS.labels("unauthenticated", code.name).inc()
        await context.abort(code, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await refuse(request, context)
        yield  # pragma: no cover - abort raises

    # the token is refused whatever the bytes: decoding must not fail first
    ser, de = handler.response_serializer, _decoder(handler.request_deserializer, None)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, de, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, de, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, de, ser)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, de, ser)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Resolves ``authorization: Bearer <token>`` to a principal for every API call."""

    def __init__(self, resolver: TokenResolver, calls: Calls | None = None) -> None:
        self._resolver = resolver
        self.calls = calls or Calls()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if self.calls.draining:
            return _refusal(handler, grpc.StatusCode.UNAVAILABLE, DRAINING)
        try:
            principal = await self._resolver.resolve(
                _bearer(handler_call_details.invocation_metadata)
            )
        except Unauthenticated as exc:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except Exception as exc:  # the database is unreachable, or a bug: never UNKNOWN
            code, message = status_for(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("internal error resolving a token", exc_info=exc)
            return _refusal(handler, code, message)
        return _wrap(handler, method.rsplit("/", 1)[-1], principal, self.calls)
