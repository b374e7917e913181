"""Who is calling: :class:`Principal`, resolved from its API token."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from effigate_engine.service.errors import PermissionDenied
from effigate_engine.store.tenant import TenantKey


@dataclass(frozen=True)
class Principal:
    """The caller of an operation, resolved from its API token.

    ``client_id`` is set for client-scoped portal tokens: such a caller sees only that client's
    tickets, SLA status, bucket balances and invoices, and may change nothing but its own
    tickets. ``actor`` is what the audit log records. ``token`` is the bearer token the caller
    presented: each transaction hands it to the database, which binds the transaction to the
    token's tenant only after checking it (see :mod:`effigate_engine.store.tenant`).
    """

    tenant_id: UUID
    client_id: int | None = None
    actor: str = "api"
    token: str | None = field(default=None, repr=False)

    @property
    def key(self) -> TenantKey:
        """What binds this caller's transactions to its tenant."""
        return TenantKey(self.tenant_id, self.token)

    @property
    def is_portal(self) -> bool:
        """True for a client-scoped portal token."""
        return self.client_id is not None

    def require_staff(self, operation: str) -> None:
        """Refuse ``operation`` to portal tokens."""
        if self.client_id is not None:
            raise PermissionDenied(
                "token", f"portal token of client {self.client_id}", f"may not {operation}"
            )

    def require_client(self, client_id: int, what: str) -> None:
        """Refuse access to ``what`` (of ``client_id``) to a portal token of another client."""
        if self.client_id is not None and self.client_id != client_id:
            raise PermissionDenied(what, client_id, f"is not visible to client {self.client_id}")
