"""What a worker keeps between the parts it runs: each tenant's catalog, loaded once per
(dataset, tenant), and compiled once (calendars and policies, by the catalog's digest through
:func:`effigate_engine.datasets.catalog.compiled`); a proposed policy given as JSON, parsed
once. A worker that runs forty months of a tenant compiles its calendars once, not forty times.

The driver reads each tenant's catalog before submitting and gives the tasks its digest: a
worker that still holds an older catalog of the same tenant (a long-lived cluster, a dataset
exported again) loads it again instead of evaluating under stale calendars.

:func:`compile_counts` tells how many times this process compiled each catalog (tests run it on
every worker with ``client.run``).
"""

from __future__ import annotations

import json
import threading
import weakref
from functools import lru_cache
from typing import Any

from effigate_engine.datasets.catalog import (
    Compiled,
    TenantCatalog,
    catalog_path,
    compiled,
    load_catalog,
)
from effigate_engine.datasets.layout import DatasetError
from effigate_engine.sla.policy import Policy

#: Catalogs kept loaded per process (the most recently used are kept).
CATALOGS_KEPT = 64
#: The name a proposed policy given as a JSON body takes when its body has none.
PROPOSED = "proposed"

_LOCK = threading.Lock()
_CATALOGS: dict[tuple[str, str], TenantCatalog] = {}
_COMPILED_SEEN: weakref.WeakValueDictionary[str, Compiled] = weakref.WeakValueDictionary()
_COMPILATIONS: dict[str, int] = {}


def tenant_catalog(url: str, tenant: str, digest: str | None = None) -> TenantCatalog:
    """The catalog of ``tenant`` in the dataset at ``url``, loaded once per process; with
    ``digest``, the catalog of that digest (loaded again when the one held is another)."""
    key = (str(url), str(tenant))
    with _LOCK:
        held = _CATALOGS.get(key)
    if held is not None and (digest is None or held.digest == digest):
        return held
    loaded = load_catalog(url, tenant)
    if digest is not None and loaded.digest != digest:
        raise DatasetError(
            f"{catalog_path(url, tenant)}: tenant {tenant}'s catalog changed while the job ran"
            f" (digest {loaded.digest[:12]}, the job started with {digest[:12]}); run it again"
        )
    with _LOCK:
        _CATALOGS.pop(key, None)
        while len(_CATALOGS) >= CATALOGS_KEPT:
            _CATALOGS.pop(next(iter(_CATALOGS)))
        _CATALOGS[key] = loaded
    return loaded


def compiled_catalog(url: str, tenant: str, digest: str | None = None) -> Compiled:
    """The tenant's catalog compiled (calendar set and policies), once per process."""
    catalog = tenant_catalog(url, tenant, digest)
    made = compiled(catalog)
    with _LOCK:
        if _COMPILED_SEEN.get(catalog.digest) is not made:
            _COMPILED_SEEN[catalog.digest] = made
            _COMPILATIONS[catalog.digest] = _COMPILATIONS.get(catalog.digest, 0) + 1
    return made


def compile_counts() -> dict[str, int]:
    """How many times this process compiled each catalog (by digest): 1 each when the cache
    works, however many parts of the tenant the process ran."""
    with _LOCK:
        return dict(_COMPILATIONS)


def policy_body(text: str) -> dict[str, Any]:
    """A policy JSON file's body (an object), or a :class:`DatasetError` naming the problem."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"proposed policy: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise DatasetError(f"proposed policy: {type(body).__name__} is not a JSON object")
    return body


def proposed_policy(body: dict[str, Any]) -> Policy:
    """A policy given as its JSON body (named :data:`PROPOSED` unless it names itself),
    parsed once per process."""
    return _parsed(json.dumps({"name": PROPOSED, **body}))  # key order kept


@lru_cache(maxsize=16)
def _parsed(text: str) -> Policy:
    return Policy.from_json(json.loads(text))


def worker_address() -> str | None:
    """The address of the Dask worker running the caller (``None`` outside a worker)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None
