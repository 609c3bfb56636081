"""Summaries from purchases, and population scoring: model or inactivity fallback."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from services.segmenter.scoring import (
    FALLBACK_METHOD,
    MEAN_SPEND_METHOD,
    MODEL_METHOD,
    BgNbdParams,
    CustomerSummary,
    FittedModels,
    GammaGammaParams,
    ScoringResult,
    build_summaries,
    score_population,
    summarise_customer,
)
from tests.unit.segmenter.test_scoring_bgnbd import CDNOW_DAYS, simulate_bgnbd
from tests.unit.segmenter.test_scoring_gamma_gamma import CDNOW as CDNOW_SPEND
from tests.unit.segmenter.test_scoring_gamma_gamma import simulate_spend

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def day(n: float, hour: int = 12) -> datetime:
    return datetime(2026, 1, 1, hour, tzinfo=UTC) + timedelta(days=n)


# --- summaries ---------------------------------------------------------------------------------


def test_summary_counts_repeat_days_and_their_mean_value() -> None:
    purchases = [
        (day(0), 10.0),
        (day(0, hour=18), 5.0),  # same UTC day: one occasion
        (day(10), 20.0),
        (day(30), 40.0),
        (NOW + timedelta(days=1), 99.0),  # after now: ignored
    ]
    summary = summarise_customer("c1", purchases, now=NOW)
    assert summary is not None
    assert summary.frequency == 2
    assert summary.recency == pytest.approx(30.0)
    assert math.isclose(summary.T, (NOW - day(0)).total_seconds() / 86400)
    assert summary.monetary == pytest.approx(30.0)
    assert summary.total_value == pytest.approx(75.0)
    assert summary.last_seen_days_ago == pytest.approx((NOW - day(30)).total_seconds() / 86400)
    assert summary.days_since_last_purchase == pytest.approx(summary.last_seen_days_ago)


def test_one_purchase_has_no_repeats() -> None:
    summary = summarise_customer("c", [(day(5), 12.5)], now=NOW)
    assert summary is not None
    assert (summary.frequency, summary.recency, summary.monetary) == (0.0, 0.0, 0.0)
    assert summary.mean_value == 12.5


def test_days_are_utc_days_whatever_the_offset() -> None:
    paris = timezone(timedelta(hours=1))
    same_utc_day = [(datetime(2026, 1, 10, 0, 30, tzinfo=paris), 1.0), (day(8, hour=20), 1.0)]
    # 2026-01-10 00:30 +01:00 is 2026-01-09 23:30 UTC, the same UTC day as day(8) 20:00
    summary = summarise_customer("c", same_utc_day, now=NOW)
    assert summary is not None and summary.frequency == 0


def test_last_seen_counts_other_activity() -> None:
    summaries = build_summaries(
        {"a": [(day(0), 1.0)], "b": [(NOW + timedelta(hours=1), 1.0)], "c": []},
        now=NOW,
        last_seen={"a": NOW - timedelta(days=2)},
    )
    assert [s.customer_id for s in summaries] == ["a"]  # b's only purchase is after now
    assert summaries[0].last_seen_days_ago == pytest.approx(2.0)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        summarise_customer("c", [(datetime(2026, 1, 1), 1.0)], now=NOW)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        summarise_customer("c", [], now=datetime(2026, 1, 1))  # noqa: DTZ001


# --- populations -------------------------------------------------------------------------------


def simulated_population(n: int, seed: int = 1) -> list[CustomerSummary]:
    rng = np.random.default_rng(seed)
    sim = simulate_bgnbd(rng, n, CDNOW_DAYS, t_min=189, t_max=273)
    spend = simulate_spend(rng, np.maximum(sim.x, 1.0), CDNOW_SPEND)
    return [
        CustomerSummary(
            customer_id=f"c{i}",
            frequency=float(sim.x[i]),
            recency=float(sim.tx[i]),
            T=float(sim.T[i]),
            monetary=float(spend[i]) if sim.x[i] > 0 else 0.0,
            last_seen_days_ago=float(sim.T[i] - sim.tx[i]),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def population() -> list[CustomerSummary]:
    return simulated_population(3000)


@pytest.fixture(scope="module")
def modelled(population: list[CustomerSummary]) -> ScoringResult:
    return score_population(population, now=NOW)


def assert_json_explanations(result: ScoringResult) -> None:
    for score in result.scores:
        assert score.explanation["method"] == score.method == result.method
        assert score.explanation["reason"] == result.reason
        for key in ("recency_days", "frequency", "monetary", "T_days"):
            assert key in score.explanation
        json.dumps(score.explanation, allow_nan=False)


def test_model_scores_a_large_population(modelled: ScoringResult) -> None:
    assert modelled.method == MODEL_METHOD
    assert modelled.reason.startswith("fitted on 3000 customers")
    assert modelled.models is not None
    assert len(modelled.scores) == 3000
    for score in modelled.scores:
        assert 0.0 <= score.churn_risk <= 1.0
        assert score.p_alive is not None and 0.0 <= score.p_alive <= 1.0
        assert score.expected_purchases is not None and score.expected_purchases >= 0.0
        assert score.expected_average_value is not None and score.predicted_ltv is not None
        assert score.predicted_ltv == pytest.approx(
            score.expected_purchases * score.expected_average_value
        )
        assert score.explanation["bgnbd"] == modelled.models.bgnbd.as_dict()
        assert modelled.models.gamma_gamma is not None
        assert score.explanation["gamma_gamma"] == modelled.models.gamma_gamma.as_dict()
    assert_json_explanations(modelled)


def test_churn_basis_depends_on_repeat_purchases(modelled: ScoringResult) -> None:
    """Repeat buyers: 1 - P(alive). One-time buyers (P(alive) = 1 under BG/NBD): the model's
    probability of no purchase over the horizon, which rises with time since that purchase."""
    once = [s for s in modelled.scores if s.explanation["frequency"] == 0]
    repeat = [s for s in modelled.scores if s.explanation["frequency"] > 0]
    assert once and repeat
    for s in repeat:
        assert s.p_alive is not None and s.churn_risk == pytest.approx(1 - s.p_alive)
        assert s.explanation["churn_basis"] == "1 - p_alive"
    for s in once:
        assert s.p_alive == 1.0 and 0.0 < s.churn_risk < 1.0
        assert s.explanation["churn_basis"].startswith("p_no_purchase_in_horizon")
    by_age = sorted(once, key=lambda s: s.explanation["T_days"])
    assert [s.churn_risk for s in by_age] == sorted(s.churn_risk for s in by_age)


def test_churn_risk_rises_with_time_since_last_purchase(modelled: ScoringResult) -> None:
    repeat = [s for s in modelled.scores if s.explanation["frequency"] > 0]
    rho = stats.spearmanr(
        [s.explanation["days_since_last_purchase"] for s in repeat],
        [s.churn_risk for s in repeat],
    ).statistic
    assert rho > 0.5


def test_discounting_lowers_ltv_by_at_most_a_year_of_interest(
    population: list[CustomerSummary], modelled: ScoringResult
) -> None:
    assert modelled.models is not None
    discounted = score_population(
        population, now=NOW, models=modelled.models, annual_discount_rate=0.10
    )
    for plain, disc in zip(modelled.scores, discounted.scores, strict=True):
        assert plain.predicted_ltv is not None and disc.predicted_ltv is not None
        assert plain.predicted_ltv / 1.1 * (1 - 1e-9) <= disc.predicted_ltv
        assert disc.predicted_ltv <= plain.predicted_ltv * (1 + 1e-9)
    zero = score_population(
        population[:100], now=NOW, models=modelled.models, annual_discount_rate=0.0
    )
    for plain, same in zip(modelled.scores, zero.scores, strict=False):
        assert same.predicted_ltv == pytest.approx(plain.predicted_ltv)


def test_too_few_customers_fall_back_to_inactivity(population: list[CustomerSummary]) -> None:
    result = score_population(population[:50], now=NOW, inactivity_horizon_days=60)
    assert result.method == FALLBACK_METHOD
    assert result.reason == "too few customers to fit the models: 50 < 200"
    assert result.models is None
    for summary, score in zip(population[:50], result.scores, strict=True):
        assert score.method == FALLBACK_METHOD
        assert score.p_alive is None and score.predicted_ltv is None
        assert score.churn_risk == pytest.approx(1 - math.exp(-summary.last_seen_days_ago / 60))
        assert "inactivity heuristic" in score.explanation["churn_basis"]
    assert_json_explanations(result)


def test_too_few_repeat_buyers_fall_back(population: list[CustomerSummary]) -> None:
    few = [s for s in population if s.frequency == 0][:300] + [
        s for s in population if s.frequency > 0
    ][:10]
    result = score_population(few, now=NOW)
    assert result.method == FALLBACK_METHOD
    assert result.reason == "too few repeat buyers to fit the models: 10 < 30"


def test_a_degenerate_gamma_gamma_falls_back_to_mean_spend_and_says_why(
    population: list[CustomerSummary],
) -> None:
    """Every repeat buyer spending the same: Gamma-Gamma cannot be fitted; LTV is then the
    customer's mean spend per purchase × BG/NBD's expected purchases, not null."""
    same_spend = [
        replace(s, monetary=25.0 if s.frequency else 0.0, total_value=25.0 * (s.frequency + 1))
        for s in population[:400]
    ]
    result = score_population(same_spend, now=NOW)
    assert result.method == MEAN_SPEND_METHOD
    assert "Gamma-Gamma could not be fitted (gamma_gamma:" in result.reason
    assert result.models is not None and result.models.gamma_gamma is None
    for score in result.scores:
        assert score.method == MEAN_SPEND_METHOD
        assert score.predicted_ltv is not None and score.expected_purchases is not None
        assert score.predicted_ltv == pytest.approx(25.0 * score.expected_purchases)
        assert "mean spend" in score.explanation["spend_basis"]
    assert_json_explanations(result)


def test_a_failed_bgnbd_fit_falls_back_to_inactivity_and_says_why(
    population: list[CustomerSummary],
) -> None:
    """Nobody ever buys twice: BG/NBD cannot be fitted, no LTV at all."""
    once = [replace(s, frequency=0.0, recency=0.0, monetary=0.0) for s in population[:400]]
    result = score_population(once, now=NOW, min_repeaters=0)
    assert result.method == FALLBACK_METHOD
    assert result.reason.startswith("model fit failed (bgnbd:")
    assert all(s.predicted_ltv is None for s in result.scores)


def test_thresholds_are_parameters(population: list[CustomerSummary]) -> None:
    result = score_population(population[:150], now=NOW, min_customers=100, min_repeaters=20)
    assert result.method == MODEL_METHOD


def test_invalid_arguments(population: list[CustomerSummary]) -> None:
    with pytest.raises(ValueError, match="unique"):
        score_population([population[0], population[0]], now=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        score_population(population[:5], now=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="horizon_days"):
        score_population(population[:5], now=NOW, horizon_days=0)


def test_empty_population() -> None:
    result = score_population([], now=NOW)
    assert result.method == FALLBACK_METHOD and result.scores == ()


# --- properties --------------------------------------------------------------------------------


@st.composite
def summaries(draw: st.DrawFn) -> list[CustomerSummary]:
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        x = draw(st.integers(0, 200))
        T = draw(st.floats(0, 3000))
        recency = draw(st.floats(0, 1)) * T if x > 0 else 0.0
        out.append(
            CustomerSummary(
                customer_id=f"c{i}",
                frequency=float(x),
                recency=recency,
                T=T,
                monetary=draw(st.floats(0, 1e4)) if x > 0 else 0.0,
                last_seen_days_ago=T - recency,
            )
        )
    return out


models_strategy = st.builds(
    FittedModels,
    bgnbd=st.builds(
        BgNbdParams,
        r=st.floats(0.01, 20),
        alpha=st.floats(0.1, 1000),
        a=st.floats(0.05, 20),
        b=st.floats(0.05, 50),
    ),
    gamma_gamma=st.builds(
        GammaGammaParams, p=st.floats(0.1, 50), q=st.floats(1.01, 50), v=st.floats(0.01, 1e4)
    ),
)


@settings(max_examples=60, deadline=None)
@given(summaries(), models_strategy, st.floats(1, 3650))
def test_churn_risk_is_a_probability_under_the_model(
    population: list[CustomerSummary], models: FittedModels, horizon: float
) -> None:
    result = score_population(population, now=NOW, models=models, horizon_days=horizon)
    assert result.method == MODEL_METHOD
    for score in result.scores:
        assert 0.0 <= score.churn_risk <= 1.0
        assert score.predicted_ltv is not None and score.predicted_ltv >= 0.0
        json.dumps(score.explanation, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(summaries(), st.floats(1, 1000))
def test_churn_risk_is_a_probability_under_the_fallback(
    population: list[CustomerSummary], horizon: float
) -> None:
    result = score_population(population, now=NOW, inactivity_horizon_days=horizon)
    assert result.method == FALLBACK_METHOD
    risks = [s.churn_risk for s in result.scores]
    assert all(0.0 <= r <= 1.0 for r in risks)
    days = [s.last_seen_days_ago for s in population]
    assert [r for _, r in sorted(zip(days, risks, strict=True))] == sorted(risks)
