"""``segment.changes``: a customer entered or left a segment.

Keyed by customer id. Emitted once per change through the segmenter's outbox;
``change_id`` is unique per change, so a consumer can drop redeliveries.

Additive to v1: ``position``, for a change made by folding an event, is that batch's
last ``customer.events`` position of the customer (the ``folded`` of the ``profiles``
message queued with it); absent for changes made by time, edits or scores.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.events.base import EventModel, Position, UtcDatetime

TOPIC = "segment.changes"
DLQ_TOPIC = f"{TOPIC}.dlq"


class Change(StrEnum):
    ENTERED = "entered"
    EXITED = "exited"


Cause = Literal["event", "time", "segment_edit", "score", "customer_deleted"]


class SegmentChange(EventModel):
    schema_version: Literal[1] = 1
    change_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    segment_id: str = Field(min_length=1)
    segment_version: int = Field(ge=1)
    change: Change
    at: UtcDatetime
    #: what caused it: an event batch, time passing, a segment edit, a deletion
    cause: Cause = "event"
    #: the ``customer.events`` position the change was folded from (``cause`` event)
    position: Position | None = None

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()
