"""Dispatcher metrics, declared once; labels are channels, statuses and reasons,
never customers or templates.

Every gauge keeps the newest value of a live worker (see :mod:`shared.metrics`)."""

from shared.metrics import Metrics

metrics = Metrics("dispatcher")

OUTCOMES = metrics.counter(
    "outcomes",
    "Outcomes published on dispatch.outcomes, by status and reason.",
    ["status", "reason"],
)
SENT = metrics.counter("messages_sent", "Messages a provider accepted, by channel.", ["channel"])
PROVIDER_ERRORS = metrics.counter(
    "provider_failures",
    "Messages that failed for good at a provider, by channel and kind (permanent, transient).",
    ["channel", "kind"],
)
SEND_SECONDS = metrics.histogram(
    "provider_call_seconds",
    "Time of one provider call, by channel.",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTCOMES_REPUBLISHED = metrics.counter(
    "outcomes_republished",
    "Final outcomes published again for a request already held (a re-request).",
)
PROFILE_WAITS = metrics.counter(
    "profile_waits",
    "Times a request was deferred because the profile copy had not reached its trigger.",
)
REQUESTS_DUPLICATE = metrics.counter(
    "requests_duplicate", "Dispatch requests dropped because their dispatch id was already held."
)
DEAD_LETTERS = metrics.counter(
    "dead_letters", "Requests written to dispatch.requests.dlq (failed for good)."
)
TRACKED = metrics.counter(
    "tracking_events", "Engagement events recorded by the public endpoints, by event.", ["event"]
)
LINKS_REFUSED = metrics.counter(
    "links_refused", "Tracking links refused (tampered or expired), by purpose.", ["purpose"]
)
REQUEST_TO_HANDOFF_SECONDS = metrics.histogram(
    "request_to_handoff_seconds",
    "From a request's requestedAt to the provider's acceptance (send time now; a "
    "deferral's wait included).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RECORD_GROUP_SIZE = metrics.histogram(
    "record_group_size",
    "Send results recorded by one transaction (each send is recorded as it finishes, "
    "with those that finished meanwhile).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
# Offers: the pool label is an admin-created pool id (a handful), never a customer.
COUPONS_AVAILABLE = metrics.gauge(
    "coupons_available",
    "Codes of a coupon pool not drawn yet (alert: deploy/prometheus/rules/offers.yml).",
    ["pool"],
)
COUPON_LOW_WATER = metrics.gauge(
    "coupon_pool_low_water",
    "A coupon pool's low-water mark: below it, TenureCouponPoolLow fires.",
    ["pool"],
)
COUPONS_ISSUED = metrics.counter(
    "coupons_drawn",
    "Pool codes drawn for messages (a retried dispatch finds its code: not counted twice).",
)
