"""``effigate ticket create | show | event``: one ticket through the service.

``create`` raises a ticket with its descriptive fields (support level, job type, after-hours
cover, channel, subject, requester, queue, assignee, asset, tags); ``event`` records one event
(an id derived from the ticket, kind and instant unless ``--event-id`` is given, so running the
same command again records it once); both print the ticket as stored, like ``show``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from effigate_cli.client import _client_args, _now, _token

#: Event kinds ``effigate ticket event`` records (the proto's EventKind names).
EVENT_KINDS = (
    "RESPONDED",
    "PLAN_PROVIDED",
    "PAUSED",
    "RESUMED",
    "RESOLVED",
    "REOPENED",
    "PRIORITY_CHANGED",
    "SUPPORT_LEVEL_CHANGED",
    "JOB_TYPE_CHANGED",
    "ASSIGNED",
    "QUEUE_CHANGED",
    "TAGS_CHANGED",
)


def add_commands(commands: Any) -> None:
    """Register ``effigate ticket …`` on the ``effigate`` subparsers."""
    ticket = commands.add_parser("ticket", help="create, show and record events of a ticket")
    actions = ticket.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="raise a ticket")
    create.add_argument("ticket_id")
    create.add_argument("--client", type=int, required=True, help="client id")
    create.add_argument("--contract", type=int, default=None, help="contract id")
    create.add_argument("--priority", required=True, help="CRITICAL/HIGH/MEDIUM/LOW or P1-P4")
    create.add_argument("--created-at", default=None, help="ISO instant (default: now)")
    create.add_argument("--support-level", default="", help="L1/L2/L3/SA")
    create.add_argument("--job-type", default="")
    create.add_argument("--after-hours", action="store_true", help="covered after hours")
    create.add_argument("--channel", default="", help="EMAIL/PORTAL/PHONE/CHAT/MONITORING/API")
    create.add_argument("--subject", default="")
    create.add_argument("--requester", default="", help="an e-mail address")
    create.add_argument("--queue", default="")
    create.add_argument("--assignee", default="", help="agent id")
    create.add_argument("--asset", default="")
    create.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    _client_args(create)
    create.set_defaults(handler=run_create)

    show = actions.add_parser("show", help="a ticket as stored")
    show.add_argument("ticket_id")
    _client_args(show)
    show.set_defaults(handler=run_show)

    event = actions.add_parser("event", help="record an event of a ticket")
    event.add_argument("ticket_id")
    event.add_argument("kind", choices=EVENT_KINDS, type=str.upper)
    event.add_argument("--at", default=None, help="ISO instant (default: now)")
    event.add_argument(
        "--event-id", default=None, help="idempotency key (default: ticket:kind:instant)"
    )
    event.add_argument("--status", default="", help="PAUSED: the pausing status")
    event.add_argument("--priority", default="", help="PRIORITY_CHANGED: the new priority")
    event.add_argument("--support-level", default="", help="SUPPORT_LEVEL_CHANGED: the level")
    event.add_argument("--job-type", default="", help="JOB_TYPE_CHANGED: the job type")
    event.add_argument("--assignee", default="", help="ASSIGNED: agent id (empty: unassign)")
    event.add_argument("--queue", default="", help="QUEUE_CHANGED: the queue")
    event.add_argument("--tag", action="append", default=[], help="TAGS_CHANGED: a tag")
    _client_args(event)
    event.set_defaults(handler=run_event)


def _instant(text: str | None) -> datetime:
    return _now(text) or datetime.now(UTC).replace(microsecond=0)


def run_create(args: argparse.Namespace) -> int:
    """Create the ticket and print it."""
    from effigate_client import Client, tickets_pb2, to_timestamp

    request = tickets_pb2.CreateTicketRequest(
        id=args.ticket_id,
        client_id=args.client,
        priority=args.priority,
        created_at=to_timestamp(_instant(args.created_at)),
        support_level=args.support_level,
        job_type=args.job_type,
        after_hours=args.after_hours,
        channel=args.channel,
        subject=args.subject,
        requester=args.requester,
        queue=args.queue,
        assignee=args.assignee,
        asset=args.asset,
        tags=args.tag,
    )
    if args.contract is not None:
        request.contract_id = args.contract
    with Client(args.address, _token(args)) as client:
        print_ticket(client.tickets.CreateTicket(request))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the stored ticket."""
    from effigate_client import Client, tickets_pb2

    with Client(args.address, _token(args)) as client:
        print_ticket(
            client.tickets.GetTicket(tickets_pb2.GetTicketRequest(ticket_id=args.ticket_id))
        )
    return 0


def run_event(args: argparse.Namespace) -> int:
    """Record the event and print the ticket as folded."""
    from effigate_client import Client, tickets_pb2, to_timestamp

    when = _instant(args.at)
    request = tickets_pb2.RecordEventRequest(
        event_id=args.event_id or f"{args.ticket_id}:{args.kind}:{when.isoformat()}",
        ticket_id=args.ticket_id,
        kind=tickets_pb2.EventKind.Value(args.kind),
        occurred_at=to_timestamp(when),
        status=args.status,
        priority=args.priority,
        support_level=args.support_level,
        job_type=args.job_type,
        assignee=args.assignee,
        queue=args.queue,
        tags=args.tag,
    )
    with Client(args.address, _token(args)) as client:
        print_ticket(client.tickets.RecordEvent(request))
    return 0


def _when(message: Any, name: str) -> str:
    if not message.HasField(name):
        return "-"
    return str(getattr(message, name).ToDatetime(tzinfo=UTC).isoformat())


def _text(message: Any, name: str) -> str:
    return str(getattr(message, name)) if message.HasField(name) else "-"


def print_ticket(t: Any) -> None:
    """Print a ``Ticket`` message, one field a line."""
    lines = [
        ("ticket", t.id),
        ("client", str(t.client_id)),
        ("contract", str(t.contract_id) if t.HasField("contract_id") else "-"),
        ("priority", t.priority),
        ("status", t.status),
        ("created", _when(t, "created_at")),
        ("first response", _when(t, "first_response_at")),
        ("resolved", _when(t, "resolved_at")),
        ("support level", _text(t, "support_level")),
        ("job type", _text(t, "job_type")),
        ("after hours", "yes" if t.after_hours else "no"),
        ("channel", _text(t, "channel")),
        ("subject", _text(t, "subject")),
        ("requester", _text(t, "requester")),
        ("queue", _text(t, "queue")),
        ("assignee", _text(t, "assignee")),
        ("asset", _text(t, "asset")),
        ("tags", ", ".join(t.tags) or "-"),
    ]
    for label, value in lines:
        print(f"{label + ':':<16}{value}")
