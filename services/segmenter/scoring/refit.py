"""One refit's computation, off the event loop: the churn model for every customer, RFM and
LTV for buyers, merged into one score row per profile (pure; the job reads and writes).

- ``churn_risk`` (every profile): :func:`.churn.fit_churn`'s probability of "no
  ``<event>`` within H days", from the candidate that won the backtest (``score_method``
  names it: ``learned``, ``recency``, ``bgnbd``, or ``recency_heuristic`` with too little
  history).
- ``predicted_ltv`` (buyers, when BG/NBD and Gamma-Gamma could be fitted): expected
  purchases over ``ltv_horizon_days`` × expected spend per purchase, each 30-day step
  discounted by ``(1 + ltv_annual_discount_rate) ** -(step_end / 365)`` (0: undiscounted).
- RFM scores and tier (buyers): :mod:`.rfm`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from services.segmenter.scoring.bgnbd import fit_bgnbd
from services.segmenter.scoring.churn import (
    DEFAULT_HORIZON_DAYS,
    DEFAULT_MIN_CLASS,
    DEFAULT_MIN_CUSTOMERS,
    ChurnDefinition,
    ChurnFit,
    Snapshot,
    fit_churn,
)
from services.segmenter.scoring.errors import FitError
from services.segmenter.scoring.gamma_gamma import fit_gamma_gamma
from services.segmenter.scoring.model import FittedModels, ScoringResult, score_population
from services.segmenter.scoring.summary import CustomerSummary

ScoreRow = tuple[Any, ...]
#: buyers the LTV models are fitted on at most (a random sample beyond)
LTV_MAX_FIT_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class RefitOptions:
    """What a refit computes; the service builds it from its settings."""

    purchase_event: str = "Order Completed"
    #: the churn event: "no <churn_event> within churn_horizon_days"; None = purchase_event
    churn_event: str | None = None
    churn_horizon_days: int = DEFAULT_HORIZON_DAYS
    #: events whose counts over the last H days are features (the service's setting
    #: ``churn_engagement_events``)
    engagement_events: tuple[str, ...] = ()
    ltv_horizon_days: float = 365.0
    ltv_annual_discount_rate: float = 0.0
    min_customers: int = DEFAULT_MIN_CUSTOMERS
    min_class: int = DEFAULT_MIN_CLASS
    seed: int = field(default=0)

    @property
    def churn_definition(self) -> ChurnDefinition:
        return ChurnDefinition(self.churn_event or self.purchase_event, self.churn_horizon_days)


@dataclass(frozen=True, slots=True)
class RefitOutcome:
    population: ScoringResult
    churn: ChurnFit
    rows: list[ScoreRow]
    buyers: int
    non_buyers: int
    #: seconds: the churn model (backtest and scoring), RFM and LTV, the score rows
    seconds: dict[str, float] = field(default_factory=dict)


def compute_refit(
    summaries: Sequence[CustomerSummary],
    training: Snapshot,
    current: Snapshot,
    options: RefitOptions,
    now: datetime,
) -> RefitOutcome:
    """CPU-bound: call it with ``asyncio.to_thread``. ``current`` holds every profile."""
    started = time.perf_counter()
    churn = fit_churn(
        training,
        current,
        options.churn_definition,
        min_customers=options.min_customers,
        min_class=options.min_class,
        seed=options.seed,
    )
    churn_s = time.perf_counter() - started
    models, sampled = _sampled_ltv_models(summaries, options.seed)
    population = score_population(
        summaries,
        now=now,
        horizon_days=options.ltv_horizon_days,
        annual_discount_rate=options.ltv_annual_discount_rate or None,
        models=models,
    )
    if models is not None:
        population = replace(population, reason=sampled)
    population_s = time.perf_counter() - started - churn_s
    rows = _rows(population, churn, current, now)
    seconds = {
        "churn": churn_s,
        "rfm_ltv": population_s,
        "rows": time.perf_counter() - started - churn_s - population_s,
    }
    return RefitOutcome(
        population, churn, rows, len(summaries), len(rows) - len(summaries), seconds
    )


def _sampled_ltv_models(
    summaries: Sequence[CustomerSummary], seed: int
) -> tuple[FittedModels | None, str]:
    """BG/NBD and Gamma-Gamma fitted on a random ``LTV_MAX_FIT_ROWS`` of the buyers when
    there are more (four and three parameters settle long before; the fit's time then
    stays bounded); None, to let :func:`score_population` fit on everybody, otherwise or
    when the sample's fit fails."""
    n = len(summaries)
    if n <= LTV_MAX_FIT_ROWS:
        return None, ""
    pick = np.random.default_rng(seed).choice(n, LTV_MAX_FIT_ROWS, replace=False)
    x = np.array([summaries[i].frequency for i in pick.tolist()], dtype=np.float64)
    tx = np.array([summaries[i].recency for i in pick.tolist()], dtype=np.float64)
    big_t = np.array([summaries[i].T for i in pick.tolist()], dtype=np.float64)
    m = np.array([summaries[i].monetary for i in pick.tolist()], dtype=np.float64)
    try:
        models = FittedModels(bgnbd=fit_bgnbd(x, tx, big_t), gamma_gamma=fit_gamma_gamma(x, m))
    except FitError:
        return None, ""
    repeaters = int((x > 0).sum())
    return models, (
        f"fitted on a random {LTV_MAX_FIT_ROWS} of {n} customers ({repeaters} repeat buyers)"
    )


#: per-buyer figures copied from the population's explanation (the models' parameters,
#: the reasons and the settings are the same for everybody: they are in the fit's report)
_BUYER_KEYS = (
    "recency_days",
    "days_since_last_purchase",
    "frequency",
    "monetary",
    "T_days",
    "p_alive",
    "expected_purchases",
    "expected_average_value",
)


def _rows(
    population: ScoringResult,
    churn: ChurnFit,
    current: Snapshot,
    now: datetime,
) -> list[ScoreRow]:
    """``(customer_id, churn_risk, predicted_ltv, rfm r, f, m, tier, method, explanation,
    scored_at)`` per profile. An explanation says which churn method and definition, the
    customer's own figures, and for buyers the LTV method; what is the same for everybody
    (parameters, backtest, reasons) is in the fit's report (``GET /v1/scores/fit``), not
    repeated in a million rows."""
    buyers = population.by_customer()
    definition = churn.definition.describe()
    method = churn.method
    days = np.where(current.never, np.nan, np.round(current.days_since_event, 3)).tolist()
    rows: list[ScoreRow] = []
    for customer_id, risk, since in zip(
        current.customer_ids, churn.risk.tolist(), days, strict=True
    ):
        explanation: dict[str, Any] = {
            "method": method,
            "churn_definition": definition,
            "days_since_churn_event": None if since != since else since,  # NaN: never
        }
        score = buyers.get(customer_id)
        if score is None:
            rows.append((customer_id, risk, None, None, None, None, None, method, explanation, now))
            continue
        given = score.explanation
        explanation.update({key: given[key] for key in _BUYER_KEYS if key in given})
        explanation["ltv_method"] = population.method
        rfm = score.rfm
        rows.append(
            (
                customer_id,
                risk,
                score.predicted_ltv,
                rfm.recency,
                rfm.frequency,
                rfm.monetary,
                rfm.tier,
                method,
                explanation,
                now,
            )
        )
    return rows
