"""The messaging funnel, last-touch attribution, surveys, experiments (verdict and
promotion through experiment.decisions) and uplift, from messages on the broker."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.events import customer_events, dispatch_outcomes, dispatch_requests, journey_runs
from shared.events import engagement as eng
from shared.events.channels import Channel
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.events.experiment_decisions import ExperimentDecision
from shared.events.journey_runs import JourneyRunEvent, RunEventKind
from shared.events.segment_changes import TOPIC as SEGMENT_CHANGES
from shared.events.segment_changes import Change, SegmentChange
from tests.integration.metrics.conftest import ADMIN, Stack

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _request(
    dispatch: str, customer: str, journey: str, step: str, variant: str
) -> DispatchRequest:
    return DispatchRequest(
        dispatch_id=dispatch,
        customer_id=customer,
        channels=[Channel.EMAIL],
        template_id="t",
        journey_id=journey,
        journey_version=1,
        step_id=step,
        run_id=f"run-{dispatch}",
        variant=variant,
        requested_at=T0,
    )


def _outcome(
    dispatch: str,
    customer: str,
    status: Status,
    at: datetime,
    *,
    journey: str,
    variant: str,
    reason: str | None = None,
) -> DispatchOutcome:
    return DispatchOutcome(
        outcome_id=f"{dispatch}:{status.value}",
        dispatch_id=dispatch,
        customer_id=customer,
        status=status,
        reason=reason,
        channel=Channel.EMAIL,
        at=at,
        journey_id=journey,
        journey_version=1,
        step_id="remind",
        run_id=f"run-{dispatch}",
        variant=variant,
    )


def _track(
    message: str, customer: str, name: str, at: datetime, **properties: object
) -> CustomerEvent:
    return CustomerEvent(
        type=EventType.TRACK,
        message_id=message,
        user_id=customer,
        event=name,
        timestamp=at,
        received_at=at,
        properties=properties,
    )


async def test_funnel_counts_each_step_once_and_attributes_conversions(stack: Stack) -> None:
    journey = "funnel-j"
    sends = [(f"d{i}", f"fc-{i}") for i in range(6)]
    await stack.send(
        dispatch_requests.TOPIC, *[_request(d, c, journey, "remind", "a") for d, c in sends]
    )
    await stack.send(dispatch_requests.TOPIC, _request("d-supp", "fc-s", journey, "remind", "a"))
    outcomes = [_outcome(d, c, Status.SENT, T0, journey=journey, variant="a") for d, c in sends]
    outcomes += [
        _outcome(d, c, Status.DELIVERED, T0 + timedelta(minutes=1), journey=journey, variant="a")
        for d, c in sends[:5]
    ]
    outcomes.append(
        _outcome(
            "d-supp",
            "fc-s",
            Status.SUPPRESSED,
            T0,
            journey=journey,
            variant="a",
            reason="no_consent",
        )
    )
    outcomes.append(
        _outcome(
            "d5",
            "fc-5",
            Status.BOUNCED,
            T0 + timedelta(minutes=2),
            journey=journey,
            variant="a",
            reason="hard_bounce",
        )
    )
    await stack.send(dispatch_outcomes.TOPIC, *outcomes)
    await stack.send(dispatch_outcomes.TOPIC, *outcomes[:3])  # redelivered
    attribution = {
        eng.JOURNEY_ID: journey,
        eng.STEP_ID: "remind",
        eng.VARIANT: "a",
        eng.CHANNEL: "email",
    }
    window = timedelta(hours=72)
    engagement = [
        # d0 opened three times (counts once) and clicked
        *[
            _track(
                f"open-d0-{n}",
                "fc-0",
                eng.EMAIL_OPENED,
                T0 + timedelta(hours=n + 1),
                **{eng.DISPATCH_ID: "d0"},
                **attribution,
            )
            for n in range(3)
        ],
        _track(
            "click-d0",
            "fc-0",
            eng.EMAIL_LINK_CLICKED,
            T0 + timedelta(hours=2),
            **{eng.DISPATCH_ID: "d0"},
            **attribution,
        ),
        _track(
            "open-d1",
            "fc-1",
            eng.EMAIL_OPENED,
            T0 + timedelta(hours=1),
            **{eng.DISPATCH_ID: "d1"},
            **attribution,
        ),
        _track(
            "unsub-d2",
            "fc-2",
            eng.UNSUBSCRIBED,
            T0 + timedelta(hours=1),
            **{eng.DISPATCH_ID: "d2"},
            **attribution,
        ),
    ]
    # goals: fc-0 buys inside the window (converts d0), twice (one conversion per send);
    # fc-1 exactly at the window's end (not converted: the window is (send, send + 72h]
    # ... measured back from the goal: a send at goal - 72h is outside);
    # fc-3 one second inside; fc-4 buys before the send (no conversion)
    goals = [
        _track("buy-0", "fc-0", "Order Completed", T0 + timedelta(hours=5), revenue=10),
        _track("buy-0b", "fc-0", "Order Completed", T0 + timedelta(hours=6), revenue=10),
        _track("buy-1", "fc-1", "Order Completed", T0 + window, revenue=10),
        _track("buy-3", "fc-3", "Order Completed", T0 + window - timedelta(seconds=1), revenue=10),
        _track("buy-4", "fc-4", "Order Completed", T0 - timedelta(minutes=1), revenue=10),
    ]
    await stack.send(customer_events.TOPIC, *engagement, *goals)
    await stack.send(customer_events.TOPIC, *engagement)  # redelivered

    def complete(body: dict[str, Any]) -> bool:
        rows = body["rows"]
        return (
            bool(rows)
            and rows[0]["converted"] >= 2
            and rows[0]["unsubscribed"] >= 1
            and rows[0]["clicked"] >= 1
        )

    body = await stack.until(
        "/v1/kpis/funnel",
        complete,
        journey_id=journey,
        group_by="journey_id,variant",
        **{"from": "2026-11-19", "to": "2026-11-25"},
    )
    (row,) = body["rows"]
    assert (row["journey_id"], row["variant"]) == (journey, "a")
    assert row["requested"] == 7
    assert row["sent"] == 6
    assert row["delivered"] == 5
    assert row["bounced"] == 1
    assert row["suppressed"] == 1 and row["suppressed_by_reason"] == {"no_consent": 1}
    assert row["opened"] == 2
    assert row["clicked"] == 1
    assert row["unsubscribed"] == 1
    assert row["converted"] == 2  # d0 and d3
    assert row["rates"]["open_rate"] == pytest.approx(2 / 6)
    assert row["rates"]["conversion_rate"] == pytest.approx(2 / 6)
    metrics = (await stack.client.get("/metrics")).text
    assert (
        "tenure_metrics_funnel_messages_total{"
        f'channel="email",journey="{journey}",metric="sent",step="remind",variant="a"}} 6.0'
        in metrics
    )
    assert (
        "customer"
        not in metrics.split("tenure_metrics_funnel_messages_total", 1)[1].split("\n", 1)[0]
    )


async def test_nps_and_csat(stack: Stack) -> None:
    at = datetime(2026, 10, 5, 9, tzinfo=UTC)
    scores = [10, 9, 9, 8, 7, 6, 3, 10]
    answers = [
        _track(
            f"nps-{i}",
            f"s-{i}",
            eng.SURVEY_ANSWERED,
            at,
            **{eng.SURVEY_KIND: "nps", eng.SURVEY_SCORE: s, eng.JOURNEY_ID: "survey-j"},
        )
        for i, s in enumerate(scores)
    ]
    answers += [
        _track(
            f"csat-{i}",
            f"s-{i}",
            eng.SURVEY_ANSWERED,
            at,
            **{eng.SURVEY_KIND: "csat", eng.SURVEY_SCORE: s},
        )
        for i, s in enumerate([5, 4, 2, 5])
    ]
    answers.append(
        _track(
            "nps-bad",
            "s-x",
            eng.SURVEY_ANSWERED,
            at,
            **{eng.SURVEY_KIND: "nps", eng.SURVEY_SCORE: 11},
        )
    )
    await stack.send(customer_events.TOPIC, *answers)
    body = await stack.until(
        "/v1/kpis/satisfaction",
        lambda b: b["nps_answers"] >= 8 and b["csat_answers"] >= 4,
        **{"from": "2026-10-01", "to": "2026-10-31"},
    )
    promoters, detractors = sum(s >= 9 for s in scores), sum(s <= 6 for s in scores)
    assert body["nps_answers"] == len(scores)
    assert body["nps"] == pytest.approx(100 * (promoters - detractors) / len(scores))
    assert body["csat"] == pytest.approx(75.0)
    assert body["csat_mean"] == pytest.approx(4.0)


def _run_events(
    journey: str,
    run: str,
    customer: str,
    variant: str | None,
    converted: bool,
    *,
    holdout: bool = False,
) -> list[JourneyRunEvent]:
    base = {
        "run_id": run,
        "customer_id": customer,
        "journey_id": journey,
        "journey_version": 1,
        "entered_at": T0,
    }
    events = [
        JourneyRunEvent(
            event_id=f"{run}:0",
            kind=RunEventKind.HELD_OUT if holdout else RunEventKind.ENTERED,
            seq=0,
            at=T0,
            holdout=holdout,
            **base,
        )
    ]
    if variant is not None:
        events.append(
            JourneyRunEvent(
                event_id=f"{run}:1",
                kind=RunEventKind.STEP_REACHED,
                seq=1,
                at=T0 + timedelta(minutes=1),
                step_id="split-subject",
                step_type="split",
                variant=variant,
                **base,
            )
        )
    if converted:
        events.append(
            JourneyRunEvent(
                event_id=f"{run}:2",
                kind=RunEventKind.CONVERTED,
                seq=2,
                at=T0 + timedelta(hours=3),
                variant=variant,
                goal_event="Order Completed",
                holdout=holdout,
                **base,
            )
        )
    return events


async def test_split_verdict_and_promotion(stack: Stack) -> None:
    journey = "exp-j"
    rng = random.Random(3)
    events: list[JourneyRunEvent] = []
    truth = {"a": 0.08, "b": 0.20}
    counts = {"a": [0, 0], "b": [0, 0]}
    for i in range(1_200):
        variant = "a" if i % 2 else "b"
        converted = rng.random() < truth[variant]
        counts[variant][0] += 1
        counts[variant][1] += converted
        events += _run_events(journey, f"er-{i}", f"ec-{i}", variant, converted)
    await stack.send(journey_runs.TOPIC, *events)
    await stack.send(journey_runs.TOPIC, *events[:500])  # redelivered

    path = f"/v1/experiments/{journey}/1/split-subject"

    async def settled() -> dict[str, Any]:
        body: dict[str, Any] = {}
        for _ in range(200):
            answer = await stack.client.post("/v1/experiments/evaluate", headers=ADMIN)
            assert answer.status_code == 200
            found = await stack.client.get(path, headers=ADMIN)
            body = found.json() if found.status_code == 200 else {"result": None}
            arms = {a["variant"]: a for a in (body["result"] or {}).get("arms", [])}
            if (
                arms
                and all(arms.get(v, {}).get("exposed") == counts[v][0] for v in counts)
                and all(arms[v]["converted"] == counts[v][1] for v in counts)
            ):
                return body
            import asyncio

            await asyncio.sleep(0.2)
        raise AssertionError(f"experiment never settled: {body}")

    body = await settled()
    assert body["verdict"] == "winner" and body["winner"] == "b"
    b = next(a for a in body["result"]["arms"] if a["variant"] == "b")
    assert b["ci_low"] < b["rate"] < b["ci_high"]
    assert b["probability_to_beat_control"] > 0.99
    assert body["result"]["control"] == "a"
    # the first winner goes out for the journey (which acts on it where the split says
    # promote_winner)
    assert body["decision_id"] == f"{journey}:1:split-subject:b"
    record = await stack.decisions.wait_for(lambda r: r.key == journey.encode(), within_s=15)
    decision = ExperimentDecision.from_bytes(record.value)
    assert (decision.verdict, decision.winner, decision.step_id) == ("winner", "b", "split-subject")
    # decided at the first evaluation that found a winner, maybe before every run arrived
    sent = {v.variant: (v.exposed, v.converted) for v in decision.variants}
    assert set(sent) == {"a", "b"}
    assert all(sent[v][0] <= counts[v][0] and sent[v][1] <= counts[v][1] for v in sent)
    # evaluating again sends nothing more
    await stack.client.post("/v1/experiments/evaluate", headers=ADMIN)
    import asyncio

    await asyncio.sleep(1.0)
    assert len([r for r in stack.decisions.records if r.key == journey.encode()]) == 1

    answer = await stack.client.patch(path, json={"control": "zz"}, headers=ADMIN)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"loc": ["body", "control"], "msg": "no variant 'zz' in this experiment", "type": "invalid"}
    ]
    answer = await stack.client.patch(path, json={"control": "b"}, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["result"]["control"] == "b"
    assert answer.json()["decision_id"] == f"{journey}:1:split-subject:b"  # sent once, kept
    # a holdout's verdict is reported, never sent as a decision
    holdout = await stack.get(f"/v1/experiments/{journey}/1/(holdout)")
    assert holdout["decision_id"] is None
    answer = await stack.client.get("/v1/experiments/nope/1/x", headers=ADMIN)
    assert answer.status_code == 404
    assert answer.json()["detail"] == "no experiment at step 'x' of 'nope' v1"


async def test_holdout_uplift(stack: Stack) -> None:
    journey = "uplift-j"
    events: list[JourneyRunEvent] = []
    activity: list[CustomerEvent] = []
    for i in range(40):
        holdout = i < 10
        converted = (i % 4 == 0) if holdout else (i % 2 == 0)
        customer = f"up-{i}"
        events += _run_events(journey, f"ur-{i}", customer, None, converted, holdout=holdout)
        if i % 3 == 0:  # active 5 days after entering
            activity.append(
                _track(f"up-act-{i}", customer, "Product Viewed", T0 + timedelta(days=5))
            )
    await stack.send(journey_runs.TOPIC, *events)
    await stack.send(customer_events.TOPIC, *activity)
    # retained: converted (3 hours after entering) or active in the 30 days after
    retained = [i for i in range(40) if i % 3 == 0 or i % (4 if i < 10 else 2) == 0]
    body = await stack.until(
        f"/v1/kpis/uplift/{journey}",
        lambda b: (
            b["conversion"]["entrants"]["exposed"] == 30
            and b["conversion"]["holdout"]["exposed"] == 10
            and b["retention"]["entrants"]["converted"] + b["retention"]["holdout"]["converted"]
            == len(retained)
        ),
        retention_days=30,
    )
    entrants, holdout = body["conversion"]["entrants"], body["conversion"]["holdout"]
    assert entrants["converted"] == sum(1 for i in range(10, 40) if i % 2 == 0)
    assert holdout["converted"] == sum(1 for i in range(10) if i % 4 == 0)
    assert body["conversion"]["uplift"] == pytest.approx(entrants["rate"] - holdout["rate"])
    assert body["retention"]["holdout"]["converted"] == sum(1 for i in retained if i < 10)
    assert body["retention"]["entrants"]["converted"] == sum(1 for i in retained if i >= 10)
    assert body["retention"]["sampled"] is False
    experiments = await stack.get("/v1/experiments", journey_id=journey)
    assert [e["kind"] for e in experiments] == ["holdout"]
    # above RETENTION_SAMPLE runs an arm, retention is measured on a sample of them
    from services.metrics import queries

    saved, queries.RETENTION_SAMPLE = queries.RETENTION_SAMPLE, 10
    try:
        sampled = await stack.get(f"/v1/kpis/uplift/{journey}", retention_days=30)
    finally:
        queries.RETENTION_SAMPLE = saved
    assert sampled["retention"]["sampled"] is True
    assert 0 < sampled["retention"]["entrants"]["exposed"] < 30
    assert sampled["retention"]["holdout"]["exposed"] == 10  # 10 runs: all of them
    assert sampled["conversion"] == body["conversion"]  # conversion is never sampled


async def test_segment_flows(stack: Stack) -> None:
    at = datetime(2026, 9, 1, 8, tzinfo=UTC)
    changes = [
        SegmentChange(
            change_id=f"seg-{i}",
            customer_id=f"sg-{i}",
            segment_id="vip",
            segment_version=1,
            change=Change.ENTERED if i < 5 else Change.EXITED,
            at=at,
        )
        for i in range(7)
    ]
    await stack.send(SEGMENT_CHANGES, *changes, *changes)
    body = await stack.until(
        "/v1/kpis/segments",
        lambda b: bool(b["days"]) and b["days"][0]["entered"] >= 5,
        segment_id="vip",
        **{"from": "2026-09-01", "to": "2026-09-01"},
    )
    assert body["days"] == [
        {"day": "2026-09-01", "segment_id": "vip", "entered": 5, "exited": 2, "net": 3}
    ]


async def test_undecodable_messages_go_to_the_dead_letter_topic(stack: Stack) -> None:
    from shared.kafka.producer import Message
    from tests.support.kafka import TopicTail

    tail = await TopicTail(stack.publisher._settings.bootstrap_servers, "journey.runs.dlq").start()
    try:
        await stack.publisher.publish_many(
            [Message(journey_runs.TOPIC, b"k", b'{"kind": "entered"}')]
        )
        record = await tail.wait_for(lambda r: r.value == b'{"kind": "entered"}', within_s=20)
        assert dict(record.headers)["tenure.original_topic"] == b"journey.runs"
    finally:
        await tail.stop()
