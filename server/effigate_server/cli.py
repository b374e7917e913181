"""``effigate serve | token | demo | status | sla | bill | replay``: the service commands.

``serve`` runs the gRPC service as the service role at ``EFFIGATE_DSN`` (migrating first with
the owner's ``EFFIGATE_ADMIN_DSN`` when given) or, without either, over the embedded PostgreSQL
server (data in ``EFFIGATE_DATA_DIR``, default ``.effigate/pgdata``). ``token create`` needs
the owner's credentials (``EFFIGATE_ADMIN_DSN``, or the embedded server's). The client commands talk
to a running service at ``--address`` (``EFFIGATE_ADDRESS``, default 127.0.0.1:50051) with the
token in ``--token`` (``EFFIGATE_TOKEN``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_ADDRESS = "127.0.0.1:50051"


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("EFFIGATE_ADDRESS", DEFAULT_ADDRESS),
        help="host:port of the service (default: EFFIGATE_ADDRESS or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("EFFIGATE_TOKEN"), help="API token (EFFIGATE_TOKEN)"
    )


def _now(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise SystemExit(f"effigate: --now {text!r} has no time zone")
    return value


def add_commands(commands: Any) -> None:
    """Register the service commands on the ``effigate`` subparsers."""
    serve = commands.add_parser("serve", help="run the gRPC service")
    serve.add_argument("--address", default=os.environ.get("EFFIGATE_ADDRESS", DEFAULT_ADDRESS))
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

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser(
        "create", help="create a tenant token, or a portal token with --client"
    )
    who = create.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="id (UUID) of an existing tenant")
    who.add_argument("--new-tenant", metavar="NAME", help="create a tenant of this name first")
    create.add_argument("--currency", default="USD", help="a new tenant's default currency")
    create.add_argument("--client", type=int, default=None, help="portal token of this client")
    create.add_argument("--label", default="")
    create.set_defaults(handler=run_token_create)

    demo = commands.add_parser(
        "demo", help="create a demo MSP through the client, recompute SLAs and bill a month"
    )
    demo.add_argument("--tickets", type=int, default=20_000)
    demo.add_argument("--address", default=None, help="a running service (default: start one)")
    demo.set_defaults(handler=run_demo)

    status = commands.add_parser("status", help="a ticket's SLA status")
    status.add_argument("ticket_id")
    status.add_argument("--policy", type=int, default=None)
    _client_args(status)
    status.set_defaults(handler=run_status)

    sla = commands.add_parser("sla", help="evaluate a Parquet file of tickets (Arrow stream)")
    sla.add_argument("file", type=Path)
    sla.add_argument("--policy", type=int, required=True)
    sla.add_argument("--now", default=None, help="ISO instant (default: now)")
    sla.add_argument("--out", type=Path, default=None, help="write the results as Parquet")
    _client_args(sla)
    sla.set_defaults(handler=run_sla)

    bill = commands.add_parser("bill", help="generate a contract's invoice for a period")
    bill.add_argument("--contract", type=int, required=True)
    bill.add_argument("--period", required=True, help="a day of the period, YYYY-MM-DD")
    bill.add_argument("--issue", action="store_true", help="review and issue it too")
    _client_args(bill)
    bill.set_defaults(handler=run_bill)

    replay = commands.add_parser("replay", help="stored tickets under policy A and policy B")
    replay.add_argument("--current", type=int, required=True, help="stored policy id")
    replay.add_argument("--proposed", required=True, help="stored policy id or a policy JSON file")
    replay.add_argument("--by", action="append", default=None, help="group column (repeatable)")
    replay.add_argument("--now", default=None)
    _client_args(replay)
    replay.set_defaults(handler=run_replay)


def _token(args: argparse.Namespace) -> str:
    from effigate_engine.cli_failures import EXIT_AUTH, CommandFailure

    if not args.token:
        raise CommandFailure(
            "no token: pass --token or set EFFIGATE_TOKEN (`effigate serve --demo` writes the"
            " demo's to .effigate/demo.env: `source .effigate/demo.env`)",
            EXIT_AUTH,
        )
    return str(args.token)


def run_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT."""
    from effigate_engine.cli_failures import EXIT_UNREACHABLE, CommandFailure
    from effigate_engine.store.dsn import require_admin_dsn, resolve_admin_dsn, resolve_dsn
    from effigate_server import logs
    from effigate_server.app import AddressUnavailable, address_problem, serve

    problem = address_problem(args.address)  # before the database starts: fail fast
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
        if args.demo:
            task = asyncio.get_running_loop().create_task(
                _serve_demo(address, admin_dsn, args.demo_tickets)
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
                ready=ready,
                stopping=stopping,
            )
        )
    except AddressUnavailable as exc:
        raise CommandFailure(str(exc), EXIT_UNREACHABLE) from None
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return 130
    return 0


async def _serve_demo(address: str, admin_dsn: str, n_tickets: int) -> None:
    """Find (or create and load) the demo MSP, write ``demo.env`` and print what to try."""
    import logging

    from effigate_server.demo import (
        demo_env_path,
        load_demo_async,
        prepare_demo_tenant,
        read_demo_env,
        summarise_demo_async,
        write_demo_env,
    )

    path = demo_env_path()
    try:
        demo = await prepare_demo_tenant(admin_dsn, read_demo_env(path).get("EFFIGATE_TOKEN"))
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
        settings["EFFIGATE_DEMO_CONTRACT"] = str(summary.sample_contract)
        settings["EFFIGATE_DEMO_POLICY"] = str(summary.policy_id)
        write_demo_env(path, settings)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logging.getLogger("effigate.demo").exception("demo failed")
        print(f"effigate: the demo did not load: {type(exc).__name__}: {exc}", flush=True)
        return
    print(summary.report(), flush=True)
    print(_sample_call(path, summary), flush=True)


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
        f"({_shown(env_file)}, mode 0600, sets EFFIGATE_ADDRESS, EFFIGATE_TOKEN and the demo's"
        f" ids: EFFIGATE_DEMO_CONTRACT={summary.sample_contract} (hourly),"
        f" EFFIGATE_DEMO_POLICY={summary.policy_id}. The token and ids stay the same on every"
        " run over this data directory. From Python: the README's client example.)\n"
    )


def run_token_create(args: argparse.Namespace) -> int:
    """Create a token (and a tenant with --new-tenant) with the owner's DSN."""
    import uuid

    import asyncpg

    from effigate_engine.service.tokens import create_tenant, create_token
    from effigate_engine.store.dsn import require_admin_dsn
    from effigate_engine.store.migrate import migrate

    dsn = require_admin_dsn("token create")

    async def go() -> Any:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            if args.new_tenant:
                tenant = await create_tenant(conn, args.new_tenant, args.currency)
            else:
                tenant = uuid.UUID(args.tenant)
            return await create_token(conn, tenant, args.client, args.label)
        finally:
            await conn.close()

    issued = asyncio.run(go())
    kind = f"portal token of client {issued.client_id}" if issued.client_id else "tenant token"
    print(f"tenant {issued.tenant_id}: {kind} {issued.id} (shown once, store it now)")
    print(issued.secret)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Load the demo MSP (starting a service on a free port unless --address is given)."""
    from effigate_server.demo import run_demo as demo

    return demo(args.address, args.tickets)


def run_status(args: argparse.Namespace) -> int:
    """Print a ticket's SLA metrics."""
    from effigate_client import Client, tickets_pb2

    request = tickets_pb2.GetTicketStatusRequest(ticket_id=args.ticket_id)
    if args.policy is not None:
        request.policy_id = args.policy
    with Client(args.address, _token(args)) as client:
        reply = client.tickets.GetTicketStatus(request)
    t = reply.ticket
    print(f"{t.id}  client {t.client_id}  {t.priority}  {t.status}")
    for m in reply.metrics:
        deadline = m.deadline.ToDatetime(tzinfo=UTC).isoformat() if m.HasField("deadline") else "-"
        print(
            f"  {m.metric:<16} {m.status:<9} due {deadline:<26} elapsed {m.elapsed_seconds:>7}s"
            f"  target {m.target_seconds:>6}s  escalation {m.escalation_level}"
        )
    return 0


def run_sla(args: argparse.Namespace) -> int:
    """Evaluate a Parquet file through the Arrow stream and summarise (or save) the results."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from effigate_client import Client

    table = pq.read_table(args.file)
    with (
        Client(args.address, _token(args)) as client,
        tqdm(total=table.num_rows, unit="ticket", unit_scale=True, leave=False) as bar,
    ):
        results = client.evaluate_arrow(args.policy, table, _now(args.now), progress=bar.update)
    if args.out:
        pq.write_table(results, args.out)
        print(f"wrote {results.num_rows} result rows to {args.out}")
    counts = (
        results.select(["metric", "status"])
        .cast(pa.schema([("metric", pa.string()), ("status", pa.string())]))
        .group_by(["metric", "status"])
        .aggregate([("status", "count")])
        .sort_by([("metric", "ascending"), ("status", "ascending")])
    )
    for metric, status, count in zip(
        *(counts[c].to_pylist() for c in counts.column_names), strict=True
    ):
        print(f"{metric:<16} {status:<9} {count:>9}")
    print(f"{pc.count_distinct(results['ticket_id']).as_py()} tickets")
    return 0


def run_bill(args: argparse.Namespace) -> int:
    """Generate (and optionally issue) a contract's invoice and print it."""
    from effigate_client import Client, billing_pb2

    with Client(args.address, _token(args)) as client:
        invoice = client.invoice(args.contract, args.period)
        if args.issue and invoice.status in ("DRAFT", "REVIEW"):
            if invoice.status == "DRAFT":
                client.billing.ReviewInvoice(billing_pb2.InvoiceRequest(invoice_id=invoice.id))
            invoice = client.billing.IssueInvoice(
                billing_pb2.IssueInvoiceRequest(invoice_id=invoice.id)
            )
    print(invoice.text)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Print the replay of the stored tickets under two policies."""
    from effigate_client import Client, sla_pb2

    request = sla_pb2.ReplayRequest(current_policy_id=args.current, group_by=args.by or [])
    if args.proposed.isdigit():
        request.proposed_policy_id = int(args.proposed)
    else:
        request.proposed_policy_json = Path(args.proposed).read_text()
    now = _now(args.now)
    if now is not None:
        from effigate_client import to_timestamp

        request.now.CopyFrom(to_timestamp(now))
    with Client(args.address, _token(args)) as client:
        table = client.report(client.reports.Replay(request))
    print(format_table(table) if table.num_rows else "no tickets")
    return 0


def format_table(table: Any) -> str:
    """A small Arrow table as aligned text columns (floats to 4 decimals)."""

    def text(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = [table.column_names] + [[text(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
