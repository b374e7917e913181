"""The Connect protocol (HTTP/JSON and binary protobuf) over the gRPC servicers."""

from __future__ import annotations

from typing import Any

from starlette.responses import PlainTextResponse

from effigate_server.web.context import WebContext


def application(ctx: WebContext) -> Any:
    """The ASGI application answering ``/effigate.v1.<Service>/<Method>``."""
    return PlainTextResponse("not implemented yet", status_code=501)
