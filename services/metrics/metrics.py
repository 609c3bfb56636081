"""The metrics service's own Prometheus metrics, declared once.

Labels are bounded: journey, step, variant, channel, metric, period kind — never a
customer. Funnel counters are counted per batch, after the transaction committed.

Every gauge keeps the newest value of a live worker (see :mod:`shared.metrics`).
"""

from shared.metrics import Metrics

metrics = Metrics("metrics")

MESSAGES_AGGREGATED = metrics.counter(
    "messages_aggregated", "Messages folded into the aggregates, by topic.", ["topic"]
)
MESSAGES_DUPLICATE = metrics.counter(
    "messages_duplicate", "Redelivered messages skipped by their id.", ["topic"]
)
FUNNEL = metrics.counter(
    "funnel_messages",
    "Messaging funnel steps counted, by journey, step, variant, channel and metric "
    "(requested, sent, delivered, opened, clicked, converted...).",
    ["journey", "step", "variant", "channel", "metric"],
)
CONVERSIONS = metrics.counter(
    "run_conversions",
    "Journey runs converted, by journey and arm (a split's variant, or journey/holdout).",
    ["journey", "step", "variant"],
)
EXPERIMENT_RATE = metrics.gauge(
    "experiment_conversion_rate",
    "Conversion rate of each variant of each split at the last evaluation.",
    ["journey", "step", "variant"],
)
EXPERIMENT_P_VALUE = metrics.gauge(
    "experiment_sequential_p_value",
    "Always-valid p-value (running minimum) of each split at the last evaluation.",
    ["journey", "step"],
)
DECISIONS = metrics.counter(
    "experiment_decisions",
    "Experiment decisions published for the journey service, by verdict.",
    ["verdict"],
)
ACTIVE_CUSTOMERS = metrics.gauge(
    "active_customers",
    "Customers active in the current period, by period kind (day, week, month).",
    ["period"],
)
CHURN_RATE = metrics.gauge(
    "churn_rate",
    "Share of the previous complete period's active customers not active in the last "
    "complete period, by period kind.",
    ["period"],
)
OUTBOX_BACKLOG = metrics.gauge(
    "outbox_backlog_messages", "Messages waiting in the metrics service's outbox."
)
LTV_TO_DATE = metrics.gauge(
    "ltv_to_date", "Revenue to date over customers to date, at the last evaluation."
)
REPEAT_PURCHASE_RATE = metrics.gauge(
    "repeat_purchase_rate", "Buyers with two orders or more over buyers, at the last evaluation."
)
