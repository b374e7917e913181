"""Fixtures for the HTTP side: the session's ``effigate serve`` (gRPC and HTTP ports), a fresh
tenant, a small demo MSP loaded once per session, and Debian's Chromium driven by Playwright.

The browser is the system's (``EFFIGATE_CHROMIUM``, default ``/usr/bin/chromium``, installed by
``make test``): Playwright downloads nothing. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from effigate.v1 import catalog_pb2
from effigate_client import AsyncClient
from effigate_engine.service.tokens import create_tenant, create_token
from effigate_server.demo import load_demo_async
from effigate_server.process import ServiceProcess
from tests.e2e.conftest import client, service, tenant  # noqa: F401  (fixtures)
from tests.store.conftest import db, server_dsn  # noqa: F401  (fixtures)
from tests.store.helpers import Database

CHROMIUM = os.environ.get("EFFIGATE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Tickets of the demo MSP the screens are tested on (the full demo has 20,000).
DEMO_TICKETS = 1_500

T = TypeVar("T")


@dataclass
class Demo:
    """The demo MSP in its own tenant: the staff token, and a portal token of each of its
    first two clients (``clients``: id and name of each, in that order)."""

    tenant_id: uuid.UUID
    token: str
    clients: list[tuple[int, str]]
    portal_tokens: list[str]
    summary: Any


async def _load_demo(served: ServiceProcess, admin: str) -> Demo:
    conn = await asyncpg.connect(admin)
    try:
        tax = '[{"name": "GST", "rate_ppm": 100000}]'
        tenant_id = await create_tenant(conn, f"Demo MSP {uuid.uuid4().hex[:6]}", "AUD", tax)
        token = (await create_token(conn, tenant_id, label="demo")).secret
    finally:
        await conn.close()
    summary = await load_demo_async(served.address, token, DEMO_TICKETS, progress=None)
    async with AsyncClient(served.address, token, timeout=120) as c:
        listed = await c.catalog.ListClients(catalog_pb2.ListClientsRequest())
    clients = sorted((k.id, k.name) for k in listed.clients)[:2]
    conn = await asyncpg.connect(admin)
    try:
        portal = [
            (await create_token(conn, tenant_id, client_id, label="portal")).secret
            for client_id, _ in clients
        ]
    finally:
        await conn.close()
    return Demo(tenant_id, token, clients, portal, summary)


@pytest.fixture(scope="session")
def demo(service: ServiceProcess, db: Database) -> Demo:  # noqa: F811
    """The demo MSP, loaded once per test process into the session's service."""
    return asyncio.run(_load_demo(service, db.admin))


def in_browser(scenario: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``scenario(page)`` in Debian's Chromium, headless, at 1280×800, in a fresh profile
    (no cookies); the browser is closed after. Playwright's async API in a loop of its own,
    so nothing is left running between tests."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")

    async def run() -> T:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                context = await browser.new_context(
                    viewport={"width": 1280, "height": 800}, accept_downloads=True
                )
                return await scenario(await context.new_page())
            finally:
                await browser.close()

    return asyncio.run(run())


#: Flags for a machine with no network but loopback (Chromium's background requests off).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Any, base_url: str, token: str) -> None:
    """Sign in on the login page as a user would: type the token, press Enter."""
    await page.goto(f"{base_url}/login")
    await page.fill("#token", token)
    await page.press("#token", "Enter")
    await page.wait_for_load_state("domcontentloaded")
