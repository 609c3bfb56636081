"""Segmenter metrics, declared once; never a label per customer or per segment id.

Every gauge reports shared state (read from the database) as set by whichever worker
evaluated last: ``multiprocess_mode="livemostrecent"``, so with several workers the
newest value of a live worker is exported, never a dead worker's stale one."""

import math

from prometheus_client import Counter, Gauge, Histogram

from services.segmenter.scoring.churn import CANDIDATES, HEURISTIC, ChurnFit

EVENTS_APPLIED = Counter(
    "events_applied",
    "Customer events folded into profiles.",
    namespace="tenure",
    subsystem="segmenter",
)
EVENTS_DUPLICATE = Counter(
    "events_duplicate",
    "Redelivered customer events skipped by messageId.",
    namespace="tenure",
    subsystem="segmenter",
)
EVENTS_SUPPRESSED = Counter(
    "events_suppressed",
    "Customer events dropped because their customer id is suppressed.",
    namespace="tenure",
    subsystem="segmenter",
)
BATCHES_RERUN = Counter(
    "batches_rerun",
    "Batches run again because one of their customers was merged or suppressed meanwhile.",
    namespace="tenure",
    subsystem="segmenter",
)
MEMBERSHIP_CHANGES = Counter(
    "membership_changes",
    "Segment enters and exits emitted.",
    ["change"],
    namespace="tenure",
    subsystem="segmenter",
)
SWEEP_SECONDS = Histogram(
    "sweep_seconds",
    "Time to re-evaluate one chunk of customers whose timers were due.",
    namespace="tenure",
    subsystem="segmenter",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SWEPT_CUSTOMERS = Counter(
    "swept_customers",
    "Customers re-evaluated because time passed.",
    namespace="tenure",
    subsystem="segmenter",
)
BACKFILL_SECONDS = Histogram(
    "backfill_seconds",
    "Time to compute the memberships of a new or edited segment.",
    namespace="tenure",
    subsystem="segmenter",
    buckets=(0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SCORE_FIT_SECONDS = Histogram(
    "score_fit_seconds",
    "Time to fit the churn / LTV models and write the scores.",
    namespace="tenure",
    subsystem="segmenter",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SCORED_CUSTOMERS = Gauge(
    "scored_customers",
    "Customers scored by the last fit, by churn method.",
    ["method"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="segmenter",
)
CHURN_BACKTEST_AUC = Gauge(
    "churn_backtest_auc",
    "Last refit's backtest: area under the ROC curve of each churn candidate (NaN: not fitted).",
    ["candidate"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="segmenter",
)
CHURN_BACKTEST_BRIER = Gauge(
    "churn_backtest_brier",
    "Last refit's backtest: Brier score (mean squared error of the probability) of each "
    "churn candidate.",
    ["candidate"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="segmenter",
)
CHURN_BACKTEST_CUSTOMERS = Gauge(
    "churn_backtest_customers",
    "Last refit's backtest: customers in the training and held-out sets, and churners among them.",
    ["set", "outcome"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="segmenter",
)
CHURN_MODEL_USED = Gauge(
    "churn_model_used",
    "1 for the churn method the last refit scores with, 0 for the others.",
    ["method"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="segmenter",
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
