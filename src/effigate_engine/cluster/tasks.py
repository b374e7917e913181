"""Running a job's tasks: on a Dask cluster (one future per task, results in submission order,
a progress callback as each finishes) or in this process one after another (``client=None``),
and what a worker keeps between the tasks it runs (each tenant's catalog, loaded once).

A task lost with its worker (the process died) is run again by the Dask scheduler on another
worker, up to ``distributed.scheduler.allowed-failures`` times; tasks therefore write their
parts under fixed names (:func:`~effigate_engine.datasets.layout.write_table`), so a task run
twice leaves one copy.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from effigate_engine.datasets.catalog import TenantCatalog, load_catalog
from effigate_engine.datasets.layout import DatasetError

T = TypeVar("T")

#: ``progress(done, total)``: called after each finished task (in this process).
Progress = Callable[[int, int], None]


def worker_count(client: Any) -> int:
    """How many worker processes the cluster has now (1 without a client)."""
    if client is None:
        return 1
    return max(1, len(client.scheduler_info().get("workers", {})))


def run_tasks(
    client: Any,
    fn: Callable[..., T],
    calls: Sequence[tuple[Any, ...]],
    *,
    name: str = "task",
    progress: Progress | None = None,
) -> list[T]:
    """``[fn(*args) for args in calls]``, each call a task on the cluster of ``client`` (or
    run here in order when ``client`` is ``None``); results in the order of ``calls``. The
    first task that fails cancels the others and its error is raised. ``name`` prefixes the
    task keys (what the Dask dashboard shows)."""
    total = len(calls)
    if client is None:
        out = []
        for done, args in enumerate(calls, 1):
            out.append(fn(*args))
            if progress is not None:
                progress(done, total)
        return out
    from distributed import as_completed

    run = uuid.uuid4().hex[:12]
    futures = [
        client.submit(fn, *args, key=f"{name}-{run}-{i}", pure=False)
        for i, args in enumerate(calls)
    ]
    try:
        for done, future in enumerate(as_completed(futures), 1):
            if future.status == "error":
                future.result()  # raises the task's error
            if progress is not None:
                progress(done, total)
        return client.gather(futures)
    finally:
        running = [f for f in futures if not f.done()]
        if running:
            client.cancel(running)


_CATALOGS: dict[tuple[str, str], TenantCatalog] = {}
_LOCK = threading.Lock()
#: Catalogs a worker keeps loaded (the most recently loaded are kept).
CATALOGS_KEPT = 64


def worker_catalog(url: str, tenant: str, digest: str) -> TenantCatalog:
    """The catalog of ``tenant`` in the dataset at ``url``, loaded once per process while its
    digest stays ``digest`` (what the driver planned the job with). A catalog rewritten since
    is an error naming the tenant: the job's plan no longer matches the dataset."""
    key = (str(url), str(tenant))
    with _LOCK:
        hit = _CATALOGS.get(key)
    if hit is not None and hit.digest == digest:
        return hit
    catalog = load_catalog(url, tenant)
    if catalog.digest != digest:
        raise DatasetError(
            f"{url}: tenant {tenant}'s catalog changed during the job (digest {catalog.digest}"
            f", planned with {digest}); run the job again"
        )
    with _LOCK:
        _CATALOGS.pop(key, None)
        while len(_CATALOGS) >= CATALOGS_KEPT:
            _CATALOGS.pop(next(iter(_CATALOGS)))
        _CATALOGS[key] = catalog
    return catalog
