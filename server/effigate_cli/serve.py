"""``effigate serve``: run the gRPC service.

``serve`` runs the gRPC service as the service role at ``EFFIGATE_DSN`` (migrating first with
the owner's ``EFFIGATE_ADMIN_DSN`` when given) or, without either, over the embedded PostgreSQL
server (data in ``EFFIGATE_DATA_DIR``, default ``.effigate/pgdata``). ``serve --demo`` also
loads the demo MSP once per data directory and writes its settings to ``demo.env``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from effigate_cli.demo import serve_demo
from effigate_cli.failures import EXIT_UNREACHABLE, CommandFailure

DEFAULT_ADDRESS = "127.0.0.1:50051"
#: The Connect API (HTTP/JSON) and the screens; ``off`` serves gRPC alone.
DEFAULT_HTTP_ADDRESS = "127.0.0.1:8080"
#: The Arrow Flight endpoints (bulk evaluation, ingest, exports); ``off``: none.
DEFAULT_FLIGHT_ADDRESS = "127.0.0.1:8815"


def add_commands(commands: Any) -> None:
    """Register ``serve`` on the ``effigate`` subparsers."""
    serve = commands.add_parser("serve", help="run the gRPC service")
    serve.add_argument("--address", default=os.environ.get("EFFIGATE_ADDRESS", DEFAULT_ADDRESS))
    serve.add_argument(
        "--http-address",
        default=os.environ.get("EFFIGATE_HTTP_ADDRESS", DEFAULT_HTTP_ADDRESS),
        help="host:port of the HTTP/JSON API and the screens ('off': none)",
    )
    serve.add_argument(
        "--flight-address",
        default=os.environ.get("EFFIGATE_FLIGHT_ADDRESS", DEFAULT_FLIGHT_ADDRESS),
        help="host:port of the Arrow Flight endpoints ('off': none)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[o for o in os.environ.get("EFFIGATE_CORS_ORIGINS", "").split(",") if o],
        help="a browser origin allowed to call the HTTP API (repeatable)",
    )
    serve.add_argument("--metrics-port", type=int, default=None, help="Prometheus /metrics port")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="load the demo MSP (once per data directory) and print sample calls",
    )
    serve.add_argument(
        "--demo-tickets", type=int, default=20_000, help="tickets of a newly loaded demo MSP"
    )
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT."""
    from effigate_engine.store.settings import require_admin_dsn, resolve_admin_dsn, resolve_dsn
    from effigate_server import logs
    from effigate_server.app import AddressUnavailable, address_problem, serve

    problem = address_problem(args.address)  # before the database starts: fail fast
    if problem is None and args.http_address != "off":
        problem = address_problem(args.http_address)
    if problem is None and args.flight_address != "off":
        problem = address_problem(args.flight_address)
        if problem is not None:
            problem = problem.replace("--address", "--flight-address").replace(
                "EFFIGATE_ADDRESS", "EFFIGATE_FLIGHT_ADDRESS"
            )
    if problem is not None:
        raise CommandFailure(problem, EXIT_UNREACHABLE)
    logs.configure(args.log_level)
    dsn = resolve_dsn()
    admin_dsn = require_admin_dsn("serve --demo") if args.demo else resolve_admin_dsn()
    loading: list[asyncio.Task[None]] = []

    def ready(server: Any) -> None:
        host = args.address.rsplit(":", 1)[0]
        address = f"{host}:{server.port}"
        print(f"effigate: serving on {address}", flush=True)
        if server.http is not None:
            print(f"effigate: HTTP on {server.http.url}", flush=True)
        if server.flight is not None:
            print(f"effigate: Flight on {server.flight.url}", flush=True)
        if args.demo:
            task = asyncio.get_running_loop().create_task(
                serve_demo(
                    address,
                    admin_dsn,
                    args.demo_tickets,
                    None if server.http is None else server.http.url,
                )
            )
            loading.append(task)

    async def stopping() -> None:
        for task in loading:
            if not task.done():
                task.cancel()
                print(
                    "effigate: demo load interrupted; the next `effigate serve --demo` loads"
                    " it afresh",
                    flush=True,
                )
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(
            serve(
                dsn,
                args.address,
                admin_dsn=admin_dsn,
                metrics_port=args.metrics_port,
                http_address=None if args.http_address == "off" else args.http_address,
                cors_origins=tuple(args.cors_origin),
                flight_address=None if args.flight_address == "off" else args.flight_address,
                ready=ready,
                stopping=stopping,
            )
        )
    except AddressUnavailable as exc:
        raise CommandFailure(str(exc), EXIT_UNREACHABLE) from None
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return 130
    return 0
