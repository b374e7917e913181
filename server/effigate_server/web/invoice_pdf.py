"""An invoice as a PDF: its HTML (the ``portal_invoice_pdf.html`` template) laid out by
WeasyPrint. Rendering is CPU work of tens to hundreds of milliseconds: callers run
:func:`render` in a worker thread so the event loop keeps serving."""

from __future__ import annotations

from typing import Any

from effigate_server.web.render import STATIC


def render(html: str) -> bytes:
    """The PDF of an HTML document (its relative URLs resolved against the static files)."""
    from weasyprint import HTML

    return HTML(string=html, base_url=str(STATIC)).write_pdf()


def filename(record: Any) -> str:
    """The download's file name: the invoice number, e.g. ``17.pdf``."""
    return f"{record.number}.pdf"
