"""``journey.runs``: what happens to a customer's run through a journey.

Keyed by customer id, in order per run (``seq``). A run starts with ``entered`` (or
``held_out``: the customer drew the holdout and receives nothing, but their
conversions are still reported, for uplift) and ends with ``exited``; between them
``step_reached`` for each step, ``waiting`` for each wait, ``converted`` when the
goal event came within the conversion window. ``event_id`` is unique per event, so
consumers drop redeliveries.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from shared.events.base import EventModel, UtcDatetime

TOPIC = "journey.runs"
DLQ_TOPIC = f"{TOPIC}.dlq"

Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class RunEventKind(StrEnum):
    ENTERED = "entered"
    HELD_OUT = "held_out"
    STEP_REACHED = "step_reached"
    WAITING = "waiting"
    CONVERTED = "converted"
    EXITED = "exited"


class ExitReason(StrEnum):
    COMPLETED = "completed"  # reached an exit step or the end of a path
    GOAL = "goal"  # converted, and the goal ends the run
    STOPPED = "stopped"  # stopped through the API
    ARCHIVED = "archived"  # the journey was archived with the run in flight
    ERASED = "erased"  # the customer was erased
    HOLDOUT = "holdout"  # a held-out run's conversion window closed
    ERROR = "error"  # a step could not run (named in ``detail``)


class JourneyRunEvent(EventModel):
    schema_version: Literal[1] = 1
    event_id: Identifier
    kind: RunEventKind
    run_id: Identifier
    seq: int = Field(ge=0)
    customer_id: Identifier
    journey_id: Identifier
    journey_version: int = Field(ge=1)
    at: UtcDatetime
    entered_at: UtcDatetime
    holdout: bool = False
    step_id: str | None = None
    #: the step's type for ``step_reached`` (send, wait, branch, split…)
    step_type: str | None = None
    #: the variant the run drew at a split (set from then on)
    variant: str | None = None
    #: ``waiting``: until when, and for which event if it waits for one
    waiting_until: UtcDatetime | None = None
    waiting_for: str | None = None
    #: ``converted``: the goal event
    goal_event: str | None = None
    exit_reason: ExitReason | None = None
    detail: str | None = Field(default=None, max_length=1024)
    #: ``step_reached`` of a send step: the dispatch it requested
    dispatch_id: str | None = None

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()
