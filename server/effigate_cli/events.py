"""``effigate events tail``: a tenant's events, printed live as they happen.

One line per event (``occurred_at  TYPE  subject  client N  cursor X``), or its CloudEvents
JSON with ``--json``; without ``--after`` only events from now on (``--from-start``: every
stored event first). Runs until interrupted; when the server goes away (a restart) it
reconnects and goes on after the last event printed, so nothing is printed twice or missed.
"""

from __future__ import annotations

import argparse
from typing import Any

from effigate_cli.client import _client_args, _token
from effigate_engine.events.types import EVENT_TYPES


def add_commands(commands: Any) -> None:
    """Register ``effigate events …`` on the ``effigate`` subparsers."""
    events = commands.add_parser("events", help="the tenant's events (SLA, buckets, invoices)")
    actions = events.add_subparsers(dest="action", required=True)
    tail = actions.add_parser("tail", help="print events live as they happen")
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--after", default=None, metavar="CURSOR", help="resume after this event's cursor"
    )
    start.add_argument("--from-start", action="store_true", help="print every stored event first")
    tail.add_argument(
        "--type",
        action="append",
        default=[],
        choices=EVENT_TYPES,
        type=str.upper,
        metavar="TYPE",
        help=f"only this type (repeatable): {', '.join(EVENT_TYPES)}",
    )
    tail.add_argument("--client", type=int, default=None, help="only this client's events")
    tail.add_argument("--json", action="store_true", help="print each event's CloudEvents JSON")
    _client_args(tail)
    tail.set_defaults(handler=run_tail)


def event_line(event: Any) -> str:
    """One event as a line: instant (UTC), type, subject, client and cursor."""
    from effigate_client import events_pb2

    when = event.occurred_at.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    kind = events_pb2.EventType.Name(event.type)
    client = f"client {event.client_id}" if event.client_id else "-"
    return f"{when}  {kind:<18}  {event.subject}  {client}  cursor {event.cursor}"


def run_tail(args: argparse.Namespace) -> int:
    """Print the events until interrupted."""
    from effigate_client import Client

    with Client(args.address, _token(args), timeout=None) as client:
        watched = client.watch_events(
            after_cursor=args.after or "",
            types=args.type,
            client_id=args.client,
            from_now=args.after is None and not args.from_start,
        )
        for event in watched:
            print(event.cloudevent_json if args.json else event_line(event), flush=True)
    return 0
