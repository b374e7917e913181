"""``effigate status | sla | bill | replay``: the client commands.

They talk to a running service at ``--address`` (``EFFIGATE_ADDRESS``, default
127.0.0.1:50051) with the token in ``--token`` (``EFFIGATE_TOKEN``). With ``--cluster``
(``EFFIGATE_CLUSTER``), ``sla`` and ``replay`` run over a dataset on a Dask cluster instead
(:mod:`effigate_cli.cluster`).
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from effigate_cli import cluster
from effigate_cli.failures import EXIT_AUTH, EXIT_USAGE, CommandFailure
from effigate_cli.serve import DEFAULT_ADDRESS


def add_commands(commands: Any) -> None:
    """Register the client commands on the ``effigate`` subparsers."""
    status = commands.add_parser("status", help="a ticket's SLA status")
    status.add_argument("ticket_id")
    status.add_argument("--policy", type=int, default=None)
    _client_args(status)
    status.set_defaults(handler=run_status)

    sla = commands.add_parser(
        "sla",
        help="evaluate a Parquet file of tickets (Arrow Flight, or the Arrow stream), or with"
        " --cluster every ticket of a dataset",
    )
    sla.add_argument("file", help="a Parquet file of tickets; with --cluster a dataset (URL)")
    sla.add_argument(
        "--policy",
        default=None,
        help="the stored policy id (required); with --cluster a catalog policy id or name"
        " (default: each ticket's own policy)",
    )
    sla.add_argument(
        "--now", default=None, help="ISO instant (default: now; with --cluster the export's)"
    )
    sla.add_argument(
        "--out",
        default=None,
        help="write the results as Parquet (a file; with --cluster a folder, default the dataset)",
    )
    sla.add_argument(
        "--flight",
        default=os.environ.get("EFFIGATE_FLIGHT"),
        help="the service's Flight location (grpc://host:port): bulk through Arrow Flight"
        " DoExchange; without it, the gRPC Arrow stream",
    )
    cluster.add_options(sla, by=True)
    _client_args(sla)
    sla.set_defaults(handler=run_sla)

    bill = commands.add_parser("bill", help="generate a contract's invoice for a period")
    bill.add_argument("--contract", type=int, required=True)
    bill.add_argument("--period", required=True, help="a day of the period, YYYY-MM-DD")
    bill.add_argument("--issue", action="store_true", help="review and issue it too")
    _client_args(bill)
    bill.set_defaults(handler=run_bill)

    replay = commands.add_parser("replay", help="stored tickets under policy A and policy B")
    replay.add_argument("dataset", nargs="?", default=None, help="with --cluster: the dataset")
    replay.add_argument(
        "--current",
        default=None,
        help="stored policy id (required); with --cluster a catalog policy id or name"
        " (default: each ticket's own policy)",
    )
    replay.add_argument("--proposed", required=True, help="stored policy id or a policy JSON file")
    replay.add_argument("--by", action="append", default=None, help="group column (repeatable)")
    replay.add_argument("--now", default=None)
    replay.add_argument(
        "--out", default=None, help="with --cluster: where replay.parquet goes (the dataset)"
    )
    cluster.add_options(replay, by=False)
    _client_args(replay)
    replay.set_defaults(handler=run_replay)


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


def _policy_id(option: str, value: str | None) -> int:
    """A stored policy id given to a service command (``--policy``, ``--current``)."""
    if value is None:
        raise CommandFailure(f"{option} is required (a stored policy id)", EXIT_USAGE)
    if not value.isdigit():
        raise CommandFailure(
            f"{option} {value!r}: give a stored policy id (names are for --cluster)", EXIT_USAGE
        )
    return int(value)


def _service_only(args: argparse.Namespace, *options: str) -> None:
    """Refuse the ``--cluster`` options on a service command."""
    for option in options:
        if getattr(args, option.lstrip("-").replace("-", "_"), None):
            raise CommandFailure(f"{option} needs --cluster", EXIT_USAGE)


def _token(args: argparse.Namespace) -> str:
    if not args.token:
        raise CommandFailure(
            "no token: pass --token or set EFFIGATE_TOKEN (`effigate serve --demo` writes the"
            " demo's to .effigate/demo.env: `source .effigate/demo.env`)",
            EXIT_AUTH,
        )
    return str(args.token)


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
    """Evaluate a Parquet file through Arrow Flight (``--flight``) or the gRPC Arrow stream,
    and summarise (or save) the results."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tqdm import tqdm

    if args.cluster:
        return cluster.run_sla(args)
    from effigate_client import Client
    from effigate_client.flight import FlightClient

    _service_only(args, "--by", "--period")
    policy = _policy_id("--policy", args.policy)
    table = pq.read_table(Path(args.file))
    if args.flight:
        with FlightClient(args.flight, _token(args)) as flights:
            results = flights.evaluate(table, policy, _now(args.now))
    else:
        with (
            Client(args.address, _token(args)) as client,
            tqdm(total=table.num_rows, unit="ticket", unit_scale=True, leave=False) as bar,
        ):
            results = client.evaluate_arrow(policy, table, _now(args.now), progress=bar.update)
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
    if args.cluster:
        return cluster.run_replay(args)
    from effigate_client import Client, sla_pb2

    if args.dataset:
        raise CommandFailure(
            f"replay {args.dataset!r}: a dataset needs --cluster (the service replays its"
            " stored tickets)",
            EXIT_USAGE,
        )
    _service_only(args, "--out", "--period")
    current = _policy_id("--current", args.current)
    request = sla_pb2.ReplayRequest(current_policy_id=current, group_by=args.by or [])
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
    from effigate_server.tables import format_table

    print(format_table(table) if table.num_rows else "no tickets")
    return 0
