"""A journey's document: triggers, entry rules, goal and steps, as pydantic models.

A definition is validated as a whole (:class:`JourneyDefinition`): besides each
field, the step graph must hold together — every ``next`` names a step, every step
is reachable from the first, and no loop goes round without a wait. A failure names
the step at fault (its id and its place in ``steps``); the API answers it with 422.
See ``docs/journeys.md`` for the reference and worked examples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.events.channels import Channel
from shared.events.dispatch_requests import Priority, SendNow, SendTimePolicy
from shared.rules.json_values import COMPARE, compare_numbers, is_number, json_equal
from shared.validation import INT32_MAX, FiniteFloat, SafeJson, SafeModel, SafeStr

StepId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Name = Annotated[SafeStr, StringConstraints(min_length=1, max_length=255)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration")
    if value > timedelta(days=3650):
        raise ValueError("must be at most 3650 days")
    return value


Duration = Annotated[timedelta, AfterValidator(_positive)]
"""An ISO-8601 duration (``"P3D"``, ``"PT2H"``) or a number of seconds."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- conditions --------------------------------------------------------------------------

CompareOp = Literal["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"]


class ValueTest(Model):
    """A test of one JSON value, with the segmenter's semantics (jsonb comparisons):
    ``eq``/``neq`` JSON equality, ordering on numbers or on strings (never across),
    ``in`` a list, ``contains`` (a substring, or an element of an array), ``exists``."""

    op: CompareOp
    value: SafeJson = None

    @model_validator(mode="after")
    def _value_fits(self) -> ValueTest:
        if self.op == "exists":
            if not isinstance(self.value, bool):
                raise ValueError("`exists` takes true or false")
        elif self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError("`in` takes a non-empty list")
        elif self.value is None:
            raise ValueError(f"`{self.op}` needs a value (use `exists` for presence)")
        elif self.op in ("gt", "gte", "lt", "lte") and not (
            isinstance(self.value, str) or is_number(self.value)
        ):
            raise ValueError(f"`{self.op}` compares numbers or strings")
        return self

    def test(self, actual: Any) -> bool:
        op, expected = self.op, self.value
        if op == "exists":
            return (actual is not None) is expected
        if actual is None:
            return op == "neq"
        if op == "eq":
            return json_equal(actual, expected)
        if op == "neq":
            return not json_equal(actual, expected)
        if op == "in":
            return any(json_equal(actual, v) for v in expected)  # type: ignore[union-attr]
        if op == "contains":
            if isinstance(actual, str):
                return isinstance(expected, str) and expected in actual
            if isinstance(actual, list):
                return any(json_equal(item, expected) for item in actual)
            return False
        compare = COMPARE[op]
        if isinstance(expected, str):
            return isinstance(actual, str) and compare(actual, expected)
        return is_number(actual) and compare(compare_numbers(actual, expected), 0)  # type: ignore[arg-type]


class PropertyFilter(ValueTest):
    """A test of an event property; ``property`` may be a dotted path (``cart.total``)."""

    property: Name


def property_at(properties: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of ``properties`` (the whole key first), else None."""
    if path in properties:
        return properties[path]
    value: Any = properties
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def filters_match(filters: tuple[PropertyFilter, ...], properties: Mapping[str, Any]) -> bool:
    return all(f.test(property_at(properties, f.property)) for f in filters)


class SegmentCondition(Model):
    kind: Literal["segment"]
    segment_id: Name
    #: true: is a member now; false: is not
    member: bool = True


class TraitCondition(ValueTest):
    kind: Literal["trait"]
    trait: Name


class ScoreCondition(Model):
    kind: Literal["score"]
    score: Literal["churn_risk", "predicted_ltv"]
    op: Literal["gt", "gte", "lt", "lte", "eq", "neq"]
    value: FiniteFloat


class RfmTierCondition(Model):
    kind: Literal["rfm_tier"]
    tiers: tuple[Name, ...] = Field(min_length=1)


class TriggerCondition(ValueTest):
    """A property of the event that started the run."""

    kind: Literal["trigger"]
    property: Name


class AllCondition(Model):
    kind: Literal["all"]
    conditions: tuple[Condition, ...] = Field(min_length=1)


class AnyCondition(Model):
    kind: Literal["any"]
    conditions: tuple[Condition, ...] = Field(min_length=1)


class NotCondition(Model):
    kind: Literal["not"]
    condition: Condition


Condition = Annotated[
    SegmentCondition
    | TraitCondition
    | ScoreCondition
    | RfmTierCondition
    | TriggerCondition
    | AllCondition
    | AnyCondition
    | NotCondition,
    Field(discriminator="kind"),
]


# --- triggers, entry, goal ---------------------------------------------------------------


class EventTrigger(Model):
    """A ``track`` event named ``event`` whose properties pass every filter."""

    kind: Literal["event"]
    event: Name
    where: tuple[PropertyFilter, ...] = ()


class SegmentTrigger(Model):
    """The customer entered (or left) a segment of the segmenter."""

    kind: Literal["segment"]
    segment_id: Name
    on: Literal["entered", "left"] = "entered"


Trigger = Annotated[EventTrigger | SegmentTrigger, Field(discriminator="kind")]


class Entry(Model):
    """Who may enter again: ``once`` ever; ``one_at_a_time`` (again once the previous
    run's steps are done); ``cooldown`` (``one_at_a_time``, and not before ``cooldown``
    after the previous entry)."""

    mode: Literal["once", "one_at_a_time", "cooldown"] = "one_at_a_time"
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _cooldown_given(self) -> Entry:
        if (self.mode == "cooldown") != (self.cooldown is not None):
            raise ValueError("`cooldown` is required with mode `cooldown`, and only with it")
        return self


class Goal(Model):
    """A ``track`` event within ``within`` of entry converts the run (once); with
    ``ends_run`` it also ends it. A run whose steps are done waits for the rest of the
    window, so a late conversion still counts."""

    event: Name
    where: tuple[PropertyFilter, ...] = ()
    within: Duration
    ends_run: bool = True


# --- steps -------------------------------------------------------------------------------


class StepBase(Model):
    id: StepId
    name: str | None = Field(default=None, max_length=255)


class SendStep(StepBase):
    """Ask the dispatcher to send a template on the first reachable channel. The run
    goes on at once to ``next``; with ``on_failure`` it first waits (at most
    ``outcome_timeout``) for the dispatch's outcome, and a suppressed or failed
    dispatch goes to ``on_failure``. Either way a send never stalls a run."""

    type: Literal["send"]
    channels: tuple[Channel, ...] = Field(min_length=1, max_length=len(Channel))
    template_id: Name
    #: at most 2³¹−1, the dispatcher's limit (a PostgreSQL integer)
    template_version: int | None = Field(default=None, ge=1, le=INT32_MAX)
    subscription_topic: str | None = Field(default=None, min_length=1, max_length=128)
    priority: Priority = Priority.NORMAL
    send_time: SendTimePolicy = Field(default_factory=SendNow)
    #: the request expires this long after it was made
    expires_after: Duration | None = None
    #: values for the template beside the trigger's properties
    context: dict[SafeStr, SafeJson] = Field(default_factory=dict)
    next: StepId
    on_failure: StepId | None = None
    outcome_timeout: Duration = timedelta(days=1)

    @model_validator(mode="after")
    def _distinct(self) -> SendStep:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


class WaitStep(StepBase):
    type: Literal["wait"]
    duration: Duration
    next: StepId


class WaitUntilStep(StepBase):
    """Wait until the next ``at`` (local time of day) in the customer's timezone (the
    journey's ``timezone`` when the profile has none), on one of ``weekdays`` (ISO,
    1 = Monday) when given. An instant exactly at ``at`` waits a whole day."""

    type: Literal["wait_until"]
    at: time
    weekdays: tuple[Annotated[int, Field(ge=1, le=7)], ...] | None = Field(
        default=None, min_length=1
    )
    next: StepId


class EventMatch(Model):
    """The awaited event's ``property`` must equal the trigger's ``trigger_property``
    (default: the same name) — the cart of the abandoned-cart reminder."""

    property: Name
    trigger_property: Name | None = None


class WaitForEventStep(StepBase):
    """Wait for a ``track`` event (``next``), at most ``timeout`` (``on_timeout``)."""

    type: Literal["wait_for_event"]
    event: Name
    where: tuple[PropertyFilter, ...] = ()
    match: EventMatch | None = None
    timeout: Duration
    next: StepId
    on_timeout: StepId


Engagement = Literal["opened", "clicked", "delivered", "bounced"]


class WaitForEngagementStep(StepBase):
    """Wait for the customer to engage with the message of send step ``send_step``
    (opened / clicked: engagement events carrying its ``dispatchId``; delivered /
    bounced: its dispatch outcomes), at most ``timeout``. Engaged: ``next``; else
    ``on_timeout`` (the "not opened" follow-up)."""

    type: Literal["wait_for_engagement"]
    send_step: StepId
    engagement: Engagement = "opened"
    timeout: Duration
    next: StepId
    on_timeout: StepId


class BranchCase(Model):
    when: Condition
    next: StepId


class BranchStep(StepBase):
    """The first case whose condition holds, else ``otherwise``."""

    type: Literal["branch"]
    cases: tuple[BranchCase, ...] = Field(min_length=1, max_length=20)
    otherwise: StepId


class Variant(Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    weight: Annotated[FiniteFloat, Field(gt=0)]
    next: StepId


class SplitStep(StepBase):
    """Random by weight, but the same customer always draws the same variant of the
    same split (a hash of journey, step and customer). With ``promote_winner`` new
    arrivals all take the winner once metrics decided one (``experiment.decisions``)."""

    type: Literal["split"]
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=10)
    promote_winner: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> SplitStep:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be distinct")
        return self


class UpdateTraitStep(StepBase):
    """Set profile traits: an ``identify`` event on ``customer.events``."""

    type: Literal["update_trait"]
    traits: dict[Name, SafeJson] = Field(min_length=1)
    next: StepId


class ExitStep(StepBase):
    type: Literal["exit"]


Step = Annotated[
    SendStep
    | WaitStep
    | WaitUntilStep
    | WaitForEventStep
    | WaitForEngagementStep
    | BranchStep
    | SplitStep
    | UpdateTraitStep
    | ExitStep,
    Field(discriminator="type"),
]

WAIT_TYPES = ("wait", "wait_until", "wait_for_event", "wait_for_engagement")


def successors(step: Step) -> list[str]:
    """The steps a step may go to, in order."""
    match step:
        case SendStep():
            return [step.next] + ([step.on_failure] if step.on_failure else [])
        case WaitForEventStep() | WaitForEngagementStep():
            return [step.next, step.on_timeout]
        case BranchStep():
            return [*(case.next for case in step.cases), step.otherwise]
        case SplitStep():
            return [variant.next for variant in step.variants]
        case ExitStep():
            return []
        case _:
            return [step.next]


# --- the document ------------------------------------------------------------------------


class JourneyDefinition(Model, SafeModel):
    """A journey's definition; the first of ``steps`` is where a run starts. No string,
    key, number or date in it may be one storage refuses (:mod:`shared.validation`)."""

    triggers: tuple[Trigger, ...] = Field(min_length=1, max_length=10)
    entry: Entry = Entry()
    #: only members of this segment enter
    audience_segment: Name | None = None
    #: a run whose customer leaves ``audience_segment`` exits
    exit_on_audience_leave: bool = False
    #: this share of entrants (by a hash of journey and customer) is held out
    holdout_percent: Annotated[FiniteFloat, Field(ge=0, le=100)] = 0.0
    goal: Goal | None = None
    #: the timezone of customers whose profile has none (IANA name)
    timezone: str = "UTC"
    steps: tuple[Step, ...] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _graph(self) -> JourneyDefinition:
        check_graph(self.steps)
        _check_timezone(self.timezone)
        return self

    @property
    def first_step(self) -> str:
        return self.steps[0].id

    def step(self, step_id: str) -> Step:
        return self.by_id[step_id]

    @property
    def by_id(self) -> dict[str, Step]:
        cached: dict[str, Step] | None = self.__dict__.get("_by_id")
        if cached is None:
            cached = {s.id: s for s in self.steps}
            object.__setattr__(self, "_by_id", cached)  # frozen model: a private cache
        return cached

    def outcome_steps(self) -> set[str]:
        """The send steps whose dispatch outcomes a run reads: those with a failure
        branch, and those a wait for engagement is about."""
        steps = {s.id for s in self.steps if isinstance(s, SendStep) and s.on_failure}
        steps |= {s.send_step for s in self.steps if isinstance(s, WaitForEngagementStep)}
        return steps

    def event_names(self) -> set[str]:
        """Every event name a run of this definition reads: triggers, goal, waits."""
        names = {t.event for t in self.triggers if isinstance(t, EventTrigger)}
        if self.goal is not None:
            names.add(self.goal.event)
        names |= {s.event for s in self.steps if isinstance(s, WaitForEventStep)}
        if any(
            isinstance(s, WaitForEngagementStep) and s.engagement in ("opened", "clicked")
            for s in self.steps
        ):
            from shared.events.engagement import CLICKED_EVENTS, OPENED_EVENTS

            names |= OPENED_EVENTS | CLICKED_EVENTS
        return names


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "unknown_timezone", "timezone '{name}' is not an IANA timezone", {"name": name}
        ) from None


def _step_error(step: Step, index: int, message: str) -> PydanticCustomError:
    return PydanticCustomError(
        "invalid_step",
        "step '{step}' (steps[{index}]): {message}",
        {"step": step.id, "index": index, "message": message},
    )


def check_graph(steps: tuple[Step, ...]) -> None:
    """Raise naming the first step at fault: a repeated id, a ``next`` to no step, an
    unreachable step, a loop without a wait, a wait for engagement with no send step."""
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.id in index:
            raise _step_error(step, i, "another step has this id")
        index[step.id] = i
    by_id = {s.id: s for s in steps}
    for i, step in enumerate(steps):
        for target in successors(step):
            if target not in by_id:
                raise _step_error(step, i, f"goes to {target!r}, which is not a step")
        if isinstance(step, WaitForEngagementStep):
            sender = by_id.get(step.send_step)
            if not isinstance(sender, SendStep):
                raise _step_error(step, i, f"send_step {step.send_step!r} is not a send step")
    reached = set(_walk(steps[0].id, by_id))
    for i, step in enumerate(steps):
        if step.id not in reached:
            raise _step_error(step, i, "is unreachable from the first step")
    loop = _loop_without_wait(by_id)
    if loop is not None:
        first = loop[0]
        raise _step_error(
            by_id[first], index[first], f"loops back without a wait: {' -> '.join(loop)}"
        )


def _walk(start: str, by_id: Mapping[str, Step]) -> Iterator[str]:
    seen = {start}
    stack = [start]
    while stack:
        current = stack.pop()
        yield current
        for target in successors(by_id[current]):
            if target not in seen:
                seen.add(target)
                stack.append(target)


def _loop_without_wait(by_id: Mapping[str, Step]) -> list[str] | None:
    """A cycle through steps none of which waits, as a path, else None."""
    instant = {k: s for k, s in by_id.items() if s.type not in WAIT_TYPES}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in successors(instant[node]):
            if target not in instant:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in instant:
        if node not in state:
            found = visit(node)
            if found is not None:
                return found
    return None
