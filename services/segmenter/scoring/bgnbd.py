"""BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting your customers the
easy way", Marketing Science 24(2)), fitted by maximum likelihood.

While alive a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
(shape r, rate alpha, per day); after each *repeat* purchase they drop out for good with
probability ``p ~ Beta(a, b)``. The data per customer are ``x`` (repeat purchases), ``t_x``
(recency: first to last purchase) and ``T`` (first purchase to now), all in days.

Because dropout can only happen right after a repeat purchase, a customer with ``x = 0``
is alive with certainty under this model: ``p_alive`` returns 1 for them, as the closed
form does. Callers that need a churn signal for one-time buyers should use
:func:`p_no_purchase` (the model's probability of no purchase over a horizon) instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1, log_expit, polygamma

from services.segmenter.scoring.errors import FitError
from services.segmenter.scoring.mle import minimise_log_params

FloatArray = npt.NDArray[np.float64]

MODEL = "bgnbd"
# The closed-form expectation has a factor 1 / (a - 1) and cancels to 0/0 at a == 1 (error
# ~1e-9 / |a - 1| relative): within this gap it is integrated numerically instead.
_A_ONE_GAP = 1e-2
_DE_STEP = 1.0 / 32.0  # tanh-sinh step in tau
_DE_CHUNK = 2048  # customers per block of the quadrature (memory: chunk x ~500 nodes)


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """Population parameters: ``lambda ~ Gamma(r, alpha)`` per day, ``p ~ Beta(a, b)``."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"BG/NBD parameter {name} must be positive, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _data(frequency: Any, recency: Any, T: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Broadcast and validate (x, t_x, T): finite, x >= 0, 0 <= t_x <= T, t_x = 0 if x = 0."""
    x, tx, big_t = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64),
        np.asarray(recency, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(tx)) and np.all(np.isfinite(big_t))):
        raise ValueError("frequency, recency and T must be finite")
    if np.any(x < 0) or np.any(tx < 0):
        raise ValueError("frequency and recency must be non-negative")
    if np.any(tx > big_t * (1 + 1e-12)):
        raise ValueError("recency cannot exceed T")
    return x, tx, big_t


def _log_dropout_odds(
    params: BgNbdParams, x: FloatArray, tx: FloatArray, big_t: FloatArray
) -> FloatArray:
    """log[(a / (b + x - 1)) * ((alpha + T) / (alpha + t_x))^(r + x)] for x > 0, -inf for x = 0.

    The log of the likelihood ratio dropped-out-after-the-last-purchase : alive.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x_safe = np.where(x > 0, x, 1.0)  # b + x - 1 would be b - 1 (maybe <= 0) for x = 0
    log_ratio = (
        np.log(a)
        - np.log(b + x_safe - 1.0)
        + (r + x) * (np.log(alpha + big_t) - np.log(alpha + tx))
    )
    return np.where(x > 0, log_ratio, -np.inf)


def p_alive(params: BgNbdParams, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """P(alive at T | x, t_x, T), in [0, 1]; exactly 1 where x == 0.

    ``1 / (1 + [x > 0] (a / (b + x - 1)) ((alpha + T) / (alpha + t_x))^(r + x))`` (Fader,
    Hardie & Lee 2008, "Computing P(alive) using the BG/NBD model").

    Computed as ``expit(-log_ratio)`` so it neither overflows nor divides by zero.
    """
    x, tx, big_t = _data(frequency, recency, T)
    return np.asarray(expit(-_log_dropout_odds(params, x, tx, big_t)), dtype=np.float64)


def p_no_purchase(params: BgNbdParams, t: Any, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """P(no purchase in (T, T + t] | x, t_x, T), in [0, 1].

    Dead customers never buy; alive ones have ``lambda ~ Gamma(r + x, alpha + T)`` a
    posteriori, so ``P = 1 - P(alive) * (1 - ((alpha + T) / (alpha + T + t))^(r + x))``.
    It is non-decreasing in T - t_x and defined (not trivially 0) for one-time buyers.
    """
    x, tx, big_t = _data(frequency, recency, T)
    horizon = np.asarray(t, dtype=np.float64)
    if np.any(horizon < 0) or not np.all(np.isfinite(horizon)):
        raise ValueError("t must be finite and non-negative")
    alive = expit(-_log_dropout_odds(params, x, tx, big_t))
    some_purchase = -np.expm1(-(params.r + x) * np.log1p(horizon / (params.alpha + big_t)))
    return np.asarray(np.clip(1.0 - alive * some_purchase, 0.0, 1.0), dtype=np.float64)


def _h(r_post: FloatArray, k: FloatArray, p: FloatArray) -> FloatArray:
    """``(1 - (1 + k p)^-r') / p``: expected purchases of an alive customer with dropout
    probability p, integrated over ``lambda ~ Gamma(r', alpha')``, ``k = t / alpha'``."""
    return np.asarray(-np.expm1(-r_post * np.log1p(k * p)) / p, dtype=np.float64)


def _core_closed_form(
    params: BgNbdParams, r_post: FloatArray, b_post: FloatArray, w: FloatArray
) -> FloatArray:
    """FHL 2005's conditional expectation divided by P(alive), NaN where hyp2f1 is not finite:
    ``(c / (a - 1)) * (1 - (1 + w)^-r' 2F1(r', b'; c; w / (1 + w)))``, ``c = a + b' - 1``."""
    a = params.a
    c = a + b_post - 1.0
    f = hyp2f1(r_post, b_post, c, w / (1.0 + w))
    ok = np.isfinite(f) & (f > 0)
    # (1 + w)^-r' underflows to 0 where 2F1 overflows; those entries are NaN and redone.
    log_term = np.where(ok, -r_post * np.log1p(w) + np.log(np.where(ok, f, 1.0)), 0.0)
    core = (c / (a - 1.0)) * -np.expm1(log_term)
    return np.asarray(np.where(ok, core, np.nan), dtype=np.float64)


def _core_quadrature(
    params: BgNbdParams, r_post: FloatArray, b_post: FloatArray, k: FloatArray
) -> FloatArray:
    """``E[_h(p)]`` for ``p ~ Beta(a, b')`` by double-exponential (tanh-sinh) quadrature.

    Nodes are ``logit p = c + s * pi * sinh(tau)`` with ``c = 0, s = 1``, or, when the Beta
    is concentrated (sd of logit p below 1: large a and b'), its logit mean and sd. Worked in
    log p, so the density's end-point singularities and the 1/k scale near p = 0 cost no
    accuracy (step 1/32: ~1e-13 relative against a step of 1/128 over a wide range).
    """
    a = params.a
    tau_max = max(3.0, float(np.log(100.0 / (np.pi * min(a, float(np.min(b_post)))))))
    tau = np.arange(-tau_max, tau_max + _DE_STEP / 2, _DE_STEP)
    unit = np.pi * np.sinh(tau)
    log_jacobian = np.log(np.pi * np.cosh(tau))
    logit_sd = np.sqrt(polygamma(1, a) + polygamma(1, b_post))
    concentrated = logit_sd < 1.0
    centre = np.where(concentrated, digamma(a) - digamma(b_post), 0.0)
    scale = np.where(concentrated, logit_sd, 1.0)
    out = np.empty(r_post.shape, dtype=np.float64)
    for lo in range(0, r_post.size, _DE_CHUNK):
        sl = slice(lo, lo + _DE_CHUNK)
        rp, bp, kk = r_post[sl, None], b_post[sl, None], k[sl, None]
        logit_p = centre[sl, None] + scale[sl, None] * unit
        log_p, log_q = log_expit(logit_p), log_expit(-logit_p)
        kp = kk * np.exp(log_p)
        tiny = kp < 1e-8  # _h -> r' k (1 - (r' + 1) k p / 2) as p -> 0, where 1/p overflows
        h = np.where(
            tiny,
            rp * kk * (1.0 - (rp + 1.0) * kp / 2.0),
            -np.expm1(-rp * np.log1p(np.where(tiny, 1.0, kp)))
            * np.exp(-np.where(tiny, 0.0, log_p)),
        )
        log_weight = a * log_p + bp * log_q - betaln(a, bp) + log_jacobian
        weight = np.exp(log_weight) * scale[sl, None]
        out[sl] = (h * weight).sum(axis=-1) * _DE_STEP
    return out


def _conditional_expectation(
    params: BgNbdParams, t: FloatArray, x: FloatArray, big_t: FloatArray
) -> FloatArray:
    """E[Y(t) | alive at T, x, T] = E[_h(p)] with p ~ Beta(a, b + x), r' = r + x,
    k = t / (alpha + T): the posterior of an alive customer.

    The closed form (hyp2f1) is used where it is finite and within the bounds that convexity
    of _h gives (``_h(E p) <= E _h(p) <= r' k``); elsewhere (scipy's hyp2f1 overflows for
    large x and t / (alpha + T)) and near a == 1, the expectation is integrated numerically.
    Agreement of the two: ~1e-7 relative or better.
    """
    t, x, big_t = np.broadcast_arrays(t, x, big_t)
    r_post = (params.r + x).ravel()
    b_post = (params.b + x).ravel()
    k = (t / (params.alpha + big_t)).ravel()
    if abs(params.a - 1.0) < _A_ONE_GAP:
        core = np.full(k.shape, np.nan)
    else:
        core = _core_closed_form(params, r_post, b_post, k)
    mean_p = params.a / (params.a + b_post)
    lower, upper = _h(r_post, k, mean_p), r_post * k
    redo = ~((core >= lower * (1 - 1e-9)) & (core <= upper * (1 + 1e-9)))  # also catches NaN
    if np.any(redo):
        core[redo] = _core_quadrature(params, r_post[redo], b_post[redo], k[redo])
    return core.reshape(t.shape)


def expected_purchases(
    params: BgNbdParams, t: Any, frequency: Any, recency: Any, T: Any
) -> FloatArray:
    """E[number of purchases in (T, T + t] | x, t_x, T] (FHL 2005), >= 0.

    ``P(alive) * E[Y(t) | alive]``; 0 at t = 0, non-decreasing in t, at most
    ``(r + x) t / (alpha + T)``. Broadcasts t against the customers' arrays.
    """
    x, tx, big_t = _data(frequency, recency, T)
    horizon = np.asarray(t, dtype=np.float64)
    if np.any(horizon < 0) or not np.all(np.isfinite(horizon)):
        raise ValueError("t must be finite and non-negative")
    alive = expit(-_log_dropout_odds(params, x, tx, big_t))
    core = _conditional_expectation(params, horizon, x, big_t)
    return np.asarray(np.maximum(alive * core, 0.0), dtype=np.float64)


def log_likelihood(params: BgNbdParams, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """Per-customer log-likelihood ``ln L(r, alpha, a, b | x, t_x, T)`` (FHL 2005)."""
    x, tx, big_t = _data(frequency, recency, T)
    value, _ = _loglik_and_grad(
        np.log([params.r, params.alpha, params.a, params.b]), x, tx, big_t, want_grad=False
    )
    return value


def _loglik_and_grad(
    log_params: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray, *, want_grad: bool
) -> tuple[FloatArray, FloatArray | None]:
    """Per-customer log-likelihood and, if asked, its gradient w.r.t. the log-parameters.

    ``ln L = ln Γ(r+x) - ln Γ(r) + r ln α + ln B(a, b+x) - ln B(a, b)
    + logsumexp(-(r+x) ln(α+T), [x>0](ln a - ln(b+x-1) - (r+x) ln(α+t_x)))``.
    """
    r, alpha, a, b = np.exp(log_params)
    x_safe = np.where(x > 0, x, 1.0)
    log_a_term = -(r + x) * np.log(alpha + big_t)
    log_b_term = np.where(
        x > 0,
        np.log(a) - np.log(b + x_safe - 1.0) - (r + x) * np.log(alpha + tx),
        -np.inf,
    )
    lse = np.logaddexp(log_a_term, log_b_term)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b) + lse
    if not want_grad:
        return np.asarray(ll, dtype=np.float64), None
    w_b = np.exp(log_b_term - lse)  # posterior weight of "dropped out after t_x"
    w_a = 1.0 - w_b
    d_r = (
        digamma(r + x)
        - digamma(r)
        + np.log(alpha)
        - w_a * np.log(alpha + big_t)
        - w_b * np.log(alpha + tx)
    )
    d_alpha = r / alpha - (r + x) * (w_a / (alpha + big_t) + w_b / (alpha + tx))
    d_a = digamma(a + b) - digamma(a + b + x) + w_b / a
    d_b = (
        digamma(b + x) - digamma(a + b + x) - digamma(b) + digamma(a + b) - w_b / (b + x_safe - 1.0)
    )
    grad = np.stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b], axis=-1)
    return np.asarray(ll, dtype=np.float64), np.asarray(grad, dtype=np.float64)


def _initial_guess(x: FloatArray, big_t: FloatArray) -> FloatArray:
    # r = a = b = 1 and alpha matching the observed purchase rate r / alpha.
    rate = max(float(x.sum()), 1.0) / max(float(big_t.sum()), 1e-9)
    return np.log(np.array([1.0, 1.0 / rate, 1.0, 1.0], dtype=np.float64))


def fit_bgnbd(
    frequency: Any, recency: Any, T: Any, *, initial: BgNbdParams | None = None
) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters for a population.

    Minimises the mean negative log-likelihood over log-parameters with L-BFGS-B and the
    analytic gradient, then Nelder-Mead if that does not converge. When everybody seems to
    share one dropout probability the likelihood rises along a ridge ``a, b -> infinity``
    with ``a / (a + b)`` fixed; the fit then stops on it with large a and b, and predictions
    do not depend on where. Raises FitError when
    there are fewer than 4 customers, no repeat purchases, no customer with ``T > 0``,
    the optimiser fails, or an estimate sits on its bound (parameters not identified).
    """
    x, tx, big_t = _data(frequency, recency, T)
    x, tx, big_t = x.ravel(), tx.ravel(), big_t.ravel()
    if x.size < 4:
        raise FitError(model=MODEL, reason=f"{x.size} customers; at least 4 needed")
    if not np.any(x > 0):
        raise FitError(model=MODEL, reason="no repeat purchases")
    if not np.any(big_t > 0):
        raise FitError(model=MODEL, reason="no observation time (all T are 0)")

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _loglik_and_grad(theta, x, tx, big_t, want_grad=True)
        assert grad is not None
        return -float(ll.mean()), -grad.mean(axis=0)

    def value_only(theta: FloatArray) -> float:
        ll, _ = _loglik_and_grad(theta, x, tx, big_t, want_grad=False)
        return -float(ll.mean())

    start = (
        np.log([initial.r, initial.alpha, initial.a, initial.b])
        if initial is not None
        else _initial_guess(x, big_t)
    )
    theta = minimise_log_params(objective, value_only, start, model=MODEL)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b)
