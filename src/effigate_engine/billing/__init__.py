"""Billing: money, contracts, buckets, invoice assembly, SLA credits, tax and credit notes."""

from effigate_engine.billing.errors import BillingError, ConfigurationError, LifecycleError
from effigate_engine.billing.money import Currency, currency, largest_remainder, round_half_up

__all__ = [
    "BillingError",
    "ConfigurationError",
    "Currency",
    "LifecycleError",
    "currency",
    "largest_remainder",
    "round_half_up",
]
