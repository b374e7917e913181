"""The HTTP application: the Connect API under ``/effigate.v1.*``, the screens elsewhere."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from effigate_server.web import connect, dashboard, live, portal, session
from effigate_server.web.context import WebContext
from effigate_server.web.render import STATIC

#: Paths of the Connect API (``/<package>.<Service>/<Method>``).
API_PREFIX = "/effigate.v1."


def build_app(ctx: WebContext) -> Any:
    """One ASGI application: Connect calls by path prefix, everything else the screens."""
    screens = Starlette(
        routes=[
            *session.routes(ctx),
            *dashboard.routes(ctx),
            *portal.routes(ctx),
            *live.routes(ctx),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    api = connect.application(ctx)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            await api(scope, receive, send)
        else:
            await screens(scope, receive, send)

    return app
