"""Maximum likelihood over log-parameters, shared by the BG/NBD and Gamma-Gamma fits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from services.segmenter.scoring.errors import FitError

FloatArray = NDArray[np.float64]
#: theta -> (mean negative log-likelihood, its gradient)
Objective = Callable[[FloatArray], tuple[float, FloatArray]]

# Log-parameters are kept within +-LOG_BOUND (e^15 ~ 3.3e6); an estimate on the bound means
# the data do not identify the parameters (e.g. nobody ever drops out).
LOG_BOUND = 15.0
_BOUND_SLACK = 1e-3
# Of the mean log-likelihood w.r.t. log-parameters: a 1% step in any parameter then
# moves the mean log-likelihood by < 1e-6, far below what the data can tell apart.
_GRADIENT_ACCEPTED = 1e-4


def minimise_log_params(
    objective: Objective,
    value_only: Callable[[FloatArray], float],
    start: FloatArray,
    *,
    model: str,
) -> FloatArray:
    """The log-parameters minimising ``objective``; FitError when there is no usable optimum.

    L-BFGS-B with the analytic gradient, then Nelder-Mead from where it stopped if it did
    not converge. When everybody seems alike the likelihood rises along a flat ridge towards
    infinite parameters: both optimisers may stop there without "success", and a point
    where the gradient vanishes is accepted as the optimum it is.
    """
    start = np.clip(start, -LOG_BOUND + 1.0, LOG_BOUND - 1.0)
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
    )
    converged = bool(result.success) or _flat(objective, result.x)
    if not converged:
        result = minimize(
            value_only,
            result.x if np.all(np.isfinite(result.x)) else start,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": 2000, "xatol": 1e-7, "fatol": 1e-12},
        )
        converged = bool(result.success) or _flat(objective, result.x)
    theta = np.asarray(result.x, dtype=np.float64)
    if not converged or not np.all(np.isfinite(theta)) or not np.isfinite(result.fun):
        raise FitError(model=model, reason=f"optimiser failed: {result.message}")
    if np.any(np.abs(theta) > LOG_BOUND - _BOUND_SLACK):
        raise FitError(model=model, reason="degenerate data: an estimate is at its bound")
    return theta


def _flat(objective: Objective, theta: FloatArray) -> bool:
    theta = np.asarray(theta, dtype=np.float64)
    if not np.all(np.isfinite(theta)):
        return False
    return float(np.max(np.abs(objective(theta)[1]))) < _GRADIENT_ACCEPTED
