"""Churn risk and lifetime value scoring: RFM, BG/NBD + Gamma-Gamma, inactivity fallback.

Pure functions over per-customer summaries; no database, no clock (``now`` is injected),
all times in days.
"""

from __future__ import annotations

from services.segmenter.scoring.bgnbd import (
    BgNbdParams,
    expected_purchases,
    fit_bgnbd,
    p_alive,
    p_no_purchase,
)
from services.segmenter.scoring.bgnbd import log_likelihood as bgnbd_log_likelihood
from services.segmenter.scoring.errors import FitError
from services.segmenter.scoring.fallback import (
    DEFAULT_INACTIVITY_HORIZON_DAYS,
    inactivity_churn_risk,
)
from services.segmenter.scoring.gamma_gamma import (
    GammaGammaParams,
    expected_average_value,
    fit_gamma_gamma,
)
from services.segmenter.scoring.gamma_gamma import log_likelihood as gamma_gamma_log_likelihood
from services.segmenter.scoring.model import (
    DEFAULT_MIN_CUSTOMERS,
    DEFAULT_MIN_REPEATERS,
    FALLBACK_METHOD,
    MEAN_SPEND_METHOD,
    MODEL_METHOD,
    FittedModels,
    Method,
    Score,
    ScoringResult,
    score_population,
)
from services.segmenter.scoring.rfm import (
    FREQUENCY_THRESHOLDS,
    RfmScore,
    Tier,
    frequency_scores,
    quintile_scores,
    rfm_scores,
    rfm_tier,
)
from services.segmenter.scoring.summary import (
    CustomerSummary,
    Purchase,
    build_summaries,
    summarise_customer,
)

__all__ = [
    "DEFAULT_INACTIVITY_HORIZON_DAYS",
    "DEFAULT_MIN_CUSTOMERS",
    "DEFAULT_MIN_REPEATERS",
    "FREQUENCY_THRESHOLDS",
    "FALLBACK_METHOD",
    "MEAN_SPEND_METHOD",
    "MODEL_METHOD",
    "BgNbdParams",
    "CustomerSummary",
    "FitError",
    "FittedModels",
    "GammaGammaParams",
    "Method",
    "Purchase",
    "RfmScore",
    "Score",
    "ScoringResult",
    "Tier",
    "bgnbd_log_likelihood",
    "build_summaries",
    "expected_average_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "frequency_scores",
    "gamma_gamma_log_likelihood",
    "inactivity_churn_risk",
    "p_alive",
    "p_no_purchase",
    "quintile_scores",
    "rfm_scores",
    "rfm_tier",
    "score_population",
    "summarise_customer",
]
