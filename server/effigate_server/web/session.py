"""Signing in to the screens with an API token.

The browser sends its token once, in the login form; the server checks it and keeps it in an
``HttpOnly``, ``SameSite=Strict`` cookie, so page scripts never see it and no other site can
send it. Every request resolves the cookie (or an ``Authorization: Bearer`` header, for
scripts) through the same :class:`~effigate_engine.service.tokens.TokenResolver` as the API:
a revoked token stops working on the screens when it stops working on the API.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from effigate_engine.service.context import Principal
from effigate_engine.service.errors import Unauthenticated
from effigate_server.web.context import WebContext
from effigate_server.web.render import page

COOKIE = "effigate_session"
#: Seconds a sign-in lasts in the browser (the token itself may be revoked sooner).
COOKIE_SECONDS = 12 * 3600

Handler = Callable[[Request, Principal], Awaitable[Response]]


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return request.cookies.get(COOKIE)


async def principal_of(ctx: WebContext, request: Request) -> Principal | None:
    """The signed-in caller of ``request``, or ``None``."""
    secret = _secret(request)
    if not secret:
        return None
    try:
        return await ctx.resolver.resolve(secret)
    except Unauthenticated:
        return None


def home_of(principal: Principal) -> str:
    """Where a caller lands: staff on the dashboard, a client on its portal."""
    return "/portal" if principal.is_portal else "/dashboard"


def signed_in(
    ctx: WebContext, *, portal: bool
) -> Callable[[Handler], Callable[..., Awaitable[Response]]]:
    """A page for staff tokens (``portal=False``) or for portal tokens (``portal=True``):
    anyone else is sent to sign in, or to their own screen."""

    def wrap(handler: Handler) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            principal = await principal_of(ctx, request)
            if principal is None:
                query = request.url.query
                target = quote(request.url.path + ("?" + query if query else ""))
                return RedirectResponse(f"/login?next={target}", status_code=303)
            if principal.is_portal != portal:
                return RedirectResponse(home_of(principal), status_code=303)
            return await handler(request, principal)

        return endpoint

    return wrap


def routes(ctx: WebContext) -> list[Route]:
    """``/`` (to the caller's screen), ``/login`` and ``/logout``."""

    async def root(request: Request) -> Response:
        principal = await principal_of(ctx, request)
        return RedirectResponse(
            "/login" if principal is None else home_of(principal), status_code=303
        )

    async def login(request: Request) -> Response:
        target = request.query_params.get("next", "")
        if request.method == "GET":
            return page(request, "login.html", next=target, error=None)
        form = await request.form()
        secret = str(form.get("token", "")).strip()
        target = str(form.get("next", target))
        try:
            principal = await ctx.resolver.resolve(secret)
        except Unauthenticated as exc:
            return page(request, "login.html", status_code=401, next=target, error=str(exc))
        if not target.startswith("/") or target.startswith("//"):
            target = home_of(principal)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            secret,
            max_age=COOKIE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    return [
        Route("/", root),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["GET", "POST"]),
    ]
