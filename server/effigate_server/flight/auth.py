"""Flight authentication: the ``authorization: Bearer <token>`` header of each call resolved to
its :class:`~effigate_engine.service.Principal` by the same :class:`TokenResolver` and draining
rule as the gRPC API (:func:`effigate_server.interceptors.admit`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow.flight as flight

from effigate_engine.service.context import Principal
from effigate_engine.service.tokens import TokenResolver
from effigate_server.flight.errors import flight_error
from effigate_server.interceptors import Calls, Refusal, admit, bearer

#: The middleware's key in :meth:`pyarrow.flight.ServerCallContext.get_middleware`.
AUTH = "auth"
#: Seconds a call waits for its token to be resolved before it is refused ``UNAVAILABLE``.
RESOLVE_TIMEOUT_SECONDS = 30.0


class Caller(flight.ServerMiddleware):
    """The authenticated caller of one Flight call."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal


class BearerAuth(flight.ServerMiddlewareFactory):
    """Admits a Flight call bearing a valid token; refuses others before the handler runs
    (``UNAUTHENTICATED`` naming ``authorization``; ``UNAVAILABLE`` while the server drains)."""

    def __init__(
        self, resolver: TokenResolver, calls: Calls, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.resolver = resolver
        self.calls = calls
        self.loop = loop

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[Any]]) -> Caller:
        values = headers.get("authorization") or [None]
        token = bearer(values[0])
        admitted = asyncio.run_coroutine_threadsafe(
            admit(self.resolver, self.calls, token), self.loop
        )
        try:
            principal = admitted.result(RESOLVE_TIMEOUT_SECONDS)
        except Refusal as refusal:
            raise flight_error(refusal.code, refusal.message) from None
        except TimeoutError:
            admitted.cancel()
            raise flight.FlightUnavailableError(
                "authorization: the token could not be checked in time, retry"
            ) from None
        return Caller(principal)


def caller(context: flight.ServerCallContext) -> Principal:
    """The principal of the running Flight call."""
    middleware = context.get_middleware(AUTH)
    if middleware is None:  # pragma: no cover - every call passes the middleware
        raise flight.FlightUnauthenticatedError("authorization: is missing: send 'Bearer <token>'")
    return middleware.principal
