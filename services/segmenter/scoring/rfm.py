"""RFM quintile scores (1..5) and a tier name per customer.

Scores come from mid-ranks, not from quantile cut points, so ties and small populations
behave: a customer's score is ``1 + floor(5 * (midrank - 0.5) / n)`` where ``midrank`` is
the average 1-based rank of its value (``scipy.stats.rankdata(method="average")``). Hence

- equal values always get equal scores, and scores never decrease as the value grows;
- a population of one, or one where everybody ties, scores 3 (the middle) throughout;
- with n = 5 distinct values the scores are exactly 1, 2, 3, 4, 5; with more, each score
  holds about a fifth of the customers (fewer at the ends when big ties straddle a border).

Recency is scored on days since the last purchase, fewer days = higher score; frequency
and monetary on their values, higher = higher score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

IntArray = npt.NDArray[np.int64]

Tier = Literal["champions", "loyal", "new", "needs_attention", "at_risk", "hibernating", "lost"]


@dataclass(frozen=True, slots=True)
class RfmScore:
    """One customer's scores, each in 1..5, and the tier they map to."""

    recency: int
    frequency: int
    monetary: int
    tier: Tier


def quintile_scores(values: Any) -> IntArray:
    """Scores 1..5 for a 1-D array of finite values, higher value = higher score (mid-ranks).

    An empty input gives an empty output; non-finite values raise ValueError.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("RFM values must be finite")
    midranks = rankdata(arr, method="average")
    scores = 1 + np.floor(5.0 * (midranks - 0.5) / arr.size).astype(np.int64)
    return np.asarray(np.clip(scores, 1, 5), dtype=np.int64)


def rfm_tier(recency: int, frequency: int, monetary: int) -> Tier:
    """Tier from the three scores; the first matching row wins.

    ====================  ==========================================
    champions             R >= 4 and F >= 4 and M >= 3
    loyal                 R >= 3 and F >= 3
    new                   R >= 4 (and F <= 2): bought recently, rarely
    needs_attention       R == 3 (and F <= 2)
    at_risk               R <= 2 and F >= 3: used to buy often, not lately
    hibernating           R == 2 (and F <= 2)
    lost                  R == 1 (and F <= 2)
    ====================  ==========================================
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
    """RFM scores and tiers for a population, in input order (arrays of equal length)."""
    days = np.asarray(days_since_last_purchase, dtype=np.float64).ravel()
    freq = np.asarray(frequency, dtype=np.float64).ravel()
    money = np.asarray(monetary, dtype=np.float64).ravel()
    if not days.size == freq.size == money.size:
        raise ValueError("recency, frequency and monetary must have the same length")
    r_scores = quintile_scores(-days)
    f_scores = quintile_scores(freq)
    m_scores = quintile_scores(money)
    return [
        RfmScore(recency=r, frequency=f, monetary=m, tier=rfm_tier(r, f, m))
        for r, f, m in zip(r_scores.tolist(), f_scores.tolist(), m_scores.tolist(), strict=True)
    ]
