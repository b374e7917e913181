"""Signing in to the screens with a token, over a real server's HTTP port."""

from __future__ import annotations

import httpx

from effigate_server.process import ServiceProcess
from tests.e2e.conftest import Tenant


def test_the_login_page_answers_and_a_bad_token_is_refused(service: ServiceProcess) -> None:
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url) as web:
        assert web.get("/", follow_redirects=False).headers["location"] == "/login"
        page = web.get("/login")
        assert page.status_code == 200 and "Sign in" in page.text
        refused = web.post("/login", data={"token": "efg_not-a-token"})
        assert refused.status_code == 401
        assert "is not a valid or active token" in refused.text
        assert "effigate_session" not in refused.cookies


def test_a_staff_token_lands_on_the_dashboard_a_portal_token_on_the_portal(
    service: ServiceProcess, tenant: Tenant
) -> None:
    assert service.http_url is not None
    with httpx.Client(base_url=service.http_url) as web:
        signed = web.post("/login", data={"token": tenant.token}, follow_redirects=False)
        assert signed.status_code == 303
        assert signed.headers["location"] == "/dashboard"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
