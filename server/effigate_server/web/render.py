"""Server-rendered pages: the Jinja environment and the shared page helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "xml", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def iso(instant: datetime | None) -> str:
    """``instant`` as an ISO 8601 UTC string with ``Z`` (what the page scripts parse), or ''."""
    if instant is None:
        return ""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


environment.filters["iso"] = iso


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """``template`` rendered with ``values`` (and ``request``) as an HTML response."""
    html = environment.get_template(template).render(request=request, **values)
    return HTMLResponse(html, status_code=status_code)
