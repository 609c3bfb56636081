"""Transparent inactivity score, used while there are too few data to fit the models.

``churn_risk = 1 - exp(-days_since_last_seen / horizon_days)``: 0 for a customer seen
just now, ``1 - 1/e ≈ 0.63`` after one horizon, ``0.86`` after two, ``0.95`` after three.
It rises strictly with inactivity and uses nothing else, so it can be explained in a
sentence; it is a heuristic, not a probability estimated from data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_INACTIVITY_HORIZON_DAYS = 90.0


def inactivity_churn_risk(
    days_since_last_seen: Any, *, horizon_days: float = DEFAULT_INACTIVITY_HORIZON_DAYS
) -> FloatArray:
    """``1 - exp(-days / horizon_days)`` in [0, 1); negative days (clock skew) count as 0."""
    if not (math.isfinite(horizon_days) and horizon_days > 0):
        raise ValueError(f"horizon_days must be positive, got {horizon_days!r}")
    days = np.asarray(days_since_last_seen, dtype=np.float64)
    if np.any(np.isnan(days)):
        raise ValueError("days since last seen must not be NaN")
    return np.asarray(-np.expm1(-np.maximum(days, 0.0) / horizon_days), dtype=np.float64)


def inactivity_explanation(days_since_last_seen: float, *, horizon_days: float) -> str:
    """One sentence saying how the inactivity score was computed for this customer."""
    return (
        f"last seen {days_since_last_seen:.0f} days ago; "
        f"churn_risk = 1 - exp(-days / {horizon_days:g}) (inactivity heuristic)"
    )
