"""The client portal in a real browser: a client signs in by typing its token, sees its own
tickets only, moves by keyboard, opens an invoice and downloads its PDF."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from effigate.v1 import billing_pb2
from effigate_client import Client
from effigate_server.process import ServiceProcess
from tests.web.conftest import ARTIFACTS, Demo, in_browser, sign_in
from tests.web.test_portal import ISSUED, Side, _money, sides  # noqa: F401  (fixture)


def test_a_client_signs_in_sees_its_tickets_and_downloads_an_invoice(
    service: ServiceProcess,
    demo: Demo,
    sides: tuple[Side, Side],  # noqa: F811
    tmp_path: Path,
) -> None:
    a, b = sides
    url = service.http_url
    assert url is not None
    invoice = next(i for i in a.invoices if i.status in ISSUED)
    with Client(service.address, demo.token, timeout=120) as c:
        api = c.billing.GetInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id))
    total = _money(api.total_minor, api.currency)

    async def scenario(page: Any) -> dict[str, Any]:
        await sign_in(page, url, a.token)
        seen: dict[str, Any] = {"landed": page.url}
        seen["tickets"] = await page.eval_on_selector_all(
            "[data-ticket-id]", "rows => rows.map(r => r.dataset.ticketId)"
        )
        seen["countdowns"] = await page.locator("span.countdown[data-due]").count()
        seen["statuses"] = await page.locator("span.status").count()
        seen["client"] = await page.locator(".portal-client").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "portal.png"))
        # keyboard: from the top of the page, Tab reaches the skip link, then the navigation
        await page.keyboard.press("Tab")
        focused = [await page.evaluate("document.activeElement.textContent.trim()")]
        for _ in range(4):
            await page.keyboard.press("Tab")
            focused.append(await page.evaluate("document.activeElement.textContent.trim()"))
        seen["focused"] = focused
        # a ticket: its SLA metrics, timeline and events
        first = seen["tickets"][0]
        await page.get_by_role("link", name=first, exact=True).click()
        await page.wait_for_url(f"{url}/portal/tickets/{first}")
        seen["timeline"] = await page.locator("tr.timeline-entry").count()
        seen["events"] = await page.locator("ol.events > li").count()
        await page.screenshot(path=str(ARTIFACTS / "portal-ticket.png"))
        await page.go_back()
        # to the invoices by keyboard: focus the nav link, press Enter
        await page.get_by_role("link", name="Invoices", exact=True).focus()
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{url}/portal/invoices")
        await page.get_by_role("link", name=f"Invoice {api.number}", exact=True).click()
        await page.wait_for_url(f"{url}/portal/invoices/{invoice.id}")
        seen["page_total"] = await page.locator(".invoice-total").inner_text()
        await page.screenshot(path=str(ARTIFACTS / "portal-invoice.png"))
        async with page.expect_download() as info:
            await page.get_by_role("link", name="Download PDF").click()
        download = await info.value
        target = tmp_path / download.suggested_filename
        await download.save_as(str(target))
        seen["pdf"] = target
        # the other client's bucket page, for the record
        await sign_in(page, url, b.token)
        await page.get_by_role("link", name="Bucket", exact=True).click()
        await page.wait_for_url(f"{url}/portal/bucket")
        seen["remaining"] = await page.locator("td.remaining").count()
        await page.screenshot(path=str(ARTIFACTS / "portal-bucket.png"))
        return seen

    seen = in_browser(scenario)
    assert seen["landed"].endswith("/portal")
    assert sorted(seen["tickets"]) == sorted(a.ticket_ids)
    assert not set(seen["tickets"]) & set(b.ticket_ids)
    assert seen["countdowns"] > 0 and seen["statuses"] > 0
    assert a.name in seen["client"]
    assert seen["focused"][0] == "Skip to content"
    assert {"My tickets", "Bucket", "Invoices"} <= set(seen["focused"])
    assert seen["timeline"] > 0 and seen["events"] > 0
    assert seen["page_total"] == total
    assert seen["remaining"] >= 1
    pdf = seen["pdf"]
    assert pdf.name == f"{api.number}.pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages)
    assert total in text and f"Invoice {api.number}" in text
