"""RFM scores (1..5) and a tier name per customer, that hold on ties.

**Recency and monetary: quintiles over distinct values.** A value's score is
``1 + floor(5 * (rank - 0.5) / k)`` where ``rank`` is its rank among the ``k`` distinct
values of the population (1 = smallest). Hence

- equal values always get equal scores, and scores never decrease as the value grows;
- with at least five distinct values every score 1..5 occurs, however the customers pile
  up on a few values (60 % at one price is one score, not a hole in the scale);
- a population with one distinct value scores 3 (the middle) throughout.

Each score holds a fifth of the distinct values, not of the customers. Recency is scored
on days since the last purchase, fewer days = higher score; monetary on the mean value
per occasion, higher = higher.

**Frequency: fixed thresholds** on repeat occasions (purchase days after the first),
because most customers buy once and quantiles of a count with a few values collapse:

=========  ===================================  ==================
F score    repeat occasions (occasions in all)  typically
=========  ===================================  ==================
1          0 (bought once)                      the majority
2          1 (two occasions)
3          2 (three)
4          3 to 5 (four to six)
5          6 or more (seven or more)
=========  ===================================  ==================

``FREQUENCY_THRESHOLDS`` holds the lower bounds of scores 2..5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

#: lowest repeat occasions of frequency scores 2, 3, 4 and 5
FREQUENCY_THRESHOLDS = (1, 2, 3, 6)

Tier = Literal["champions", "loyal", "new", "needs_attention", "at_risk", "hibernating", "lost"]


@dataclass(frozen=True, slots=True)
class RfmScore:
    """One customer's scores, each in 1..5, and the tier they map to."""

    recency: int
    frequency: int
    monetary: int
    tier: Tier


def quintile_scores(values: Any) -> IntArray:
    """Scores 1..5 for a 1-D array of finite values, higher value = higher score, from the
    value's rank among the distinct values (see the module docstring).

    An empty input gives an empty output; non-finite values raise ValueError.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("RFM values must be finite")
    distinct, rank0 = np.unique(arr, return_inverse=True)
    scores = 1 + np.floor(5.0 * (rank0.ravel() + 0.5) / distinct.size).astype(np.int64)
    return np.asarray(np.clip(scores, 1, 5), dtype=np.int64)


def frequency_scores(repeat_occasions: Any) -> IntArray:
    """Scores 1..5 from repeat occasions by the fixed thresholds of the module docstring."""
    arr = np.asarray(repeat_occasions, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("repeat occasions must be finite and non-negative")
    return np.asarray(
        1 + np.searchsorted(np.asarray(FREQUENCY_THRESHOLDS, dtype=np.float64), arr, "right"),
        dtype=np.int64,
    )


def rfm_tier(recency: int, frequency: int, monetary: int) -> Tier:
    """Tier from the three scores; the first matching row wins.

    ====================  ==========================================  =========================
    champions             R >= 4 and F >= 4 and M >= 3                recent, 4+ occasions,
                                                                      spend in the upper 3/5
    loyal                 R >= 3 and F >= 3                           3+ occasions, not lapsed
    new                   R >= 4 (and F <= 2)                         recent, 1-2 occasions
    needs_attention       R == 3 (and F <= 2)                         middling recency, 1-2
    at_risk               R <= 2 and F >= 3                           3+ occasions, not lately
    hibernating           R == 2 (and F <= 2)                         1-2 occasions, a while ago
    lost                  R == 1 (and F <= 2)                         1-2 occasions, long ago
    ====================  ==========================================  =========================

    With the fixed frequency thresholds F >= 3 means three or more purchase days, so a
    one-time or single-repeat buyer is never ``champions``, ``loyal`` or ``at_risk``.
    """
    for name, score in (("recency", recency), ("frequency", frequency), ("monetary", monetary)):
        if not 1 <= score <= 5:
            raise ValueError(f"{name} score must be in 1..5, got {score}")
    if recency >= 4 and frequency >= 4 and monetary >= 3:
        return "champions"
    if recency >= 3 and frequency >= 3:
        return "loyal"
    if recency >= 4:
        return "new"
    if recency == 3:
        return "needs_attention"
    if frequency >= 3:
        return "at_risk"
    return "hibernating" if recency == 2 else "lost"


def rfm_scores(days_since_last_purchase: Any, frequency: Any, monetary: Any) -> list[RfmScore]:
    """RFM scores and tiers for a population, in input order (arrays of equal length);
    ``frequency`` is repeat occasions."""
    days = np.asarray(days_since_last_purchase, dtype=np.float64).ravel()
    freq = np.asarray(frequency, dtype=np.float64).ravel()
    money = np.asarray(monetary, dtype=np.float64).ravel()
    if not days.size == freq.size == money.size:
        raise ValueError("recency, frequency and monetary must have the same length")
    r_scores = quintile_scores(-days)
    f_scores = frequency_scores(freq)
    m_scores = quintile_scores(money)
    return [
        RfmScore(recency=r, frequency=f, monetary=m, tier=rfm_tier(r, f, m))
        for r, f, m in zip(r_scores.tolist(), f_scores.tolist(), m_scores.tolist(), strict=True)
    ]
