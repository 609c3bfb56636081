"""Gamma-Gamma model of spend per transaction (Fader & Hardie 2013, "The Gamma-Gamma
Model of Monetary Value"; Colombo & Jiang 1999), fitted by maximum likelihood.

A customer's transaction values are ``z ~ Gamma(p, nu)`` (shape p, rate nu) and
``nu ~ Gamma(q, v)`` across customers, so mean spend is ``p * v / (q - 1)``. The data per
customer are ``x`` (repeat transactions, > 0) and ``m`` (their mean value, > 0). The model
assumes spend is independent of purchase frequency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import digamma, gammaln

from services.segmenter.scoring.errors import FitError
from services.segmenter.scoring.mle import minimise_log_params

FloatArray = npt.NDArray[np.float64]

MODEL = "gamma_gamma"


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """``z ~ Gamma(p, nu)`` per transaction, ``nu ~ Gamma(q, v)`` per customer."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"Gamma-Gamma parameter {name} must be positive, got {value!r}")

    @property
    def population_mean(self) -> float:
        """E[spend per transaction] = p v / (q - 1); infinite when q <= 1."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _data(frequency: Any, monetary: Any) -> tuple[FloatArray, FloatArray]:
    x, m = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64), np.asarray(monetary, dtype=np.float64)
    )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m))):
        raise ValueError("frequency and monetary must be finite")
    if np.any(x < 0):
        raise ValueError("frequency must be non-negative")
    return x, m


def expected_average_value(params: GammaGammaParams, frequency: Any, monetary: Any) -> FloatArray:
    """E[spend per future transaction | x, m] = (v + m x) p / (p x + q - 1) (F&H 2013).

    A credibility-weighted mix of the population mean ``p v / (q - 1)`` and the customer's
    own mean ``m``; equals the population mean where ``x == 0`` (``m`` is then ignored).
    Requires ``q > 1`` (finite population mean), else ValueError. Negative ``m`` is clipped to 0.
    """
    if params.q <= 1.0:
        raise ValueError("q <= 1: mean spend is infinite under these parameters")
    x, m = _data(frequency, monetary)
    m = np.where(x > 0, np.maximum(m, 0.0), 0.0)
    p, q, v = params.p, params.q, params.v
    return np.asarray((v + m * x) * p / (p * x + q - 1.0), dtype=np.float64)


def log_likelihood(params: GammaGammaParams, frequency: Any, monetary: Any) -> FloatArray:
    """Per-customer log-density of the mean spend ``m`` over ``x > 0`` transactions, m > 0."""
    x, m = _data(frequency, monetary)
    if np.any(x <= 0) or np.any(m <= 0):
        raise ValueError("the Gamma-Gamma likelihood needs frequency > 0 and monetary > 0")
    ll, _ = _loglik_and_grad(np.log([params.p, params.q, params.v]), x, m, want_grad=False)
    return ll


def _loglik_and_grad(
    log_params: FloatArray, x: FloatArray, m: FloatArray, *, want_grad: bool
) -> tuple[FloatArray, FloatArray | None]:
    """``ln f(m | p, q, v, x) = ln Γ(px+q) - ln Γ(px) - ln Γ(q) + q ln v + (px-1) ln m
    + px ln x - (px+q) ln(v + m x)`` and its gradient w.r.t. log-parameters."""
    p, q, v = np.exp(log_params)
    px = p * x
    log_vmx = np.log(v + m * x)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_vmx
    )
    if not want_grad:
        return np.asarray(ll, dtype=np.float64), None
    psi_pxq = digamma(px + q)
    d_p = x * (psi_pxq - digamma(px) + np.log(m) + np.log(x) - log_vmx)
    d_q = psi_pxq - digamma(q) + np.log(v) - log_vmx
    d_v = q / v - (px + q) / (v + m * x)
    grad = np.stack([d_p * p, d_q * q, d_v * v], axis=-1)
    return np.asarray(ll, dtype=np.float64), np.asarray(grad, dtype=np.float64)


def fit_gamma_gamma(
    frequency: Any, monetary: Any, *, initial: GammaGammaParams | None = None
) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from customers with x > 0 and m > 0.

    Other customers (one-time buyers, zero or negative spend) are ignored. Minimises the
    mean negative log-likelihood over log-parameters (L-BFGS-B with the analytic gradient,
    then Nelder-Mead if needed). Raises FitError with fewer than 3 usable customers, when
    all means are equal, when the optimiser fails, when an estimate is on its bound, or when
    ``q <= 1`` (the population's mean spend would be infinite).
    """
    x, m = _data(frequency, monetary)
    x, m = x.ravel(), m.ravel()
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size < 3:
        raise FitError(model=MODEL, reason=f"{x.size} repeat buyers with spend; at least 3 needed")
    if np.ptp(m) == 0:
        raise FitError(model=MODEL, reason="every repeat buyer has the same mean spend")

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _loglik_and_grad(theta, x, m, want_grad=True)
        assert grad is not None
        return -float(ll.mean()), -grad.mean(axis=0)

    def value_only(theta: FloatArray) -> float:
        ll, _ = _loglik_and_grad(theta, x, m, want_grad=False)
        return -float(ll.mean())

    # Money has arbitrary units: fit on m / scale (v scales with it, p and q do not), so the
    # bounds and tolerances mean the same for cents and for dollars.
    scale = float(np.mean(m))
    m = m / scale
    # p = 1, q = 2 make the population mean p v / (q - 1) equal v: start it at the data's, 1.
    start = (
        np.log([initial.p, initial.q, initial.v / scale])
        if initial is not None
        else np.log([1.0, 2.0, 1.0])
    )
    theta = minimise_log_params(objective, value_only, start, model=MODEL)
    p, q, v_scaled = (float(val) for val in np.exp(theta))
    v = v_scaled * scale
    if q <= 1.0:
        raise FitError(model=MODEL, reason=f"q = {q:.3g} <= 1: mean spend would be infinite")
    return GammaGammaParams(p=p, q=q, v=v)
