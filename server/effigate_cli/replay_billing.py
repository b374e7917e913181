"""``effigate replay-billing --from D --to D [--contract N …] [--rate-card card.json]
[--terms terms.json] [--out DIR]``: what the invoices of a range of periods would have been
under a proposed rate card and/or contract terms (``BillingService.ReplayBilling``).

Every period of each contract (the ``--contract`` ones, else every active contract) that
overlaps the local dates ``--from``..``--to`` is re-priced; nothing is stored and issued
invoices are untouched. Per client and currency the current and proposed totals and the
change go to standard output (major units), then the number of contract periods and of lines
that move; with ``--out``, the Parquet files ``totals.parquet``, ``lines.parquet`` and
``by_client.parquet`` (money in minor units; ``docs/billing.md``, "What-if"). It talks to a
running service at ``--address`` with the staff token in ``--token``, like the other client
commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from effigate_cli.client import _client_args, _token
from effigate_cli.failures import EXIT_USAGE, CommandFailure


def add_commands(commands: Any) -> None:
    """Register ``effigate replay-billing`` on the ``effigate`` subparsers."""
    replay = commands.add_parser(
        "replay-billing",
        help="re-price a range of periods under a proposed rate card and/or terms (what-if)",
    )
    replay.add_argument("--from", dest="day_from", required=True, metavar="YYYY-MM-DD")
    replay.add_argument("--to", dest="day_to", required=True, metavar="YYYY-MM-DD")
    replay.add_argument(
        "--contract",
        dest="contracts",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="a contract id (repeat; default: every active contract)",
    )
    replay.add_argument("--rate-card", type=Path, metavar="FILE", help="proposed rate-card JSON")
    replay.add_argument("--terms", type=Path, metavar="FILE", help="proposed contract terms JSON")
    replay.add_argument("--out", type=Path, metavar="DIR", help="write the Parquet files here")
    _client_args(replay)
    replay.set_defaults(handler=run_replay_billing)


def _text(path: Path | None, flag: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text()
    except OSError as exc:
        raise CommandFailure(f"{flag} {path}: {exc.strerror or exc}", EXIT_USAGE) from None


def _money(code: str, minor: int) -> str:
    from effigate_engine.money import currency

    return currency(code).format(minor)


def run_replay_billing(args: argparse.Namespace) -> int:
    """Ask the service for the what-if, print it per client and write the Parquet."""
    import pyarrow.parquet as pq

    from effigate_client import Client, billing_pb2
    from effigate_client.client import ipc_table

    if args.rate_card is None and args.terms is None:
        raise CommandFailure("give --rate-card FILE and/or --terms FILE to propose", EXIT_USAGE)
    request = billing_pb2.ReplayBillingRequest(
        contract_ids=args.contracts,
        period_from=args.day_from,
        period_to=args.day_to,
        proposed_rate_card_json=_text(args.rate_card, "--rate-card"),
        proposed_terms_json=_text(args.terms, "--terms"),
    )
    with Client(args.address, _token(args)) as client:
        reply = client.billing.ReplayBilling(request)
    tables = {
        "totals": ipc_table(reply.totals_arrow_ipc),
        "lines": ipc_table(reply.lines_arrow_ipc),
        "by_client": ipc_table(reply.by_client_arrow_ipc),
    }
    print(f"{'client':<10} {'currency':<8} {'current':>14} {'proposed':>14} {'change':>14}")
    for row in tables["by_client"].to_pylist():
        code = row["currency"]
        print(
            f"{row['client_id']:<10} {code:<8} {_money(code, row['current']):>14}"
            f" {_money(code, row['proposed']):>14} {_money(code, row['change']):>14}"
        )
    changes = tables["totals"].column("total_change").to_pylist()
    moved = sum(1 for change in changes if change)
    print(
        f"{tables['totals'].num_rows} contract periods ({moved} change),"
        f" {tables['lines'].num_rows} lines change"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            pq.write_table(table, args.out / f"{name}.parquet")
        print(f"written: {', '.join(str(args.out / f'{n}.parquet') for n in tables)}")
    return 0
