"""The messages the dispatcher emits (through its outbox): outcomes on
``dispatch.outcomes``, engagement ``track`` events on ``customer.events``, and dead
letters of requests that failed for good on ``dispatch.requests.dlq``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.events import engagement
from shared.events.channels import Channel
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.dispatch_outcomes import DispatchOutcome, Status
from shared.events.dispatch_requests import DispatchRequest
from shared.events.registry import CUSTOMER_EVENTS, DISPATCH_OUTCOMES, DISPATCH_REQUESTS
from shared.kafka.producer import Message


def outcome(
    request: DispatchRequest,
    status: Status,
    at: datetime,
    *,
    channel: Channel | None = None,
    reason: str | None = None,
    deferred_until: datetime | None = None,
    provider_message_id: str | None = None,
    template_version: int | None = None,
) -> DispatchOutcome:
    """An outcome of ``request``; its id is unique per decision (a deferral is named by
    the instant it waits for, so deciding the same again gives the same id)."""
    suffix = status.value
    if status is Status.DEFERRED and deferred_until is not None:
        suffix = f"deferred:{deferred_until.isoformat()}"
    return DispatchOutcome(
        outcome_id=f"{request.dispatch_id}:{suffix}",
        dispatch_id=request.dispatch_id,
        customer_id=request.customer_id,
        status=status,
        reason=reason[:1024] if reason else None,
        channel=channel,
        at=at,
        deferred_until=deferred_until,
        provider_message_id=provider_message_id,
        template_id=request.template_id,
        template_version=template_version or request.template_version,
        journey_id=request.journey_id,
        journey_version=request.journey_version,
        step_id=request.step_id,
        run_id=request.run_id,
        variant=request.variant,
    )


def outcome_message(value: DispatchOutcome) -> Message:
    return DISPATCH_OUTCOMES.message(value)


def dead_letter(request: DispatchRequest, reason: str) -> Message:
    """The request, as a dead letter with why (the headers of the consumer's DLQ)."""
    return Message(
        DISPATCH_REQUESTS.dlq,
        DISPATCH_REQUESTS.key(request),
        DISPATCH_REQUESTS.encode(request),
        (
            ("tenure.original_topic", DISPATCH_REQUESTS.name.encode()),
            ("tenure.error", reason.encode()[:4_000]),
            ("tenure.dispatch_id", request.dispatch_id.encode()),
        ),
    )


def attribution(
    request: DispatchRequest | None, channel: str | None, template_id: str | None
) -> dict[str, Any]:
    """The ``properties`` every engagement event carries, from the delivery's request."""
    props = {
        engagement.DISPATCH_ID: request.dispatch_id if request else None,
        engagement.JOURNEY_ID: request.journey_id if request else None,
        engagement.JOURNEY_VERSION: request.journey_version if request else None,
        engagement.STEP_ID: request.step_id if request else None,
        engagement.RUN_ID: request.run_id if request else None,
        engagement.VARIANT: request.variant if request else None,
        engagement.CHANNEL: channel,
        engagement.TEMPLATE_ID: template_id,
    }
    return {key: value for key, value in props.items() if value is not None}


def engagement_event(
    *,
    customer_id: str,
    event: str,
    properties: Mapping[str, Any],
    at: datetime,
    message_id: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Message:
    """A ``track`` event on ``customer.events``, as ingest would publish it."""
    value = CustomerEvent(
        type=EventType.TRACK,
        message_id=message_id or f"tenure-dispatcher-{uuid.uuid4()}",
        user_id=customer_id,
        timestamp=at,
        received_at=at,
        event=event,
        properties=dict(properties),
        context={"library": {"name": "tenure-dispatcher"}, **(context or {})},
    )
    return CUSTOMER_EVENTS.message(value)
