"""Segmenter metrics, declared once; never a label per customer or per segment id."""

from prometheus_client import Counter, Gauge, Histogram

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
    "Customers scored by the last fit, by method.",
    ["method"],
    namespace="tenure",
    subsystem="segmenter",
)
