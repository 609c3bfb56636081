"""One module per topic: its name, its dead-letter topic and its versioned payload model."""

from shared.events import (
    customer_events,
    dispatch_outcomes,
    dispatch_requests,
    experiment_decisions,
    journey_runs,
    profiles,
    segment_changes,
)

#: Every topic Tenure produces, in flow order; each also has a ``.dlq`` twin.
ALL_TOPICS: tuple[str, ...] = (
    customer_events.TOPIC,
    segment_changes.TOPIC,
    profiles.TOPIC,
    dispatch_requests.TOPIC,
    dispatch_outcomes.TOPIC,
    journey_runs.TOPIC,
    experiment_decisions.TOPIC,
)
