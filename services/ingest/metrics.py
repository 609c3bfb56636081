"""Ingest metrics: by call type and reason, never by customer."""

from prometheus_client import Counter, Histogram

EVENTS_RECEIVED = Counter(
    "events_received",
    "Events accepted and acknowledged by the broker.",
    ["type"],
    namespace="tenure",
    subsystem="ingest",
)
EVENTS_REJECTED = Counter(
    "events_rejected",
    "Events refused, by reason.",
    ["type", "reason"],
    namespace="tenure",
    subsystem="ingest",
)
PUBLISH_SECONDS = Histogram(
    "publish_seconds",
    "Time from a request's events being valid to the broker's ack.",
    namespace="tenure",
    subsystem="ingest",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RATE_LIMITED = Counter(
    "rate_limited_requests",
    "Requests refused with 429 by a write key's rate limit, by the first 8 hex digits "
    "of the key's SHA-256 digest (never the key).",
    ["key_digest"],
    namespace="tenure",
    subsystem="ingest",
)
