"""The metrics service's own Prometheus metrics, declared once.

Labels are bounded: journey, step, variant, channel, metric, period kind — never a
customer. Funnel counters are counted per batch, after the transaction committed.

Every gauge reports shared state (read from the database) as set by whichever worker
evaluated last: ``multiprocess_mode="livemostrecent"``, so with several workers the
newest value of a live worker is exported, never a dead worker's stale one.
"""

from prometheus_client import Counter, Gauge

MESSAGES_AGGREGATED = Counter(
    "messages_aggregated",
    "Messages folded into the aggregates, by topic.",
    ["topic"],
    namespace="tenure",
    subsystem="metrics",
)
MESSAGES_DUPLICATE = Counter(
    "messages_duplicate",
    "Redelivered messages skipped by their id.",
    ["topic"],
    namespace="tenure",
    subsystem="metrics",
)
FUNNEL = Counter(
    "funnel_messages",
    "Messaging funnel steps counted, by journey, step, variant, channel and metric "
    "(requested, sent, delivered, opened, clicked, converted...).",
    ["journey", "step", "variant", "channel", "metric"],
    namespace="tenure",
    subsystem="metrics",
)
CONVERSIONS = Counter(
    "run_conversions",
    "Journey runs converted, by journey and arm (a split's variant, or journey/holdout).",
    ["journey", "step", "variant"],
    namespace="tenure",
    subsystem="metrics",
)
EXPERIMENT_RATE = Gauge(
    "experiment_conversion_rate",
    "Conversion rate of each variant of each split at the last evaluation.",
    ["journey", "step", "variant"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
EXPERIMENT_P_VALUE = Gauge(
    "experiment_sequential_p_value",
    "Always-valid p-value (running minimum) of each split at the last evaluation.",
    ["journey", "step"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
DECISIONS = Counter(
    "experiment_decisions",
    "Experiment decisions published for the journey service, by verdict.",
    ["verdict"],
    namespace="tenure",
    subsystem="metrics",
)
ACTIVE_CUSTOMERS = Gauge(
    "active_customers",
    "Customers active in the current period, by period kind (day, week, month).",
    ["period"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
CHURN_RATE = Gauge(
    "churn_rate",
    "Share of the previous complete period's active customers not active in the last "
    "complete period, by period kind.",
    ["period"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog_messages",
    "Messages waiting in the metrics service's outbox.",
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
LTV_TO_DATE = Gauge(
    "ltv_to_date",
    "Revenue to date over customers to date, at the last evaluation.",
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
REPEAT_PURCHASE_RATE = Gauge(
    "repeat_purchase_rate",
    "Buyers with two orders or more over buyers, at the last evaluation.",
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="metrics",
)
