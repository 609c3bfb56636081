"""The journeys in docs/journeys.md are valid documents (the docs stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from services.journey.definition import JourneyDefinition

DOC = Path(__file__).parents[3] / "docs" / "journeys.md"
BLOCKS = [
    block
    for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    if '"steps"' in block and "…" not in block
]


def test_the_three_worked_examples_are_there() -> None:
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("block", BLOCKS)
def test_every_example_validates(block: str) -> None:
    JourneyDefinition.model_validate(orjson.loads(block))
