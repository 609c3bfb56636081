"""Metrics of the shared Kafka plumbing, labelled by topic, never by customer."""

from prometheus_client import Counter, Histogram

PUBLISHED = Counter(
    "published_messages",
    "Messages acknowledged by the broker.",
    ["topic"],
    namespace="tenure",
    subsystem="kafka",
)
PUBLISH_FAILED = Counter(
    "publish_failures",
    "Messages the broker did not acknowledge.",
    ["topic"],
    namespace="tenure",
    subsystem="kafka",
)
PUBLISH_BATCH_SIZE = Histogram(
    "publish_batch_messages",
    "Messages per send_batch call.",
    namespace="tenure",
    subsystem="kafka",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
CONSUMED = Counter(
    "consumed_messages",
    "Messages consumed and committed.",
    ["topic", "group"],
    namespace="tenure",
    subsystem="kafka",
)
DEAD_LETTERED = Counter(
    "dead_lettered_messages",
    "Messages sent to a dead-letter topic.",
    ["topic", "group"],
    namespace="tenure",
    subsystem="kafka",
)
BATCH_SECONDS = Histogram(
    "consumer_batch_seconds",
    "Time to apply and commit one consumed batch.",
    ["group"],
    namespace="tenure",
    subsystem="kafka",
)
CONSUMER_LAG = Histogram(
    "consumer_batch_lag_messages",
    "Highwater minus committed offset after a batch.",
    ["group"],
    namespace="tenure",
    subsystem="kafka",
    buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
