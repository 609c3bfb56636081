"""Properties of the machine over arbitrary inputs: ordering, determinism, splits."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.journey.machine import (
    EventInput,
    Input,
    OutcomeInput,
    Stop,
    TimerFired,
)
from services.journey.processing import message_of
from shared.events.dispatch_outcomes import Status
from tests.unit.journey.helpers import Driver, definition

JOURNEY = definition(
    {
        "triggers": [{"kind": "event", "event": "Cart Updated"}],
        "goal": {"event": "Order Completed", "within": "P2D"},
        "steps": [
            {
                "id": "split",
                "type": "split",
                "variants": [
                    {"name": "A", "weight": 1, "next": "mail"},
                    {"name": "B", "weight": 3, "next": "pause"},
                ],
            },
            {
                "id": "mail",
                "type": "send",
                "channels": ["email"],
                "template_id": "t",
                "next": "seen",
                "on_failure": "pause",
                "outcome_timeout": "PT2H",
            },
            {
                "id": "seen",
                "type": "wait_for_engagement",
                "send_step": "mail",
                "timeout": "PT5H",
                "next": "done",
                "on_timeout": "pause",
            },
            {"id": "pause", "type": "wait", "duration": "PT3H", "next": "again"},
            {
                "id": "again",
                "type": "wait_for_event",
                "event": "Cart Updated",
                "match": {"property": "cart_id"},
                "timeout": "PT1H",
                "next": "mail",
                "on_timeout": "done",
            },
            {"id": "done", "type": "exit"},
        ],
    }
)

STATUSES = st.sampled_from(list(Status))
INPUTS = st.one_of(
    st.tuples(st.just("timer"), st.floats(0, 10)),
    st.tuples(
        st.just("event"), st.sampled_from(["Cart Updated", "Order Completed", "Email Opened"])
    ),
    st.tuples(st.just("outcome"), STATUSES),
    st.tuples(st.just("stop"), st.none()),
)


def drive(customer: str, steps: list[tuple[str, object]]) -> Driver:
    run = Driver(JOURNEY, customer_id=customer).enter({"cart_id": "k"})
    for kind, value in steps:
        given_: Input
        if kind == "timer":
            run.advance(hours=float(value))  # type: ignore[arg-type]
            given_ = TimerFired()
        elif kind == "event":
            props: dict[str, object] = {"cart_id": "k"}
            if run.requests:
                props["dispatchId"] = run.requests[-1].dispatch_id
            given_ = EventInput(str(value), props, run.now)
        elif kind == "outcome":
            dispatch = run.requests[-1].dispatch_id if run.requests else "none"
            given_ = OutcomeInput(dispatch, value)  # type: ignore[arg-type]
        else:
            given_ = Stop()
        run.give(given_)
    return run


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=8), st.lists(INPUTS, max_size=25))
def test_runs_keep_their_invariants(customer: str, steps: list[tuple[str, object]]) -> None:
    run = drive(customer, steps)
    events = run.events
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.event_id for e in events}) == len(events)
    kinds = [e.kind.value for e in events]
    assert kinds[0] in ("entered", "held_out")
    assert kinds.count("exited") <= 1 and kinds.count("converted") <= 1
    if "exited" in kinds:
        assert kinds[-1] == "exited"
    assert run.run is not None
    assert (run.timer is None) == (run.run.status == "exited")
    if run.timer is not None:
        assert run.timer > run.now - timedelta(days=30)
    # the same inputs give the same outputs: a replayed transition emits the same ids
    again = drive(customer, steps)
    assert again.outputs == run.outputs
    for output in run.outputs:  # the machine constructs its outputs unvalidated: check them
        assert type(output).from_bytes(output.to_bytes()).to_bytes() == output.to_bytes()
        assert message_of(output).value == output.to_bytes()  # orjson writes the same bytes
    dispatch_ids = [r.dispatch_id for r in run.requests]
    assert len(set(dispatch_ids)) == len(dispatch_ids)


@given(st.text(min_size=1, max_size=20))
def test_a_customer_always_draws_the_same_variant(customer: str) -> None:
    first = Driver(JOURNEY, customer_id=customer).enter({"cart_id": "k"})
    second = Driver(JOURNEY, customer_id=customer).advance(days=9).enter({"cart_id": "z"})
    assert first.run is not None and second.run is not None
    assert first.run.variant == second.run.variant in ("A", "B")


def test_variants_follow_their_weights_within_sampling_error() -> None:
    n = 20_000
    drawn = Counter(
        Driver(JOURNEY, customer_id=f"customer-{i}").enter({}).run.variant  # type: ignore[union-attr]
        for i in range(n)
    )
    expected = n * 0.25
    sigma = math.sqrt(n * 0.25 * 0.75)
    assert abs(drawn["A"] - expected) < 4 * sigma, drawn


def test_a_promoted_winner_takes_every_new_arrival() -> None:
    from services.journey.machine import Facts

    promoted = definition(
        {
            **JOURNEY.model_dump(mode="json"),
            "steps": [
                {**JOURNEY.steps[0].model_dump(mode="json"), "promote_winner": True},
                *[s.model_dump(mode="json") for s in JOURNEY.steps[1:]],
            ],
        }
    )
    variants = {
        Driver(promoted, customer_id=f"c{i}", facts=Facts(winners={"split": "A"}))
        .enter({})
        .run.variant  # type: ignore[union-attr]
        for i in range(200)
    }
    assert variants == {"A"}
