"""``dispatch.outcomes``: what became of a dispatch request, each decision and each
thing a provider reported.

Keyed by customer id. A request gets one or more outcomes over time, e.g. deferred
(quiet hours) → sent → delivered, or one final suppressed / failed. Every request
ends in a final outcome (sent, suppressed or failed) — a message is never lost
without one. ``outcome_id`` is unique per outcome, so consumers drop redeliveries.
The attribution fields repeat the request's, so a consumer needs no join.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from shared.events.base import EventModel, UtcDatetime
from shared.events.channels import Channel

TOPIC = "dispatch.outcomes"
DLQ_TOPIC = f"{TOPIC}.dlq"

Identifier = Annotated[str, Field(min_length=1, max_length=256)]


class Status(StrEnum):
    #: waiting for quiet hours, a frequency cap or a send time (``deferred_until``)
    DEFERRED = "deferred"
    #: handed to the provider, which accepted it
    SENT = "sent"
    #: not sent on purpose (consent, suppression, no contact, expired…): see ``reason``
    SUPPRESSED = "suppressed"
    #: not sent: the template did not render, the provider refused, retries ran out
    FAILED = "failed"
    #: the provider reported delivery
    DELIVERED = "delivered"
    #: the provider reported a bounce (hard or soft, in ``reason``)
    BOUNCED = "bounced"

    @property
    def is_final_decision(self) -> bool:
        """The dispatcher is done with the request (later provider reports may follow)."""
        return self in (Status.SENT, Status.SUPPRESSED, Status.FAILED)


class Reason(StrEnum):
    """The reasons the dispatcher gives; ``reason`` is free text beyond these."""

    NO_CONTACT = "no_contact"
    #: the dispatcher's profile copy had not folded the request's trigger yet (a wait,
    #: not an outcome; in a ``no_contact`` decided once the wait's bound passed)
    PROFILE_BEHIND = "profile_behind"
    NO_CONSENT = "no_consent"
    UNSUBSCRIBED = "unsubscribed"
    ERASED = "erased"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_HOURS = "quiet_hours"
    SEND_TIME = "send_time"
    EXPIRED = "expired"
    TEMPLATE_ERROR = "template_error"
    PROVIDER_ERROR = "provider_error"
    RETRIES_EXHAUSTED = "retries_exhausted"
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"


class DispatchOutcome(EventModel):
    schema_version: Literal[1] = 1
    outcome_id: Identifier
    dispatch_id: Identifier
    customer_id: Identifier
    status: Status
    reason: str | None = Field(default=None, max_length=1024)
    #: the channel the decision is about (``None`` before any channel was chosen)
    channel: Channel | None = None
    at: UtcDatetime
    deferred_until: UtcDatetime | None = None
    provider_message_id: str | None = None
    template_id: str | None = None
    template_version: int | None = None
    journey_id: str | None = None
    journey_version: int | None = None
    step_id: str | None = None
    run_id: str | None = None
    variant: str | None = None

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()
