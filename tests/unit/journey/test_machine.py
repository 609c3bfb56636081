"""The pure transition, step by step, on a virtual clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.journey.conditions import next_local_time
from services.journey.machine import (
    EntryHistory,
    EventInput,
    Facts,
    OutcomeInput,
    SegmentInput,
    Stop,
    TimerFired,
    apply,
    may_enter,
    trigger_matches,
)
from shared.events.base import Position
from shared.events.customer_events import CustomerEvent
from shared.events.dispatch_outcomes import Status
from shared.events.dispatch_requests import DispatchRequest, dispatch_id_for
from shared.events.journey_runs import ExitReason
from tests.unit.journey.helpers import ABANDONED_CART, START, Driver, definition


def order(cart_id: str, at: datetime) -> EventInput:
    return EventInput("Order Completed", {"cart_id": cart_id}, at)


def test_abandoned_cart_without_the_order_sends_a_reminder_after_the_timeout() -> None:
    run = Driver(definition(ABANDONED_CART)).enter({"cart_id": "k1", "items": 2})
    assert run.timer == START + timedelta(hours=4)
    assert run.requests == []
    run.fire()
    (request,) = run.requests
    assert request.dispatch_id == dispatch_id_for(run_id="run-c1", step_id="remind", attempt=1)
    assert request.context == {"cart_id": "k1", "items": 2}
    assert request.template_id == "cart-reminder"
    # the run's steps are done; it waits for the goal window, then ends
    assert run.run is not None and run.run.step_id is None
    assert run.timer == START + timedelta(days=3)
    run.fire()
    assert run.run.status == "exited" and run.run.exit_reason is ExitReason.COMPLETED
    assert run.timer is None


def test_an_order_of_another_cart_does_not_end_the_wait() -> None:
    document = {key: value for key, value in ABANDONED_CART.items() if key != "goal"}
    run = Driver(definition(document)).enter({"cart_id": "k1"})
    run.advance(hours=1).give(order("other-cart", run.now))
    assert run.run is not None and run.run.step_id == "wait_order"
    run.give(order("k1", run.now))
    assert run.kinds[-2:] == ["step_reached:done", "exited:"]
    assert run.requests == []


def test_abandoned_cart_with_the_order_sends_nothing_and_converts() -> None:
    run = Driver(definition(ABANDONED_CART)).enter({"cart_id": "k1"})
    run.advance(hours=1).give(order("k1", run.now))
    assert run.requests == []
    assert run.kinds[-2:] == ["converted:wait_order", "exited:wait_order"]
    assert run.run is not None and run.run.exit_reason is ExitReason.GOAL
    assert run.timer is None


def test_a_send_without_a_failure_branch_goes_on_at_once() -> None:
    journey = definition(
        {
            "triggers": [{"kind": "event", "event": "Signed Up"}],
            "steps": [
                {"id": "a", "type": "send", "channels": ["email"], "template_id": "t", "next": "b"},
                {"id": "b", "type": "send", "channels": ["push"], "template_id": "u", "next": "x"},
                {"id": "x", "type": "exit"},
            ],
        }
    )
    run = Driver(journey).enter()
    assert [r.template_id for r in run.requests] == ["t", "u"]
    assert run.run is not None and run.run.status == "exited"
    seqs = [e.seq for e in run.events]
    assert seqs == list(range(len(seqs)))


FAILURE_BRANCH = {
    "triggers": [{"kind": "event", "event": "Signed Up"}],
    "steps": [
        {
            "id": "mail",
            "type": "send",
            "channels": ["email"],
            "template_id": "welcome",
            "next": "done",
            "on_failure": "sms",
            "outcome_timeout": "PT6H",
        },
        {"id": "sms", "type": "send", "channels": ["whatsapp"], "template_id": "w", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}


def test_a_suppressed_send_goes_down_its_failure_branch() -> None:
    run = Driver(definition(FAILURE_BRANCH)).enter()
    (mail,) = run.requests
    run.give(OutcomeInput("someone-else", Status.SUPPRESSED))
    assert len(run.requests) == 1
    run.give(OutcomeInput(mail.dispatch_id, Status.DEFERRED))
    assert len(run.requests) == 1  # deferred: still waiting
    run.give(OutcomeInput(mail.dispatch_id, Status.SUPPRESSED, "no_consent"))
    assert [r.template_id for r in run.requests] == ["welcome", "w"]
    assert run.run is not None and run.run.status == "exited"


def test_a_send_with_no_outcome_never_stalls_the_run() -> None:
    run = Driver(definition(FAILURE_BRANCH)).enter().fire()
    assert [r.template_id for r in run.requests] == ["welcome"]
    assert run.run is not None and run.run.exit_reason is ExitReason.COMPLETED


NOT_OPENED = {
    "triggers": [{"kind": "segment", "segment_id": "inactive-30d"}],
    "steps": [
        {
            "id": "mail",
            "type": "send",
            "channels": ["email"],
            "template_id": "miss-you",
            "next": "seen",
        },
        {
            "id": "seen",
            "type": "wait_for_engagement",
            "send_step": "mail",
            "engagement": "opened",
            "timeout": "P2D",
            "next": "done",
            "on_timeout": "again",
        },
        {
            "id": "again",
            "type": "send",
            "channels": ["push"],
            "template_id": "nudge",
            "next": "done",
        },
        {"id": "done", "type": "exit"},
    ],
}


def test_the_not_opened_follow_up() -> None:
    opened = Driver(definition(NOT_OPENED)).enter()
    dispatch_id = opened.requests[0].dispatch_id
    opened.advance(hours=5).give(
        EventInput("Email Opened", {"dispatchId": dispatch_id}, opened.now)
    )
    assert [r.template_id for r in opened.requests] == ["miss-you"]
    assert opened.run is not None and opened.run.status == "exited"

    ignored = Driver(definition(NOT_OPENED)).enter()
    ignored.give(EventInput("Email Opened", {"dispatchId": "another"}, ignored.now))
    ignored.fire()
    assert [r.template_id for r in ignored.requests] == ["miss-you", "nudge"]

    bounced = Driver(definition(NOT_OPENED)).enter()
    bounced.give(OutcomeInput(bounced.requests[0].dispatch_id, Status.FAILED))
    assert [r.template_id for r in bounced.requests] == ["miss-you", "nudge"]


def test_branches_read_segments_traits_scores_and_the_trigger() -> None:
    journey = definition(
        {
            "triggers": [{"kind": "event", "event": "Order Completed"}],
            "steps": [
                {
                    "id": "which",
                    "type": "branch",
                    "cases": [
                        {"when": {"kind": "segment", "segment_id": "vip"}, "next": "vip"},
                        {
                            "when": {
                                "kind": "all",
                                "conditions": [
                                    {
                                        "kind": "score",
                                        "score": "churn_risk",
                                        "op": "gte",
                                        "value": 0.7,
                                    },
                                    {"kind": "rfm_tier", "tiers": ["at_risk"]},
                                ],
                            },
                            "next": "save",
                        },
                        {
                            "when": {
                                "kind": "trigger",
                                "property": "revenue",
                                "op": "gt",
                                "value": 100,
                            },
                            "next": "big",
                        },
                        {
                            "when": {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
                            "next": "pro",
                        },
                    ],
                    "otherwise": "plain",
                },
                *[
                    {
                        "id": name,
                        "type": "send",
                        "channels": ["email"],
                        "template_id": name,
                        "next": "x",
                    }
                    for name in ("vip", "save", "big", "pro", "plain")
                ],
                {"id": "x", "type": "exit"},
            ],
        }
    )

    def chosen(facts: Facts, trigger: dict[str, object]) -> str:
        return Driver(journey, facts=facts).enter(trigger).requests[0].template_id

    assert chosen(Facts(memberships=frozenset({"vip"})), {}) == "vip"
    assert chosen(Facts(churn_risk=0.8, rfm_tier="at_risk"), {}) == "save"
    assert chosen(Facts(churn_risk=0.8, rfm_tier="champions"), {}) == "plain"
    assert chosen(Facts(), {"revenue": 150}) == "big"
    assert chosen(Facts(traits={"plan": "pro"}), {"revenue": 20}) == "pro"


def test_update_trait_emits_an_identify_event_once_per_visit() -> None:
    journey = definition(
        {
            "triggers": [{"kind": "event", "event": "Order Completed"}],
            "steps": [
                {"id": "tag", "type": "update_trait", "traits": {"thanked": True}, "next": "x"},
                {"id": "x", "type": "exit"},
            ],
        }
    )
    one = Driver(journey).enter()
    two = Driver(journey).enter()
    (identify,) = [o for o in one.outputs if isinstance(o, CustomerEvent)]
    assert identify.traits == {"thanked": True} and identify.user_id == "c1"
    assert [o for o in two.outputs if isinstance(o, CustomerEvent)] == [identify]


def test_wait_until_a_local_time_on_weekdays() -> None:
    paris = ZoneInfo("Europe/Paris")
    monday_noon_utc = datetime(2026, 6, 1, 12, tzinfo=UTC)  # a Monday, 14:00 in Paris
    assert next_local_time(monday_noon_utc, time(9), None, paris) == datetime(
        2026, 6, 2, 7, tzinfo=UTC
    )
    assert next_local_time(monday_noon_utc, time(15), None, paris) == datetime(
        2026, 6, 1, 13, tzinfo=UTC
    )
    assert next_local_time(monday_noon_utc, time(9), (6,), paris) == datetime(
        2026, 6, 6, 7, tzinfo=UTC
    )
    journey = definition(
        {
            "triggers": [{"kind": "event", "event": "Signed Up"}],
            "steps": [
                {"id": "w", "type": "wait_until", "at": "09:00", "next": "x"},
                {"id": "x", "type": "exit"},
            ],
        }
    )
    run = Driver(journey, facts=Facts(timezone="Europe/Paris")).enter()
    assert run.timer == datetime(2026, 6, 2, 7, tzinfo=UTC)
    unknown = Driver(journey, facts=Facts(timezone="Nowhere/Land")).enter()
    assert unknown.timer == datetime(2026, 6, 2, 9, tzinfo=UTC)  # the journey's UTC


def test_an_early_or_stale_timer_changes_nothing() -> None:
    run = Driver(definition(ABANDONED_CART)).enter({"cart_id": "k"})
    before = run.run
    run.advance(hours=1).give(TimerFired())
    assert run.run == before and run.timer == START + timedelta(hours=4)


def test_stop_and_audience_exit() -> None:
    run = Driver(definition(ABANDONED_CART)).enter({"cart_id": "k"}).give(Stop())
    assert run.run is not None and run.run.exit_reason is ExitReason.STOPPED
    assert run.timer is None
    run.give(order("k", run.now))  # an exited run stays as it is
    assert run.kinds[-1] == "exited:wait_order"
    audience = definition(
        dict(ABANDONED_CART, audience_segment="buyers", exit_on_audience_leave=True)
    )
    left = Driver(audience).enter({"cart_id": "k"})
    left.give(SegmentInput("others", entered=False))
    assert left.run is not None and left.run.status == "active"
    after = left.give(SegmentInput("buyers", entered=False))
    assert after.run is not None and after.run.status == "exited"


def test_holdout_runs_send_nothing_but_report_conversions() -> None:
    journey = definition(dict(ABANDONED_CART, holdout_percent=100))
    run = Driver(journey).enter({"cart_id": "k"})
    assert run.kinds == ["held_out:", "waiting:"]
    run.advance(hours=10).give(TimerFired())  # nothing happens before the window closes
    assert run.run is not None and run.run.status == "active"
    run.give(order("k", run.now))
    assert run.kinds[-2:] == ["converted:", "exited:"]
    assert run.run.exit_reason is ExitReason.HOLDOUT and run.requests == []


def test_goal_that_does_not_end_the_run() -> None:
    document = dict(
        ABANDONED_CART, goal={"event": "Order Completed", "within": "P3D", "ends_run": False}
    )
    run = Driver(definition(document)).enter({"cart_id": "k"})
    run.give(order("k", run.now))
    # converted, and the awaited order moved the run on to its exit
    assert run.kinds[-3:] == ["converted:wait_order", "step_reached:done", "exited:"]
    late = Driver(definition(document)).enter({"cart_id": "k"})
    late.advance(days=4).give(order("k", late.now))
    assert "converted:wait_order" not in late.kinds  # outside the window


def test_entry_rules() -> None:
    from services.journey.definition import Entry

    never = EntryHistory()
    before = EntryHistory(last_entered_at=START - timedelta(days=2))
    running = EntryHistory(last_entered_at=START - timedelta(days=2), on_steps=True)
    assert may_enter(Entry(mode="once"), never, START)
    assert not may_enter(Entry(mode="once"), before, START)
    assert may_enter(Entry(mode="one_at_a_time"), before, START)
    assert not may_enter(Entry(mode="one_at_a_time"), running, START)
    week = Entry(mode="cooldown", cooldown=timedelta(days=7))
    assert not may_enter(week, before, START)
    assert may_enter(week, before, START + timedelta(days=5))
    assert not may_enter(week, running, START + timedelta(days=5))


def test_triggers_match_events_with_filters_and_segment_changes() -> None:
    journey = definition(
        {
            "triggers": [
                {
                    "kind": "event",
                    "event": "Order Completed",
                    "where": [{"property": "revenue", "op": "gt", "value": 100}],
                },
                {"kind": "segment", "segment_id": "inactive", "on": "entered"},
            ],
            "steps": [{"id": "x", "type": "exit"}],
        }
    )
    assert trigger_matches(journey, event="Order Completed", properties={"revenue": 120})
    assert not trigger_matches(journey, event="Order Completed", properties={"revenue": 90})
    assert not trigger_matches(journey, event="Order Completed", properties={})
    assert trigger_matches(journey, segment_id="inactive", entered=True)
    assert not trigger_matches(journey, segment_id="inactive", entered=False)


def test_clone_copies_every_field() -> None:
    from dataclasses import fields

    from services.journey.machine import Run

    run = Driver(definition(ABANDONED_CART)).enter({"cart_id": "k"}).run
    assert run is not None
    copied = run.clone()
    assert copied == run and copied is not run
    assert len(fields(Run)) == 17  # a new field must be added to Run.clone too


def test_a_match_on_a_key_the_trigger_lacks_waits_for_the_timeout() -> None:
    document = {key: value for key, value in ABANDONED_CART.items() if key != "goal"}
    run = Driver(definition(document)).enter({})  # no cart_id in the trigger
    run.give(EventInput("Order Completed", {}, run.now))
    run.give(order("k1", run.now))
    assert run.run is not None and run.run.step_id == "wait_order"
    run.fire()
    assert [r.template_id for r in run.requests] == ["cart-reminder"]


def test_a_request_requires_the_position_of_the_input_that_made_it() -> None:
    """Freshness: the trigger's position in customer.events goes with the request (the
    dispatcher decides it on a profile that folded it); a timer's requires none."""
    from services.journey.machine import enter, run_id_for

    welcome = definition(
        {
            "triggers": [{"kind": "event", "event": "Signed Up"}],
            "steps": [
                {
                    "id": "hi",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "welcome",
                    "next": "wait",
                },
                {"id": "wait", "type": "wait", "duration": "PT1H", "next": "again"},
                {
                    "id": "again",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "welcome",
                    "next": "done",
                },
                {"id": "done", "type": "exit"},
            ],
        }
    )
    at = Position(partition=2, offset=41)
    entered = enter(
        welcome,
        journey_id="j1",
        version=1,
        customer_id="c1",
        run_id=run_id_for(journey_id="j1", customer_id="c1", cause_id="e:1"),
        trigger_event="Signed Up",
        trigger={},
        now=START,
        facts=Facts(),
        position=at,
    )
    (first,) = [o for o in entered.outputs if isinstance(o, DispatchRequest)]
    assert first.requires == at
    assert DispatchRequest.from_bytes(first.to_bytes()) == first
    later = apply(welcome, entered.run, TimerFired(), START + timedelta(hours=1), Facts())
    (second,) = [o for o in later.outputs if isinstance(o, DispatchRequest)]
    assert second.requires is None
