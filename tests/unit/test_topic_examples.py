"""Every example payload of every topic parses with that topic's model and round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events import (
    ALL_TOPICS,
    customer_events,
    dispatch_outcomes,
    dispatch_requests,
    experiment_decisions,
    journey_runs,
    profiles,
    segment_changes,
)
from shared.events.base import EventModel

EXAMPLES = Path(__file__).parent.parent / "examples"
MODELS: dict[str, type[EventModel]] = {
    customer_events.TOPIC: customer_events.CustomerEvent,
    segment_changes.TOPIC: segment_changes.SegmentChange,
    profiles.TOPIC: profiles.ProfileUpdate,
    dispatch_requests.TOPIC: dispatch_requests.DispatchRequest,
    dispatch_outcomes.TOPIC: dispatch_outcomes.DispatchOutcome,
    journey_runs.TOPIC: journey_runs.JourneyRunEvent,
    experiment_decisions.TOPIC: experiment_decisions.ExperimentDecision,
}


def test_every_topic_has_a_model_and_examples() -> None:
    assert set(MODELS) == set(ALL_TOPICS)
    for topic in ALL_TOPICS:
        assert list((EXAMPLES / topic / "v1").glob("*.json")), f"no example for {topic}"


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("*/v*/*.json")), ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_example_parses_and_round_trips(path: Path) -> None:
    model = MODELS[path.parent.parent.name]
    parsed = model.from_bytes(path.read_bytes())
    assert model.from_bytes(parsed.to_bytes()) == parsed
