"""Score a population: churn risk, P(alive), expected purchases, predicted LTV, RFM.

With enough customers and repeat buyers, BG/NBD (purchases, dropout) and Gamma-Gamma (spend)
are fitted on the population's history and every customer is scored from them
(``method = "bgnbd_gamma_gamma"``). When Gamma-Gamma cannot be fitted (spend that barely
varies is degenerate for it) but BG/NBD can, the expected spend per purchase is the
customer's own mean spend per occasion (``method = "bgnbd_mean_spend"``, the reason says
why Gamma-Gamma failed), so LTV is still mean spend × expected purchases rather than null.
Otherwise, or when BG/NBD raises FitError, every customer gets the transparent inactivity
score (``method = "inactivity_fallback"``, no LTV). One method
per run, named in the result, in every score and in every explanation, with the reason.

Churn risk under the models is ``1 - P(alive)`` for repeat buyers. For one-time buyers
BG/NBD's P(alive) is 1 by construction (dropout happens only after a repeat purchase), so
their churn risk is the model's probability of no purchase over the horizon instead;
``explanation["churn_basis"]`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.segmenter.scoring.bgnbd import (
    BgNbdParams,
    expected_purchases,
    fit_bgnbd,
    p_alive,
    p_no_purchase,
)
from services.segmenter.scoring.errors import FitError
from services.segmenter.scoring.fallback import (
    DEFAULT_INACTIVITY_HORIZON_DAYS,
    inactivity_churn_risk,
    inactivity_explanation,
)
from services.segmenter.scoring.gamma_gamma import (
    GammaGammaParams,
    expected_average_value,
    fit_gamma_gamma,
)
from services.segmenter.scoring.rfm import RfmScore, rfm_scores
from services.segmenter.scoring.summary import CustomerSummary

FloatArray = npt.NDArray[np.float64]

Method = Literal["bgnbd_gamma_gamma", "bgnbd_mean_spend", "inactivity_fallback"]
MODEL_METHOD: Method = "bgnbd_gamma_gamma"
MEAN_SPEND_METHOD: Method = "bgnbd_mean_spend"
FALLBACK_METHOD: Method = "inactivity_fallback"

DEFAULT_MIN_CUSTOMERS = 200
DEFAULT_MIN_REPEATERS = 30
_DISCOUNT_STEP_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class FittedModels:
    bgnbd: BgNbdParams
    #: None: Gamma-Gamma could not be fitted; spend per purchase is the customer's mean
    gamma_gamma: GammaGammaParams | None


@dataclass(frozen=True, slots=True)
class Score:
    """One customer's scores. ``churn_risk`` is always in [0, 1].

    ``p_alive``, ``expected_purchases`` (over the horizon), ``expected_average_value`` and
    ``predicted_ltv`` are None under the inactivity fallback. ``explanation`` is
    JSON-serialisable (str keys; str, int, float, None and nested dict values).
    """

    customer_id: str
    churn_risk: float
    p_alive: float | None
    expected_purchases: float | None
    expected_average_value: float | None
    predicted_ltv: float | None
    rfm: RfmScore
    method: Method
    explanation: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScoringResult:
    """All scores of one run, in the order of the summaries given, and how they were made."""

    scored_at: datetime
    method: Method
    reason: str
    horizon_days: float
    models: FittedModels | None
    scores: tuple[Score, ...]

    def by_customer(self) -> dict[str, Score]:
        return {score.customer_id: score for score in self.scores}


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def score_population(
    summaries: Sequence[CustomerSummary],
    *,
    now: datetime,
    horizon_days: float = 365.0,
    annual_discount_rate: float | None = None,
    min_customers: int = DEFAULT_MIN_CUSTOMERS,
    min_repeaters: int = DEFAULT_MIN_REPEATERS,
    inactivity_horizon_days: float = DEFAULT_INACTIVITY_HORIZON_DAYS,
    models: FittedModels | None = None,
) -> ScoringResult:
    """Score every summary (built at ``now``); never raises FitError.

    The models are fitted when there are at least ``min_customers`` customers and
    ``min_repeaters`` of them with a repeat purchase; ``models`` skips fitting (and the
    thresholds) and uses the given parameters. ``predicted_ltv`` is expected purchases over
    ``horizon_days`` times the expected spend per purchase; with ``annual_discount_rate``
    each 30-day step's purchases are discounted by ``(1 + rate) ** -(step_end / 365)``.
    Raises ValueError on invalid arguments or duplicate customer ids.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _check_positive("horizon_days", horizon_days)
    _check_positive("inactivity_horizon_days", inactivity_horizon_days)
    if annual_discount_rate is not None and not (
        math.isfinite(annual_discount_rate) and annual_discount_rate > -1
    ):
        raise ValueError(f"annual_discount_rate must be > -1, got {annual_discount_rate!r}")
    ids = [s.customer_id for s in summaries]
    if len(set(ids)) != len(ids):
        raise ValueError("customer ids must be unique")

    n = len(summaries)
    repeaters = sum(1 for s in summaries if s.frequency > 0)
    reason: str
    if models is not None:
        reason = "parameters supplied by the caller"
    elif n < min_customers:
        reason = f"too few customers to fit the models: {n} < {min_customers}"
    elif repeaters < min_repeaters:
        reason = f"too few repeat buyers to fit the models: {repeaters} < {min_repeaters}"
    else:
        try:
            models, reason = _fit(summaries)
            reason = f"fitted on {n} customers, {repeaters} repeat buyers{reason}"
        except FitError as exc:
            reason = f"model fit failed ({exc})"

    rfm = rfm_scores(
        [s.days_since_last_purchase for s in summaries],
        [s.frequency for s in summaries],
        [s.mean_value for s in summaries],
    )
    if models is None:
        scores = _fallback_scores(summaries, rfm, inactivity_horizon_days, reason)
        method = FALLBACK_METHOD
    else:
        method = MODEL_METHOD if models.gamma_gamma is not None else MEAN_SPEND_METHOD
        scores = _model_scores(
            summaries, rfm, models, horizon_days, annual_discount_rate, reason, method
        )
    return ScoringResult(
        scored_at=now,
        method=method,
        reason=reason,
        horizon_days=horizon_days,
        models=models,
        scores=scores,
    )


def _fit(summaries: Sequence[CustomerSummary]) -> tuple[FittedModels, str]:
    """BG/NBD (FitError when it fails) and Gamma-Gamma (None when it fails, and why)."""
    x = np.array([s.frequency for s in summaries], dtype=np.float64)
    tx = np.array([s.recency for s in summaries], dtype=np.float64)
    big_t = np.array([s.T for s in summaries], dtype=np.float64)
    m = np.array([s.monetary for s in summaries], dtype=np.float64)
    bgnbd = fit_bgnbd(x, tx, big_t)
    try:
        return FittedModels(bgnbd=bgnbd, gamma_gamma=fit_gamma_gamma(x, m)), ""
    except FitError as exc:
        return FittedModels(bgnbd=bgnbd, gamma_gamma=None), (
            f"; Gamma-Gamma could not be fitted ({exc}): LTV = the customer's mean spend "
            "per purchase × expected purchases"
        )


def _common_explanation(summary: CustomerSummary, method: Method, reason: str) -> dict[str, Any]:
    return {
        "method": method,
        "reason": reason,
        "recency_days": float(summary.recency),
        "days_since_last_purchase": float(summary.days_since_last_purchase),
        "days_since_last_seen": float(summary.last_seen_days_ago),
        "frequency": int(summary.frequency),
        "monetary": float(summary.monetary),
        "T_days": float(summary.T),
    }


def _fallback_scores(
    summaries: Sequence[CustomerSummary],
    rfm: list[RfmScore],
    inactivity_horizon_days: float,
    reason: str,
) -> tuple[Score, ...]:
    risk = inactivity_churn_risk(
        [s.last_seen_days_ago for s in summaries], horizon_days=inactivity_horizon_days
    )
    scores = []
    for summary, rfm_score, churn in zip(summaries, rfm, risk.tolist(), strict=True):
        explanation = _common_explanation(summary, FALLBACK_METHOD, reason)
        explanation["inactivity_horizon_days"] = float(inactivity_horizon_days)
        explanation["churn_basis"] = inactivity_explanation(
            summary.last_seen_days_ago, horizon_days=inactivity_horizon_days
        )
        scores.append(
            Score(
                customer_id=summary.customer_id,
                churn_risk=float(churn),
                p_alive=None,
                expected_purchases=None,
                expected_average_value=None,
                predicted_ltv=None,
                rfm=rfm_score,
                method=FALLBACK_METHOD,
                explanation=explanation,
            )
        )
    return tuple(scores)


def _discounted_purchases(
    params: BgNbdParams,
    x: FloatArray,
    tx: FloatArray,
    big_t: FloatArray,
    horizon_days: float,
    annual_discount_rate: float,
) -> FloatArray:
    """Sum over 30-day steps of the step's expected purchases, discounted at the step's end."""
    ends = np.append(
        np.arange(_DISCOUNT_STEP_DAYS, horizon_days, _DISCOUNT_STEP_DAYS), horizon_days
    )
    cumulative = expected_purchases(params, ends[None, :], x[:, None], tx[:, None], big_t[:, None])
    per_step = np.diff(cumulative, axis=1, prepend=0.0).clip(min=0.0)
    factors = (1.0 + annual_discount_rate) ** (-ends / 365.0)
    return np.asarray(per_step @ factors, dtype=np.float64)


def _model_scores(
    summaries: Sequence[CustomerSummary],
    rfm: list[RfmScore],
    models: FittedModels,
    horizon_days: float,
    annual_discount_rate: float | None,
    reason: str,
    method: Method = MODEL_METHOD,
) -> tuple[Score, ...]:
    x = np.array([s.frequency for s in summaries], dtype=np.float64)
    tx = np.array([s.recency for s in summaries], dtype=np.float64)
    big_t = np.array([s.T for s in summaries], dtype=np.float64)
    m = np.array([s.monetary for s in summaries], dtype=np.float64)
    bg, gg = models.bgnbd, models.gamma_gamma

    alive = p_alive(bg, x, tx, big_t)
    silent = p_no_purchase(bg, horizon_days, x, tx, big_t)
    churn = np.where(x > 0, 1.0 - alive, silent)
    purchases = expected_purchases(bg, horizon_days, x, tx, big_t)
    if gg is not None:
        value = expected_average_value(gg, x, m)
    else:
        value = np.array([s.mean_value for s in summaries], dtype=np.float64)
    if annual_discount_rate:
        ltv = value * _discounted_purchases(bg, x, tx, big_t, horizon_days, annual_discount_rate)
    else:
        ltv = value * purchases

    bg_params = bg.as_dict()
    gg_params = None if gg is None else gg.as_dict()
    scores = []
    rows = zip(
        summaries,
        rfm,
        churn.tolist(),
        alive.tolist(),
        purchases.tolist(),
        value.tolist(),
        ltv.tolist(),
        strict=True,
    )
    for summary, rfm_score, risk, alive_i, purchases_i, value_i, ltv_i in rows:
        explanation = _common_explanation(summary, method, reason)
        explanation.update(
            {
                "churn_basis": "1 - p_alive"
                if summary.frequency > 0
                else "p_no_purchase_in_horizon (one-time buyer: BG/NBD p_alive is 1)",
                "horizon_days": float(horizon_days),
                "annual_discount_rate": annual_discount_rate,
                "p_alive": alive_i,
                "expected_purchases": purchases_i,
                "expected_average_value": value_i,
                "bgnbd": dict(bg_params),
                "gamma_gamma": None if gg_params is None else dict(gg_params),
                "spend_basis": "gamma_gamma"
                if gg is not None
                else "the customer's mean spend per purchase (Gamma-Gamma degenerate)",
            }
        )
        scores.append(
            Score(
                customer_id=summary.customer_id,
                churn_risk=min(max(float(risk), 0.0), 1.0),
                p_alive=float(alive_i),
                expected_purchases=float(purchases_i),
                expected_average_value=float(value_i),
                predicted_ltv=float(ltv_i),
                rfm=rfm_score,
                method=method,
                explanation=explanation,
            )
        )
    return tuple(scores)
