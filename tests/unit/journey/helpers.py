"""Building journeys and driving runs through the pure machine in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.journey.definition import JourneyDefinition
from services.journey.machine import Facts, Input, Output, Run, Transition, apply, enter
from shared.events.dispatch_requests import DispatchRequest
from shared.events.journey_runs import JourneyRunEvent

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

ABANDONED_CART = {
    "triggers": [{"kind": "event", "event": "Cart Updated"}],
    "goal": {"event": "Order Completed", "within": "P3D"},
    "steps": [
        {
            "id": "wait_order",
            "type": "wait_for_event",
            "event": "Order Completed",
            "match": {"property": "cart_id"},
            "timeout": "PT4H",
            "next": "done",
            "on_timeout": "remind",
        },
        {
            "id": "remind",
            "type": "send",
            "channels": ["email"],
            "template_id": "cart-reminder",
            "next": "done",
        },
        {"id": "done", "type": "exit"},
    ],
}


def definition(document: dict[str, Any]) -> JourneyDefinition:
    return JourneyDefinition.model_validate(document)


@dataclass
class Driver:
    """One run of ``journey`` on a virtual clock, with everything it emitted."""

    journey: JourneyDefinition
    customer_id: str = "c1"
    now: datetime = START
    facts: Facts = field(default_factory=Facts)
    run: Run | None = None
    outputs: list[Output] = field(default_factory=list)
    timer: datetime | None = None

    def enter(self, trigger: dict[str, Any] | None = None, event: str = "Cart Updated") -> Driver:
        t = enter(
            self.journey,
            journey_id="j1",
            version=1,
            customer_id=self.customer_id,
            run_id=f"run-{self.customer_id}",
            trigger_event=event,
            trigger=trigger or {},
            now=self.now,
            facts=self.facts,
        )
        return self._took(t)

    def give(self, given: Input) -> Driver:
        assert self.run is not None
        return self._took(apply(self.journey, self.run, given, self.now, self.facts))

    def advance(self, **delta: float) -> Driver:
        self.now += timedelta(**delta)
        return self

    def fire(self) -> Driver:
        """Move the clock to the run's timer and fire it."""
        from services.journey.machine import TimerFired

        assert self.timer is not None, "the run has no timer"
        self.now = max(self.now, self.timer)
        return self.give(TimerFired())

    def _took(self, t: Transition) -> Driver:
        self.run, self.timer = t.run, t.timer
        self.outputs += t.outputs
        return self

    @property
    def events(self) -> list[JourneyRunEvent]:
        return [o for o in self.outputs if isinstance(o, JourneyRunEvent)]

    @property
    def kinds(self) -> list[str]:
        return [f"{e.kind.value}:{e.step_id or ''}" for e in self.events]

    @property
    def requests(self) -> list[DispatchRequest]:
        return [o for o in self.outputs if isinstance(o, DispatchRequest)]
