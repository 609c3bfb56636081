"""The experiment statistics against statsmodels / scipy, and the sequential test's
false-positive rate under daily peeking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from services.metrics.experiments import plan_experiment
from services.metrics.stats import (
    Arm,
    Policy,
    Verdict,
    _msprt_arrays,
    decide,
    fixed_horizon_per_arm,
    msprt,
    plan,
    probability_to_beat,
    tau_for_effect,
    two_proportion_ztest,
    wilson_interval,
)

counts = st.integers(min_value=1, max_value=100_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)


@given(counts, st.sampled_from([0.01, 0.05, 0.1]))
def test_wilson_matches_statsmodels(count: tuple[int, int], alpha: float) -> None:
    x, n = count
    low, high = wilson_interval(x, n, alpha=alpha)
    ref_low, ref_high = proportion_confint(x, n, alpha=alpha, method="wilson")
    assert low == pytest.approx(ref_low, abs=1e-9)
    assert high == pytest.approx(ref_high, abs=1e-9)
    assert 0 <= low <= x / n <= high <= 1


@given(counts, counts)
def test_ztest_matches_statsmodels(a: tuple[int, int], b: tuple[int, int]) -> None:
    (xc, nc), (xt, nt) = a, b
    z, p = two_proportion_ztest(xc, nc, xt, nt)
    if (xc + xt) in (0, nc + nt):
        assert (z, p) == (0.0, 1.0)
        return
    ref_z, ref_p = proportions_ztest([xt, xc], [nt, nc])
    assert z == pytest.approx(ref_z, rel=1e-9, abs=1e-9)
    assert p == pytest.approx(ref_p, rel=1e-7, abs=1e-12)


def _exact_beat(xc: int, nc: int, xt: int, nt: int) -> float:
    """Evan Miller's closed form of P(B > A) for Beta posteriors with integer parameters."""
    from scipy.special import betaln

    a_a, b_a = 1 + xc, 1 + nc - xc
    a_b, b_b = 1 + xt, 1 + nt - xt
    total = 0.0
    for i in range(a_b):
        total += math.exp(
            betaln(a_a + i, b_a + b_b) - math.log(b_b + i) - betaln(1 + i, b_b) - betaln(a_a, b_a)
        )
    return total


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=400).flatmap(
        lambda n: st.tuples(st.integers(0, min(n, 60)), st.just(n))
    ),
    st.integers(min_value=1, max_value=400).flatmap(
        lambda n: st.tuples(st.integers(0, min(n, 60)), st.just(n))
    ),
)
def test_probability_to_beat_matches_closed_form(a: tuple[int, int], b: tuple[int, int]) -> None:
    (xc, nc), (xt, nt) = a, b
    assert probability_to_beat(xc, nc, xt, nt) == pytest.approx(
        _exact_beat(xc, nc, xt, nt), abs=1e-6
    )


def test_probability_to_beat_large_samples_against_monte_carlo() -> None:
    rng = np.random.default_rng(7)
    xc, nc, xt, nt = 4_120 * 9 // 100, 4_120, 452, 4_088
    draws_c = rng.beta(1 + xc, 1 + nc - xc, 400_000)
    draws_t = rng.beta(1 + xt, 1 + nt - xt, 400_000)
    assert probability_to_beat(xc, nc, xt, nt) == pytest.approx(
        float(np.mean(draws_t > draws_c)), abs=0.003
    )


def test_msprt_grows_with_evidence_and_is_one_without_it() -> None:
    same = msprt(100, 1_000, 100, 1_000, tau=0.02)
    assert same.likelihood_ratio < 1 and same.p_value == 1.0
    assert same.ci_low < 0 < same.ci_high
    strong = msprt(1_000, 10_000, 1_300, 10_000, tau=0.02)
    assert strong.p_value < 1e-6
    assert strong.ci_low > 0


@given(counts, counts, st.sampled_from([0.01, 0.02, 0.05]))
def test_msprt_interval_excludes_zero_exactly_when_rejecting(
    a: tuple[int, int], b: tuple[int, int], tau: float
) -> None:
    """The confidence sequence and the test are one: 0 lies outside the interval
    exactly when the likelihood ratio passes 1/alpha."""
    (xc, nc), (xt, nt) = a, b
    result = msprt(xc, nc, xt, nt, tau=tau, alpha=0.05)
    rejects = result.likelihood_ratio >= 1 / 0.05
    excludes = result.ci_low > 0 or result.ci_high < 0
    if not math.isclose(result.likelihood_ratio, 20.0, rel_tol=1e-6):
        assert rejects == excludes


def _daily_peeks(
    rng: np.random.Generator, p_c: float, p_t: float, runs: int, days: int, per_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xc = rng.binomial(per_day, p_c, size=(runs, days)).cumsum(axis=1).astype(float)
    xt = rng.binomial(per_day, p_t, size=(runs, days)).cumsum(axis=1).astype(float)
    n = (np.arange(1, days + 1) * per_day).astype(float)
    return xc, np.broadcast_to(n, xc.shape), xt, np.broadcast_to(n, xt.shape)


def test_aa_false_positive_rate_stays_under_alpha_with_daily_peeking() -> None:
    """2,000 A/A experiments looked at every day for 60 days: the sequential test
    declares a difference in at most 5 % of them; the fixed-horizon z-test, peeked at
    the same way, in far more (what the sequential test is for)."""
    rng = np.random.default_rng(20261202)
    runs, days, per_day = 2_000, 60, 150
    xc, nc, xt, nt = _daily_peeks(rng, 0.08, 0.08, runs, days, per_day)
    policy = Policy()
    ratio, _, _ = _msprt_arrays(xc, nc, xt, nt, tau=policy.tau, alpha=policy.alpha)
    enough = nc >= policy.min_exposed
    sequential_fpr = float(np.mean(np.any((ratio >= 1 / policy.alpha) & enough, axis=1)))
    pooled = (xc + xt) / (nc + nt)
    z = (xt / nt - xc / nc) / np.sqrt(pooled * (1 - pooled) * (1 / nc + 1 / nt))
    naive_fpr = float(np.mean(np.any((np.abs(z) >= 1.959964) & enough, axis=1)))
    assert sequential_fpr <= 0.05
    assert naive_fpr > 0.15


def test_sequential_test_finds_a_real_effect() -> None:
    rng = np.random.default_rng(11)
    xc, nc, xt, nt = _daily_peeks(rng, 0.08, 0.11, 500, 60, 150)
    policy = Policy()
    ratio, _, _ = _msprt_arrays(xc, nc, xt, nt, tau=policy.tau, alpha=policy.alpha)
    assert float(np.mean(np.any(ratio >= 1 / policy.alpha, axis=1))) > 0.9


def test_decide_below_minimum_sample_is_no_winner_yet() -> None:
    decision = decide([Arm("a", 50, 5), Arm("b", 50, 25)], control="a")
    assert decision.verdict is Verdict.NO_WINNER_YET
    assert "minimum sample" in decision.reason


def test_decide_winner_with_numbers() -> None:
    decision = decide(
        [Arm("a", 4_120, 371), Arm("b", 4_088, 452)], control="a", policy=Policy(tau=0.02)
    )
    b = next(r for r in decision.arms if r.variant == "b")
    assert b.z_p_value is not None and b.z_p_value < 0.01
    assert b.probability_to_beat_control is not None and b.probability_to_beat_control > 0.99
    assert decision.verdict is Verdict.WINNER and decision.winner == "b"
    assert decision.p_value <= 0.05


def test_decide_control_wins_when_every_variant_is_worse() -> None:
    decision = decide([Arm("a", 5_000, 600), Arm("b", 5_000, 400)], control="a")
    assert (decision.verdict, decision.winner) == (Verdict.WINNER, "a")


def test_decide_no_difference_when_the_interval_is_narrow() -> None:
    decision = decide([Arm("a", 200_000, 20_000), Arm("b", 200_000, 20_050)], control="a")
    assert decision.verdict is Verdict.NO_DIFFERENCE


def test_guardrail_blocks_a_winner() -> None:
    decision = decide(
        [
            Arm("a", 4_000, 300, sent=4_000, unsubscribed=10),
            Arm("b", 4_000, 480, sent=4_000, unsubscribed=80),
        ],
        control="a",
    )
    assert decision.verdict is Verdict.NO_WINNER_YET
    b = next(r for r in decision.arms if r.variant == "b")
    assert b.guardrail_breached == ["unsubscribe_rate"]
    assert "guardrail" in decision.reason


def test_running_minimum_keeps_an_earlier_rejection() -> None:
    decision = decide(
        [Arm("a", 1_000, 100), Arm("b", 1_000, 104)], control="a", previous_p_values={"b": 0.001}
    )
    b = next(r for r in decision.arms if r.variant == "b")
    assert b.sequential_p_value == 0.001
    assert decision.verdict is Verdict.WINNER


def test_unknown_control_is_an_error() -> None:
    with pytest.raises(ValueError, match="control"):
        decide([Arm("a", 1, 0)], control="z")


def test_tau_from_the_mde_keeps_false_positives_under_alpha_and_decides_in_time() -> None:
    """The marketer's MDE (+10 % on 5 %), τ chosen from it, 500 users per arm per day,
    looked at daily: under A/A at most 5 % false positives; under the MDE the median
    decision comes no later than 1.2 × the fixed-horizon test's sample at 80 % power,
    and the plan's median (its own simulation, continuous looks) is within 15 % of it."""
    rng = np.random.default_rng(20261207)
    baseline, mde, per_day, days = 0.05, 0.10, 500, 150
    found = plan(baseline, mde)
    assert found.tau == pytest.approx(tau_for_effect(baseline * mde)) == pytest.approx(0.005)
    fixed_days = found.fixed_horizon_per_arm / per_day
    assert 60 < fixed_days < 65  # the textbook figure: 31,231 users per arm

    def decided_day(p_treatment: float, runs: int) -> np.ndarray:
        xc, nc, xt, nt = _daily_peeks(rng, baseline, p_treatment, runs, days, per_day)
        ratio, _, _ = _msprt_arrays(xc, nc, xt, nt, tau=found.tau, alpha=0.05)
        crossed = ratio >= 1 / 0.05
        return np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, np.inf)

    false_positive = float(np.mean(np.isfinite(decided_day(baseline, 2_000))))
    assert false_positive <= 0.05
    median_day = float(np.median(decided_day(baseline * (1 + mde), 2_000)))
    assert median_day <= 1.2 * fixed_days, (median_day, fixed_days)
    assert found.sequential_median_per_arm is not None
    assert abs(found.sequential_median_per_arm / per_day - median_day) <= 0.15 * median_day


def test_the_default_tau_is_slower_for_a_small_effect_than_tau_from_the_mde() -> None:
    """The issue's numbers: τ = 0.02 against a 0.005 effect decides later than τ = 0.005."""
    from services.metrics.stats import sequential_per_arm

    slow, _ = sequential_per_arm(0.05, 0.005, tau=0.02)
    tuned, _ = sequential_per_arm(0.05, 0.005, tau=tau_for_effect(0.005))
    assert slow is not None and tuned is not None and tuned < slow


def test_a_plan_counts_the_users_already_exposed_and_is_deterministic() -> None:
    first = plan(0.05, 0.1, exposed_per_arm=10_000)
    assert first == plan(0.05, 0.1, exposed_per_arm=10_000)
    assert first.sequential_median_per_arm is not None and first.more_per_arm is not None
    assert first.more_per_arm == first.sequential_median_per_arm - 10_000
    assert first.sequential_p80_per_arm is not None
    assert first.sequential_p80_per_arm > first.sequential_median_per_arm
    assert plan(0.05, 0.1, exposed_per_arm=10**9).more_per_arm == 0
    assert fixed_horizon_per_arm(0.05, 0.005) == first.fixed_horizon_per_arm
    bigger = plan(0.05, 0.2)  # a larger effect needs fewer users
    assert bigger.fixed_horizon_per_arm < first.fixed_horizon_per_arm
    for bad in ((0.0, 0.1), (0.5, 1.5), (0.05, -0.1)):
        with pytest.raises(ValueError):
            plan(*bad)


def test_plan_experiment_reads_the_control_rate_and_the_comparisons() -> None:
    result = {
        "control": "a",
        "arms": [
            {"variant": "a", "exposed": 4_000, "converted": 200},
            {"variant": "b", "exposed": 3_900, "converted": 210},
            {"variant": "c", "exposed": 4_100, "converted": 190},
        ],
    }
    answer = plan_experiment(result, mde=0.1, policy=Policy())
    assert answer["baseline_rate"] == 0.05 and answer["exposed_per_arm"] == 3_900
    assert answer["alpha"] == pytest.approx(0.025)  # two comparisons with control
    assert answer["evaluator_tau"] == Policy().tau
    tuned = plan_experiment(result, mde=0.1, policy=Policy(mde=0.1))
    assert tuned["evaluator_tau"] == pytest.approx(tuned["tau"])
    with pytest.raises(ValueError, match="baseline"):
        plan_experiment(None, mde=0.1, policy=Policy())
    assert plan_experiment(None, mde=0.1, policy=Policy(), baseline=0.05)["exposed_per_arm"] == 0


def test_decide_uses_tau_from_the_mde_when_the_policy_has_one() -> None:
    arms = [Arm("a", 30_000, 1_500), Arm("b", 30_000, 1_680)]
    tuned = decide(arms, control="a", policy=Policy(mde=0.1))
    wide = decide(arms, control="a", policy=Policy(tau=0.02))
    assert tuned.p_value < wide.p_value
