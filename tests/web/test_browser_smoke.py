"""The browser drives the real server: sign-in through the login form."""

from __future__ import annotations

from typing import Any

from effigate_server.process import ServiceProcess
from tests.web.conftest import Demo, in_browser, screenshot, sign_in


def test_signing_in_with_a_staff_token_opens_the_dashboard(
    service: ServiceProcess, demo: Demo
) -> None:
    assert service.http_url is not None

    async def scenario(page: Any) -> str:
        await sign_in(page, service.http_url, demo.token)
        await screenshot(page, "signed-in")
        return page.url

    assert in_browser(scenario).endswith("/dashboard")
