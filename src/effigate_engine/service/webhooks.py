"""Webhook endpoints of a tenant, and their deliveries: create, list, update, delete, rotate
the secret, list deliveries, redeliver.

An endpoint is where the tenant's events are POSTed (docs/webhooks.md): its URL (http or
https; non-public addresses only when the server allows them), the signing secret (generated
here, ``whsec_…``, returned once on creation and on rotation, never again), the body format
(``STANDARD`` CloudEvents, ``SLACK``, ``TEAMS``), the event types it subscribes to (none: all),
the client whose events it gets (none: every client's), whether it is active, and how many
attempts a delivery gets before it is DEAD. Every operation is staff-only: a portal token is
refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from effigate_engine.errors import EffigateError
from effigate_engine.events.types import EVENT_TYPES
from effigate_engine.service.context import Principal
from effigate_engine.service.errors import FailedPrecondition, NotFound
from effigate_engine.store import webhooks as stored
from effigate_engine.store.database import Store
from effigate_engine.store.webhooks import DeliveryRow, EndpointRow
from effigate_engine.webhooks.bodies import FORMATS
from effigate_engine.webhooks.destination import DestinationRefused, check_url
from effigate_engine.webhooks.signature import new_secret

__all__ = ["DeliveryRow", "EndpointRow", "WebhookError"]

DELIVERY_STATES = ("PENDING", "DELIVERED", "DEAD")
DEFAULT_MAX_ATTEMPTS = 8
MAX_MAX_ATTEMPTS = 50
MAX_DESCRIPTION = 500
#: Deliveries listed per page by default, and at most.
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: How long the previous secret keeps signing after a rotation by default (seconds): a day.
DEFAULT_KEEP_PREVIOUS_SECONDS = 86_400.0
MAX_KEEP_PREVIOUS_SECONDS = 30 * 86_400.0


class WebhookError(EffigateError):
    """A webhook request is invalid: ``field`` is the path of the bad field, ``value`` its
    value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


@dataclass(frozen=True)
class CreatedEndpoint:
    """A new endpoint and its secret (the only time the secret is shown)."""

    endpoint: EndpointRow
    secret: str


def _operation(name: str) -> str:
    return f"{name} (webhook endpoints are staff-only)"


def _url(url: str, allow_private: bool) -> str:
    try:
        return check_url(url, allow_private=allow_private)
    except DestinationRefused as exc:
        raise WebhookError("url", url, str(exc)) from exc


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise WebhookError("format", fmt, f"is not one of {', '.join(FORMATS)}")
    return fmt


def _types(types: Sequence[str]) -> tuple[str, ...]:
    for i, t in enumerate(types):
        if t not in EVENT_TYPES:
            raise WebhookError(f"event_types[{i}]", t, f"is not one of {', '.join(EVENT_TYPES)}")
    return tuple(dict.fromkeys(types))


def _attempts(n: int) -> int:
    if not 1 <= n <= MAX_MAX_ATTEMPTS:
        raise WebhookError("max_attempts", n, f"must be between 1 and {MAX_MAX_ATTEMPTS}")
    return n


def _description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise WebhookError("description", text[:40] + "…", f"is over {MAX_DESCRIPTION} chars")
    return text


def _client(client_id: int | None) -> int | None:
    if client_id is not None and client_id <= 0:
        raise WebhookError("client_id", client_id, "must be a client id (> 0)")
    return client_id


async def create_endpoint(
    store: Store,
    principal: Principal,
    *,
    url: str,
    fmt: str = "STANDARD",
    event_types: Sequence[str] = (),
    client_id: int | None = None,
    description: str = "",
    active: bool = True,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    allow_private: bool = False,
) -> CreatedEndpoint:
    """Store a new endpoint with a freshly generated secret; returns both."""
    principal.require_staff(_operation("create webhook endpoints"))
    secret = new_secret()
    values = {
        "url": _url(url, allow_private),
        "fmt": _format(fmt),
        "event_types": _types(event_types),
        "client_id": _client(client_id),
        "description": _description(description),
        "active": active,
        "max_attempts": _attempts(max_attempts),
    }
    async with store.transaction(principal) as conn:
        if client_id is not None:
            await _require_client(conn, client_id)
        row = await stored.create_endpoint(conn, secret=secret, **values)
    return CreatedEndpoint(row, secret)


async def _require_client(conn: Any, client_id: int) -> None:
    if not await stored.client_exists(conn, client_id):
        raise NotFound("client_id", client_id, "is not a client of this tenant")


async def list_endpoints(store: Store, principal: Principal) -> list[EndpointRow]:
    """The tenant's endpoints (never their secrets)."""
    principal.require_staff(_operation("list webhook endpoints"))
    async with store.transaction(principal) as conn:
        return await stored.list_endpoints(conn)


async def update_endpoint(
    store: Store,
    principal: Principal,
    endpoint_id: int,
    changes: dict[str, Any],
    *,
    allow_private: bool = False,
) -> EndpointRow:
    """Change an endpoint: ``changes`` maps field names (``url``, ``format``, ``event_types``,
    ``client_id`` (``None``: every client), ``description``, ``active``, ``max_attempts``)
    to new values; fields not named keep theirs."""
    principal.require_staff(_operation("update webhook endpoints"))
    checks = {
        "url": lambda v: _url(v, allow_private),
        "format": _format,
        "event_types": _types,
        "client_id": _client,
        "description": _description,
        "active": bool,
        "max_attempts": _attempts,
    }
    checked = {}
    for name, value in changes.items():
        if name not in checks:
            raise WebhookError("update_mask", name, "is not a field of an endpoint one may set")
        checked[name] = checks[name](value)
    async with store.transaction(principal) as conn:
        if checked.get("client_id") is not None:
            await _require_client(conn, checked["client_id"])
        row = await stored.update_endpoint(conn, endpoint_id, checked)
    if row is None:
        raise NotFound("endpoint_id", endpoint_id, "is not a webhook endpoint of this tenant")
    return row


async def rotate_secret(
    store: Store,
    principal: Principal,
    endpoint_id: int,
    keep_previous_seconds: float = DEFAULT_KEEP_PREVIOUS_SECONDS,
) -> CreatedEndpoint:
    """Give an endpoint a new secret (returned, shown this once); deliveries are signed with
    both the new and the old one for ``keep_previous_seconds`` (0: the old one stops now)."""
    principal.require_staff(_operation("rotate webhook secrets"))
    if not 0 <= keep_previous_seconds <= MAX_KEEP_PREVIOUS_SECONDS:
        raise WebhookError(
            "keep_previous_seconds",
            keep_previous_seconds,
            f"must be between 0 and {MAX_KEEP_PREVIOUS_SECONDS:.0f} (30 days)",
        )
    secret = new_secret()
    async with store.transaction(principal) as conn:
        row = await stored.rotate_secret(conn, endpoint_id, secret, keep_previous_seconds)
    if row is None:
        raise NotFound("endpoint_id", endpoint_id, "is not a webhook endpoint of this tenant")
    return CreatedEndpoint(row, secret)


async def delete_endpoint(store: Store, principal: Principal, endpoint_id: int) -> None:
    """Delete an endpoint and its deliveries (pending ones are never sent)."""
    principal.require_staff(_operation("delete webhook endpoints"))
    async with store.transaction(principal) as conn:
        found = await stored.delete_endpoint(conn, endpoint_id)
    if not found:
        raise NotFound("endpoint_id", endpoint_id, "is not a webhook endpoint of this tenant")


async def list_deliveries(
    store: Store,
    principal: Principal,
    *,
    endpoint_id: int | None = None,
    state: str | None = None,
    event_id: str | None = None,
    after_id: int = 0,
    limit: int = DEFAULT_PAGE,
) -> list[DeliveryRow]:
    """The tenant's deliveries matching the filters, by id after ``after_id``."""
    principal.require_staff(_operation("list webhook deliveries"))
    if state is not None and state not in DELIVERY_STATES:
        raise WebhookError("state", state, f"is not one of {', '.join(DELIVERY_STATES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise WebhookError("limit", limit, f"must be between 1 and {MAX_PAGE}")
    event: UUID | None = None
    if event_id is not None:
        try:
            event = UUID(event_id)
        except ValueError as exc:
            raise WebhookError("event_id", event_id, "is not an event id (a UUID)") from exc
    async with store.transaction(principal) as conn:
        return await stored.list_deliveries(
            conn,
            endpoint_id=endpoint_id,
            state=state,
            event_id=event,
            after_id=after_id,
            limit=limit,
        )


async def redeliver(store: Store, principal: Principal, delivery_id: int) -> DeliveryRow:
    """Send a DEAD or DELIVERED delivery again: back in the queue now, attempts from zero,
    the same webhook-id (receivers that already processed it recognise it)."""
    principal.require_staff(_operation("redeliver webhooks"))
    async with store.transaction(principal) as conn:
        if not await stored.redeliver(conn, delivery_id):
            row = await stored.get_delivery(conn, delivery_id)
            if row is None:
                raise NotFound(
                    "delivery_id", delivery_id, "is not a webhook delivery of this tenant"
                )
            raise FailedPrecondition(
                "delivery_id", delivery_id, "is still PENDING: it will be tried again by itself"
            )
        row = await stored.get_delivery(conn, delivery_id)
    assert row is not None
    return row
