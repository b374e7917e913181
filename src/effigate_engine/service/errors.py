"""Errors of the service operations, each naming the field and the value at fault.

They map one-to-one onto gRPC status codes (see ``server/``): input the caller can fix is an
:class:`~effigate_engine.errors.EffigateError` (``INVALID_ARGUMENT``); the classes here cover
the other outcomes.
"""

from __future__ import annotations

from effigate_engine.errors import EffigateError


class ServiceError(EffigateError):
    """Base of the service outcomes: ``field`` names what was asked for, ``value`` its value
    (None when there is none to show: the sentence then reads ``field: problem``)."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        shown = "" if value is None else f"{value!r} "
        super().__init__(f"{field}: {shown}{problem}")


class NotFound(ServiceError):
    """No such row for this tenant (or for this portal client)."""


class FailedPrecondition(ServiceError):
    """The row exists but its state forbids the operation (issued invoice, closed period, …)."""


class PermissionDenied(ServiceError):
    """The caller's token may not do this (a portal token asking for staff operations or for
    another client's data)."""


class Unauthenticated(ServiceError):
    """No token, or a token that is unknown or revoked."""


class AlreadyExists(ServiceError):
    """A name (or key) the tenant already uses for another row of the same kind."""
