"""``experiment.decisions``: metrics' verdict on a split, for the journey to act on.

Keyed by journey id (a decision is about a journey, not a customer). When a split is
set to promote its winner, the journey service sends new entrants down the winning
variant from the first decision with ``verdict == "winner"`` on. ``decision_id`` is
unique per decision.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from shared.events.base import EventModel, UtcDatetime

TOPIC = "experiment.decisions"
DLQ_TOPIC = f"{TOPIC}.dlq"

Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class Verdict(StrEnum):
    WINNER = "winner"
    NO_WINNER_YET = "no_winner_yet"
    NO_DIFFERENCE = "no_difference"


class VariantResult(EventModel):
    variant: str
    exposed: int = Field(ge=0)
    converted: int = Field(ge=0)
    rate: float
    ci_low: float
    ci_high: float


class ExperimentDecision(EventModel):
    schema_version: Literal[1] = 1
    decision_id: Identifier
    journey_id: Identifier
    journey_version: int = Field(ge=1)
    #: the split step the experiment is about
    step_id: Identifier
    verdict: Verdict
    winner: str | None = None
    #: what was compared: the goal conversion, or a named metric
    metric: str = "conversion"
    #: the sequential test's always-valid p-value of the winner against control
    p_value: float | None = Field(default=None, ge=0, le=1)
    variants: list[VariantResult] = Field(default_factory=list)
    decided_at: UtcDatetime

    @property
    def key(self) -> bytes:
        return self.journey_id.encode()
