"""The ``effigate`` command line.

One parser over the command groups, each registered by its module: ``calendar``
(:mod:`effigate_cli.calendar`), ``migrate`` (:mod:`effigate_cli.migrate`), ``serve``
(:mod:`effigate_cli.serve`), ``token`` (:mod:`effigate_cli.tokens`), ``demo``
(:mod:`effigate_cli.demo`), the client commands ``status``, ``sla``, ``bill`` and
``replay`` (:mod:`effigate_cli.client`), ``ticket`` (:mod:`effigate_cli.tickets`), and the
routing commands ``queues``, ``workload``, ``route``, ``assign`` and ``routing-rules``
(:mod:`effigate_cli.routing`), ``events tail`` (:mod:`effigate_cli.events`), ``webhooks``
(:mod:`effigate_cli.webhooks`), the dataset commands ``export`` / ``load-back``
(:mod:`effigate_cli.datasets`) and ``bill-run``, the billing run over a dataset on a Dask
cluster (:mod:`effigate_cli.bill_run`), ``replay-billing``, the what-if of a range of
periods under a proposed rate card or terms (:mod:`effigate_cli.replay_billing`), and
``bench-rules``, a rule change's outcome and cost side by side (:mod:`effigate_cli.bench_rules`).
A failure is one line on standard error and an exit code (:mod:`effigate_cli.failures`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from effigate_cli import (
    bench_rules,
    bill_run,
    calendar,
    client,
    datasets,
    demo,
    events,
    migrate,
    replay_billing,
    routing,
    serve,
    tickets,
    tokens,
    webhooks,
)
from effigate_cli.failures import ENV_DEBUG, EXIT_BUG, debug_requested, describe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effigate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of a failure (or set {ENV_DEBUG}=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    calendar.add_commands(commands)
    migrate.add_commands(commands)
    serve.add_commands(commands)
    tokens.add_commands(commands)
    demo.add_commands(commands)
    client.add_commands(commands)
    tickets.add_commands(commands)
    routing.add_commands(commands)
    webhooks.add_commands(commands)
    events.add_commands(commands)
    datasets.add_commands(commands)
    bill_run.add_commands(commands)
    replay_billing.add_commands(commands)
    bench_rules.add_commands(commands)
    return parser


def quiet_grpc() -> None:
    """Keep gRPC's C core from writing to standard error (absl's "All log messages before
    absl::InitializeLog() …" and fork-handler notices): the service logs its own errors as
    JSON lines, and the client commands report failures in one line. Defaults only, set
    before ``grpc`` is imported: ``GRPC_VERBOSITY`` or ``GRPC_ENABLE_FORK_SUPPORT`` in the
    environment win (``GRPC_VERBOSITY=debug`` shows gRPC's own logs). The server forks only
    to run PostgreSQL's tools, which exec at once, so it needs no fork handlers."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_grpc()
    parser = build_parser()
    args = parser.parse_args(argv)
    calendar.check_deadlines(parser, args)
    handler = getattr(args, "handler", None) or args.func
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug_requested(args.debug):
            raise
        failure = describe(exc, getattr(args, "address", None))
        if failure is None:
            failure = (
                f"unexpected error: {type(exc).__name__}: {exc} (a bug; --debug or "
                f"{ENV_DEBUG}=1 shows the traceback)",
                EXIT_BUG,
            )
        print(f"effigate: {failure[0]}", file=sys.stderr)
        return failure[1]
