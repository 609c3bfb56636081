"""Every example payload of every topic parses with that topic's model and round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events import ALL_TOPICS
from shared.events.base import EventModel
from shared.events.registry import TOPICS

EXAMPLES = Path(__file__).parent.parent / "examples"
MODELS: dict[str, type[EventModel]] = {t.name: t.model for t in TOPICS}


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
