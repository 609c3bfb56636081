"""Ingest metrics: by call type and reason, never by customer."""

from shared.metrics import Metrics

metrics = Metrics("ingest")

EVENTS_RECEIVED = metrics.counter(
    "events_received", "Events accepted and acknowledged by the broker.", ["type"]
)
EVENTS_REJECTED = metrics.counter(
    "events_rejected", "Events refused, by reason.", ["type", "reason"]
)
PUBLISH_SECONDS = metrics.histogram(
    "publish_seconds",
    "Time from a request's events being valid to the broker's ack.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = metrics.counter(
    "rate_limited_requests",
    "Requests refused with 429 by a write key's rate limit, by the first 8 hex digits "
    "of the key's SHA-256 digest (never the key).",
    ["key_digest"],
)
