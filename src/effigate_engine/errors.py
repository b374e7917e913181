"""Errors raised by the engine. Each names the field (or batch position) and the offending value."""

from __future__ import annotations


class EffigateError(ValueError):
    """Base class for input errors the caller can fix."""


class CalendarError(EffigateError):
    """A calendar definition is invalid: ``field`` is the path of the bad field, ``value`` its
    value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


class BatchError(EffigateError):
    """One element of a batch is invalid: ``position`` is its index in the batch."""

    def __init__(self, field: str, position: int, value: object, problem: str) -> None:
        self.field = field
        self.position = position
        self.value = value
        self.problem = problem
        super().__init__(f"{field}[{position}]: {value!r} {problem}")


class BillingError(EffigateError):
    """A billing input is invalid: ``field`` is the path of the bad field, ``value`` its value."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {value!r} {problem}")


class ConfigurationError(BillingError):
    """A contract, rate card or currency setting cannot be used as given (for instance a rate
    that is not a whole number of the currency's minor units per hour)."""


class LifecycleError(BillingError):
    """An operation is not allowed in the current lifecycle state (for instance changing the type
    of an active contract, or crediting more than is still creditable)."""
