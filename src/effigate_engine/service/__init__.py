"""Domain operations over the store: what the gRPC servicers call.

Every operation takes the :class:`~effigate_engine.store.database.Store` and the calling
:class:`~effigate_engine.service.context.Principal` (tenant, and for portal tokens the one
client it may see), runs in a tenant-scoped transaction and returns plain domain values.
Errors are :class:`~effigate_engine.errors.EffigateError` subclasses naming field and value.
The service hands callers the store's handle (:class:`Store`, opened once at start-up) and
the counts of an ingest (:class:`IngestResult`), so the layers above never import the store.
"""

from effigate_engine.service.context import Principal
from effigate_engine.service.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from effigate_engine.store.batches import IngestResult
from effigate_engine.store.database import Store

__all__ = [
    "FailedPrecondition",
    "IngestResult",
    "NotFound",
    "PermissionDenied",
    "Principal",
    "Store",
    "Unauthenticated",
]
