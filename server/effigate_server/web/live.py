"""The live routes."""

from __future__ import annotations

from starlette.routing import BaseRoute

from effigate_server.web.context import WebContext


def routes(ctx: WebContext) -> list[BaseRoute]:
    """The live's routes."""
    return []
