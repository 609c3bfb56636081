"""``profiles``: the latest profile of a customer, whenever it changes.

Keyed by customer id; the highest ``version`` wins, so consumers can keep a
projection without reading the segmenter's tables. A ``deleted`` profile means
the customer was erased (GDPR): consumers drop what they hold about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import orjson
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


def encode_profile_update(
    *,
    customer_id: str,
    version: int,
    traits: Mapping[str, Any],
    email: str | None,
    phone: str | None,
    timezone: str | None,
    locale: str | None,
    first_seen_at: datetime,
    last_seen_at: datetime,
    computed: Mapping[str, float | str | None],
    updated_at: datetime,
) -> bytes:
    """The bytes ``ProfileUpdate(...).to_bytes()`` gives for a live profile, without
    building the model (about 5× faster, for a batch's thousands of updates).

    ``computed`` holds :class:`ComputedFields`' values by attribute name. Raises
    ``TypeError`` for what orjson does not write as pydantic does (integers beyond
    64 bits); the caller then builds the model. A test shows the bytes equal the
    model's.
    """
    optional = {
        "email": email,
        "phone": phone,
        "timezone": timezone,
        "locale": locale,
    }
    scores = {
        "churnRisk": computed.get("churn_risk"),
        "predictedLtv": computed.get("predicted_ltv"),
        "rfmTier": computed.get("rfm_tier"),
        "scoreMethod": computed.get("score_method"),
    }
    return orjson.dumps(
        {
            "schemaVersion": 1,
            "customerId": customer_id,
            "version": version,
            "deleted": False,
            "traits": traits,
            **{name: value for name, value in optional.items() if value is not None},
            "firstSeenAt": first_seen_at,
            "lastSeenAt": last_seen_at,
            "computed": {name: value for name, value in scores.items() if value is not None},
            "updatedAt": updated_at,
        },
        option=orjson.OPT_UTC_Z,
    )
