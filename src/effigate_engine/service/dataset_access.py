"""Who a dataset job (:mod:`effigate_engine.service.datasets`) works for: staff principals
given by the caller, or, with the owner's credentials, a job token issued per tenant and
revoked when the job ends, so the job's transactions bind each tenant through the service
role like any caller's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from uuid import UUID

from effigate_engine.datasets.layout import DatasetError
from effigate_engine.service.context import Principal
from effigate_engine.service.tokens import job_principals
from effigate_engine.store.database import Store

#: The label of the tokens issued for a dataset job run with the owner's credentials.
JOB_LABEL = "dataset job"

#: Who a dataset job works for: a staff principal, or a tenant id (a job token is issued).
TenantRef = Principal | UUID | str


@asynccontextmanager
async def principals(
    store: Store, tenants: Sequence[TenantRef] | None
) -> AsyncIterator[list[Principal]]:
    """Staff principals for ``tenants`` (every tenant when ``None``): principals given are used
    as they are; tenant ids need the owner's credentials (the store's ``admin_dsn``), with which
    a job token is issued per tenant and revoked when the block ends."""
    given = [t for t in tenants or () if isinstance(t, Principal)]
    ids: list[UUID] | None = None
    if tenants is not None:
        ids = []
        for i, t in enumerate(tenants):
            if isinstance(t, Principal):
                continue
            try:
                ids.append(t if isinstance(t, UUID) else UUID(str(t)))
            except ValueError:
                raise DatasetError(f"tenants[{i}]: {t!r} is not a tenant id (UUID)") from None
    for p in given:
        p.require_staff("export or load datasets")
    if ids is not None and not ids:
        yield given
        return
    if store.admin_dsn is None:
        raise DatasetError(
            "tenants: a dataset job over tenant ids needs the owner's credentials"
            " (EFFIGATE_ADMIN_DSN) to bind each tenant; give staff principals instead"
        )
    async with job_principals(store.admin_dsn, ids, JOB_LABEL) as issued:
        yield given + issued
