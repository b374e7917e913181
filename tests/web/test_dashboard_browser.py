"""The dashboard in Debian's Chromium against the real server: signing in by typing the token,
the demo's breaches on the at-risk list, ticking countdowns, keyboard reach with a visible
focus, and a count that changes by itself when the server announces news."""

from __future__ import annotations

from typing import Any

from effigate_client import Client
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant
from tests.web.conftest import ARTIFACTS, Demo, in_browser, screenshot, sign_in
from tests.web.test_dashboard import PERIOD, fast_contract, open_ticket, respond

#: Tab presses allowed to reach the at-risk table's first link from the top of the page.
MAX_TABS = 25


def test_the_dashboard_shows_breaches_ticks_countdowns_and_is_keyboard_reachable(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None

    async def scenario(page: Any) -> dict[str, Any]:
        await sign_in(page, service.http_url, demo.token)
        landed = page.url
        # the demo's tickets were raised before its fixed "now": show their period
        await page.goto(f"{service.http_url}/dashboard?from={PERIOD[0]}&to={PERIOD[1]}")
        await page.wait_for_selector("#at-risk tbody tr")
        breached = await page.locator("#at-risk tbody tr", has_text="Breached").count()
        first = page.locator("#at-risk .countdown").first
        before = await first.inner_text()
        await page.wait_for_timeout(1_500)
        after = await first.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        await screenshot(page, "dashboard-full")
        # from the top of the page, Tab until the at-risk table's first link has the focus
        await page.evaluate("window.scrollTo(0, 0); document.activeElement.blur()")
        target = await page.locator("#at-risk tbody a").first.get_attribute("href")
        reached = None
        for presses in range(1, MAX_TABS + 1):
            await page.keyboard.press("Tab")
            focused = await page.evaluate(
                "() => { const e = document.activeElement; const s = getComputedStyle(e);"
                " return {href: e.getAttribute('href'), inRisk: !!e.closest('#at-risk tbody'),"
                " outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"
            )
            if focused["inRisk"]:
                reached = {"presses": presses, **focused}
                break
        return {
            "url": landed,
            "breached": breached,
            "before": before,
            "after": after,
            "target": target,
            "reached": reached,
        }

    seen = in_browser(scenario)
    assert seen["url"].endswith("/dashboard")
    assert seen["breached"] > 0
    assert seen["before"].startswith("overdue ") and seen["before"] != seen["after"]
    reached = seen["reached"]
    assert reached is not None, f"the at-risk table's first link is not reached in {MAX_TABS} Tabs"
    assert reached["href"] == seen["target"]
    assert reached["outline"] != "none" and reached["width"] >= 2


def test_the_page_shows_news_by_itself_when_the_server_announces_it(
    service: ServiceProcess, tenant: Tenant
) -> None:
    assert service.http_url is not None
    with Client(service.address, tenant.token, timeout=60) as c:
        client_id, contract = fast_contract(c)
        open_ticket(c, client_id, contract, "INC-LIVE1")

        async def scenario(page: Any) -> tuple[str, str, str, str]:
            await sign_in(page, service.http_url, tenant.token)
            on_track = await page.inner_text("#count-ON_TRACK")
            met = await page.inner_text("#count-MET")
            # the page is open and listening: the first response is recorded elsewhere
            await page.wait_for_function("() => window.effigateLive !== undefined")
            await page.wait_for_function("() => window.effigateLive.source.readyState === 1")
            respond(c, "INC-LIVE1")
            await page.wait_for_function(
                "() => document.querySelector('#count-MET').textContent.trim() === '1'",
                timeout=10_000,
            )
            return on_track, met, await page.inner_text("#count-ON_TRACK"), page.url

        before_on_track, before_met, after_on_track, url = in_browser(scenario)
    assert url.endswith("/dashboard")
    assert (before_on_track, before_met, after_on_track) == ("1", "0", "0")
