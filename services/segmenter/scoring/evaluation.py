"""How a churn score is judged: AUC, seeded stratified folds, calibration per decile.

Pure numpy, so a fold's AUC costs no scikit-learn import.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
DECILES = 10


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def roc_auc(y: BoolArray, score: FloatArray) -> float:
    """Area under the ROC curve (ties count a half), NaN unless both outcomes occur."""
    y = np.asarray(y, dtype=np.bool_)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse.ravel()]
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def stratified_folds(y: BoolArray, folds: int, seed: int) -> npt.NDArray[np.intp]:
    """Each row's fold in ``0..folds-1``: each outcome's rows shuffled (seeded) and dealt
    round-robin, so every fold holds both outcomes in the base's proportion."""
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, dtype=np.intp)
    for outcome in (False, True):
        rows = np.flatnonzero(y == outcome)
        fold[rng.permutation(rows)] = np.arange(rows.size) % folds
    return fold


def calibration(risk: FloatArray, y: BoolArray) -> tuple[dict[str, Any], ...]:
    order = np.argsort(risk, kind="stable")
    out = []
    for decile, rows in enumerate(np.array_split(order, DECILES), start=1):
        if rows.size == 0:
            continue
        out.append(
            {
                "decile": decile,
                "customers": int(rows.size),
                "mean_risk": round_or_none(float(risk[rows].mean())),
                "observed": round_or_none(float(y[rows].mean())),
                "min_risk": round_or_none(float(risk[rows].min())),
                "max_risk": round_or_none(float(risk[rows].max())),
            }
        )
    return tuple(out)
