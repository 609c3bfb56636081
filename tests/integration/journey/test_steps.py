"""Journeys end to end on the real broker and PostgreSQL: triggers in on the topics,
runs moved by the consumer and the timer sweep, requests out on dispatch.requests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.journey.machine import run_id_for
from shared.events import customer_events as customer_events_topic
from shared.events import dispatch_outcomes, segment_changes
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.events.dispatch_requests import dispatch_id_for
from shared.events.segment_changes import Change
from tests.integration.journey.conftest import ADMIN, Stack, track


def name(base: str) -> str:
    """An event name of this test only: journeys of other tests share the consumer."""
    return f"{base} {uuid.uuid4().hex[:6]}"


def customer() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['kind']}:{e.get('stepId', '')}" for e in events]


def abandoned_cart(cart_event: str, order_event: str) -> dict[str, Any]:
    return {
        "triggers": [{"kind": "event", "event": cart_event}],
        "goal": {"event": order_event, "within": "P3D"},
        "steps": [
            {
                "id": "wait_order",
                "type": "wait_for_event",
                "event": order_event,
                "match": {"property": "cart_id"},
                "timeout": "PT4H",
                "next": "done",
                "on_timeout": "remind",
            },
            {
                "id": "remind",
                "type": "send",
                "channels": ["email", "push"],
                "template_id": "cart-reminder",
                "next": "done",
            },
            {"id": "done", "type": "exit"},
        ],
    }


async def test_abandoned_cart_without_the_order_sends_the_reminder(stack: Stack) -> None:
    cart, order = name("Cart Updated"), name("Order Completed")
    journey_id = await stack.journey(abandoned_cart(cart, order))
    who = customer()
    sent = await stack.track(who, cart, cart_id="k1", items=[{"sku": "A", "qty": 1}])
    events = await stack.run_events(who, 3)
    assert kinds(events) == ["entered:", "step_reached:wait_order", "waiting:wait_order"]
    run_id = run_id_for(journey_id=journey_id, customer_id=who, cause_id=f"e:{sent.message_id}")
    assert events[0]["runId"] == run_id and events[0]["journeyVersion"] == 1

    stack.clock.advance(hours=4, seconds=1)
    (request,) = await stack.dispatches(who, 1)
    assert request["dispatchId"] == dispatch_id_for(run_id=run_id, step_id="remind", attempt=1)
    assert request["channels"] == ["email", "push"]
    assert request["context"] == {"cart_id": "k1", "items": [{"sku": "A", "qty": 1}]}
    assert (request["journeyId"], request["stepId"], request["runId"]) == (
        journey_id,
        "remind",
        run_id,
    )
    (run,) = await stack.customer_runs(who, until=lambda runs: runs[0]["step_id"] is None)
    assert run["status"] == "active" and run["waiting"]["kind"] == "goal"


async def test_abandoned_cart_with_the_order_sends_nothing(stack: Stack) -> None:
    cart, order = name("Cart Updated"), name("Order Completed")
    await stack.journey(abandoned_cart(cart, order))
    who = customer()
    await stack.track(who, cart, cart_id="k2")
    await stack.run_events(who, 3)
    stack.clock.advance(hours=1)
    await stack.track(who, order, cart_id="k2", revenue=40)
    events = await stack.run_events(who, 5)
    assert kinds(events)[3:] == ["converted:wait_order", "exited:wait_order"]
    assert events[-1]["exitReason"] == "goal"
    stack.clock.advance(hours=5)
    (run,) = await stack.customer_runs(who)
    assert run["status"] == "exited" and run["exit_reason"] == "goal"
    assert stack.dispatches_so_far(who) == []


async def test_a_segment_entry_starts_a_win_back(stack: Stack) -> None:
    """The segmenter's own message (built by its outbox code) starts the run."""
    from services.segmenter.messages import change_message

    segment = f"inactive-30d-{uuid.uuid4().hex[:6]}"
    journey_id = await stack.journey(
        {
            "triggers": [{"kind": "segment", "segment_id": segment}],
            "steps": [
                {
                    "id": "mail",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "we-miss-you",
                    "send_time": {"kind": "local_time", "at": "10:00"},
                    "next": "done",
                },
                {"id": "done", "type": "exit"},
            ],
        }
    )
    who = customer()
    message = change_message(segment, 1, who, Change.ENTERED, stack.clock.now, "time")
    await stack.publisher.publish_many([message])
    (request,) = await stack.dispatches(who, 1)
    assert request["templateId"] == "we-miss-you" and request["journeyId"] == journey_id
    assert request["sendTime"] == {"kind": "local_time", "at": "10:00:00"}
    events = await stack.run_events(who, 4)
    assert events[-1]["kind"] == "exited" and events[-1]["exitReason"] == "completed"
    # leaving the segment starts nothing
    left = change_message(segment, 1, who, Change.EXITED, stack.clock.now, "event")
    await stack.publisher.publish_many([left])
    assert message.topic == segment_changes.TOPIC
    await stack.customer_runs(who, until=lambda runs: len(runs) == 1)


async def test_the_not_opened_follow_up_and_a_failed_send(stack: Stack) -> None:
    trigger = name("Trial Started")
    await stack.journey(
        {
            "triggers": [{"kind": "event", "event": trigger}],
            "steps": [
                {
                    "id": "mail",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "welcome",
                    "next": "seen",
                },
                {
                    "id": "seen",
                    "type": "wait_for_engagement",
                    "send_step": "mail",
                    "timeout": "P2D",
                    "next": "done",
                    "on_timeout": "nudge",
                },
                {
                    "id": "nudge",
                    "type": "send",
                    "channels": ["push"],
                    "template_id": "did-you-see",
                    "next": "done",
                },
                {"id": "done", "type": "exit"},
            ],
        }
    )
    opened, ignored, failed = customer(), customer(), customer()
    for who in (opened, ignored, failed):
        await stack.track(who, trigger)
    first = {who: (await stack.dispatches(who, 1))[0] for who in (opened, ignored, failed)}
    await stack.track(opened, "Email Opened", dispatchId=first[opened]["dispatchId"])
    await stack.send(
        dispatch_outcomes.TOPIC,
        DispatchOutcome(
            outcome_id=f"o-{uuid.uuid4().hex}",
            dispatch_id=first[failed]["dispatchId"],
            customer_id=failed,
            journey_id=first[failed]["journeyId"],  # outcomes repeat the attribution
            journey_version=first[failed]["journeyVersion"],
            step_id=first[failed]["stepId"],
            status=Status.SUPPRESSED,
            reason="no_consent",
            at=stack.clock.now,
        ),
    )
    # the suppressed one moves on at once (no engagement can come), not after 2 days
    nudged = await stack.dispatches(failed, 2)
    assert nudged[1]["templateId"] == "did-you-see"
    await stack.customer_runs(opened, until=lambda runs: runs[0]["status"] == "exited")
    stack.clock.advance(days=2, seconds=1)
    assert [r["templateId"] for r in await stack.dispatches(ignored, 2)] == [
        "welcome",
        "did-you-see",
    ]
    await stack.customer_runs(ignored, until=lambda runs: runs[0]["status"] == "exited")
    assert len(stack.dispatches_so_far(opened)) == 1


async def test_entry_rules_once_and_cooldown(stack: Stack) -> None:
    once, cooled = name("Signed Up"), name("Visited")

    def document(trigger: str, entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "triggers": [{"kind": "event", "event": trigger}],
            "entry": entry,
            "steps": [
                {"id": "w", "type": "wait", "duration": "PT1H", "next": "x"},
                {"id": "x", "type": "exit"},
            ],
        }

    await stack.journey(document(once, {"mode": "once"}))
    await stack.journey(document(cooled, {"mode": "cooldown", "cooldown": "P7D"}))
    a, b = customer(), customer()
    await stack.track(a, once)
    await stack.track(b, cooled)
    await stack.customer_runs(a, until=lambda runs: len(runs) == 1)
    await stack.customer_runs(b, until=lambda runs: len(runs) == 1)
    stack.clock.advance(hours=2)  # the first runs end
    await stack.customer_runs(a, until=lambda runs: runs[0]["status"] == "exited")
    await stack.customer_runs(b, until=lambda runs: runs[0]["status"] == "exited")
    refused = await stack.send(
        customer_events_topic.TOPIC,
        track(a, once, stack.clock.now),
        track(b, cooled, stack.clock.now),  # within the cool-down
    )
    await stack.consumed(refused)
    assert len(await stack.customer_runs(a)) == 1
    assert len(await stack.customer_runs(b)) == 1
    stack.clock.advance(days=7)
    await stack.track(b, cooled)  # after it: a second run
    await stack.customer_runs(b, until=lambda runs: len(runs) == 2)


async def test_a_new_version_leaves_runs_in_flight_on_theirs(stack: Stack) -> None:
    trigger = name("Order Completed")

    def document(template: str) -> dict[str, Any]:
        return {
            "triggers": [{"kind": "event", "event": trigger}],
            "steps": [
                {"id": "w", "type": "wait", "duration": "P1D", "next": "thanks"},
                {
                    "id": "thanks",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": template,
                    "next": "x",
                },
                {"id": "x", "type": "exit"},
            ],
        }

    journey_id = await stack.journey(document("thanks-v1"))
    early, late = customer(), customer()
    await stack.track(early, trigger)
    await stack.customer_runs(early, until=lambda runs: len(runs) == 1)
    changed = await stack.client.put(
        f"/v1/journeys/{journey_id}", json={"definition": document("thanks-v2")}, headers=ADMIN
    )
    assert changed.json()["unpublished_changes"] is True
    published = await stack.client.post(f"/v1/journeys/{journey_id}/publish", headers=ADMIN)
    assert published.json()["version"] == 2
    await stack.track(late, trigger)
    (late_run,) = await stack.customer_runs(late, until=lambda runs: len(runs) == 1)
    assert late_run["journey_version"] == 2
    stack.clock.advance(days=1, seconds=1)
    assert (await stack.dispatches(early, 1))[0]["templateId"] == "thanks-v1"
    assert (await stack.dispatches(late, 1))[0]["templateId"] == "thanks-v2"
    assert (await stack.dispatches(early, 1))[0]["journeyVersion"] == 1


async def test_branch_split_update_trait_and_wait_until(stack: Stack) -> None:
    """A post-purchase journey: thank-you by local time, a survey A/B split, a trait set,
    a branch on the profile the journey's projection holds."""
    from shared.events import profiles as profiles_topic
    from shared.events.profiles import ComputedFields, ProfileUpdate

    trigger = name("Order Completed")
    journey_id = await stack.journey(
        {
            "triggers": [
                {
                    "kind": "event",
                    "event": trigger,
                    "where": [{"property": "revenue", "op": "gt", "value": 100}],
                }
            ],
            "steps": [
                {"id": "morning", "type": "wait_until", "at": "09:00", "next": "risk"},
                {
                    "id": "risk",
                    "type": "branch",
                    "cases": [
                        {
                            "when": {
                                "kind": "score",
                                "score": "churn_risk",
                                "op": "gte",
                                "value": 0.5,
                            },
                            "next": "save",
                        }
                    ],
                    "otherwise": "survey",
                },
                {
                    "id": "save",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "save",
                    "next": "tag",
                },
                {
                    "id": "survey",
                    "type": "split",
                    "variants": [
                        {"name": "nps", "weight": 1, "next": "nps"},
                        {"name": "csat", "weight": 1, "next": "csat"},
                    ],
                },
                {
                    "id": "nps",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "nps",
                    "next": "tag",
                },
                {
                    "id": "csat",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "csat",
                    "next": "tag",
                },
                {"id": "tag", "type": "update_trait", "traits": {"thanked": True}, "next": "done"},
                {"id": "done", "type": "exit"},
            ],
        }
    )
    risky, calm, small = customer(), customer(), customer()
    now = stack.clock.now
    await stack.send(
        profiles_topic.TOPIC,
        *(
            ProfileUpdate(
                customer_id=who,
                version=1,
                timezone="Asia/Tokyo",
                computed=ComputedFields(churn_risk=risk),
                updated_at=now,
            )
            for who, risk in ((risky, 0.9), (calm, 0.1))
        ),
    )
    for who in (risky, calm):
        await stack.track(who, trigger, revenue=150)
    await stack.consumed(
        await stack.send(customer_events_topic.TOPIC, track(small, trigger, now, revenue=50))
    )
    (run,) = await stack.customer_runs(risky, until=lambda runs: len(runs) == 1)
    until = datetime.fromisoformat(run["waiting"]["until"])
    tokyo = until.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (9, 0)
    assert timedelta(0) < until - now <= timedelta(days=1)
    assert await stack.customer_runs(small) == []  # revenue 50 fails the trigger's filter
    stack.clock.now = until + timedelta(seconds=1)
    assert (await stack.dispatches(risky, 1))[0]["templateId"] == "save"
    (to_calm,) = await stack.dispatches(calm, 1)
    assert to_calm["templateId"] == to_calm["variant"] in ("nps", "csat")
    from services.journey.machine import bucket

    expected = "nps" if bucket(journey_id, "survey", calm) < 0.5 else "csat"
    assert to_calm["variant"] == expected
    identify = await stack.traits.wait_for(
        lambda r: r.key == risky.encode() and b'"identify"' in r.value
    )
    import orjson

    body = orjson.loads(identify.value)
    assert body["traits"] == {"thanked": True} and body["userId"] == risky


async def test_a_suppressed_send_takes_its_failure_branch(stack: Stack) -> None:
    trigger = name("Password Reset")
    await stack.journey(
        {
            "triggers": [{"kind": "event", "event": trigger}],
            "steps": [
                {
                    "id": "mail",
                    "type": "send",
                    "channels": ["email"],
                    "template_id": "reset",
                    "priority": "critical",
                    "next": "done",
                    "on_failure": "push",
                },
                {
                    "id": "push",
                    "type": "send",
                    "channels": ["push"],
                    "template_id": "reset-push",
                    "next": "done",
                },
                {"id": "done", "type": "exit"},
            ],
        }
    )
    failed, sent = customer(), customer()
    for who in (failed, sent):
        await stack.track(who, trigger)
    first = {who: (await stack.dispatches(who, 1))[0] for who in (failed, sent)}
    for who, status in ((failed, Status.FAILED), (sent, Status.SENT)):
        await stack.send(
            dispatch_outcomes.TOPIC,
            DispatchOutcome(
                outcome_id=f"o-{uuid.uuid4().hex}",
                dispatch_id=first[who]["dispatchId"],
                customer_id=who,
                journey_id=first[who]["journeyId"],
                journey_version=first[who]["journeyVersion"],
                step_id=first[who]["stepId"],
                status=status,
                at=stack.clock.now,
            ),
        )
    assert [r["templateId"] for r in await stack.dispatches(failed, 2)] == ["reset", "reset-push"]
    await stack.customer_runs(sent, until=lambda runs: runs[0]["status"] == "exited")
    assert len(stack.dispatches_so_far(sent)) == 1


async def test_an_erased_customer_leaves_every_journey(stack: Stack) -> None:
    from shared.events import profiles as profiles_topic
    from shared.events.profiles import ProfileUpdate

    trigger = name("Cart Updated")
    await stack.journey(abandoned_cart(trigger, name("Order Completed")))
    who = customer()
    await stack.track(who, trigger, cart_id="k9", email="someone@example.com")
    (entered,) = await stack.customer_runs(who, until=lambda runs: len(runs) == 1)
    assert entered["trigger"]["email"] == "someone@example.com"
    await stack.send(
        profiles_topic.TOPIC,
        ProfileUpdate(customer_id=who, version=7, deleted=True, updated_at=stack.clock.now),
    )
    # the run stays (the journey's counts), under a pseudonym, its trigger dropped
    await stack.customer_runs(who, until=lambda runs: runs == [])
    answer = await stack.client.get(f"/v1/runs/{entered['run_id']}", headers=ADMIN)
    run = answer.json()
    assert run["status"] == "exited" and run["exit_reason"] == "erased"
    assert run["trigger"] == {} and run["customer_id"].startswith("erased-")
    # its step history stays under the pseudonym (step ids and times), no free text
    answer = await stack.client.get(
        f"/v1/customers/{run['customer_id']}/runs", params={"steps": "true"}, headers=ADMIN
    )
    (history,) = [r["steps"] for r in answer.json()["runs"]]
    assert history[0]["kind"] == "entered"
    assert (history[-1]["kind"], history[-1]["exit_reason"]) == ("exited", "erased")
    assert all(step["detail"] is None for step in history)
    stack.clock.advance(hours=5)
    assert stack.dispatches_so_far(who) == []


async def test_a_promoted_winner_takes_new_arrivals_and_holdouts_send_nothing(
    stack: Stack,
) -> None:
    from shared.events import experiment_decisions
    from shared.events.experiment_decisions import ExperimentDecision, Verdict

    trigger = name("Subscribed")
    journey_id = await stack.journey(
        {
            "triggers": [{"kind": "event", "event": trigger}],
            "steps": [
                {
                    "id": "subject",
                    "type": "split",
                    "promote_winner": True,
                    "variants": [
                        {"name": "short", "weight": 1, "next": "a"},
                        {"name": "long", "weight": 1, "next": "b"},
                    ],
                },
                {"id": "a", "type": "send", "channels": ["email"], "template_id": "a", "next": "x"},
                {"id": "b", "type": "send", "channels": ["email"], "template_id": "b", "next": "x"},
                {"id": "x", "type": "exit"},
            ],
        }
    )
    await stack.send(
        experiment_decisions.TOPIC,
        ExperimentDecision(
            decision_id=f"d-{uuid.uuid4().hex}",
            journey_id=journey_id,
            journey_version=1,
            step_id="subject",
            verdict=Verdict.WINNER,
            winner="long",
            decided_at=stack.clock.now,
        ),
    )
    # the decision is applied by the consumer: wait until the catalog knows it
    for _ in range(200):
        catalog = await stack.runtime.catalogs.current()
        if catalog.winners.get((journey_id, 1)):
            break
        await asyncio.sleep(0.05)
    arrivals = [customer() for _ in range(8)]
    for who in arrivals:
        await stack.track(who, trigger)
    for who in arrivals:
        (request,) = await stack.dispatches(who, 1)
        assert (request["templateId"], request["variant"]) == ("b", "long")

    held = name("Subscribed")
    await stack.journey(
        {
            "triggers": [{"kind": "event", "event": held}],
            "holdout_percent": 100,
            "entry": {"mode": "once"},
            "goal": {"event": held, "within": "P1D"},
            "steps": [
                {"id": "a", "type": "send", "channels": ["email"], "template_id": "a", "next": "x"},
                {"id": "x", "type": "exit"},
            ],
        }
    )
    who = customer()
    await stack.track(who, held)
    await stack.track(who, held)  # the goal event (and a trigger refused: once)
    events = await stack.run_events(who, 4)
    assert len(await stack.customer_runs(who)) == 1
    assert kinds(events) == ["held_out:", "waiting:", "converted:", "exited:"]
    assert events[-1]["exitReason"] == "holdout" and events[0]["holdout"] is True
    assert stack.dispatches_so_far(who) == []
