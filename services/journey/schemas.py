"""The admin API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from services.journey.definition import JourneyDefinition
from shared.validation import SafeModel

#: a path segment as it is: ASCII letters, digits, ``_ . -``, not only dots (``.`` and
#: ``..`` are resolved away by browsers and clients before a request is sent)
JourneyId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
    ),
]
Status = Literal["draft", "active", "paused", "archived"]


class Body(SafeModel):
    """A request body: no field unknown, nothing storage refuses (NUL, a lone surrogate,
    NaN, a date outside [1970, 2100))."""

    model_config = ConfigDict(extra="forbid")


class JourneyCreate(Body):
    id: JourneyId | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    description: str = ""
    definition: JourneyDefinition


class JourneyUpdate(Body):
    """Changes the draft; runs in flight and the published version are untouched
    until the next publish."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    description: str | None = None
    definition: JourneyDefinition | None = None


class ValidateRequest(Body):
    definition: JourneyDefinition


class ValidatePublic(BaseModel):
    valid: bool = True
    steps: int
    reads_events: list[str]


class JourneyPublic(BaseModel):
    id: str
    name: str
    description: str
    status: Status
    #: the version new entrants take (null: never published)
    version: int | None
    draft: dict[str, Any]
    #: the draft differs from the published version
    unpublished_changes: bool
    created_at: datetime
    updated_at: datetime


class JourneySummaryPublic(BaseModel):
    """A journey in a list, with its live counts over every version."""

    id: str
    name: str
    status: Status
    version: int | None
    updated_at: datetime
    #: runs in flight now
    active: int
    #: runs that converted (a conversion counted at the step it happened)
    converted: int
    #: runs that ended (completed, stopped, archived…)
    exited: int


class JourneySummariesPublic(BaseModel):
    journeys: list[JourneySummaryPublic]
    #: pass as ``after`` for the next page (null: the last page)
    next_after: str | None


class VersionPublic(BaseModel):
    version: int
    definition: dict[str, Any]
    published_at: datetime


class WaitingPublic(BaseModel):
    kind: str
    until: datetime
    event: str | None = None
    dispatch_id: str | None = None


class RunStepPublic(BaseModel):
    """One event of a run's history."""

    seq: int
    kind: str
    at: datetime
    step_id: str | None
    step_type: str | None
    waiting_until: datetime | None
    #: the event a wait waits for, or the goal event of a conversion
    waiting_for: str | None
    exit_reason: str | None
    detail: str | None


class RunPublic(BaseModel):
    run_id: str
    journey_id: str
    journey_version: int
    customer_id: str
    status: Literal["active", "exited"]
    step_id: str | None
    waiting: WaitingPublic | None
    holdout: bool
    variant: str | None
    entered_at: datetime
    converted_at: datetime | None
    exited_at: datetime | None
    exit_reason: str | None
    trigger_event: str | None
    trigger: dict[str, Any]
    #: the run's history, oldest first (asked with ``?steps=true``; else null)
    steps: list[RunStepPublic] | None = None


class RunsPublic(BaseModel):
    runs: list[RunPublic]
    next_after: str | None


class StopRequest(Body):
    detail: str | None = Field(default=None, max_length=1024)


# --- simulation --------------------------------------------------------------------------


class SimulatedProfile(Body):
    traits: dict[str, JsonValue] = Field(default_factory=dict)
    timezone: str | None = None
    churn_risk: float | None = None
    predicted_ltv: float | None = None
    rfm_tier: str | None = None
    memberships: list[str] = Field(default_factory=list)


class SimulatedEvent(Body):
    """A ``track`` event of the customer."""

    at: datetime
    event: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    properties: dict[str, JsonValue] = Field(default_factory=dict)


class SimulatedSegmentChange(Body):
    at: datetime
    segment_id: str
    change: Literal["entered", "exited"] = "entered"


class SimulatedOutcome(Body):
    """What the dispatcher reports for the last request of send step ``step_id``."""

    at: datetime
    step_id: str
    status: Literal["sent", "deferred", "suppressed", "failed", "delivered", "bounced"]


class SimulatedEngagement(Body):
    """The customer opens (or clicks) the last message of send step ``step_id``."""

    at: datetime
    step_id: str
    engagement: Literal["opened", "clicked"] = "opened"


SimulatedInput = SimulatedEvent | SimulatedSegmentChange | SimulatedOutcome | SimulatedEngagement


class SimulateRequest(Body):
    """Walk a customer's history through the journey on a virtual clock. Without
    ``definition``: the journey's draft. Nothing is stored or sent."""

    definition: JourneyDefinition | None = None
    customer_id: str = "simulated-customer"
    profile: SimulatedProfile = Field(default_factory=SimulatedProfile)
    history: list[SimulatedInput] = Field(min_length=1, max_length=1_000)
    #: walk timers up to this instant (default: until every run has ended, within the
    #: service's ``simulate_max_days``)
    until: datetime | None = None
    #: promoted split winners (step id -> variant), as metrics would decide
    winners: dict[str, str] = Field(default_factory=dict)


class SimulatedRun(BaseModel):
    run_id: str
    entered_at: datetime
    holdout: bool
    variant: str | None
    status: str
    exit_reason: str | None
    #: the steps walked, in order
    path: list[str]
    #: the run's journey.runs events, as they would be published
    events: list[dict[str, Any]]
    #: the dispatch requests it would make
    messages: list[dict[str, Any]]
    #: the trait updates (identify events) it would make
    trait_updates: list[dict[str, Any]]


class SimulatePublic(BaseModel):
    runs: list[SimulatedRun]
    #: triggers that started no run, and why
    refused: list[dict[str, Any]]
    ended_at: datetime


class DiagramPublic(BaseModel):
    journey_id: str
    version: int | None
    mermaid: str
    counts: dict[str, dict[str, int]]
