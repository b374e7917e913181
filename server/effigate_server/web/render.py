"""Server-rendered pages: the Jinja environment and the shared page helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from effigate_engine.money import currency

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


#: The SLA statuses as words: a status is always shown in text, colour only adds to it.
STATUS_LABELS = {
    "ON_TRACK": "On track",
    "WARNING": "Warning",
    "PAUSED": "Paused",
    "MET": "Met",
    "BREACHED": "Breached",
    "CANCELLED": "Cancelled",
}


def status_label(status: str) -> str:
    """The words of an SLA status (``BREACHED`` -> ``Breached``)."""
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def readable(instant: datetime | None) -> str:
    """An instant as readable UTC text, e.g. ``7 Dec 2026 10:00 UTC`` ('' for none)."""
    if instant is None:
        return ""
    return instant.astimezone(UTC).strftime("%-d %b %Y %H:%M UTC")


def countdown(due: datetime | None, now: datetime) -> str:
    """``"2h 14m 05s left"`` before ``due``, ``"overdue 3d 4h 02m 05s"`` after it: what
    ``static/live.js`` writes each second (the server writes the first one)."""
    if due is None:
        return "paused"
    seconds = int((due - now).total_seconds())
    late, seconds = seconds < 0, abs(seconds)
    days, rest = divmod(seconds, 86_400)
    whole_hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    clock = f"{whole_hours}h {minutes:02d}m {secs:02d}s"
    text = f"{days}d {clock}" if days else clock
    return f"overdue {text}" if late else f"{text} left"


def hours(seconds: int | None) -> str:
    """Whole seconds as hours and minutes, e.g. ``12h 05m`` (``-`` for none)."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    whole = abs(int(seconds))
    return f"{sign}{whole // 3600}h {whole % 3600 // 60:02d}m"


def money(minor: int, code: str) -> str:
    """``minor`` units of currency ``code`` as text, e.g. ``USD 1234.56`` (the engine's
    formatting: the currency's own decimals, no grouping)."""
    return f"{code} {currency(code).format(int(minor))}"


environment.filters.update(
    iso=iso, status_label=status_label, readable=readable, hours=hours, money=money
)
environment.globals.update(countdown=countdown)


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """``template`` rendered with ``values`` (and ``request``) as an HTML response."""
    html = environment.get_template(template).render(request=request, **values)
    return HTMLResponse(html, status_code=status_code)
