"""Churn as the user defines it, learned from the customer base's own history and backtested.

**Definition.** A customer *churns* when they do not do ``event`` (by default the purchase
event) within ``horizon_days`` (H, default 90) UTC days. ``churn_risk`` is the probability
of exactly that, for every customer (buyers and not), so a segment ``churn_risk > 0.5``
means "more likely than not to skip the event over the next H days".

**Learning it** (:func:`fit_churn`). The features of every customer as of the UTC day
boundary H days ago (``training``, built only from rollup days before it) are labelled by
what the customer did since: churned when no ``event`` on any of the H days from that
boundary to today. Three candidates are trained on a random 70 % of those customers and
backtested on the other 30 %:

- ``recency``: days since the last ``event`` (tenure for those who never did it) and a
  never-did-it flag, through a logistic regression (so it ranks exactly by recency within
  each group, and its probabilities are calibrated);
- ``bgnbd``: BG/NBD's probability of no purchase over H days (fitted by maximum
  likelihood on the snapshot's buyers), calibrated the same way;
- ``learned``: gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``,
  log-loss) on recency, frequency (occasions), tenure, days since last seen, mean value,
  events of any kind in the last H days, the configured engagement events' counts in the
  last H days and the BG/NBD quantities (P(alive), expected purchases and P(no purchase)
  over H days).

The candidate with the highest AUC on the backtest is used (on ties the simpler one, in
that order), as fitted on the 70 %, on the ``current`` features (as of the boundary after
today). Each candidate's AUC, Brier score and sample sizes are returned for the API and
``/metrics``. With too little history (fewer than ``min_customers`` customers H days ago, or
fewer than ``min_class`` of them churned or stayed) the score is the recency heuristic
``1 - exp(-days since the last event / H)`` (tenure for those who never did it), and the
method says so.

Pure: numpy arrays in, arrays out; no database, no clock. CPU-bound: run it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from services.segmenter.scoring.bgnbd import (
    BgNbdParams,
    expected_purchases,
    fit_bgnbd,
    p_alive,
    p_no_purchase,
)
from services.segmenter.scoring.errors import FitError
from services.segmenter.scoring.fallback import inactivity_churn_risk

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ChurnMethod = Literal["recency", "bgnbd", "learned", "recency_heuristic"]
CANDIDATES: tuple[ChurnMethod, ...] = ("recency", "bgnbd", "learned")
HEURISTIC: ChurnMethod = "recency_heuristic"

DEFAULT_HORIZON_DAYS = 90
DEFAULT_MIN_CUSTOMERS = 200
DEFAULT_MIN_CLASS = 20
#: rows the candidates are trained on at most (a random sample of the 70 %): enough for
#: a dozen features, and it bounds the fit's time whatever the population
DEFAULT_MAX_TRAIN_ROWS = 200_000
#: buyers the snapshot's BG/NBD is fitted on at most (the four parameters settle long before)
BGNBD_MAX_FIT_ROWS = 50_000
TEST_SHARE = 0.3
_P_CLIP = 1e-6


@dataclass(frozen=True, slots=True)
class ChurnDefinition:
    """ "No ``event`` within ``horizon_days`` days"."""

    event: str
    horizon_days: int

    def describe(self) -> str:
        return f"no {self.event!r} within {self.horizon_days} days"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every customer's features as of the start of UTC day ``as_of`` (rollup days before
    it); arrays of equal length, in ``customer_ids`` order. ``days_since_event`` and
    ``since_first_event`` are NaN for a customer who never did the churn event."""

    as_of: date
    customer_ids: Sequence[str]
    days_since_event: FloatArray
    since_first_event: FloatArray
    first_to_last_event: FloatArray
    occasions: FloatArray
    mean_value: FloatArray
    tenure: FloatArray
    days_since_seen: FloatArray
    recent_events: FloatArray
    engagement: FloatArray  # (n, len(engagement_names)): counts in the last H days
    engagement_names: tuple[str, ...] = ()
    #: training only: no churn event on any of the H days from ``as_of``
    churned: BoolArray | None = None

    def __len__(self) -> int:
        return len(self.customer_ids)

    @property
    def never(self) -> BoolArray:
        return np.asarray(self.occasions <= 0, dtype=np.bool_)

    def take(self, index: npt.NDArray[np.intp]) -> Snapshot:
        ids = [self.customer_ids[i] for i in index.tolist()]
        return Snapshot(
            as_of=self.as_of,
            customer_ids=ids,
            days_since_event=self.days_since_event[index],
            since_first_event=self.since_first_event[index],
            first_to_last_event=self.first_to_last_event[index],
            occasions=self.occasions[index],
            mean_value=self.mean_value[index],
            tenure=self.tenure[index],
            days_since_seen=self.days_since_seen[index],
            recent_events=self.recent_events[index],
            engagement=self.engagement[index],
            engagement_names=self.engagement_names,
            churned=None if self.churned is None else self.churned[index],
        )


@dataclass(frozen=True, slots=True)
class CandidateReport:
    """One candidate's backtest: AUC (ranking) and Brier score (calibration) on the held-out
    customers; ``None`` when the candidate could not be fitted (``note`` says why)."""

    name: ChurnMethod
    auc: float | None
    brier: float | None
    train_customers: int
    train_churners: int
    test_customers: int
    test_churners: int
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "auc": self.auc,
            "brier": self.brier,
            "train_customers": self.train_customers,
            "train_churners": self.train_churners,
            "test_customers": self.test_customers,
            "test_churners": self.test_churners,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class ChurnFit:
    """The churn model of one refit and every current customer's ``risk`` (in [0, 1], in
    the order of the current snapshot)."""

    definition: ChurnDefinition
    method: ChurnMethod
    reason: str
    training_as_of: date
    scoring_as_of: date
    candidates: tuple[CandidateReport, ...]
    risk: FloatArray
    bgnbd: BgNbdParams | None = None
    extras: dict[str, FloatArray] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """JSON-ready: what the API and ``score_fits.params`` show."""
        return {
            "definition": self.definition.describe(),
            "event": self.definition.event,
            "horizon_days": self.definition.horizon_days,
            "method": self.method,
            "reason": self.reason,
            "training_as_of": self.training_as_of.isoformat(),
            "scoring_as_of": self.scoring_as_of.isoformat(),
            "candidates": [c.as_dict() for c in self.candidates],
        }


class _Classifier(Protocol):
    def fit(self, x: FloatArray, y: BoolArray) -> Any: ...

    def predict_proba(self, x: FloatArray) -> FloatArray: ...


def heuristic_risk(snapshot: Snapshot, horizon_days: float) -> FloatArray:
    """``1 - exp(-days since the last event / H)``; tenure for those who never did it."""
    days = np.where(snapshot.never, snapshot.tenure, snapshot.days_since_event)
    return inactivity_churn_risk(np.nan_to_num(days, nan=0.0), horizon_days=horizon_days)


@dataclass(frozen=True, slots=True)
class BgNbdQuantities:
    params: BgNbdParams | None
    p_no_purchase: FloatArray  # NaN for non-buyers, or every one if the fit failed
    p_alive: FloatArray
    expected: FloatArray


def bgnbd_quantities(
    snapshot: Snapshot, horizon_days: float, *, seed: int = 0, params: BgNbdParams | None = None
) -> BgNbdQuantities:
    """BG/NBD fitted on the snapshot's buyers (a sample of at most ``BGNBD_MAX_FIT_ROWS``),
    unless ``params`` are given; its per-customer quantities over ``horizon_days``."""
    n = len(snapshot)
    nan = np.full(n, np.nan)
    buyers = np.flatnonzero(~snapshot.never)
    if buyers.size == 0:
        return BgNbdQuantities(params, nan, nan.copy(), nan.copy())
    x = snapshot.occasions[buyers] - 1.0
    tx = snapshot.first_to_last_event[buyers]
    big_t = snapshot.since_first_event[buyers]
    if params is None:
        sample = np.arange(buyers.size)
        if buyers.size > BGNBD_MAX_FIT_ROWS:
            rng = np.random.default_rng(seed)
            sample = rng.choice(buyers.size, BGNBD_MAX_FIT_ROWS, replace=False)
        try:
            params = fit_bgnbd(x[sample], tx[sample], big_t[sample])
        except (FitError, ValueError):
            return BgNbdQuantities(None, nan, nan.copy(), nan.copy())
    silent, alive, expected = nan.copy(), nan.copy(), nan.copy()
    silent[buyers] = p_no_purchase(params, horizon_days, x, tx, big_t)
    alive[buyers] = p_alive(params, x, tx, big_t)
    expected[buyers] = expected_purchases(params, horizon_days, x, tx, big_t)
    return BgNbdQuantities(params, silent, alive, expected)


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _P_CLIP, 1 - _P_CLIP)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def candidate_features(
    name: ChurnMethod, snapshot: Snapshot, bg: BgNbdQuantities
) -> FloatArray | None:
    """The feature matrix of a candidate; None when it cannot be built (no BG/NBD fit)."""
    never = snapshot.never.astype(np.float64)
    if name == "recency":
        days = np.where(snapshot.never, snapshot.tenure, snapshot.days_since_event)
        return np.column_stack([np.log1p(np.maximum(days, 0.0)), never])
    if name == "bgnbd":
        if bg.params is None:
            return None
        score = np.where(snapshot.never, 0.0, _logit(np.nan_to_num(bg.p_no_purchase, nan=0.5)))
        return np.column_stack([score, never])
    columns = [
        snapshot.days_since_event,  # NaN: never (the trees route missing values)
        snapshot.occasions,
        snapshot.tenure,
        snapshot.days_since_seen,
        snapshot.mean_value,
        snapshot.recent_events,
        snapshot.first_to_last_event,
        bg.p_no_purchase,
        bg.p_alive,
        bg.expected,
    ]
    return np.column_stack([*columns, snapshot.engagement]).astype(np.float64)


def _classifier(name: ChurnMethod, seed: int) -> _Classifier:
    if name == "learned":
        return HistGradientBoostingClassifier(  # type: ignore[no-any-return]
            max_iter=150, learning_rate=0.1, max_leaf_nodes=31, random_state=seed
        )
    return LogisticRegression(C=1e3, max_iter=200)  # type: ignore[no-any-return]


def _probabilities(model: _Classifier, x: FloatArray) -> FloatArray:
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


def _enough(churned: BoolArray, min_customers: int, min_class: int) -> str | None:
    n, churners = churned.size, int(churned.sum())
    if n < min_customers:
        return f"too little history: {n} customers {{h}} days ago < {min_customers}"
    if churners < min_class or n - churners < min_class:
        return (
            f"too little history: of {n} customers {{h}} days ago {churners} churned and "
            f"{n - churners} stayed (each needs {min_class})"
        )
    return None


def _report(
    name: ChurnMethod,
    auc: float | None,
    brier: float | None,
    sizes: dict[str, int],
    note: str | None = None,
) -> CandidateReport:
    return CandidateReport(
        name,
        auc,
        brier,
        train_customers=sizes["train_customers"],
        train_churners=sizes["train_churners"],
        test_customers=sizes["test_customers"],
        test_churners=sizes["test_churners"],
        note=note,
    )


def fit_churn(
    training: Snapshot,
    current: Snapshot,
    definition: ChurnDefinition,
    *,
    min_customers: int = DEFAULT_MIN_CUSTOMERS,
    min_class: int = DEFAULT_MIN_CLASS,
    max_train_rows: int = DEFAULT_MAX_TRAIN_ROWS,
    seed: int = 0,
) -> ChurnFit:
    """Backtest the candidates on ``training`` (labelled) and score ``current`` with the
    best; see the module docstring. Never raises for lack of data: falls back to the
    heuristic and says why.

    Runs single-threaded (OpenMP and BLAS limited to one thread): on a busy machine the
    trees' OpenMP threads wait on each other (a 140,000-row fit took 11.7 s on two
    threads against 1.8 s on one, two cores shared), and the service keeps a core.
    """
    with threadpool_limits(limits=1):
        return _fit_churn(
            training, current, definition, min_customers, min_class, max_train_rows, seed
        )


def _fit_churn(
    training: Snapshot,
    current: Snapshot,
    definition: ChurnDefinition,
    min_customers: int,
    min_class: int,
    max_train_rows: int,
    seed: int,
) -> ChurnFit:
    horizon = float(definition.horizon_days)
    if training.churned is None:
        raise ValueError("the training snapshot needs labels (churned)")

    def heuristic(reason: str, candidates: tuple[CandidateReport, ...] = ()) -> ChurnFit:
        return ChurnFit(
            definition=definition,
            method=HEURISTIC,
            reason=reason,
            training_as_of=training.as_of,
            scoring_as_of=current.as_of,
            candidates=candidates,
            risk=heuristic_risk(current, horizon),
        )

    short = _enough(training.churned, min_customers, min_class)
    if short is not None:
        return heuristic(short.replace("{h}", str(definition.horizon_days)))

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(training))
    n_test = max(int(round(len(training) * TEST_SHARE)), 1)
    test_index, train_index = order[:n_test], order[n_test:][:max_train_rows]
    y = training.churned
    y_train, y_test = y[train_index], y[test_index]
    short = _enough(y_train, int(min_customers * (1 - TEST_SHARE)), min_class // 2) or (
        None if 0 < int(y_test.sum()) < y_test.size else "the held-out customers are all alike"
    )
    if short is not None:
        return heuristic(short.replace("{h}", str(definition.horizon_days)))

    bg_train = bgnbd_quantities(training, horizon, seed=seed)
    sizes = {
        "train_customers": int(train_index.size),
        "train_churners": int(y_train.sum()),
        "test_customers": int(test_index.size),
        "test_churners": int(y_test.sum()),
    }
    reports: list[CandidateReport] = []
    fitted: dict[ChurnMethod, _Classifier] = {}
    for name in CANDIDATES:
        x = candidate_features(name, training, bg_train)
        if x is None:
            reports.append(_report(name, None, None, sizes, note="BG/NBD fit failed"))
            continue
        model = _classifier(name, seed)
        model.fit(x[train_index], y_train)
        p = _probabilities(model, x[test_index])
        auc, brier = float(roc_auc_score(y_test, p)), float(brier_score_loss(y_test, p))
        reports.append(_report(name, auc, brier, sizes))
        fitted[name] = model
    best = max(
        (r for r in reports if r.auc is not None),
        key=lambda r: (r.auc, -CANDIDATES.index(r.name)),
    )
    bg_now = bgnbd_quantities(current, horizon, seed=seed)
    x_now = candidate_features(best.name, current, bg_now)
    if x_now is None:  # the BG/NBD fit failed today though it worked H days ago
        return heuristic("the BG/NBD fit failed on today's customers", tuple(reports))
    risk = np.clip(_probabilities(fitted[best.name], x_now), 0.0, 1.0)
    reason = (
        f"{best.name} ranks best on the backtest (AUC {best.auc:.3f}, Brier {best.brier:.3f}) "
        f"of {sizes['test_customers']} customers as of {training.as_of.isoformat()}"
    )
    return ChurnFit(
        definition=definition,
        method=best.name,
        reason=reason,
        training_as_of=training.as_of,
        scoring_as_of=current.as_of,
        candidates=tuple(reports),
        risk=np.asarray(risk, dtype=np.float64),
        bgnbd=bg_now.params,
        extras={"p_alive": bg_now.p_alive, "p_no_purchase": bg_now.p_no_purchase},
    )
