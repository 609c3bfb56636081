"""The learned churn model on a simulated customer base whose future is known.

The model is trained on the history before ``now`` (labels as of H days ago, built from
that history); it is then judged against what the simulated customers actually do over
the H days *after* ``now``, which the code under test never sees.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from services.segmenter.scoring.churn import (
    CANDIDATES,
    HEURISTIC,
    ChurnDefinition,
    fit_churn,
)
from tests.unit.segmenter.churn_sim import Population, churned_truth, simulate, snapshot

H = 90
NOW = 720  # the boundary after "today"
DEFINITION = ChurnDefinition("Order Completed", H)
#: calibration tolerance: over ten equal-count bins of predicted risk, the observed churn
#: rate of every bin is within twice this (0.12) of the bin's mean predicted risk, and the
#: mean gap over the bins within half of it (0.03); the model is trained on labels as of
#: H days ago and judged on the H days after now
CALIBRATION_TOLERANCE = 0.06


@pytest.fixture(scope="module")
def population() -> Population:
    return simulate(12_000, end_day=NOW + H, seed=3)


def _fit(population: Population):  # type: ignore[no-untyped-def]
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    current, who = snapshot(population, NOW, H, labelled=False)
    return fit_churn(training, current, DEFINITION, seed=0), current, who


def test_the_learned_model_ranks_at_least_as_well_as_recency_and_is_calibrated(
    population: Population,
) -> None:
    fit, current, who = _fit(population)
    truth = churned_truth(population, NOW, H)[who]  # what they do after now
    assert 0.2 < truth.mean() < 0.9  # both outcomes are common

    recency = -np.where(current.never, 1e6, current.days_since_event)  # fewer days = safer
    auc_recency = roc_auc_score(truth, -recency)
    auc_model = roc_auc_score(truth, fit.risk)
    assert fit.method in CANDIDATES
    assert auc_model >= auc_recency, (auc_model, auc_recency, fit.report())

    bins = np.array_split(np.argsort(fit.risk), 10)
    gaps = [abs(fit.risk[b].mean() - truth[b].mean()) for b in bins]
    assert max(gaps) <= 2 * CALIBRATION_TOLERANCE, gaps
    assert float(np.mean(gaps)) <= CALIBRATION_TOLERANCE / 2, gaps
    assert abs(fit.risk.mean() - truth.mean()) <= 0.03


def test_the_backtest_reports_every_candidate_and_uses_the_best(population: Population) -> None:
    fit, _, _ = _fit(population)
    report = fit.report()
    assert report["definition"] == "no 'Order Completed' within 90 days"
    names = [c["name"] for c in report["candidates"]]
    assert names == list(CANDIDATES)
    for candidate in report["candidates"]:
        assert 0.5 < candidate["auc"] <= 1.0
        assert 0.0 < candidate["brier"] < 0.25
        assert candidate["train_customers"] > 2 * candidate["test_customers"] > 0
        assert 0 < candidate["test_churners"] < candidate["test_customers"]
    best = max(report["candidates"], key=lambda c: c["auc"])
    assert fit.method == best["name"]
    assert fit.method in fit.reason


def test_too_little_history_uses_the_recency_heuristic_and_says_so(
    population: Population,
) -> None:
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    few = training.take(np.arange(150))
    current, _ = snapshot(population, NOW, H, labelled=False)
    fit = fit_churn(few, current, DEFINITION)
    assert fit.method == HEURISTIC
    assert "too little history" in fit.reason
    days = np.where(current.never, current.tenure, current.days_since_event)
    assert np.allclose(fit.risk, 1 - np.exp(-days / H))
    assert fit.candidates == ()


def test_a_history_without_a_single_stayer_uses_the_heuristic(population: Population) -> None:
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    assert training.churned is not None
    all_churned = training.take(np.flatnonzero(training.churned))
    current, _ = snapshot(population, NOW, H, labelled=False)
    fit = fit_churn(all_churned, current, DEFINITION)
    assert fit.method == HEURISTIC
    assert "0 stayed" in fit.reason


def test_no_customers_at_all_is_the_heuristic_over_nobody(population: Population) -> None:
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    nobody = training.take(np.arange(0))
    fit = fit_churn(nobody, nobody, DEFINITION)
    assert (fit.method, fit.risk.size) == (HEURISTIC, 0)
    assert "0 customers" in fit.reason
