"""A consumed batch folded into the deltas it makes to the aggregates (pure Python).

Everything is bucketed by event time (the event's ``timestamp``, an outcome's or a
run event's ``at``) in UTC days, so a historical import lands in its own periods.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.erasure import reason_code
from shared.events import engagement
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.events.journey_runs import JourneyRunEvent, RunEventKind
from shared.events.segment_changes import Change, SegmentChange

#: engagement events by the funnel metric they count as
ENGAGEMENT_METRICS: dict[str, str] = {
    engagement.EMAIL_OPENED: "opened",
    engagement.PUSH_OPENED: "opened",
    engagement.EMAIL_LINK_CLICKED: "clicked",
    engagement.MESSAGE_CLICKED: "clicked",
    engagement.UNSUBSCRIBED: "unsubscribed",
    engagement.EMAIL_MARKED_AS_SPAM: "complained",
}
#: the dispatcher's events, which are not the customer using the product
NOT_ACTIVITY = frozenset(
    {
        *ENGAGEMENT_METRICS,
        engagement.EMAIL_BOUNCED,
        engagement.SURVEY_ANSWERED,
        engagement.COUPON_ISSUED,
    }
)
ACTIVITY_TYPES = frozenset({EventType.TRACK, EventType.PAGE, EventType.SCREEN})
SPLIT_STEP_TYPES = frozenset({"split"})

#: (day, journey, step, variant, channel, metric, reason)
FunnelKey = tuple[date, str, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Attribution:
    journey_id: str
    step_id: str
    variant: str
    channel: str


@dataclass(frozen=True, slots=True)
class Engagement:
    dispatch_id: str
    metric: str
    day: date
    attribution: Attribution


@dataclass(frozen=True, slots=True)
class Touch:
    dispatch_id: str
    customer_id: str
    at: datetime
    attribution: Attribution


@dataclass(frozen=True, slots=True)
class RunStart:
    run_id: str
    journey_id: str
    journey_version: int
    customer_id: str
    entered_at: datetime
    holdout: bool


@dataclass(frozen=True, slots=True)
class Exposure:
    run_id: str
    step_id: str
    journey_id: str
    journey_version: int
    variant: str
    at: datetime


@dataclass
class Delta:
    """What one batch adds to the aggregates."""

    #: (customer, day) → [events, orders, revenue]
    activity: dict[tuple[str, date], list[float]] = field(default_factory=dict)
    funnel: Counter[FunnelKey] = field(default_factory=Counter)
    engagements: list[Engagement] = field(default_factory=list)
    touches: list[Touch] = field(default_factory=list)
    #: (customer, at) of goal events
    goals: list[tuple[str, datetime]] = field(default_factory=list)
    #: (day, kind, journey, score) → answers
    surveys: Counter[tuple[date, str, str, int]] = field(default_factory=Counter)
    #: (day, segment) → [entered, exited]
    segments: dict[tuple[date, str], list[int]] = field(default_factory=dict)
    runs: list[RunStart] = field(default_factory=list)
    exposures: list[Exposure] = field(default_factory=list)
    #: (run_id, at) of ``converted`` run events
    conversions: list[tuple[str, datetime]] = field(default_factory=list)
    #: (code, dispatch_id) of ``Coupon Issued`` events
    coupon_issues: list[tuple[str, str]] = field(default_factory=list)
    #: (code, customer, at) of redemptions: ``Coupon Applied``, a purchase with ``coupon``
    redemptions: list[tuple[str, str, datetime]] = field(default_factory=list)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def fold_customer_events(
    delta: Delta, events: Iterable[CustomerEvent], *, purchase_event: str, goals: frozenset[str]
) -> None:
    for event in events:
        day = event.timestamp.date()
        name = event.event or ""
        properties = event.properties
        if event.type is EventType.TRACK and name in ENGAGEMENT_METRICS:
            attribution = Attribution(
                _text(properties.get(engagement.JOURNEY_ID)),
                _text(properties.get(engagement.STEP_ID)),
                _text(properties.get(engagement.VARIANT)),
                _text(properties.get(engagement.CHANNEL)),
            )
            delta.engagements.append(
                Engagement(
                    _text(properties.get(engagement.DISPATCH_ID)),
                    ENGAGEMENT_METRICS[name],
                    day,
                    attribution,
                )
            )
            continue
        if event.type is EventType.TRACK and name == engagement.SURVEY_ANSWERED:
            kind = _text(properties.get(engagement.SURVEY_KIND)).lower()
            score = _number(properties.get(engagement.SURVEY_SCORE))
            valid = (kind == "nps" and score is not None and 0 <= score <= 10) or (
                kind == "csat" and score is not None and 1 <= score <= 5
            )
            if valid and score is not None:
                journey = _text(properties.get(engagement.JOURNEY_ID))
                delta.surveys[(day, kind, journey, round(score))] += 1
            continue
        if event.type is EventType.TRACK and name == engagement.COUPON_ISSUED:
            code = _text(properties.get(engagement.COUPON))
            dispatch_id = _text(properties.get(engagement.DISPATCH_ID))
            if code and dispatch_id:
                delta.coupon_issues.append((code, dispatch_id))
            continue
        if event.type is EventType.TRACK and name in (engagement.COUPON_APPLIED, purchase_event):
            code = _text(properties.get(engagement.COUPON)).strip()
            if code:
                delta.redemptions.append((code, event.customer_id, event.timestamp))
        if event.type not in ACTIVITY_TYPES or name in NOT_ACTIVITY:
            continue
        row = delta.activity.setdefault((event.customer_id, day), [0, 0, 0.0])
        row[0] += 1
        if name == purchase_event:
            revenue = _number(properties.get("revenue"))
            if revenue is None:
                revenue = _number(properties.get("value"))
            row[1] += 1
            row[2] += revenue or 0.0
        if name in goals:
            delta.goals.append((event.customer_id, event.timestamp))


def fold_requests(delta: Delta, requests: Iterable[DispatchRequest]) -> None:
    for request in requests:
        key = (
            request.requested_at.date(),
            request.journey_id or "",
            request.step_id or "",
            request.variant or "",
            "",
            "requested",
            "",
        )
        delta.funnel[key] += 1


def fold_outcomes(delta: Delta, outcomes: Iterable[DispatchOutcome]) -> None:
    for outcome in outcomes:
        attribution = Attribution(
            outcome.journey_id or "",
            outcome.step_id or "",
            outcome.variant or "",
            outcome.channel.value if outcome.channel is not None else "",
        )
        # the reason's code only: free text (a provider's answer) may quote the address
        reason = (
            "" if outcome.status in (Status.SENT, Status.DELIVERED) else reason_code(outcome.reason)
        ) or ""
        delta.funnel[
            (
                outcome.at.date(),
                attribution.journey_id,
                attribution.step_id,
                attribution.variant,
                attribution.channel,
                outcome.status.value,
                reason,
            )
        ] += 1
        if outcome.status is Status.SENT:
            delta.touches.append(
                Touch(outcome.dispatch_id, outcome.customer_id, outcome.at, attribution)
            )


def fold_runs(delta: Delta, events: Iterable[JourneyRunEvent]) -> None:
    for event in events:
        if event.kind in (RunEventKind.ENTERED, RunEventKind.HELD_OUT):
            delta.runs.append(
                RunStart(
                    event.run_id,
                    event.journey_id,
                    event.journey_version,
                    event.customer_id,
                    event.entered_at,
                    event.holdout or event.kind is RunEventKind.HELD_OUT,
                )
            )
        elif (
            event.kind is RunEventKind.STEP_REACHED
            and event.step_type in SPLIT_STEP_TYPES
            and event.step_id
            and event.variant
        ):
            delta.exposures.append(
                Exposure(
                    event.run_id,
                    event.step_id,
                    event.journey_id,
                    event.journey_version,
                    event.variant,
                    event.at,
                )
            )
        elif event.kind is RunEventKind.CONVERTED:
            delta.conversions.append((event.run_id, event.at))


def fold_segment_changes(delta: Delta, changes: Iterable[SegmentChange]) -> None:
    for change in changes:
        row = delta.segments.setdefault((change.at.date(), change.segment_id), [0, 0])
        row[0 if change.change is Change.ENTERED else 1] += 1
