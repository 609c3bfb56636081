"""``profiles``: the latest profile of a customer, whenever it changes.

Keyed by customer id; the highest ``version`` wins, so consumers can keep a
projection without reading the segmenter's tables. A ``deleted`` profile means
the customer was erased (GDPR): consumers drop what they hold about them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from shared.events.base import EventModel, UtcDatetime

TOPIC = "profiles"
DLQ_TOPIC = f"{TOPIC}.dlq"


class ComputedFields(EventModel):
    churn_risk: float | None = None
    predicted_ltv: float | None = None
    rfm_tier: str | None = None
    score_method: str | None = None


class ProfileUpdate(EventModel):
    schema_version: Literal[1] = 1
    customer_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    deleted: bool = False
    traits: dict[str, JsonValue] = Field(default_factory=dict)
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    locale: str | None = None
    first_seen_at: UtcDatetime | None = None
    last_seen_at: UtcDatetime | None = None
    computed: ComputedFields = Field(default_factory=ComputedFields)
    updated_at: UtcDatetime

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()
