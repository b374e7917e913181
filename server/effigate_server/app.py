"""The server: servicers, interceptors, health and reflection, and graceful shutdown."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from effigate.v1 import (
    billing_pb2,
    billing_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
    sla_pb2,
    sla_pb2_grpc,
    tickets_pb2,
    tickets_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from effigate_engine.service import Store, wall_clock
from effigate_engine.service.evaluations import RulesetCache
from effigate_engine.service.sla_firing import SlaFiring
from effigate_engine.service.tokens import TokenResolver
from effigate_engine.service.webhook_delivery import DeliverySettings, DeliveryWorker
from effigate_server.billing import (
    BillingServicer,
    ContractServicer,
    RateCardServicer,
    TimeLogServicer,
)
from effigate_server.catalog import CatalogServicer
from effigate_server.events import EventServicer
from effigate_server.fields import LIMITS
from effigate_server.flight import FlightHost
from effigate_server.interceptors import AuthInterceptor, Calls
from effigate_server.routing import RoutingServicer
from effigate_server.sla import ReportServicer, SlaServicer
from effigate_server.tickets import TicketServicer
from effigate_server.web.app import build_app
from effigate_server.web.context import WebContext
from effigate_server.web.host import AddressInUse, HttpHost
from effigate_server.webhooks import WebhookServicer

log = logging.getLogger("effigate.server")

#: Arrow streams carry large messages: 256 MiB each way (unary requests are held to less by
#: the interceptors, see ``fields.LIMITS``).
MAX_MESSAGE_BYTES = LIMITS.stream_message_bytes
#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 20_000
#: Seconds in-flight calls get to finish after SIGTERM before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 30.0

SERVICES = (
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    tickets_pb2.DESCRIPTOR.services_by_name["TicketService"],
    sla_pb2.DESCRIPTOR.services_by_name["SlaService"],
    sla_pb2.DESCRIPTOR.services_by_name["ReportService"],
    billing_pb2.DESCRIPTOR.services_by_name["RateCardService"],
    billing_pb2.DESCRIPTOR.services_by_name["ContractService"],
    billing_pb2.DESCRIPTOR.services_by_name["TimeLogService"],
    billing_pb2.DESCRIPTOR.services_by_name["BillingService"],
    routing_pb2.DESCRIPTOR.services_by_name["RoutingService"],
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"],
    events_pb2.DESCRIPTOR.services_by_name["EventService"],
)

#: How each servicer joins the gRPC server, in the order of ``SERVICES``.
_REGISTRATIONS = (
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
    tickets_pb2_grpc.add_TicketServiceServicer_to_server,
    sla_pb2_grpc.add_SlaServiceServicer_to_server,
    sla_pb2_grpc.add_ReportServiceServicer_to_server,
    billing_pb2_grpc.add_RateCardServiceServicer_to_server,
    billing_pb2_grpc.add_ContractServiceServicer_to_server,
    billing_pb2_grpc.add_TimeLogServiceServicer_to_server,
    billing_pb2_grpc.add_BillingServiceServicer_to_server,
    routing_pb2_grpc.add_RoutingServiceServicer_to_server,
    webhooks_pb2_grpc.add_WebhookServiceServicer_to_server,
    events_pb2_grpc.add_EventServiceServicer_to_server,
)


class AddressUnavailable(OSError):
    """The server cannot listen on the address it was given (the message says why)."""


def address_problem(address: str) -> str | None:
    """Why a server could not listen on ``address`` (``host:port``) now, or ``None``: tried
    with a socket of the same kind gRPC listens with (``SO_REUSEADDR``), closed at once."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit():
        return f"--address {address!r} is not host:port"
    port = int(port_text)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {address}: {host!r} is not a local address ({exc})"
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(where)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} is in use on {host} (another effigate serve?); stop that"
                    f" process, or pick another port with --address {host}:PORT or"
                    f" EFFIGATE_ADDRESS={host}:PORT"
                )
            return f"cannot listen on {address}: {exc.strerror or exc}"
    return None


@dataclass
class Server:
    """A running service: the gRPC server, its store and the port it listens on."""

    grpc_server: grpc.aio.Server
    store: Store
    port: int
    health: Any
    calls: Calls
    webhooks: DeliveryWorker
    firing: SlaFiring | None = None
    http: HttpHost | None = None
    flight: FlightHost | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls,
        store: Store,
        address: str = "127.0.0.1:50051",
        webhooks: DeliverySettings | None = None,
        *,
        clock: wall_clock.WallClock | None = None,
        fire_sla: bool = True,
        http_address: str | None = None,
        cors_origins: tuple[str, ...] = (),
        flight_address: str | None = None,
    ) -> Server:
        """Build and start a server on ``address`` (port 0: a free port) over ``store``, with
        its webhook delivery worker (``webhooks``: its settings; default: the environment's
        ``EFFIGATE_WEBHOOK_*``) and its SLA firing loop (``fire_sla``) reading ``clock``
        (default: the process's). With ``http_address`` (port 0: a free port) the same
        process also serves the Connect API and the screens over HTTP there, calls from the
        browser origins ``cors_origins`` allowed. With ``flight_address`` (port 0: a free
        port) it also serves the Arrow Flight endpoints there (``effigate_server.flight``)."""
        settings = webhooks or DeliverySettings.from_environ()
        cache = RulesetCache()
        calls = Calls()
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(TokenResolver(store), calls)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        servicers = {
            "effigate.v1.CatalogService": CatalogServicer(store, cache),
            "effigate.v1.TicketService": TicketServicer(store, cache),
            "effigate.v1.SlaService": SlaServicer(store, cache),
            "effigate.v1.ReportService": ReportServicer(store, cache),
            "effigate.v1.RateCardService": RateCardServicer(store),
            "effigate.v1.ContractService": ContractServicer(store),
            "effigate.v1.TimeLogService": TimeLogServicer(store),
            "effigate.v1.BillingService": BillingServicer(store),
            "effigate.v1.RoutingService": RoutingServicer(store, cache),
            "effigate.v1.WebhookService": WebhookServicer(
                store, allow_private=settings.allow_private
            ),
            "effigate.v1.EventService": EventServicer(store, calls.stopping),
        }
        for registration, servicer in zip(_REGISTRATIONS, servicers.values(), strict=True):
            registration(servicer, server)
        checks = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checks, server)
        names = [s.full_name for s in SERVICES]
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if port == 0:
            raise AddressUnavailable(address_problem(address) or f"cannot listen on {address}")
        await server.start()
        worker = DeliveryWorker(store, settings)
        await worker.start()
        for name in ["", *names]:
            await checks.set(name, health_pb2.HealthCheckResponse.SERVING)
        firing = None
        if fire_sla:
            firing = SlaFiring(store, clock)
            await firing.start()
        http = None
        if http_address is not None:
            web = WebContext(
                store,
                TokenResolver(store),
                calls,
                cache,
                clock or wall_clock.SystemClock(),
                servicers,
                cors_origins,
                calls.stopping,
            )
            try:
                http = HttpHost(build_app(web), http_address)
            except AddressInUse as exc:
                await worker.stop(0)
                if firing is not None:
                    await firing.stop()
                await server.stop(0)
                raise AddressUnavailable(str(exc)) from None
            await http.start()
        flight = None
        if flight_address is not None:
            try:
                flight = FlightHost(
                    flight_address,
                    store,
                    cache,
                    TokenResolver(store),
                    calls,
                    asyncio.get_running_loop(),
                )
            except OSError as exc:
                await worker.stop(0)
                if firing is not None:
                    await firing.stop()
                if http is not None:
                    await http.stop()
                await server.stop(0)
                raise AddressUnavailable(str(exc)) from None
        return cls(server, store, port, checks, calls, worker, firing, http, flight)

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting calls, let in-flight calls finish (up to ``grace`` seconds), close.

        New API calls are refused with ``UNAVAILABLE`` from the first moment (health turns
        ``NOT_SERVING``); the server's transport is stopped only once the calls in flight are
        done or ``grace`` has passed, so a caller never sees its new call merely cut off."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.calls.drain()
        await self.health.enter_graceful_shutdown()
        started = time.monotonic()
        # webhook attempts in flight finish and are recorded meanwhile (the worker claims no
        # more); any cut off are tried again, with the same webhook-id, once their lease ends
        await asyncio.gather(
            self.calls.idle(grace),
            self.webhooks.stop(grace),
            *([self.flight.stop(grace)] if self.flight is not None else []),
        )
        if self.http is not None:
            await self.http.stop()
        await self.grpc_server.stop(max(0.0, grace - (time.monotonic() - started)))
        if self.firing is not None:
            await self.firing.stop()
        await self.store.close()


async def serve(
    app_dsn: str,
    address: str = "127.0.0.1:50051",
    *,
    admin_dsn: str | None = None,
    metrics_port: int | None = None,
    http_address: str | None = None,
    cors_origins: tuple[str, ...] = (),
    flight_address: str | None = None,
    ready: Any = None,
    stopping: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run the service until SIGTERM or SIGINT, then shut down gracefully.

    Serves as the service role at ``app_dsn``; with the owner's ``admin_dsn`` the database is
    migrated first (else it must be current). With ``http_address`` the Connect API and the
    screens are served there too (browser origins ``cors_origins`` allowed), with
    ``flight_address`` the Arrow Flight endpoints. ``ready`` is
    called with the :class:`Server` once it listens; ``stopping`` is awaited once the signal
    came, before the server stops (to cancel work of the process's own, such as the demo's
    load).
    """
    store = await Store.open(app_dsn, admin_dsn=admin_dsn)
    try:
        server = await Server.start(
            store,
            address,
            http_address=http_address,
            cors_origins=cors_origins,
            flight_address=flight_address,
        )
    except BaseException:
        await store.close()
        raise
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything loaded so far (modules, compiled kernels, the pools) lives as long as the
    # process: move it out of the collector's way, and collect the young generation less
    # often, so a request does not pay for a full collection of long-lived objects.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
    log.info("serving", extra={"address": address, "port": server.port})
    if ready is not None:
        ready(server)
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": SHUTDOWN_GRACE_SECONDS})
    if stopping is not None:
        await stopping()
    await server.stop()
    log.info("stopped")
