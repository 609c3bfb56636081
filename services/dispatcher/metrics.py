"""Dispatcher metrics, declared once; labels are channels, statuses and reasons,
never customers or templates.

Every gauge reports shared state (read from the database) as set by whichever worker
evaluated last: ``multiprocess_mode="livemostrecent"``, so with several workers the
newest value of a live worker is exported, never a dead worker's stale one."""

from prometheus_client import Counter, Gauge, Histogram

OUTCOMES = Counter(
    "outcomes",
    "Outcomes published on dispatch.outcomes, by status and reason.",
    ["status", "reason"],
    namespace="tenure",
    subsystem="dispatcher",
)
SENT = Counter(
    "messages_sent",
    "Messages a provider accepted, by channel.",
    ["channel"],
    namespace="tenure",
    subsystem="dispatcher",
)
PROVIDER_ERRORS = Counter(
    "provider_failures",
    "Messages that failed for good at a provider, by channel and kind (permanent, transient).",
    ["channel", "kind"],
    namespace="tenure",
    subsystem="dispatcher",
)
SEND_SECONDS = Histogram(
    "provider_call_seconds",
    "Time of one provider call, by channel.",
    ["channel"],
    namespace="tenure",
    subsystem="dispatcher",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTCOMES_REPUBLISHED = Counter(
    "outcomes_republished",
    "Final outcomes published again for a request already held (a re-request).",
    namespace="tenure",
    subsystem="dispatcher",
)
PROFILE_WAITS = Counter(
    "profile_waits",
    "Times a request was deferred because the profile copy had not reached its trigger.",
    namespace="tenure",
    subsystem="dispatcher",
)
REQUESTS_DUPLICATE = Counter(
    "requests_duplicate",
    "Dispatch requests dropped because their dispatch id was already held.",
    namespace="tenure",
    subsystem="dispatcher",
)
DEAD_LETTERS = Counter(
    "dead_letters",
    "Requests written to dispatch.requests.dlq (failed for good).",
    namespace="tenure",
    subsystem="dispatcher",
)
TRACKED = Counter(
    "tracking_events",
    "Engagement events recorded by the public endpoints, by event.",
    ["event"],
    namespace="tenure",
    subsystem="dispatcher",
)
LINKS_REFUSED = Counter(
    "links_refused",
    "Tracking links refused (tampered or expired), by purpose.",
    ["purpose"],
    namespace="tenure",
    subsystem="dispatcher",
)
REQUEST_TO_HANDOFF_SECONDS = Histogram(
    "request_to_handoff_seconds",
    "From a request's requestedAt to the provider's acceptance (send time now; a "
    "deferral's wait included).",
    namespace="tenure",
    subsystem="dispatcher",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
# Offers: the pool label is an admin-created pool id (a handful), never a customer.
COUPONS_AVAILABLE = Gauge(
    "coupons_available",
    "Codes of a coupon pool not drawn yet (alert: deploy/prometheus/rules/offers.yml).",
    ["pool"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="dispatcher",
)
COUPON_LOW_WATER = Gauge(
    "coupon_pool_low_water",
    "A coupon pool's low-water mark: below it, TenureCouponPoolLow fires.",
    ["pool"],
    namespace="tenure",
    multiprocess_mode="livemostrecent",
    subsystem="dispatcher",
)
COUPONS_ISSUED = Counter(
    "coupons_drawn",
    "Pool codes drawn for messages (a retried dispatch finds its code: not counted twice).",
    namespace="tenure",
    subsystem="dispatcher",
)
