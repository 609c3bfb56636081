"""``profiles``: the latest profile of a customer, whenever it changes.

Keyed by customer id; the highest ``version`` wins, so consumers can keep a
projection without reading the segmenter's tables. A ``deleted`` profile means
the customer was erased (GDPR): consumers drop what they hold about them.

Additive to v1 (older consumers ignore them): ``computed.loyaltyTier`` /
``computed.loyaltyPoints`` (the loyalty program's tier and balance) and
``recommendations`` (the customer's top products, best first, each with the products
of theirs it came from), absent until computed; ``mergedFrom`` (on the known
customer's update: the ids just merged into it by an ``alias``, or an ``identify``
carrying both ``userId`` and ``anonymousId``) and ``mergedInto`` (on the ``deleted``
tombstone of a merged-away id: the id it now lives under; such a tombstone is a
merge, not an erasure).
"""

from __future__ import annotations

from collections.abc import Iterable
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
    #: ids merged into this customer by the change this update announces (re-key them)
    merged_from: list[str] | None = None
    #: a ``deleted`` tombstone of an id merged into another: that id (not an erasure)
    merged_into: str | None = Field(default=None, min_length=1)
    updated_at: UtcDatetime

    @property
    def key(self) -> bytes:
        return self.customer_id.encode()


def is_erasure(update: ProfileUpdate) -> bool:
    """A ``deleted`` profile erases the customer (GDPR) unless it says ``mergedInto``:
    then the id was merged into another customer's, whose profile now holds it."""
    return update.deleted and not update.merged_into


def merges_of(updates: Iterable[ProfileUpdate]) -> list[tuple[str, str]]:
    """The ``(old id, known id)`` merges a batch of ``profiles`` messages announces:
    the known id's ``mergedFrom`` and the old id's tombstone ``mergedInto`` tell the
    same merge (keyed by different ids, either may come first), so applying it must
    be idempotent."""
    pairs: set[tuple[str, str]] = set()
    for update in updates:
        if update.deleted and update.merged_into:
            pairs.add((update.customer_id, update.merged_into))
        for previous in update.merged_from or ():
            pairs.add((previous, update.customer_id))
    return sorted(p for p in pairs if p[0] != p[1])
