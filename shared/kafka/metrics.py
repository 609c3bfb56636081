"""Metrics of the shared Kafka plumbing, labelled by topic, never by customer."""

from shared.metrics import Metrics

metrics = Metrics("kafka")

PUBLISHED = metrics.counter("published_messages", "Messages acknowledged by the broker.", ["topic"])
PUBLISH_FAILED = metrics.counter(
    "publish_failures", "Messages the broker did not acknowledge.", ["topic"]
)
PUBLISH_BATCH_SIZE = metrics.histogram(
    "publish_batch_messages",
    "Messages per send_batch call.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
CONSUMED = metrics.counter(
    "consumed_messages", "Messages consumed and committed.", ["topic", "group"]
)
DEAD_LETTERED = metrics.counter(
    "dead_lettered_messages", "Messages sent to a dead-letter topic.", ["topic", "group"]
)
BATCH_SECONDS = metrics.histogram(
    "consumer_batch_seconds", "Time to apply and commit one consumed batch.", ["group"]
)
CONSUMER_LAG = metrics.histogram(
    "consumer_batch_lag_messages",
    "Highwater minus committed offset after a batch.",
    ["group"],
    buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000),
)
