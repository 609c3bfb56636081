"""``profiles``: the latest profile of a customer, whenever it changes.

Keyed by customer id; the highest ``version`` wins, so consumers can keep a
projection without reading the segmenter's tables. A ``deleted`` profile means
the customer was erased (GDPR): consumers drop what they hold about them.

Additive to v1 (older consumers ignore them): ``computed.loyaltyTier`` /
``computed.loyaltyPoints`` (the loyalty program's tier and balance) and
``recommendations`` (the customer's top products, best first, each with the products
of theirs it came from), absent until computed; ``folded``: the position in
``customer.events`` of the last record the segmenter folded into this profile (stored
with it, so the jobs' messages carry it too); absent for a profile not folded since
positions exist: a projection then keeps the position it holds. See "Freshness" in
docs/architecture.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from shared.events.base import EventModel, Position, UtcDatetime

TOPIC = "profiles"
DLQ_TOPIC = f"{TOPIC}.dlq"


class ComputedFields(EventModel):
    churn_risk: float | None = None
    predicted_ltv: float | None = None
    rfm_tier: str | None = None
    score_method: str | None = None
    loyalty_tier: str | None = None
    loyalty_points: int | None = None


class Recommendation(EventModel):
    product_id: str = Field(min_length=1)
    score: float
    #: the customer's products it was found from (empty for a popularity fill-up)
    because: list[str] = Field(default_factory=list)
    source: Literal["similar", "popular"] = "similar"


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
    recommendations: list[Recommendation] | None = None
    updated_at: UtcDatetime
    #: how far the segmenter folded this customer's ``customer.events`` (additive to v1)
    folded: Position | None = None

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()
