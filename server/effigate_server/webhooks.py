"""WebhookService: a tenant's webhook endpoints and their deliveries (staff only)."""

from __future__ import annotations

from typing import Any

import grpc

from effigate.v1 import webhooks_pb2 as pb
from effigate.v1 import webhooks_pb2_grpc as rpc
from effigate_engine.service import Store
from effigate_engine.service import webhooks as service
from effigate_engine.service.webhooks import WebhookError
from effigate_server.convert import timestamp
from effigate_server.errors import guarded
from effigate_server.interceptors import current_principal

_FORMATS = {
    pb.WEBHOOK_FORMAT_STANDARD: "STANDARD",
    pb.WEBHOOK_FORMAT_SLACK: "SLACK",
    pb.WEBHOOK_FORMAT_TEAMS: "TEAMS",
}
_FORMAT_VALUES = {name: value for value, name in _FORMATS.items()}
_STATES = {
    pb.WEBHOOK_DELIVERY_STATE_PENDING: "PENDING",
    pb.WEBHOOK_DELIVERY_STATE_DELIVERED: "DELIVERED",
    pb.WEBHOOK_DELIVERY_STATE_DEAD: "DEAD",
}
_STATE_VALUES = {name: value for value, name in _STATES.items()}


def _format(value: int, *, default: str | None) -> str:
    if value == pb.WEBHOOK_FORMAT_UNSPECIFIED and default is not None:
        return default
    if value not in _FORMATS:
        raise WebhookError("format", value, "is not STANDARD, SLACK or TEAMS")
    return _FORMATS[value]


def _endpoint(row: service.EndpointRow) -> pb.WebhookEndpoint:
    message = pb.WebhookEndpoint(
        id=row.id,
        url=row.url,
        format=_FORMAT_VALUES[row.format],
        event_types=list(row.event_types),
        description=row.description,
        active=row.active,
        max_attempts=row.max_attempts,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        previous_secret_expires_at=timestamp(row.previous_expires_at),
    )
    if row.client_id is not None:
        message.client_id = row.client_id
    return message


def _delivery(row: service.DeliveryRow) -> pb.WebhookDelivery:
    message = pb.WebhookDelivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=str(row.event_id),
        event_type=row.event_type,
        state=_STATE_VALUES[row.state],
        attempts=row.attempts,
        next_attempt_at=timestamp(row.next_attempt_at),
        last_attempt_at=timestamp(row.last_attempt_at),
        last_error=row.last_error or "",
        delivered_at=timestamp(row.delivered_at),
        created_at=timestamp(row.created_at),
    )
    if row.last_status is not None:
        message.last_status = row.last_status
    return message


class WebhookServicer(rpc.WebhookServiceServicer):
    def __init__(self, store: Store, *, allow_private: bool = False) -> None:
        self.store = store
        self.allow_private = allow_private

    @guarded
    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpointWithSecret:
        created = await service.create_endpoint(
            self.store,
            current_principal(),
            url=request.url,
            fmt=_format(request.format, default="STANDARD"),
            event_types=list(request.event_types),
            client_id=request.client_id if request.HasField("client_id") else None,
            description=request.description,
            active=request.active if request.HasField("active") else True,
            max_attempts=(
                request.max_attempts
                if request.HasField("max_attempts")
                else service.DEFAULT_MAX_ATTEMPTS
            ),
            allow_private=self.allow_private,
        )
        return pb.WebhookEndpointWithSecret(
            endpoint=_endpoint(created.endpoint), secret=created.secret
        )

    @guarded
    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpointList:
        rows = await service.list_endpoints(self.store, current_principal())
        return pb.WebhookEndpointList(endpoints=[_endpoint(r) for r in rows])

    @guarded
    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpoint:
        changes: dict[str, Any] = {}
        for name in request.update_mask:
            if name == "format":
                changes[name] = _format(request.format, default=None)
            elif name == "event_types":
                changes[name] = list(request.event_types)
            elif name == "client_id":
                changes[name] = request.client_id if request.HasField("client_id") else None
            elif name in ("url", "description", "active", "max_attempts"):
                changes[name] = getattr(request, name)
            else:
                raise WebhookError("update_mask", name, "is not a field of an endpoint one may set")
        row = await service.update_endpoint(
            self.store,
            current_principal(),
            request.id,
            changes,
            allow_private=self.allow_private,
        )
        return _endpoint(row)

    @guarded
    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteWebhookEndpointResponse:
        await service.delete_endpoint(self.store, current_principal(), request.id)
        return pb.DeleteWebhookEndpointResponse()

    @guarded
    async def RotateWebhookSecret(
        self, request: pb.RotateWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookEndpointWithSecret:
        keep = (
            request.keep_previous_seconds
            if request.HasField("keep_previous_seconds")
            else service.DEFAULT_KEEP_PREVIOUS_SECONDS
        )
        rotated = await service.rotate_secret(self.store, current_principal(), request.id, keep)
        return pb.WebhookEndpointWithSecret(
            endpoint=_endpoint(rotated.endpoint), secret=rotated.secret
        )

    @guarded
    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookDeliveryList:
        if request.state != pb.WEBHOOK_DELIVERY_STATE_UNSPECIFIED and request.state not in _STATES:
            raise WebhookError("state", request.state, "is not PENDING, DELIVERED or DEAD")
        rows = await service.list_deliveries(
            self.store,
            current_principal(),
            endpoint_id=request.endpoint_id if request.HasField("endpoint_id") else None,
            state=_STATES.get(request.state),
            event_id=request.event_id or None,
            after_id=request.after_id,
            limit=request.limit or service.DEFAULT_PAGE,
        )
        return pb.WebhookDeliveryList(deliveries=[_delivery(r) for r in rows])

    @guarded
    async def RedeliverWebhook(
        self, request: pb.RedeliverWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.WebhookDelivery:
        row = await service.redeliver(self.store, current_principal(), request.delivery_id)
        return _delivery(row)
