"""RFM scores that hold on ties (quintiles over distinct values, fixed frequency
thresholds), and the tier mapping, on a skewed population where most bought once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.scoring import frequency_scores, quintile_scores, rfm_scores, rfm_tier


def test_five_distinct_values_score_one_to_five() -> None:
    assert quintile_scores([30.0, 10.0, 50.0, 20.0, 40.0]).tolist() == [3, 1, 5, 2, 4]


def test_small_populations_and_ties_sit_in_the_middle() -> None:
    assert quintile_scores([7.0]).tolist() == [3]
    assert quintile_scores([4.0, 4.0, 4.0]).tolist() == [3, 3, 3]
    assert quintile_scores([1.0, 2.0]).tolist() == [2, 4]
    assert quintile_scores([]).tolist() == []


def test_a_large_tie_is_one_score_and_leaves_no_hole_in_the_scale() -> None:
    """60 % of the customers at one value all share its score; the five scores still all
    occur, spread over the distinct values."""
    values = [0.0] * 60 + list(range(1, 41))
    scores = quintile_scores(values)
    assert set(scores[:60].tolist()) == {1}
    assert set(scores.tolist()) == {1, 2, 3, 4, 5}
    monetary = [9.99] * 600 + [19.99] * 200 + [29.99] * 100 + [49.0] * 60 + [99.0] * 40
    by_value = dict(zip(monetary, quintile_scores(monetary).tolist(), strict=True))
    assert by_value == {9.99: 1, 19.99: 2, 29.99: 3, 49.0: 4, 99.0: 5}


@pytest.mark.parametrize(
    ("repeats", "score"),
    [(0, 1), (1, 2), (2, 3), (3, 4), (4, 4), (5, 4), (6, 5), (40, 5)],
)
def test_frequency_scores_follow_fixed_thresholds(repeats: int, score: int) -> None:
    assert frequency_scores([repeats]).tolist() == [score]
    assert frequency_scores([0] * 99 + [repeats]).tolist()[-1] == score  # whoever else


def _skewed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most bought once: 60 % no repeat, 20 % one, 10 % two, 7 % three to five, 3 % more;
    prices on a few price points, recency in days."""
    rng = np.random.default_rng(seed)
    repeats = rng.choice(
        [0, 1, 2, 3, 4, 5, 6, 9, 15], n, p=[0.6, 0.2, 0.1, 0.03, 0.02, 0.02, 0.01, 0.01, 0.01]
    ).astype(float)
    price = rng.choice(
        [9.99, 19.99, 24.99, 49.0, 99.0, 249.0], n, p=[0.5, 0.2, 0.1, 0.1, 0.07, 0.03]
    )
    days = rng.exponential(120.0, n)
    return days, repeats, price


def test_tiers_on_a_skewed_population_where_most_bought_once() -> None:
    days, repeats, price = _skewed(10_000, seed=4)
    scores = rfm_scores(days, repeats, price)
    f = np.array([s.frequency for s in scores])
    tiers = np.array([s.tier for s in scores])
    assert set(f.tolist()) == {1, 2, 3, 4, 5}  # no score is empty, none doubles up
    assert set(f[repeats == 0].tolist()) == {1} and set(f[repeats == 1].tolist()) == {2}
    # one-time and single-repeat buyers are never champions, loyal or at risk
    few = repeats <= 1
    assert set(tiers[few].tolist()) <= {"new", "needs_attention", "hibernating", "lost"}
    champions = tiers == "champions"
    assert champions.any() and repeats[champions].min() >= 3
    assert champions.mean() < 0.1  # not a quarter of everybody
    assert set(tiers[(repeats >= 2) & (tiers != "champions")].tolist()) >= {"loyal", "at_risk"}
    m = np.array([s.monetary for s in scores])
    assert set(m.tolist()) == {1, 2, 3, 4, 5}
    for value in np.unique(price):
        assert len(set(m[price == value].tolist())) == 1  # one price, one score


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 2.5, 2.5, 7.0, 100.0]), min_size=1, max_size=60))
def test_ties_get_equal_scores_and_scores_grow_with_the_value(values: list[float]) -> None:
    scores = quintile_scores(values).tolist()
    pairs = sorted(zip(values, scores, strict=True))
    for (v1, s1), (v2, s2) in zip(pairs, pairs[1:], strict=False):
        assert s1 <= s2 and (v1 != v2 or s1 == s2)
    if len(set(values)) >= 5:
        assert set(scores) == {1, 2, 3, 4, 5}


def test_each_score_holds_a_fifth_of_distinct_values() -> None:
    scores = quintile_scores(np.random.default_rng(1).normal(size=1000))
    assert np.bincount(scores, minlength=6)[1:].tolist() == [200] * 5


def test_recency_scores_fewer_days_higher() -> None:
    scores = rfm_scores([1.0, 400.0, 30.0, 90.0, 200.0], [1, 1, 1, 1, 1], [10, 10, 10, 10, 10])
    assert [s.recency for s in scores] == [5, 1, 4, 3, 2]
    assert {s.frequency for s in scores} == {2}  # one repeat each


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
