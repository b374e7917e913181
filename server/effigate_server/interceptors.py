"""Server interceptors: bearer-token authentication, metrics and structured request logs.

One implementation serves both protocols: :func:`admit` (draining refusal, bearer token to
principal) and :class:`Call` (principal context variable, call accounting, metrics, the ``rpc``
log line) are used by :class:`AuthInterceptor` for gRPC and by :class:`ConnectInterceptor` for
the Connect protocol over HTTP. The authenticated :class:`~effigate_engine.service.Principal`
reaches the servicers through a context variable set around each call's handler. Health checks
and reflection (gRPC only) need no token.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

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


def bearer(authorization: str | bytes | None) -> str | None:
    """The secret of an ``authorization: Bearer <token>`` header value (else ``None``)."""
    if authorization is None:
        return None
    text = authorization.decode() if isinstance(authorization, bytes) else authorization
    scheme, _, secret = text.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


def _bearer(metadata: tuple[Any, ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return bearer(value)
    return None


def unary_too_large(size: int, limit: int) -> str:
    """What a unary call whose request is ``size`` bytes (over ``limit``) is told."""
    return (
        f"request: {size:,} bytes is more than the {limit:,} a unary call accepts"
        " (bulk rows go through the streaming calls)"
    )


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
            return _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, unary_too_large(len(raw), limit))
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


class Refusal(Exception):
    """A call refused before its handler runs: the server drains (``UNAVAILABLE``), the token
    is missing or refused (``UNAUTHENTICATED``), or it could not be resolved (the database is
    unreachable: ``UNAVAILABLE``)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def admit(resolver: TokenResolver, calls: Calls, token: str | None) -> Principal:
    """The principal of a new call bearing ``token`` (the bearer secret, or ``None``); raises
    :class:`Refusal` (counted in the request metrics) when the call may not run."""
    try:
        if calls.draining:
            raise Refusal(grpc.StatusCode.UNAVAILABLE, DRAINING)
        try:
            return await resolver.resolve(token)
        except Unauthenticated as exc:
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        except Exception as exc:  # the database is unreachable, or a bug: never UNKNOWN
            code, message = status_for(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("internal error resolving a token", exc_info=exc)
            raise Refusal(code, message) from None
    except Refusal as refusal:
        REQUESTS.labels("unauthenticated", refusal.code.name).inc()
        raise


class Call:
    """One admitted call, from its start to :meth:`finish`: the principal is set for the
    servicers (:func:`current_principal`), the call is counted in ``calls`` (draining waits
    for it), and its end is measured (``effigate_requests_total{method,code}``,
    ``effigate_request_seconds{method}``) and logged (``rpc`` line: method, code, ms, tenant).

    Start and finish it in the same task (the context variable is reset at the end)."""

    __slots__ = ("_calls", "_started", "_token", "method", "principal")

    def __init__(self, method: str, principal: Principal | None, calls: Calls) -> None:
        self.method = method
        self.principal = principal
        self._calls = calls
        self._token = _principal.set(principal)
        self._started = time.perf_counter()
        calls.enter()

    def finish(self, code: str) -> None:
        """End the call with status ``code`` (a gRPC status name, ``OK``, or the name of the
        exception that ended it)."""
        self._calls.leave()
        _principal.reset(self._token)
        elapsed = time.perf_counter() - self._started
        counted, timed = _children(self.method, code)
        counted.inc()
        timed.observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "rpc",
                extra={
                    "rpc": self.method,
                    "code": code,
                    "ms": round(elapsed * 1000, 3),
                    "tenant": None if self.principal is None else str(self.principal.tenant_id),
                },
            )


#: The metric children of each (method, code) seen: ``labels()`` looks them up under a lock
#: with its arguments validated on every call; the children themselves never change.
_CHILDREN: dict[tuple[str, str], tuple[Any, Any]] = {}


def _children(method: str, code: str) -> tuple[Any, Any]:
    """``effigate_requests_total{method,code}`` and ``effigate_request_seconds{method}``."""
    hit = _CHILDREN.get((method, code))
    if hit is None:
        hit = _CHILDREN[(method, code)] = (REQUESTS.labels(method, code), LATENCY.labels(method))
    return hit


def _code_of(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    return "OK" if code is None else code.name


def _failure(context: grpc.aio.ServicerContext, exc: BaseException) -> str:
    return _code_of(context) if context.code() else type(exc).__name__


def _wrap(
    handler: grpc.RpcMethodHandler, method: str, principal: Principal | None, calls: Calls
) -> grpc.RpcMethodHandler:
    """The same handler run as a :class:`Call` of ``principal``."""

    def unary(
        behavior: Callable[..., Awaitable[Any]], unary_request: bool
    ) -> Callable[..., Awaitable[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            running = Call(method, principal, calls)
            failed: str | None = None
            try:
                if unary_request:
                    await _refuse_if(request, context)
                else:
                    request = _decoded(request, context)
                return await behavior(request, context)
            except BaseException as exc:
                failed = _failure(context, exc)
                raise
            finally:
                running.finish(failed or _code_of(context))

        return call

    def streaming(behavior: Callable[..., Any], unary_request: bool) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            running = Call(method, principal, calls)
            failed: str | None = None
            try:
                if unary_request:
                    await _refuse_if(request, context)
                else:
                    request = _decoded(request, context)
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                failed = _failure(context, exc)
                raise
            finally:
                running.finish(failed or _code_of(context))

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
        try:
            principal = await admit(
                self._resolver, self.calls, _bearer(handler_call_details.invocation_metadata)
            )
        except Refusal as refusal:
            return _refusal(handler, refusal.code, refusal.message)
        return _wrap(handler, method.rsplit("/", 1)[-1], principal, self.calls)


#: Connect codes by gRPC status name (the same names, but for ``CANCELLED``).
_CONNECT_CODES = {"CANCELLED": Code.CANCELED} | {code.name: code for code in Code}
#: gRPC status names by Connect code.
_GRPC_NAMES = {code: name for name, code in _CONNECT_CODES.items() if name != "CANCELED"}


def connect_code(code: grpc.StatusCode) -> Code:
    """The Connect code of a gRPC status code."""
    return _CONNECT_CODES[code.name]


def grpc_name(error: Exception | None) -> str:
    """The gRPC status name a Connect call ended with (``OK`` without ``error``; the
    exception's class name when it is not a :class:`ConnectError`, as for gRPC)."""
    if error is None:
        return "OK"
    if isinstance(error, ConnectError):
        return _GRPC_NAMES[error.code]
    return type(error).__name__


class ConnectInterceptor:
    """The same admission and accounting for calls over the Connect protocol: a connectrpc
    metadata interceptor (it applies to unary, client- and server-streaming calls alike and,
    placed first, runs before the request body is read, as the gRPC interceptor does)."""

    def __init__(self, resolver: TokenResolver, calls: Calls) -> None:
        self._resolver = resolver
        self.calls = calls

    async def on_start(self, ctx: RequestContext[Any, Any]) -> Call:
        """Admit the call (or raise its refusal as a :class:`ConnectError`) and start it."""
        token = bearer(ctx.request_headers.get("authorization"))
        try:
            principal = await admit(self._resolver, self.calls, token)
        except Refusal as refusal:
            raise ConnectError(connect_code(refusal.code), refusal.message) from None
        return Call(ctx.method.name, principal, self.calls)

    async def on_end(
        self, call: Call, ctx: RequestContext[Any, Any], error: Exception | None
    ) -> None:
        """Finish the call with the code it ended with."""
        call.finish(grpc_name(error))
