"""Rate cards and the classification of time logs (Numba kernels over Arrow batches)."""

from effigate_engine.ratecard.model import (
    Condition,
    IncrementMode,
    RateCard,
    Rule,
    Stacking,
)

__all__ = ["Condition", "IncrementMode", "RateCard", "Rule", "Stacking"]
