"""Python client of the Effigate Engine gRPC service.

``Client`` (blocking) and ``AsyncClient`` (asyncio) expose every service's stub
(``client.sla.Evaluate(...)``) with the bearer token attached, plus typed conveniences:
datetimes in and out, Arrow tables and Parquet files streamed in chunks. Idempotent calls are
retried with exponential backoff by gRPC's own retry policy; calls that would repeat an effect
(creating a client, issuing an invoice, recording a payment, …) are never retried.
"""

from effigate.v1 import (
    billing_pb2,
    catalog_pb2,
    common_pb2,
    events_pb2,
    routing_pb2,
    sla_pb2,
    tickets_pb2,
)
from effigate_client.client import AsyncClient, Client, to_timestamp

__all__ = [
    "AsyncClient",
    "Client",
    "billing_pb2",
    "catalog_pb2",
    "common_pb2",
    "events_pb2",
    "routing_pb2",
    "sla_pb2",
    "tickets_pb2",
    "to_timestamp",
]
