"""Gamma-Gamma spend model: likelihood, conditional expectation, recovery of known parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from services.segmenter.scoring import (
    FitError,
    GammaGammaParams,
    expected_average_value,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)
from tests.unit.segmenter.test_scoring_bgnbd import observed_information

FloatArray = npt.NDArray[np.float64]

# Fader & Hardie (2013), CDNOW.
CDNOW = GammaGammaParams(p=6.25, q=3.74, v=15.44)


def simulate_spend(
    rng: np.random.Generator, frequency: npt.NDArray[np.floating[Any]], params: GammaGammaParams
) -> FloatArray:
    """Mean of x values z ~ Gamma(p, nu) with nu ~ Gamma(q, v) per customer (x >= 1): their sum
    is Gamma(p x, nu)."""
    nu = rng.gamma(params.q, 1.0 / params.v, frequency.size)
    return np.asarray(rng.gamma(params.p * frequency, 1.0 / nu) / frequency)


def as_array(params: GammaGammaParams) -> FloatArray:
    return np.array([params.p, params.q, params.v])


def test_recovers_cdnow_parameters_within_25_percent() -> None:
    """20000 repeat buyers with 1 + Poisson(2) repeat purchases. RMS relative error over 30
    seeds: p 5%, q 2%, v 7%."""
    rng = np.random.default_rng(2013)
    x = 1.0 + rng.poisson(2.0, 20000)
    m = simulate_spend(rng, x, CDNOW)
    fitted = fit_gamma_gamma(x, m)
    print("Gamma-Gamma 20000 repeat buyers: fitted", fitted, "true", CDNOW)
    rel = as_array(fitted) / as_array(CDNOW) - 1
    assert np.all(np.abs(rel) < 0.25), rel


def test_small_population_pins_down_q_and_mean_spend() -> None:
    """With 3000 repeat buyers p and v trade off against each other (RMS error over 40 seeds
    ~21% and ~23%, so they are checked against 4 standard errors); q and the population's mean
    spend p v / (q - 1) are pinned down."""
    rng = np.random.default_rng(946)
    x = 1.0 + rng.poisson(2.0, 3000)
    m = simulate_spend(rng, x, CDNOW)
    fitted = fit_gamma_gamma(x, m)
    print("Gamma-Gamma 3000 repeat buyers: fitted", fitted, "true", CDNOW)
    assert fitted.q == pytest.approx(CDNOW.q, rel=0.25)
    assert fitted.population_mean == pytest.approx(CDNOW.population_mean, rel=0.10)

    def total(theta: FloatArray) -> float:
        return float(gamma_gamma_log_likelihood(GammaGammaParams(*np.exp(theta)), x, m).sum())

    est = np.log(as_array(fitted))
    se = np.sqrt(np.diag(np.linalg.inv(observed_information(total, est))))
    z = (est - np.log(as_array(CDNOW))) / se
    assert np.all(np.abs(z) < 4), (z, se)


def test_fit_is_invariant_to_the_currency_unit() -> None:
    rng = np.random.default_rng(4)
    x = 1.0 + rng.poisson(2.0, 2000)
    m = simulate_spend(rng, x, CDNOW)
    in_units, in_cents = fit_gamma_gamma(x, m), fit_gamma_gamma(x, m * 100)
    np.testing.assert_allclose(as_array(in_cents), as_array(in_units) * [1, 1, 100], rtol=1e-5)


def test_fit_ignores_one_time_buyers_and_non_positive_spend() -> None:
    rng = np.random.default_rng(8)
    x = 1.0 + rng.poisson(2.0, 1000)
    m = simulate_spend(rng, x, CDNOW)
    noisy_x = np.concatenate([x, np.zeros(50), np.ones(5)])
    noisy_m = np.concatenate([m, np.zeros(50), [0.0, -3.0, 0.0, -1.0, 0.0]])
    assert fit_gamma_gamma(noisy_x, noisy_m) == fit_gamma_gamma(x, m)


@pytest.mark.parametrize(("x", "m"), [(1, 20.0), (3, 35.5), (10, 12.0)])
def test_log_likelihood_matches_numerical_integration(x: int, m: float) -> None:
    """f(m | x) = integral over nu of Gamma(m; p x, rate x nu) * Gamma(nu; q, rate v)."""
    p, q, v = as_array(CDNOW)

    def integrand(nu: float) -> float:
        return float(
            stats.gamma.pdf(m, p * x, scale=1 / (x * nu)) * stats.gamma.pdf(nu, q, scale=1 / v)
        )

    density, _ = integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-11, limit=200)
    got = float(gamma_gamma_log_likelihood(CDNOW, x, m))
    assert got == pytest.approx(np.log(density), rel=1e-8)


@pytest.mark.parametrize(("x", "m"), [(1, 20.0), (3, 35.5), (10, 12.0)])
def test_expected_value_matches_the_posterior_mean(x: int, m: float) -> None:
    """E[z | x, m] = p E[1 / nu | x, m], the posterior of nu weighted by the likelihood."""
    p, q, v = as_array(CDNOW)

    def weight(nu: float) -> float:
        return float(
            stats.gamma.pdf(m, p * x, scale=1 / (x * nu)) * stats.gamma.pdf(nu, q, scale=1 / v)
        )

    norm, _ = integrate.quad(weight, 0, np.inf, epsabs=0, epsrel=1e-11, limit=200)
    mean, _ = integrate.quad(
        lambda nu: p / nu * weight(nu), 0, np.inf, epsabs=0, epsrel=1e-11, limit=200
    )
    assert float(expected_average_value(CDNOW, x, m)) == pytest.approx(mean / norm, rel=1e-8)


def test_expected_value_without_repeat_purchases_is_the_population_mean() -> None:
    got = expected_average_value(CDNOW, [0, 0], [0.0, 123.0])
    np.testing.assert_allclose(got, CDNOW.population_mean)


@settings(max_examples=80, deadline=None)
@given(
    st.builds(
        GammaGammaParams, p=st.floats(0.1, 50), q=st.floats(1.01, 50), v=st.floats(0.01, 1e4)
    ),
    st.integers(1, 1000),
    st.floats(0, 1e5),
    st.floats(0, 1e5),
)
def test_expected_value_lies_between_own_and_population_mean_and_grows_with_spend(
    params: GammaGammaParams, x: int, m1: float, m2: float
) -> None:
    low, high = sorted([m1, m2])
    e_low, e_high = (float(e) for e in expected_average_value(params, x, [low, high]))
    pop = params.population_mean
    for own, expected in ((low, e_low), (high, e_high)):
        assert min(own, pop) * (1 - 1e-9) <= expected <= max(own, pop) * (1 + 1e-9)
    assert e_low <= e_high * (1 + 1e-12)


def test_fit_errors() -> None:
    with pytest.raises(FitError, match="at least 3") as info:
        fit_gamma_gamma([1, 2, 0], [10.0, 12.0, 0.0])
    assert info.value.model == "gamma_gamma"
    with pytest.raises(FitError, match="same mean spend"):
        fit_gamma_gamma([1, 2, 3, 4], [10.0, 10.0, 10.0, 10.0])


def test_expected_value_needs_a_finite_population_mean() -> None:
    with pytest.raises(ValueError, match="q <= 1"):
        expected_average_value(GammaGammaParams(p=1.0, q=0.9, v=1.0), 1, 10.0)
