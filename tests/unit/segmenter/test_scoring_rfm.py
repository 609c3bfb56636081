"""RFM quintile scores from mid-ranks, and the tier mapping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.scoring import quintile_scores, rfm_scores, rfm_tier


def test_five_distinct_values_score_one_to_five() -> None:
    assert quintile_scores([30.0, 10.0, 50.0, 20.0, 40.0]).tolist() == [3, 1, 5, 2, 4]


def test_small_populations_and_ties_sit_in_the_middle() -> None:
    assert quintile_scores([7.0]).tolist() == [3]
    assert quintile_scores([4.0, 4.0, 4.0]).tolist() == [3, 3, 3]
    assert quintile_scores([1.0, 2.0]).tolist() == [2, 4]
    assert quintile_scores([]).tolist() == []


def test_a_large_tie_shares_one_score() -> None:
    """60% one-time buyers (frequency 0) all get the score of their mid-rank (30th percentile)."""
    values = [0.0] * 60 + list(range(1, 41))
    scores = quintile_scores(values)
    assert set(scores[:60].tolist()) == {2}
    assert scores[60:].min() >= 4


def test_each_score_holds_a_fifth_of_distinct_values() -> None:
    scores = quintile_scores(np.random.default_rng(1).normal(size=1000))
    assert np.bincount(scores, minlength=6)[1:].tolist() == [200] * 5


def test_recency_scores_fewer_days_higher() -> None:
    scores = rfm_scores([1.0, 400.0, 30.0, 90.0, 200.0], [1, 1, 1, 1, 1], [10, 10, 10, 10, 10])
    assert [s.recency for s in scores] == [5, 1, 4, 3, 2]
    assert {s.frequency for s in scores} == {3}


def test_non_finite_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        quintile_scores([1.0, float("nan")])
    with pytest.raises(ValueError, match="same length"):
        rfm_scores([1.0], [1.0, 2.0], [1.0])


@pytest.mark.parametrize(
    ("r", "f", "m", "tier"),
    [
        (5, 5, 5, "champions"),
        (4, 4, 3, "champions"),
        (4, 4, 2, "loyal"),
        (3, 5, 1, "loyal"),
        (5, 2, 5, "new"),
        (4, 1, 1, "new"),
        (3, 2, 5, "needs_attention"),
        (2, 5, 5, "at_risk"),
        (1, 3, 1, "at_risk"),
        (2, 2, 4, "hibernating"),
        (1, 1, 5, "lost"),
    ],
)
def test_tier_mapping(r: int, f: int, m: int, tier: str) -> None:
    assert rfm_tier(r, f, m) == tier


def test_tier_rejects_scores_out_of_range() -> None:
    with pytest.raises(ValueError, match="1..5"):
        rfm_tier(0, 3, 3)


def test_every_score_combination_has_a_tier() -> None:
    tiers = {rfm_tier(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert tiers == {
        "champions",
        "loyal",
        "new",
        "needs_attention",
        "at_risk",
        "hibernating",
        "lost",
    }


values = st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=300)


@settings(max_examples=100, deadline=None)
@given(values)
def test_scores_are_one_to_five_and_monotone_in_the_value(data: list[float]) -> None:
    arr = np.array(data)
    scores = quintile_scores(arr)
    assert scores.min() >= 1 and scores.max() <= 5
    order = np.argsort(arr, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0)  # never lower for a higher value
    for value in np.unique(arr):
        assert len(set(scores[arr == value].tolist())) == 1  # ties score alike


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5000), st.integers(0, 300), st.floats(0, 1e5)), min_size=1))
def test_rfm_scores_are_in_range_with_a_tier(rows: list[tuple[float, int, float]]) -> None:
    days, freq, money = zip(*rows, strict=True)
    for score in rfm_scores(days, freq, money):
        assert {score.recency, score.frequency, score.monetary} <= {1, 2, 3, 4, 5}
        assert score.tier == rfm_tier(score.recency, score.frequency, score.monetary)
