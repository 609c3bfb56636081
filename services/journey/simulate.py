"""Walk a customer's history through a journey on a virtual clock, sending nothing.

The same pure machine the service runs (:mod:`services.journey.machine`): inputs in
time order, every run's timer fired when the clock passes it, entry rules and
audience applied as the consumer applies them. Segment changes in the history
update the simulated memberships as they come.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from services.journey.definition import JourneyDefinition
from services.journey.machine import (
    EntryHistory,
    EventInput,
    Facts,
    Input,
    OutcomeInput,
    Output,
    Run,
    SegmentInput,
    TimerFired,
    enter,
    may_enter,
    run_id_for,
    trigger_matches,
)
from services.journey.schemas import (
    SimulatedEngagement,
    SimulatedEvent,
    SimulatedInput,
    SimulatedOutcome,
    SimulatedSegmentChange,
)
from shared.events import engagement
from shared.events.customer_events import CustomerEvent
from shared.events.dispatch_outcomes import Status
from shared.events.dispatch_requests import DispatchRequest
from shared.events.journey_runs import JourneyRunEvent, RunEventKind

#: timer firings one simulation may make (a guard against a journey that waits forever)
MAX_FIRINGS = 10_000


@dataclass
class SimulatedRunState:
    run: Run
    outputs: list[Output] = field(default_factory=list)


@dataclass
class Simulation:
    runs: list[SimulatedRunState]
    refused: list[dict[str, Any]]
    ended_at: datetime


def simulate(
    definition: JourneyDefinition,
    *,
    journey_id: str,
    version: int,
    customer_id: str,
    facts: Facts,
    history: list[SimulatedInput],
    until: datetime | None,
    max_days: int,
) -> Simulation:
    ordered = sorted(history, key=lambda item: item.at)
    start = ordered[0].at
    horizon = until if until is not None else start + timedelta(days=max_days)
    states: list[SimulatedRunState] = []
    refused: list[dict[str, Any]] = []
    memberships = set(facts.memberships)
    now = start
    firings = 0

    def current_facts() -> Facts:
        return replace(facts, memberships=frozenset(memberships))

    def fire_until(instant: datetime) -> None:
        nonlocal now, firings
        while firings < MAX_FIRINGS:
            due = [s for s in states if s.run.wake_at is not None and s.run.wake_at <= instant]
            if not due:
                return
            state = min(due, key=lambda s: s.run.wake_at)  # type: ignore[arg-type, return-value]
            assert state.run.wake_at is not None
            now = max(now, state.run.wake_at)
            _apply(definition, state, TimerFired(), now, current_facts())
            firings += 1

    for position, item in enumerate(ordered):
        fire_until(item.at)
        now = max(now, item.at)
        if isinstance(item, SimulatedSegmentChange):
            if item.change == "entered":
                memberships.add(item.segment_id)
            else:
                memberships.discard(item.segment_id)
        given = _input(item, states)
        for state in states:
            _apply(definition, state, given, now, current_facts())
        triggered = (
            isinstance(item, SimulatedEvent)
            and trigger_matches(definition, event=item.event, properties=item.properties)
        ) or (
            isinstance(item, SimulatedSegmentChange)
            and trigger_matches(
                definition, segment_id=item.segment_id, entered=item.change == "entered"
            )
        )
        if not triggered:
            continue
        past = _history(states)
        if not may_enter(definition.entry, past, now):
            refused.append({"at": now, "input": position, "reason": "entry_rule"})
            continue
        if definition.audience_segment and definition.audience_segment not in memberships:
            refused.append({"at": now, "input": position, "reason": "audience"})
            continue
        if isinstance(item, SimulatedEvent):
            trigger_event, trigger = item.event, dict(item.properties)
        else:
            assert isinstance(item, SimulatedSegmentChange)
            trigger_event, trigger = None, {"segmentId": item.segment_id, "change": item.change}
        transition = enter(
            definition,
            journey_id=journey_id,
            version=version,
            customer_id=customer_id,
            run_id=run_id_for(
                journey_id=journey_id, customer_id=customer_id, cause_id=f"simulated:{position}"
            ),
            trigger_event=trigger_event,
            trigger=trigger,
            now=now,
            facts=current_facts(),
        )
        states.append(SimulatedRunState(transition.run, list(transition.outputs)))
    fire_until(horizon)
    return Simulation(states, refused, now)


def _apply(
    definition: JourneyDefinition,
    state: SimulatedRunState,
    given: Input,
    now: datetime,
    facts: Facts,
) -> None:
    from services.journey.machine import apply

    transition = apply(definition, state.run, given, now, facts)
    state.run = transition.run
    state.outputs += transition.outputs


def _history(states: list[SimulatedRunState]) -> EntryHistory:
    if not states:
        return EntryHistory()
    return EntryHistory(
        last_entered_at=max(s.run.entered_at for s in states),
        on_steps=any(s.run.on_steps for s in states),
    )


def _last_dispatch(states: list[SimulatedRunState], step_id: str) -> str:
    for state in reversed(states):
        for output in reversed(state.outputs):
            if isinstance(output, DispatchRequest) and output.step_id == step_id:
                return output.dispatch_id
    return "none"


def _input(item: SimulatedInput, states: list[SimulatedRunState]) -> Input:
    if isinstance(item, SimulatedEvent):
        return EventInput(item.event, item.properties, item.at)
    if isinstance(item, SimulatedSegmentChange):
        return SegmentInput(item.segment_id, item.change == "entered")
    if isinstance(item, SimulatedOutcome):
        return OutcomeInput(_last_dispatch(states, item.step_id), Status(item.status))
    assert isinstance(item, SimulatedEngagement)
    name = engagement.EMAIL_OPENED if item.engagement == "opened" else engagement.EMAIL_LINK_CLICKED
    return EventInput(name, {engagement.DISPATCH_ID: _last_dispatch(states, item.step_id)}, item.at)


def describe(state: SimulatedRunState) -> dict[str, Any]:
    """A simulated run as the API answers it."""
    events = [o for o in state.outputs if isinstance(o, JourneyRunEvent)]
    run = state.run
    return {
        "run_id": run.run_id,
        "entered_at": run.entered_at,
        "holdout": run.holdout,
        "variant": run.variant,
        "status": run.status,
        "exit_reason": run.exit_reason.value if run.exit_reason else None,
        "path": [e.step_id for e in events if e.kind is RunEventKind.STEP_REACHED and e.step_id],
        "events": [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in events],
        "messages": [
            o.model_dump(mode="json", by_alias=True, exclude_none=True)
            for o in state.outputs
            if isinstance(o, DispatchRequest)
        ],
        "trait_updates": [
            o.model_dump(mode="json", by_alias=True, exclude_none=True)
            for o in state.outputs
            if isinstance(o, CustomerEvent)
        ],
    }
