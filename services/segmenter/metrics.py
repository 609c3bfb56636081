"""Segmenter metrics, declared once; never a label per customer or per segment id.

Every gauge keeps the newest value of a live worker (see :mod:`shared.metrics`)."""

import math

from services.segmenter.scoring.churn import CANDIDATES, HEURISTIC, ChurnFit
from shared.metrics import Metrics

metrics = Metrics("segmenter")

EVENTS_APPLIED = metrics.counter("events_applied", "Customer events folded into profiles.")
EVENTS_DUPLICATE = metrics.counter(
    "events_duplicate", "Redelivered customer events skipped by messageId."
)
EVENTS_SUPPRESSED = metrics.counter(
    "events_suppressed", "Customer events dropped because their customer id is suppressed."
)
BATCHES_RERUN = metrics.counter(
    "batches_rerun",
    "Batches run again because one of their customers was merged or suppressed meanwhile.",
)
MEMBERSHIP_CHANGES = metrics.counter(
    "membership_changes", "Segment enters and exits emitted.", ["change"]
)
SWEEP_SECONDS = metrics.histogram(
    "sweep_seconds",
    "Time to re-evaluate one chunk of customers whose timers were due.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SWEPT_CUSTOMERS = metrics.counter("swept_customers", "Customers re-evaluated because time passed.")
BACKFILL_SECONDS = metrics.histogram(
    "backfill_seconds",
    "Time to compute the memberships of a new or edited segment.",
    buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SCORE_FIT_SECONDS = metrics.histogram(
    "score_fit_seconds",
    "Time to fit the churn / LTV models and write the scores.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SCORED_CUSTOMERS = metrics.gauge(
    "scored_customers", "Customers scored by the last fit, by churn method.", ["method"]
)
CHURN_BACKTEST_AUC = metrics.gauge(
    "churn_backtest_auc",
    "Last refit's backtest: area under the ROC curve of each churn candidate (NaN: not fitted).",
    ["candidate"],
)
CHURN_BACKTEST_BRIER = metrics.gauge(
    "churn_backtest_brier",
    "Last refit's backtest: Brier score (mean squared error of the probability) of each "
    "churn candidate.",
    ["candidate"],
)
CHURN_BACKTEST_CUSTOMERS = metrics.gauge(
    "churn_backtest_customers",
    "Last refit's backtest: customers in the training and held-out sets, and churners among them.",
    ["set", "outcome"],
)
CHURN_MODEL_USED = metrics.gauge(
    "churn_model_used",
    "1 for the churn method the last refit scores with, 0 for the others.",
    ["method"],
)


def record_churn_metrics(churn: ChurnFit, *, customers: int) -> None:
    """Publish a refit's backtest; each candidate's figures, NaN when it was not fitted."""
    for method in (*CANDIDATES, HEURISTIC):
        CHURN_MODEL_USED.labels(method).set(1.0 if method == churn.method else 0.0)
        SCORED_CUSTOMERS.labels(method).set(customers if method == churn.method else 0)
    by_name = {c.name: c for c in churn.candidates}
    for name in CANDIDATES:
        found = by_name.get(name)
        auc = found.auc if found is not None and found.auc is not None else math.nan
        brier = found.brier if found is not None and found.brier is not None else math.nan
        CHURN_BACKTEST_AUC.labels(name).set(auc)
        CHURN_BACKTEST_BRIER.labels(name).set(brier)
    first = churn.candidates[0] if churn.candidates else None
    for set_name, total, churners in (
        ("train", first.train_customers if first else 0, first.train_churners if first else 0),
        ("test", first.test_customers if first else 0, first.test_churners if first else 0),
    ):
        CHURN_BACKTEST_CUSTOMERS.labels(set_name, "all").set(total)
        CHURN_BACKTEST_CUSTOMERS.labels(set_name, "churned").set(churners)
