"""``dispatch.requests``: the journey asks the dispatcher to send one message.

Keyed by customer id. ``dispatch_id`` is deterministic from the run, the step and the
attempt (:func:`dispatch_id_for`), so the same request published twice (an outbox
redelivery, a replayed timer) is one send: the dispatcher records a delivery under
``dispatch_id`` before it calls a provider and drops a request it already holds
(re-publishing its final outcome, if it has one: the journey re-requests a dispatch
whose outcome never came).

Additive to v1: ``requires``, the ``customer.events`` position the decision needs the
dispatcher's profile copy to have folded (the trigger's); absent: none.
"""

from __future__ import annotations

import uuid
from datetime import time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, JsonValue, model_validator

from shared.events.base import EventModel, Position, UtcDatetime
from shared.events.channels import Channel

TOPIC = "dispatch.requests"
DLQ_TOPIC = f"{TOPIC}.dlq"

_DISPATCH_NAMESPACE = uuid.UUID("5b0c7c1e-3f0e-4d5c-9b7e-2a6f1d0e9c41")

Identifier = Annotated[str, Field(min_length=1, max_length=256)]


def dispatch_id_for(*, run_id: str, step_id: str, attempt: int = 1) -> str:
    """The dispatch id of a run's step: the same inputs always give the same id."""
    return str(uuid.uuid5(_DISPATCH_NAMESPACE, f"{run_id}\x1f{step_id}\x1f{attempt}"))


class Priority(StrEnum):
    """Which message goes first when a frequency cap leaves room for fewer than wait.

    ``critical`` (an order confirmation, a password reset) is exempt from frequency caps
    and quiet hours; consent and suppressions still apply to it.
    """

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class SendNow(EventModel):
    """Send as soon as the checks allow (quiet hours and caps may still defer)."""

    kind: Literal["now"] = "now"


class SendAtLocalTime(EventModel):
    """Send at the next ``at`` in the customer's own timezone (the policy's default
    timezone when the profile has none), optionally only on some ISO weekdays (1 = Monday)."""

    kind: Literal["local_time"] = "local_time"
    at: time
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] | None = Field(default=None, min_length=1)


class SendAtBestTime(EventModel):
    """Send at the customer's best hour, learned from the hours of their own past
    opens and clicks; ``default_hour`` (local) when they have too few; at most
    ``within_hours`` after the request."""

    kind: Literal["best_time"] = "best_time"
    default_hour: int = Field(default=10, ge=0, le=23)
    within_hours: int = Field(default=24, ge=1, le=168)


SendTimePolicy = Annotated[SendNow | SendAtLocalTime | SendAtBestTime, Field(discriminator="kind")]


class DispatchRequest(EventModel):
    """Version 1: send ``template_id`` to ``customer_id`` on the first of ``channels``
    the customer can be reached on (an ordered fallback list)."""

    schema_version: Literal[1] = 1
    dispatch_id: Identifier
    customer_id: Identifier
    channels: list[Channel] = Field(min_length=1, max_length=len(Channel))
    template_id: Identifier
    #: the version the journey step pinned; ``None``: the template's latest published
    template_version: int | None = Field(default=None, ge=1)
    #: a subscription topic the customer can opt out of (``None``: the template's own)
    subscription_topic: str | None = Field(default=None, min_length=1, max_length=128)
    priority: Priority = Priority.NORMAL
    send_time: SendTimePolicy = Field(default_factory=SendNow)
    #: never sent after this instant: a message still deferred then is dropped, with an outcome
    expires_at: UtcDatetime | None = None
    #: what the message may be personalised with beyond the profile: the trigger's
    #: properties (cart items, order id…), the step's own values
    context: dict[str, JsonValue] = Field(default_factory=dict)
    # Where it comes from, for attribution (absent for a test send through the API).
    journey_id: str | None = None
    journey_version: int | None = Field(default=None, ge=1)
    step_id: str | None = None
    run_id: str | None = None
    variant: str | None = None
    requested_at: UtcDatetime
    #: the ``customer.events`` position the profile must have folded before a decision
    requires: Position | None = None

    @model_validator(mode="after")
    def _distinct_channels(self) -> DispatchRequest:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()
