"""``segment.changes``: a customer entered or left a segment.

Keyed by customer id. Emitted once per change through the segmenter's outbox;
``change_id`` is unique per change, so a consumer can drop redeliveries.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

import orjson
from pydantic import Field

from shared.events.base import EventModel, UtcDatetime

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

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()


def encode_change(
    *,
    change_id: str,
    customer_id: str,
    segment_id: str,
    segment_version: int,
    change: Change,
    at: datetime,
    cause: Cause,
) -> bytes:
    """The bytes ``SegmentChange(...).to_bytes()`` gives for these values, without
    building the model: about 7× faster, for the thousands of changes a consumed
    batch makes. The values must already be valid (an aware ``at``); a test shows
    the bytes equal the model's."""
    return orjson.dumps(
        {
            "schemaVersion": 1,
            "changeId": change_id,
            "customerId": customer_id,
            "segmentId": segment_id,
            "segmentVersion": segment_version,
            "change": change,
            "at": at,
            "cause": cause,
        },
        option=orjson.OPT_UTC_Z,
    )
