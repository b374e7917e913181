"""The client portal: a portal token's tickets, SLA timelines, prepaid buckets and invoices
(with a PDF of each), server-rendered.

Every page is for portal tokens only (staff are sent to the dashboard) and reads through
:mod:`effigate_engine.service.portal_views`, whose service calls scope a portal principal to
its own client: another client's ticket or invoice is a 404 page that does not say whether it
exists. A malformed id is a 400 page naming the field and the value.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from effigate_engine.errors import EffigateError
from effigate_engine.service import portal_views as views
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import NotFound, PermissionDenied
from effigate_server.web import invoice_pdf
from effigate_server.web.context import WebContext
from effigate_server.web.render import environment, page
from effigate_server.web.session import signed_in

#: The portal's sections, as its navigation lists them: (path, label).
SECTIONS = (
    ("/portal", "My tickets"),
    ("/portal/bucket", "Bucket"),
    ("/portal/invoices", "Invoices"),
)
#: SLA metrics in the order the pages show them, with their headings.
METRICS = (("FIRST_RESPONSE", "First response"), ("RESOLUTION", "Resolution"))
Portal = Callable[[Request, Principal], Awaitable[Response]]


def error_page(
    request: Request, principal: Principal | None, status: int, message: str
) -> Response:
    """The portal's error page (``status`` 400 or 404) saying ``message``."""
    titles = {400: "Bad request", 404: "Not found"}
    return page(
        request,
        "portal_error.html",
        status_code=status,
        principal=principal,
        sections=SECTIONS,
        current="",
        title=titles.get(status, "Error"),
        message=message,
    )


def guarded(handler: Portal) -> Portal:
    """Another client's (or a missing) row: 404 without saying which; bad input: 400 naming
    the field and value."""

    @functools.wraps(handler)
    async def run(request: Request, principal: Principal) -> Response:
        try:
            return await handler(request, principal)
        except (NotFound, PermissionDenied):
            return error_page(request, principal, 404, "There is no such page in your portal.")
        except EffigateError as exc:
            return error_page(request, principal, 400, str(exc))

    return run


def whole_id(field: str, text: str) -> int:
    """``text`` (a path segment) as a positive whole-number id, else an input error naming
    ``field``."""
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise EffigateError(f"{field}: {text!r} is not a positive whole number")
    return int(text)


def routes(ctx: WebContext) -> list[BaseRoute]:
    """``/portal`` (tickets), ``/portal/tickets/{id}``, ``/portal/bucket``,
    ``/portal/invoices``, ``/portal/invoices/{id}`` and ``/portal/invoices/{id}.pdf``."""
    store, cache = ctx.store, ctx.cache

    async def common(principal: Principal) -> dict[str, Any]:
        return {
            "principal": principal,
            "client": await views.client_name(store, principal),
            "sections": SECTIONS,
            "metrics": METRICS,
            "now": ctx.clock.now(),
            "live": True,  # every portal page follows its client's events (live.js)
        }

    @signed_in(ctx, portal=True)
    @guarded
    async def tickets(request: Request, principal: Principal) -> Response:
        values = await common(principal)
        rows = await views.ticket_rows(store, cache, principal, values["now"])
        open_rows = [r for r in rows if r.is_open]
        counts: dict[str, int] = {}
        for row in open_rows:
            for code in {m.status for m in row.metrics.values()}:
                counts[code] = counts.get(code, 0) + 1
        return page(
            request,
            "portal.html",
            current="/portal",
            rows=rows,
            open_count=len(open_rows),
            counts=counts,
            subjects=any(r.ticket.subject for r in rows),
            **values,
        )

    @signed_in(ctx, portal=True)
    @guarded
    async def ticket(request: Request, principal: Principal) -> Response:
        values = await common(principal)
        ticket_id = request.path_params["ticket_id"]
        if not ticket_id.strip():
            raise EffigateError(f"ticket_id: {ticket_id!r} is empty")
        shown = await views.ticket_page(store, cache, principal, ticket_id, values["now"])
        return page(request, "portal_ticket.html", current="/portal", view=shown, **values)

    @signed_in(ctx, portal=True)
    @guarded
    async def bucket(request: Request, principal: Principal) -> Response:
        values = await common(principal)
        shown = await views.bucket_views(store, principal, values["now"])
        return page(
            request, "portal_bucket.html", current="/portal/bucket", buckets=shown, **values
        )

    @signed_in(ctx, portal=True)
    @guarded
    async def invoices(request: Request, principal: Principal) -> Response:
        values = await common(principal)
        listed = await views.issued_invoices(store, principal)
        return page(
            request, "portal_invoices.html", current="/portal/invoices", invoices=listed, **values
        )

    @signed_in(ctx, portal=True)
    @guarded
    async def invoice(request: Request, principal: Principal) -> Response:
        values = await common(principal)
        invoice_id = whole_id("invoice_id", request.path_params["invoice_id"])
        shown = await views.invoice_page(store, principal, invoice_id)
        return page(
            request,
            "portal_invoice.html",
            current="/portal/invoices",
            view=shown,
            rule=views.credit_rule(shown.contract.terms),
            **values,
        )

    @signed_in(ctx, portal=True)
    @guarded
    async def invoice_download(request: Request, principal: Principal) -> Response:
        invoice_id = whole_id("invoice_id", request.path_params["invoice_id"])
        shown = await views.invoice_page(store, principal, invoice_id)
        client = await views.client_name(store, principal)
        html = environment.get_template("portal_invoice_pdf.html").render(
            view=shown, client=client, rule=views.credit_rule(shown.contract.terms)
        )
        document = await asyncio.to_thread(invoice_pdf.render, html)
        return Response(
            document,
            media_type="application/pdf",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="{invoice_pdf.filename(shown.invoice)}"'
                )
            },
        )

    return [
        Route("/portal", tickets),
        Route("/portal/tickets/{ticket_id:path}", ticket),
        Route("/portal/bucket", bucket),
        Route("/portal/invoices", invoices),
        Route("/portal/invoices/{invoice_id}.pdf", invoice_download),
        Route("/portal/invoices/{invoice_id}", invoice),
    ]
