"""``effigate demo``, and the demo MSP of ``effigate serve --demo``: loaded through the client
(:mod:`effigate_server.demo`), its settings written to ``demo.env``, sample calls printed."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    """Register ``demo`` on the ``effigate`` subparsers."""
    demo = commands.add_parser(
        "demo", help="create a demo MSP through the client, recompute SLAs and bill a month"
    )
    demo.add_argument("--tickets", type=int, default=20_000)
    demo.add_argument("--address", default=None, help="a running service (default: start one)")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Load the demo MSP (starting a service on a free port unless --address is given)."""
    from effigate_server.demo import run_demo as demo

    return demo(args.address, args.tickets)


async def serve_demo(
    address: str, admin_dsn: str, n_tickets: int, http_url: str | None = None
) -> None:
    """Find (or create and load) the demo MSP, write ``demo.env`` and print what to try: the
    CLI calls and, when HTTP is served at ``http_url``, the screens with their tokens."""
    import logging

    from effigate_server.demo import (
        demo_env_path,
        demo_portal_token,
        load_demo_async,
        prepare_demo_tenant,
        read_demo_env,
        summarise_demo_async,
        write_demo_env,
    )

    path = demo_env_path()
    try:
        saved = read_demo_env(path)
        demo = await prepare_demo_tenant(admin_dsn, saved.get("EFFIGATE_TOKEN"))
        settings = {
            "EFFIGATE_ADDRESS": address,
            "EFFIGATE_TOKEN": demo.token,
            "EFFIGATE_DEMO_TENANT": str(demo.tenant_id),
        }
        write_demo_env(path, settings)
        if demo.abandoned:
            print(
                f"demo: {len(demo.abandoned)} demo tenant(s) left half-loaded by an interrupted"
                " run stay unused; loading a new one",
                flush=True,
            )
        if demo.loaded:
            print(
                f"demo: already loaded by an earlier run (tenant {demo.tenant_id}:"
                f" {demo.counts['tickets']:,} tickets, {demo.counts['time_logs']:,} time logs);"
                " not loading it again",
                flush=True,
            )
            summary = await summarise_demo_async(address, demo.token, demo.counts)
        else:
            print(
                f"demo: loading the demo MSP into tenant {demo.tenant_id} ({n_tickets:,} tickets;"
                " a minute or two)",
                flush=True,
            )
            summary = await load_demo_async(address, demo.token, n_tickets)
        live = await _live(address, demo.token)
        settings["EFFIGATE_DEMO_CONTRACT"] = str(summary.sample_contract)
        settings["EFFIGATE_DEMO_POLICY"] = str(summary.policy_id)
        client_id, client_name = await _portal_client(address, demo.token, summary)
        settings["EFFIGATE_DEMO_PORTAL_TOKEN"] = await demo_portal_token(
            admin_dsn, demo.tenant_id, client_id, saved.get("EFFIGATE_DEMO_PORTAL_TOKEN")
        )
        write_demo_env(path, settings)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logging.getLogger("effigate.demo").exception("demo failed")
        print(f"effigate: the demo did not load: {type(exc).__name__}: {exc}", flush=True)
        return
    print(summary.report(), flush=True)
    print(live, flush=True)
    print(_sample_call(path, summary), flush=True)
    if http_url is not None:
        print(_screens(http_url, settings, client_name), flush=True)


async def _live(address: str, token: str) -> str:
    """Tickets whose SLA transitions fire in the next minutes; the line that says so."""
    from effigate_client import AsyncClient
    from effigate_server.demo_live import seed_live_tickets

    async with AsyncClient(address, token, timeout=60) as c:
        return (await seed_live_tickets(c)).report()


async def _portal_client(address: str, token: str, summary: Any) -> tuple[int, str]:
    """The client the demo's portal token belongs to: the one with the prepaid bucket (its
    portal has tickets, a bucket and invoices), as id and name."""
    from effigate.v1 import billing_pb2, catalog_pb2
    from effigate_client import AsyncClient

    async with AsyncClient(address, token, timeout=60) as c:
        contract = await c.contracts.GetContract(
            billing_pb2.GetContractRequest(contract_id=summary.contracts["BUCKET"])
        )
        listed = await c.catalog.ListClients(catalog_pb2.ListClientsRequest())
    names = {k.id: k.name for k in listed.clients}
    return contract.client_id, names.get(contract.client_id, str(contract.client_id))


def _screens(http_url: str, settings: dict[str, str], client_name: str) -> str:
    """Where the dashboard and the portal are, and the tokens to sign in with."""
    return (
        "Screens (open the URL, paste the token to sign in):\n"
        f"  dashboard  {http_url}/dashboard  staff token {settings['EFFIGATE_TOKEN']}\n"
        f"  portal     {http_url}/portal  portal token of {client_name!r}"
        f" {settings['EFFIGATE_DEMO_PORTAL_TOKEN']}\n"
        f"  HTTP/JSON  curl -X POST {http_url}/effigate.v1.CatalogService/ListClients"
        " -H 'Content-Type: application/json'"
        " -H \"Authorization: Bearer $EFFIGATE_TOKEN\" -d '{}'\n"
    )


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())


def _sample_call(env_file: Path, summary: Any) -> str:
    import sys

    effigate = _shown(Path(sys.executable).with_name("effigate"))
    return (
        "\nTry it from another terminal, in this directory:\n"
        f"  source {_shown(env_file)}\n"
        f"  {effigate} status {summary.sample_ticket}\n"
        f"  {effigate} bill --contract $EFFIGATE_DEMO_CONTRACT --period {summary.period_start}\n"
        f"  {effigate} queues\n"
        f"  {effigate} workload\n"
        f"({_shown(env_file)}, mode 0600, sets EFFIGATE_ADDRESS, EFFIGATE_TOKEN and the demo's"
        f" ids: EFFIGATE_DEMO_CONTRACT={summary.sample_contract} (hourly),"
        f" EFFIGATE_DEMO_POLICY={summary.policy_id}. The token and ids stay the same on every"
        " run over this data directory. From Python: the README's client example.)\n"
    )
