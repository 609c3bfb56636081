"""``customer.events``: every behaviour event a product backend posts, in the Segment spec.

Keyed by :attr:`CustomerEvent.customer_id`. ``messageId`` is the idempotency key
end to end: consumers drop a message whose id they have already applied.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, JsonValue, model_validator
from pydantic_core import PydanticCustomError

from shared.events.base import EventModel, UtcDatetime

TOPIC = "customer.events"
DLQ_TOPIC = f"{TOPIC}.dlq"

MAX_ID_LENGTH = 256


class EventType(StrEnum):
    TRACK = "track"
    IDENTIFY = "identify"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


Identifier = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)


class CustomerEvent(EventModel):
    """Version 1 of a customer event, as ingest publishes it.

    ``timestamp`` is already corrected for the client's clock skew;
    ``original_timestamp`` keeps what the client sent.
    """

    schema_version: Literal[1] = 1
    type: EventType
    message_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    user_id: str | None = Identifier
    anonymous_id: str | None = Identifier
    timestamp: UtcDatetime
    original_timestamp: UtcDatetime | None = None
    sent_at: UtcDatetime | None = None
    received_at: UtcDatetime
    event: str | None = Field(default=None, min_length=1, max_length=MAX_ID_LENGTH)
    name: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    traits: dict[str, JsonValue] = Field(default_factory=dict)
    context: dict[str, JsonValue] = Field(default_factory=dict)
    integrations: dict[str, JsonValue] = Field(default_factory=dict)
    group_id: str | None = Identifier
    previous_id: str | None = Identifier

    @model_validator(mode="after")
    def _required_by_type(self) -> CustomerEvent:
        if self.user_id is None and self.anonymous_id is None:
            raise _missing("userId", "userId or anonymousId is required")
        if self.type is EventType.TRACK and self.event is None:
            raise _missing("event", "event is required for a track call")
        if self.type is EventType.GROUP and self.group_id is None:
            raise _missing("groupId", "groupId is required for a group call")
        if self.type is EventType.ALIAS and self.previous_id is None:
            raise _missing("previousId", "previousId is required for an alias call")
        if self.type is EventType.ALIAS and self.user_id is None:
            raise _missing("userId", "userId is required for an alias call")
        return self

    @property
    def customer_id(self) -> str:
        """The partition key: the known user when there is one, else the anonymous id."""
        return self.user_id or self.anonymous_id  # type: ignore[return-value]

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()


def _missing(field: str, message: str) -> PydanticCustomError:
    """A model-level error that still names its field (in ``ctx['field']``)."""
    return PydanticCustomError("missing_field", message, {"field": field})
