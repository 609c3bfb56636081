"""What each message counts as (services/metrics/fold.py), without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.metrics.fold import Delta, fold_customer_events, fold_outcomes, fold_runs
from shared.events import engagement as eng
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.events.journey_runs import JourneyRunEvent, RunEventKind

AT = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)


def _event(
    name: str | None, *, kind: EventType = EventType.TRACK, **properties: object
) -> CustomerEvent:
    return CustomerEvent(
        type=kind,
        message_id=f"m-{name}",
        user_id="ada",
        event=name,
        timestamp=AT,
        received_at=datetime(2026, 12, 1, tzinfo=UTC),
        properties=properties,
    )


def _fold(*events: CustomerEvent) -> Delta:
    delta = Delta()
    fold_customer_events(
        delta,
        events,
        purchase_event="Order Completed",
        goals=frozenset({"Order Completed", "Signed Up"}),
    )
    return delta


def test_activity_is_by_event_time_and_orders_take_revenue_else_value() -> None:
    delta = _fold(
        _event("Order Completed", revenue=10),
        _event("Order Completed", value="2.5"),
        _event("Order Completed", revenue=True),  # not a number: an order worth 0
        _event("Product Viewed"),
        _event(None, kind=EventType.PAGE),
    )
    assert delta.activity == {("ada", date(2026, 11, 20)): [5, 3, 12.5]}
    assert [g[0] for g in delta.goals] == ["ada"] * 3


def test_engagement_and_identify_are_not_activity() -> None:
    delta = _fold(
        _event(eng.EMAIL_OPENED, dispatchId="d1", journeyId="j", variant="b"),
        _event(eng.UNSUBSCRIBED),
        _event(None, kind=EventType.IDENTIFY),
    )
    assert delta.activity == {}
    assert [
        (e.dispatch_id, e.metric, e.attribution.journey_id, e.attribution.variant)
        for e in delta.engagements
    ] == [("d1", "opened", "j", "b"), ("", "unsubscribed", "", "")]


def test_surveys_out_of_range_are_dropped() -> None:
    delta = _fold(
        _event(eng.SURVEY_ANSWERED, surveyKind="NPS", score=10),
        _event(eng.SURVEY_ANSWERED, surveyKind="nps", score=11),
        _event(eng.SURVEY_ANSWERED, surveyKind="csat", score=0),
        _event(eng.SURVEY_ANSWERED, surveyKind="csat", score="4"),
        _event(eng.SURVEY_ANSWERED, surveyKind="ces", score=3),
    )
    assert dict(delta.surveys) == {
        (date(2026, 11, 20), "nps", "", 10): 1,
        (date(2026, 11, 20), "csat", "", 4): 1,
    }


def test_outcomes_keep_reasons_except_for_sends() -> None:
    delta = Delta()
    fold_outcomes(
        delta,
        [
            DispatchOutcome(
                outcome_id="1",
                dispatch_id="d",
                customer_id="ada",
                status=Status.SENT,
                reason="ignored",
                at=AT,
                journey_id="j",
            ),
            DispatchOutcome(
                outcome_id="2",
                dispatch_id="e",
                customer_id="ada",
                status=Status.SUPPRESSED,
                reason="no_consent",
                at=AT,
            ),
        ],
    )
    assert sorted(k[5:] for k in delta.funnel) == [("sent", ""), ("suppressed", "no_consent")]
    assert [t.dispatch_id for t in delta.touches] == ["d"]


def test_only_split_steps_with_a_variant_are_exposures() -> None:
    base = {
        "run_id": "r",
        "customer_id": "ada",
        "journey_id": "j",
        "journey_version": 1,
        "at": AT,
        "entered_at": AT,
    }
    delta = Delta()
    fold_runs(
        delta,
        [
            JourneyRunEvent(event_id="0", kind=RunEventKind.HELD_OUT, seq=0, **base),
            JourneyRunEvent(
                event_id="1",
                kind=RunEventKind.STEP_REACHED,
                seq=1,
                step_id="s",
                step_type="split",
                variant="b",
                **base,
            ),
            JourneyRunEvent(
                event_id="2",
                kind=RunEventKind.STEP_REACHED,
                seq=2,
                step_id="t",
                step_type="send",
                variant="b",
                **base,
            ),
            JourneyRunEvent(event_id="3", kind=RunEventKind.CONVERTED, seq=3, **base),
        ],
    )
    assert [(r.run_id, r.holdout) for r in delta.runs] == [("r", True)]
    assert [(e.step_id, e.variant) for e in delta.exposures] == [("s", "b")]
    assert [c[0] for c in delta.conversions] == ["r"]
