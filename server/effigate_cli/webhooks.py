"""``effigate webhooks add | list | deliveries | redeliver | rotate | disable | enable | remove``:
a tenant's webhook endpoints from the command line.

They talk to a running service at ``--address`` (``EFFIGATE_ADDRESS``) with the staff token in
``--token`` (``EFFIGATE_TOKEN``), like the other client commands.
"""

from __future__ import annotations

import argparse
from typing import Any

from effigate_cli.client import _client_args, _token

FORMATS = ("STANDARD", "SLACK", "TEAMS")
STATES = ("PENDING", "DELIVERED", "DEAD")


def add_commands(commands: Any) -> None:
    """Register ``effigate webhooks …`` on the ``effigate`` subparsers."""
    webhooks = commands.add_parser("webhooks", help="webhook endpoints and their deliveries")
    actions = webhooks.add_subparsers(dest="action", required=True)

    add = actions.add_parser("add", help="add an endpoint; prints its secret (shown once)")
    add.add_argument("url")
    add.add_argument("--format", choices=FORMATS, default="STANDARD")
    add.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        metavar="TYPE",
        help="deliver only this event type (repeatable; default: every type)",
    )
    add.add_argument("--client", type=int, default=None, help="only this client's events")
    add.add_argument("--description", default="")
    add.add_argument("--max-attempts", type=int, default=None, help="tries before DEAD (8)")
    _client_args(add)
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", help="the tenant's endpoints")
    _client_args(listing)
    listing.set_defaults(handler=run_list)

    deliveries = actions.add_parser("deliveries", help="deliveries, newest last")
    deliveries.add_argument("--endpoint", type=int, default=None)
    deliveries.add_argument("--state", choices=STATES, default=None)
    deliveries.add_argument("--event", default="", help="an event id (the webhook-id)")
    deliveries.add_argument("--after", type=int, default=0, help="the last id of a page")
    deliveries.add_argument("--limit", type=int, default=100)
    _client_args(deliveries)
    deliveries.set_defaults(handler=run_deliveries)

    redeliver = actions.add_parser("redeliver", help="send a DEAD or DELIVERED delivery again")
    redeliver.add_argument("delivery_id", type=int)
    _client_args(redeliver)
    redeliver.set_defaults(handler=run_redeliver)

    rotate = actions.add_parser("rotate", help="a new secret for an endpoint (shown once)")
    rotate.add_argument("endpoint_id", type=int)
    rotate.add_argument(
        "--keep-previous",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the old secret keeps signing this long (default 86400; 0: stops now)",
    )
    _client_args(rotate)
    rotate.set_defaults(handler=run_rotate)

    for name, active in (("disable", False), ("enable", True)):
        toggle = actions.add_parser(name, help=f"{name} an endpoint")
        toggle.add_argument("endpoint_id", type=int)
        _client_args(toggle)
        toggle.set_defaults(handler=run_toggle, active=active)

    remove = actions.add_parser("remove", help="delete an endpoint and its deliveries")
    remove.add_argument("endpoint_id", type=int)
    _client_args(remove)
    remove.set_defaults(handler=run_remove)


def _format_name(value: int) -> str:
    from effigate_client import webhooks_pb2

    return webhooks_pb2.WebhookFormat.Name(value).removeprefix("WEBHOOK_FORMAT_")


def _print_endpoint(e: Any) -> None:
    types = ",".join(e.event_types) or "all types"
    client = f"client {e.client_id}" if e.HasField("client_id") else "all clients"
    state = "active" if e.active else "inactive"
    print(f"{e.id:<20} {_format_name(e.format):<8} {state:<8} {types} / {client}  {e.url}")


def run_add(args: argparse.Namespace) -> int:
    """Create an endpoint and print it with its secret."""
    from effigate_client import Client, webhooks_pb2

    request = webhooks_pb2.CreateWebhookEndpointRequest(
        url=args.url,
        format=webhooks_pb2.WebhookFormat.Value(f"WEBHOOK_FORMAT_{args.format}"),
        event_types=args.types,
        description=args.description,
    )
    if args.client is not None:
        request.client_id = args.client
    if args.max_attempts is not None:
        request.max_attempts = args.max_attempts
    with Client(args.address, _token(args)) as client:
        reply = client.webhooks.CreateWebhookEndpoint(request)
    _print_endpoint(reply.endpoint)
    print(f"secret {reply.secret}  (shown once: keep it where the receiver verifies)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the tenant's endpoints."""
    from effigate_client import Client, webhooks_pb2

    with Client(args.address, _token(args)) as client:
        reply = client.webhooks.ListWebhookEndpoints(webhooks_pb2.ListWebhookEndpointsRequest())
    for e in reply.endpoints:
        _print_endpoint(e)
    return 0


def run_deliveries(args: argparse.Namespace) -> int:
    """Print deliveries: id, endpoint, event, state, attempts, last status or error."""
    from effigate_client import Client, webhooks_pb2

    request = webhooks_pb2.ListWebhookDeliveriesRequest(
        event_id=args.event, after_id=args.after, limit=args.limit
    )
    if args.endpoint is not None:
        request.endpoint_id = args.endpoint
    if args.state is not None:
        request.state = webhooks_pb2.WebhookDeliveryState.Value(
            f"WEBHOOK_DELIVERY_STATE_{args.state}"
        )
    with Client(args.address, _token(args)) as client:
        reply = client.webhooks.ListWebhookDeliveries(request)
    for d in reply.deliveries:
        _print_delivery(d)
    return 0


def _print_delivery(d: Any) -> None:
    from effigate_client import webhooks_pb2

    state = webhooks_pb2.WebhookDeliveryState.Name(d.state).removeprefix("WEBHOOK_DELIVERY_STATE_")
    last = str(d.last_status) if d.HasField("last_status") else "-"
    error = f"  {d.last_error}" if d.last_error else ""
    print(
        f"{d.id:<20} endpoint {d.endpoint_id:<20} {d.event_type:<18} {d.event_id}"
        f" {state:<9} attempts {d.attempts:<3} last {last}{error}"
    )


def run_redeliver(args: argparse.Namespace) -> int:
    """Put a delivery back in the queue and print it."""
    from effigate_client import Client, webhooks_pb2

    with Client(args.address, _token(args)) as client:
        reply = client.webhooks.RedeliverWebhook(
            webhooks_pb2.RedeliverWebhookRequest(delivery_id=args.delivery_id)
        )
    _print_delivery(reply)
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """Rotate an endpoint's secret and print the new one."""
    from effigate_client import Client, webhooks_pb2

    request = webhooks_pb2.RotateWebhookSecretRequest(id=args.endpoint_id)
    if args.keep_previous is not None:
        request.keep_previous_seconds = args.keep_previous
    with Client(args.address, _token(args)) as client:
        reply = client.webhooks.RotateWebhookSecret(request)
    _print_endpoint(reply.endpoint)
    print(f"secret {reply.secret}  (shown once)")
    return 0


def run_toggle(args: argparse.Namespace) -> int:
    """Activate or deactivate an endpoint."""
    from effigate_client import Client, webhooks_pb2

    with Client(args.address, _token(args)) as client:
        reply = client.webhooks.UpdateWebhookEndpoint(
            webhooks_pb2.UpdateWebhookEndpointRequest(
                id=args.endpoint_id, update_mask=["active"], active=args.active
            )
        )
    _print_endpoint(reply)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Delete an endpoint."""
    from effigate_client import Client, webhooks_pb2

    with Client(args.address, _token(args)) as client:
        client.webhooks.DeleteWebhookEndpoint(
            webhooks_pb2.DeleteWebhookEndpointRequest(id=args.endpoint_id)
        )
    print(f"removed endpoint {args.endpoint_id}")
    return 0
