"""The churn model on a simulated customer base whose future is known.

The model is trained on the history before ``now`` (labels as of H days ago, built from
that history); it is then judged against what the simulated customers actually do over
the H days *after* ``now``, which the code under test never sees.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from services.segmenter.scoring.churn import (
    BASELINE,
    CANDIDATES,
    HEURISTIC,
    ChurnDefinition,
    ChurnFit,
    Snapshot,
    bgnbd_quantities,
    boosted_depth,
    fit_churn,
)
from services.segmenter.scoring.evaluation import DECILES, roc_auc, stratified_folds
from tests.unit.segmenter.churn_sim import Population, churned_truth, simulate, snapshot

H = 90
NOW = 720  # the boundary after "today"
DEFINITION = ChurnDefinition("Order Completed", H)
#: calibration tolerance: over ten equal-count bins of predicted risk, the observed churn
#: rate of every bin is within twice this (0.12) of the bin's mean predicted risk, and the
#: mean gap over the bins within half of it (0.03); the model is trained on labels as of
#: H days ago and judged on the H days after now
CALIBRATION_TOLERANCE = 0.06
Fitted = tuple[ChurnFit, Snapshot, np.ndarray]


@pytest.fixture(scope="module")
def population() -> Population:
    return simulate(12_000, end_day=NOW + H, seed=3)


@pytest.fixture(scope="module")
def fitted(population: Population) -> Fitted:
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    current, who = snapshot(population, NOW, H, labelled=False)
    return fit_churn(training, current, DEFINITION, seed=0), current, who


def test_the_chosen_score_ranks_at_least_as_well_as_recency_and_is_calibrated(
    population: Population, fitted: Fitted
) -> None:
    fit, current, who = fitted
    truth = churned_truth(population, NOW, H)[who]  # what they do after now
    assert 0.2 < truth.mean() < 0.9  # both outcomes are common

    recency = -np.where(current.never, 1e6, current.days_since_event)  # fewer days = safer
    auc_recency = roc_auc_score(truth, -recency)
    auc_model = roc_auc_score(truth, fit.risk)
    assert fit.method in CANDIDATES
    assert auc_model >= auc_recency, (auc_model, auc_recency, fit.report())
    assert fit.risk.size == len(current)

    bins = np.array_split(np.argsort(fit.risk), 10)
    gaps = [abs(fit.risk[b].mean() - truth[b].mean()) for b in bins]
    assert max(gaps) <= 2 * CALIBRATION_TOLERANCE, gaps
    assert float(np.mean(gaps)) <= CALIBRATION_TOLERANCE / 2, gaps
    assert abs(fit.risk.mean() - truth.mean()) <= 0.03


def test_the_backtest_reports_every_candidate_and_replaces_recency_only_beyond_the_spread(
    fitted: Fitted,
) -> None:
    fit, _, _ = fitted
    report = fit.report()
    assert report["definition"] == "no 'Order Completed' within 90 days"
    assert report["folds"] == len(report["candidates"][0]["fold_aucs"]) >= 3
    names = [c["name"] for c in report["candidates"]]
    assert names == list(CANDIDATES)
    for candidate in report["candidates"]:
        assert candidate["note"] is None
        assert 0.5 < candidate["auc"] <= 1.0
        assert 0.0 < candidate["auc_sd"] < 0.05
        assert candidate["auc"] == pytest.approx(np.mean(candidate["fold_aucs"]), abs=1e-3)
        assert 0.0 < candidate["brier"] < 0.25
        assert candidate["train_customers"] > 2 * candidate["test_customers"] > 0
        assert 0 < candidate["test_churners"] < candidate["test_customers"]
    by_name = {c["name"]: c for c in report["candidates"]}
    base, chosen = by_name[BASELINE], by_name[fit.method]
    if fit.method == BASELINE:
        assert "recency kept" in fit.reason
    else:
        # a challenger wins only by more than the spread of the AUCs over the folds
        assert chosen["auc"] - base["auc"] > max(chosen["auc_sd"], base["auc_sd"])
        assert fit.reason.startswith(f"{fit.method} replaces recency")
        assert chosen["auc"] == max(c["auc"] for c in report["candidates"])


def test_the_winner_is_calibrated_per_decile_and_fitted_per_rfm_tier(
    fitted: Fitted,
) -> None:
    fit, _, _ = fitted
    report = fit.report()
    deciles = report["calibration"]
    assert [d["decile"] for d in deciles] == list(range(1, DECILES + 1))
    sizes = report["candidates"][0]
    customers = sum(d["customers"] for d in deciles)  # every training customer, once
    assert abs(customers - sizes["train_customers"] - sizes["test_customers"]) <= 1
    means = [d["mean_risk"] for d in deciles]
    assert means == sorted(means)
    for d in deciles:  # out of fold: predicted against observed, decile by decile
        assert abs(d["mean_risk"] - d["observed"]) <= 2 * CALIBRATION_TOLERANCE, d
    tiers = {t["tier"]: t for t in report["tiers"]}
    assert "never" in tiers and "champions" in tiers
    assert sum(t["customers"] for t in tiers.values()) == sum(d["customers"] for d in deciles)
    for tier in tiers.values():
        both = 0 < tier["churners"] < tier["customers"]
        assert (tier["auc"] is not None) == both, tier
        if both:
            assert 0.0 <= tier["auc"] <= 1.0 and tier["recency_auc"] is not None


def test_scores_are_the_same_for_a_customer_across_identical_runs_in_any_row_order(
    population: Population, fitted: Fitted
) -> None:
    fit, current, _ = fitted
    small = simulate(400, end_day=NOW + H, seed=11)
    training, _ = snapshot(small, NOW - H, H, labelled=True)
    now, _ = snapshot(small, NOW, H, labelled=False)
    first = fit_churn(training, now, DEFINITION, min_customers=100)
    assert first.method != HEURISTIC
    shuffle = np.random.default_rng(1)
    again = fit_churn(
        training.take(shuffle.permutation(len(training))),
        now.take(order := shuffle.permutation(len(now))),
        DEFINITION,
        min_customers=100,
    )
    assert again.method == first.method and again.report() == first.report()
    risk_first = dict(zip(now.customer_ids, first.risk.tolist(), strict=True))
    risk_again = dict(zip([now.customer_ids[i] for i in order], again.risk.tolist(), strict=True))
    assert risk_again == risk_first


def test_a_base_where_bgnbd_cannot_fit_still_refits_and_scores(population: Population) -> None:
    """Nobody has bought twice: BG/NBD cannot be fitted; its candidate says so and the
    others (the boosted trees without BG/NBD's columns) still compete and score."""
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    current, _ = snapshot(population, NOW, H, labelled=False)

    def once(s: Snapshot) -> Snapshot:
        return replace(
            s, occasions=np.minimum(s.occasions, 1.0), first_to_last_event=np.zeros(len(s))
        )

    training, current = once(training).take(np.arange(3000)), once(current)
    assert bgnbd_quantities(training, H).params is None
    for _ in range(2):  # twice in a row: the failure leaves nothing behind
        fit = fit_churn(training, current, DEFINITION)
        by_name = {c.name: c for c in fit.candidates}
        assert by_name["bgnbd"].auc is None and "BG/NBD" in (by_name["bgnbd"].note or "")
        assert by_name["boosted"].auc is not None and by_name["logistic"].auc is not None
        assert fit.method in CANDIDATES and fit.method != "bgnbd"
        assert np.all((fit.risk >= 0) & (fit.risk <= 1)) and fit.risk.size == len(current)


def test_a_candidate_that_raises_is_reported_and_the_others_compete(
    population: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.segmenter.scoring import churn

    real = churn._classifier

    def broken(name, seed, rows):  # type: ignore[no-untyped-def]
        if name == "boosted":
            raise ValueError("window shape cannot be larger than input array shape")
        return real(name, seed, rows)

    monkeypatch.setattr(churn, "_classifier", broken)
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    current, _ = snapshot(population, NOW, H, labelled=False)
    fit = fit_churn(training.take(np.arange(2000)), current, DEFINITION)
    boosted = next(c for c in fit.candidates if c.name == "boosted")
    assert boosted.auc is None and "window shape" in (boosted.note or "")
    assert fit.method in ("recency", "bgnbd", "logistic")


def test_the_comparison_is_bounded_and_the_winner_trained_on_everybody(
    population: Population,
) -> None:
    training, _ = snapshot(population, NOW - H, H, labelled=True)
    current, _ = snapshot(population, NOW, H, labelled=False)
    fit = fit_churn(training.take(np.arange(6000)), current, DEFINITION, cv_max_rows=2000)
    sizes = fit.candidates[0]
    assert sizes.train_customers + sizes.test_customers == 2000
    assert sum(d["customers"] for d in fit.calibration) == 2000
    assert "trained on 6000 customers" in fit.reason
    assert fit.risk.size == len(current)


def test_auc_and_folds() -> None:
    y = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    assert np.isnan(roc_auc(np.zeros(3, dtype=bool), np.arange(3.0)))
    labels = np.arange(100) % 4 == 0
    fold = stratified_folds(labels, 5, seed=0)
    for k in range(5):
        assert labels[fold == k].sum() == 5 and (fold == k).sum() == 20
    assert np.array_equal(fold, stratified_folds(labels, 5, seed=0))
    assert [boosted_depth(n) for n in (500, 5_000, 500_000)] == [2, 3, 4]


def test_importing_the_service_does_not_import_scikit_learn() -> None:
    """scikit-learn takes seconds to import: only a refit needs it."""
    code = "import sys, services.segmenter.app; print('sklearn' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip() == "False", found.stderr


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
