"""A run is a per-customer state machine; a transition is a pure function.

``apply(definition, run, input, now, facts) -> Transition(run, timer, outputs)``:
the new run, when it must be woken next (its one timer; ``None``: none), and what
to emit — ``journey.runs`` events, ``dispatch.requests`` and trait updates (identify
events for ``customer.events``). Nothing here reads a clock, a database or a broker:
the consumer, the timer sweep, the API and the simulator all call the same functions,
and tests drive them on a virtual clock.

Everything a transition emits has a deterministic id (the run id and its ``seq``, the
run, step and visit), so a transition applied twice emits the same messages twice,
which consumers drop by id.

A send never stalls a run: without ``on_failure`` the run goes on at once; with it,
the run waits for the outcome at most ``outcome_timeout`` and then goes on.

A request carries ``requires``: the ``customer.events`` position of the input the
transition applies (the trigger event's, or the segment change's), so the dispatcher
decides it on a profile at least that new; a timer's or an outcome's transition
requires none (see "Freshness" in docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from services.journey.conditions import condition_holds, next_local_time
from services.journey.definition import (
    BranchStep,
    Condition,
    Entry,
    EventTrigger,
    ExitStep,
    JourneyDefinition,
    SegmentTrigger,
    SendStep,
    SplitStep,
    UpdateTraitStep,
    WaitForEngagementStep,
    WaitForEventStep,
    WaitStep,
    WaitUntilStep,
    filters_match,
    property_at,
)
from shared.events import engagement
from shared.events.base import Position
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import Status
from shared.events.dispatch_requests import DispatchRequest, dispatch_id_for
from shared.events.journey_runs import ExitReason, JourneyRunEvent, RunEventKind
from shared.rules.json_values import json_equal

#: steps one transition may walk without reaching a wait (validation forbids loops
#: without a wait, so only a very long chain of instant steps gets here)
MAX_STEPS_PER_TRANSITION = 250
_NAMESPACE = uuid.UUID("0f3d2c85-8a8e-4b61-9a57-3c1f4c6a9b27")

_ENGAGED_BY_OUTCOME = {("delivered", Status.DELIVERED), ("bounced", Status.BOUNCED)}

WaitKind = Literal["duration", "until", "event", "engagement", "outcome", "goal"]


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a run waits for, and until when (its timer)."""

    kind: WaitKind
    until: datetime
    #: ``event``: the awaited event's name; ``goal``: the goal event's
    event: str | None = None
    #: ``event`` with a match: the value the awaited property must equal
    match: Any = None
    #: ``engagement`` / ``outcome``: the dispatch it is about
    dispatch_id: str | None = None


@dataclass(slots=True)
class Run:
    """A run's state. Transitions never change the run they are given: they work on a
    copy (:func:`apply`), so callers may treat runs as values."""

    run_id: str
    journey_id: str
    version: int
    customer_id: str
    entered_at: datetime
    #: ``active``: in flight (on its steps, or its steps done and the goal window open)
    status: Literal["active", "exited"] = "active"
    #: the step the run waits at; ``None`` once its steps are done
    step_id: str | None = None
    waiting: Waiting | None = None
    holdout: bool = False
    variant: str | None = None
    trigger_event: str | None = None
    trigger: Mapping[str, Any] = field(default_factory=dict)
    visits: Mapping[str, int] = field(default_factory=dict)
    #: the ``seq`` of the next ``journey.runs`` event
    seq: int = 0
    converted_at: datetime | None = None
    exited_at: datetime | None = None
    exit_reason: ExitReason | None = None

    def clone(self) -> Run:
        """A copy to change (``copy.copy`` of a slotted dataclass is several times slower)."""
        return Run(
            self.run_id,
            self.journey_id,
            self.version,
            self.customer_id,
            self.entered_at,
            self.status,
            self.step_id,
            self.waiting,
            self.holdout,
            self.variant,
            self.trigger_event,
            self.trigger,
            self.visits,
            self.seq,
            self.converted_at,
            self.exited_at,
            self.exit_reason,
        )

    @property
    def wake_at(self) -> datetime | None:
        return self.waiting.until if self.waiting is not None and self.status == "active" else None

    @property
    def on_steps(self) -> bool:
        """Still walking its steps (the entry rules' "in flight")."""
        return self.status == "active" and self.step_id is not None


# --- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventInput:
    """A ``track`` event of the run's customer."""

    name: str
    properties: Mapping[str, Any]
    at: datetime
    #: where it sits in ``customer.events``
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class OutcomeInput:
    dispatch_id: str
    status: Status
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentInput:
    segment_id: str
    entered: bool
    #: the ``customer.events`` position the change was folded from
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    reason: ExitReason = ExitReason.STOPPED
    detail: str | None = None


Input = EventInput | OutcomeInput | SegmentInput | TimerFired | Stop


@dataclass(frozen=True, slots=True)
class Facts:
    """What branches, local times and splits read: this service's projections."""

    traits: Mapping[str, Any] = field(default_factory=dict)
    memberships: frozenset[str] = frozenset()
    churn_risk: float | None = None
    predicted_ltv: float | None = None
    rfm_tier: str | None = None
    timezone: str | None = None
    #: promoted split winners of this journey: step id -> variant
    winners: Mapping[str, str] = field(default_factory=dict)


Output = JourneyRunEvent | DispatchRequest | CustomerEvent


@dataclass(frozen=True, slots=True)
class Transition:
    run: Run
    timer: datetime | None
    outputs: list[Output]


# --- entering ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryHistory:
    """A customer's past in one journey (any version): when they last entered, and
    whether a run of theirs is still on its steps."""

    last_entered_at: datetime | None = None
    on_steps: bool = False


def may_enter(entry: Entry, history: EntryHistory, now: datetime) -> bool:
    if history.last_entered_at is None:
        return True
    if entry.mode == "once":
        return False
    if history.on_steps:
        return False
    if entry.mode == "cooldown":
        assert entry.cooldown is not None
        return now - history.last_entered_at >= entry.cooldown
    return True


def trigger_matches(
    definition: JourneyDefinition,
    *,
    event: str | None = None,
    properties: Mapping[str, Any] | None = None,
    segment_id: str | None = None,
    entered: bool | None = None,
) -> bool:
    """Whether an event, or a segment change, fires one of the journey's triggers."""
    for trigger in definition.triggers:
        if isinstance(trigger, EventTrigger):
            if event == trigger.event and filters_match(trigger.where, properties or {}):
                return True
        elif (
            isinstance(trigger, SegmentTrigger)
            and segment_id == trigger.segment_id
            and entered is not None
            and entered == (trigger.on == "entered")
        ):
            return True
    return False


def run_id_for(*, journey_id: str, customer_id: str, cause_id: str) -> str:
    """The run a trigger message starts: the same message always names the same run."""
    return str(uuid.uuid5(_NAMESPACE, f"run\x1f{journey_id}\x1f{customer_id}\x1f{cause_id}"))


def bucket(*parts: str) -> float:
    """A uniform number in [0, 1) from ``parts``: the same parts, the same number."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_held_out(definition: JourneyDefinition, journey_id: str, customer_id: str) -> bool:
    return bucket(journey_id, "holdout", customer_id) * 100 < definition.holdout_percent


def enter(
    definition: JourneyDefinition,
    *,
    journey_id: str,
    version: int,
    customer_id: str,
    run_id: str,
    trigger_event: str | None,
    trigger: Mapping[str, Any],
    now: datetime,
    facts: Facts,
    position: Position | None = None,
) -> Transition:
    """Start a run (the caller checked the entry rules and the audience); ``position``:
    the trigger's in ``customer.events``, which its requests require."""
    holdout = is_held_out(definition, journey_id, customer_id)
    run = Run(
        run_id=run_id,
        journey_id=journey_id,
        version=version,
        customer_id=customer_id,
        entered_at=now,
        holdout=holdout,
        trigger_event=trigger_event,
        trigger=dict(trigger),
    )
    walk = _Walk(definition, run, now, facts, position)
    walk.emit(RunEventKind.HELD_OUT if holdout else RunEventKind.ENTERED)
    if holdout:
        walk.steps_done()
    else:
        walk.go(definition.first_step)
    return walk.result()


# --- transitions -------------------------------------------------------------------------


def apply(
    definition: JourneyDefinition, run: Run, given: Input, now: datetime, facts: Facts
) -> Transition:
    """The run after ``given`` at ``now``. A run that exited stays as it is."""
    if run.status != "active":
        return Transition(run, None, [])
    position = given.position if isinstance(given, EventInput | SegmentInput) else None
    walk = _Walk(definition, run, now, facts, position)
    match given:
        case Stop():
            walk.exit(given.reason, given.detail)
        case EventInput():
            walk.on_event(given)
        case OutcomeInput():
            walk.on_outcome(given)
        case SegmentInput():
            walk.on_segment(given)
        case TimerFired():
            walk.on_timer()
    return walk.result()


class _Walk:
    """One transition in progress: the run as it changes, and what it emits."""

    def __init__(
        self,
        definition: JourneyDefinition,
        run: Run,
        now: datetime,
        facts: Facts,
        position: Position | None = None,
    ) -> None:
        self.d = definition
        self.run = run.clone()  # the walk changes its own copy, never the caller's run
        self.now = now
        self.facts = facts
        #: the input's position: what the requests of this transition require
        self.position = position
        self.outputs: list[Output] = []

    def result(self) -> Transition:
        return Transition(self.run, self.run.wake_at, self.outputs)

    # -- emitting ----------------------------------------------------------------------

    def emit(self, kind: RunEventKind, **fields: Any) -> None:
        run = self.run
        # built from values already valid (the run's, the definition's): construct, not
        # validate, a third of a timer firing's time otherwise
        self.outputs.append(
            _construct(
                JourneyRunEvent,
                event_id=f"{run.run_id}:{run.seq}",
                kind=kind,
                run_id=run.run_id,
                seq=run.seq,
                customer_id=run.customer_id,
                journey_id=run.journey_id,
                journey_version=run.version,
                at=self.now,
                entered_at=run.entered_at,
                holdout=run.holdout,
                variant=run.variant,
                **fields,
            )
        )
        run.seq += 1

    def exit(self, reason: ExitReason, detail: str | None = None) -> None:
        run = self.run
        run.status, run.waiting, run.exited_at, run.exit_reason = "exited", None, self.now, reason
        self.emit(RunEventKind.EXITED, step_id=self.run.step_id, exit_reason=reason, detail=detail)

    def wait(self, waiting: Waiting) -> None:
        self.run.waiting = waiting
        self.emit(
            RunEventKind.WAITING,
            step_id=self.run.step_id,
            waiting_until=waiting.until,
            waiting_for=waiting.event,
        )

    def steps_done(self) -> None:
        """The run's steps are done: it ends, unless the goal window is still open."""
        run = self.run
        run.step_id, run.waiting = None, None
        goal = self.d.goal
        if goal is not None and run.converted_at is None:
            until = run.entered_at + goal.within
            if until > self.now:
                self.wait(Waiting("goal", until, event=goal.event))
                return
        self.exit(ExitReason.HOLDOUT if run.holdout else ExitReason.COMPLETED)

    # -- walking steps -----------------------------------------------------------------

    def go(self, step_id: str) -> None:
        """Walk from ``step_id`` until a wait or the end."""
        for _ in range(MAX_STEPS_PER_TRANSITION):
            step = self.d.step(step_id)
            visits = dict(self.run.visits)
            visits[step_id] = visit = visits.get(step_id, 0) + 1
            run = self.run
            run.step_id, run.waiting, run.visits = step_id, None, visits
            match step:
                case SendStep():
                    dispatch_id = dispatch_id_for(
                        run_id=self.run.run_id, step_id=step.id, attempt=visit
                    )
                    self.reached(step.type, dispatch_id=dispatch_id)
                    self.outputs.append(self.request(step, dispatch_id))
                    if step.on_failure is None:
                        step_id = step.next
                        continue
                    until = self.now + step.outcome_timeout
                    self.wait(Waiting("outcome", until, dispatch_id=dispatch_id))
                    return
                case WaitStep():
                    self.reached(step.type)
                    self.wait(Waiting("duration", self.now + step.duration))
                    return
                case WaitUntilStep():
                    self.reached(step.type)
                    until = next_local_time(self.now, step.at, step.weekdays, self.timezone())
                    self.wait(Waiting("until", until))
                    return
                case WaitForEventStep():
                    self.reached(step.type)
                    match = None
                    if step.match is not None:
                        key = step.match.trigger_property or step.match.property
                        match = property_at(self.run.trigger, key)
                    self.wait(
                        Waiting("event", self.now + step.timeout, event=step.event, match=match)
                    )
                    return
                case WaitForEngagementStep():
                    self.reached(step.type)
                    sent = self.run.visits.get(step.send_step, 0)
                    if sent == 0:  # the run never passed the send step: nothing to engage with
                        step_id = step.on_timeout
                        continue
                    dispatch_id = dispatch_id_for(
                        run_id=self.run.run_id, step_id=step.send_step, attempt=sent
                    )
                    self.wait(
                        Waiting(
                            "engagement",
                            self.now + step.timeout,
                            event=step.engagement,
                            dispatch_id=dispatch_id,
                        )
                    )
                    return
                case BranchStep():
                    self.reached(step.type)
                    step_id = next(
                        (case.next for case in step.cases if self.holds(case.when)),
                        step.otherwise,
                    )
                case SplitStep():
                    variant = self.draw(step)
                    self.run.variant = variant.name
                    self.reached(step.type)
                    step_id = variant.next
                case UpdateTraitStep():
                    self.reached(step.type)
                    self.outputs.append(self.identify(step, visit))
                    step_id = step.next
                case ExitStep():
                    self.reached(step.type)
                    self.steps_done()
                    return
        self.exit(ExitReason.ERROR, f"more than {MAX_STEPS_PER_TRANSITION} steps without a wait")

    def reached(self, step_type: str, dispatch_id: str | None = None) -> None:
        self.emit(
            RunEventKind.STEP_REACHED,
            step_id=self.run.step_id,
            step_type=step_type,
            dispatch_id=dispatch_id,
        )

    def request(self, step: SendStep, dispatch_id: str) -> DispatchRequest:
        run = self.run
        return _construct(
            DispatchRequest,
            dispatch_id=dispatch_id,
            customer_id=run.customer_id,
            channels=list(step.channels),
            template_id=step.template_id,
            template_version=step.template_version,
            subscription_topic=step.subscription_topic,
            priority=step.priority,
            send_time=step.send_time,
            expires_at=self.now + step.expires_after if step.expires_after else None,
            context={**run.trigger, **step.context},
            journey_id=run.journey_id,
            journey_version=run.version,
            step_id=step.id,
            run_id=run.run_id,
            variant=run.variant,
            requested_at=self.now,
            requires=self.position,
        )

    def identify(self, step: UpdateTraitStep, visit: int) -> CustomerEvent:
        run = self.run
        message_id = str(uuid.uuid5(_NAMESPACE, f"trait\x1f{run.run_id}\x1f{step.id}\x1f{visit}"))
        return CustomerEvent(
            type=EventType.IDENTIFY,
            message_id=message_id,
            user_id=run.customer_id,
            timestamp=self.now,
            received_at=self.now,
            traits=dict(step.traits),
            context={
                "journey": {"journeyId": run.journey_id, "runId": run.run_id, "stepId": step.id}
            },
        )

    def draw(self, step: SplitStep) -> Any:
        if step.promote_winner:
            winner = self.facts.winners.get(step.id)
            for variant in step.variants:
                if variant.name == winner:
                    return variant
        point = bucket(self.run.journey_id, step.id, self.run.customer_id) * sum(
            v.weight for v in step.variants
        )
        for variant in step.variants:
            point -= variant.weight
            if point < 0:
                return variant
        return step.variants[-1]

    def timezone(self) -> ZoneInfo:
        for name in (self.facts.timezone, self.d.timezone):
            if name:
                try:
                    return ZoneInfo(name)
                except (ValueError, KeyError):
                    continue
        return ZoneInfo("UTC")

    def holds(self, condition: Condition) -> bool:
        return condition_holds(condition, self.facts, self.run.trigger)

    # -- inputs ------------------------------------------------------------------------

    def on_event(self, event: EventInput) -> None:
        goal = self.d.goal
        run = self.run
        if (
            goal is not None
            and run.converted_at is None
            and event.name == goal.event
            and event.at <= run.entered_at + goal.within
            and filters_match(goal.where, event.properties)
        ):
            run.converted_at = event.at
            self.emit(RunEventKind.CONVERTED, step_id=run.step_id, goal_event=goal.event)
            if run.holdout:
                self.exit(ExitReason.HOLDOUT)
                return
            if goal.ends_run:
                self.exit(ExitReason.GOAL)
                return
            if self.run.step_id is None:
                self.exit(ExitReason.COMPLETED)
                return
        waiting = self.run.waiting
        if waiting is None or self.run.step_id is None:
            return
        step = self.d.step(self.run.step_id)
        if waiting.kind == "event" and isinstance(step, WaitForEventStep):
            if event.name != step.event or not filters_match(step.where, event.properties):
                return
            if step.match is not None and (
                waiting.match is None  # the trigger had no such key: only the timeout ends it
                or not json_equal(property_at(event.properties, step.match.property), waiting.match)
            ):
                return
            self.go(step.next)
        elif waiting.kind == "engagement" and isinstance(step, WaitForEngagementStep):
            if event.properties.get(engagement.DISPATCH_ID) != waiting.dispatch_id:
                return
            clicked = event.name in engagement.CLICKED_EVENTS
            opened = event.name in engagement.OPENED_EVENTS or clicked
            if (step.engagement == "opened" and opened) or (
                step.engagement == "clicked" and clicked
            ):
                self.go(step.next)

    def on_outcome(self, outcome: OutcomeInput) -> None:
        waiting = self.run.waiting
        if waiting is None or self.run.step_id is None:
            return
        if outcome.dispatch_id != waiting.dispatch_id:
            return
        step = self.d.step(self.run.step_id)
        status = outcome.status
        if waiting.kind == "outcome" and isinstance(step, SendStep):
            if status in (Status.SENT, Status.DELIVERED):
                self.go(step.next)
            elif status in (Status.SUPPRESSED, Status.FAILED, Status.BOUNCED):
                self.go(step.on_failure or step.next)
        elif waiting.kind == "engagement" and isinstance(step, WaitForEngagementStep):
            if (step.engagement, status) in _ENGAGED_BY_OUTCOME:
                self.go(step.next)
            elif status in (Status.SUPPRESSED, Status.FAILED) or (
                status is Status.BOUNCED and step.engagement != "bounced"
            ):
                # nothing was or will be delivered: no engagement can come
                self.go(step.on_timeout)

    def on_segment(self, change: SegmentInput) -> None:
        if (
            self.d.exit_on_audience_leave
            and change.segment_id == self.d.audience_segment
            and not change.entered
        ):
            self.exit(ExitReason.COMPLETED, "left the audience segment")

    def on_timer(self) -> None:
        waiting = self.run.waiting
        if waiting is None or waiting.until > self.now:
            return  # an early or stale firing: the run's own timer stands
        if waiting.kind == "goal" or self.run.step_id is None:
            self.exit(ExitReason.HOLDOUT if self.run.holdout else ExitReason.COMPLETED)
            return
        step = self.d.step(self.run.step_id)
        match step:
            case WaitForEventStep() | WaitForEngagementStep():
                self.go(step.on_timeout)
            case SendStep() | WaitStep() | WaitUntilStep():
                self.go(step.next)
            case _:  # pragma: no cover - only waiting steps wait
                self.exit(ExitReason.ERROR, f"step {step.id!r} cannot wait")


M = TypeVar("M", bound=BaseModel)
_DEFAULTS: dict[type[BaseModel], dict[str, Any]] = {}


def _construct(model: type[M], **values: Any) -> M:
    """``model(**values)`` without validation, for values already valid (the run's, the
    definition's): what ``model_construct`` does, without its per-field Python loop,
    which made it slower than validating. Fields with a default factory must be given.
    A property test checks every output reads back from its bytes unchanged."""
    defaults = _DEFAULTS.get(model)
    if defaults is None:
        defaults = _DEFAULTS[model] = {
            name: None if info.default_factory is not None else info.default
            for name, info in model.model_fields.items()
        }
    data = defaults | values  # the fields in the model's order, as validation makes them
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", data)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance
