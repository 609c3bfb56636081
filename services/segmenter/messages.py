"""The messages the segmenter puts in its outbox: membership changes and profiles.

Thousands are built per consumed batch from values the segmenter already holds in
the models' types (ids, aware UTC datetimes, JSON traits), so the models are
built with ``model_construct`` (no validation, which was most of their cost);
the serializer still writes each model's wire shape, and a test reads every kind
back through the validating model.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.segmenter.fold import WorkingProfile
from shared.events import profiles as profiles_topic
from shared.events import segment_changes
from shared.events.profiles import ComputedFields, ProfileUpdate
from shared.events.segment_changes import Cause, Change, SegmentChange
from shared.kafka.producer import Message


def change_id(segment_id: str, customer_id: str, version: int, change: str, at: datetime) -> str:
    """The id of one membership change; :mod:`membership_sql` builds the same string in SQL."""
    return f"{segment_id}:{customer_id}:{version}:{change}:{int(at.timestamp() * 1000)}"


def change_message(
    segment_id: str, version: int, customer_id: str, change: Change, at: datetime, cause: Cause
) -> Message:
    payload = SegmentChange.model_construct(
        change_id=change_id(segment_id, customer_id, version, change.value, at),
        customer_id=customer_id,
        segment_id=segment_id,
        segment_version=version,
        change=change,
        at=at,
        cause=cause,
    )
    return Message(segment_changes.TOPIC, payload.key, payload.to_bytes())


def profile_message(
    profile: WorkingProfile, version: int, scores: Mapping[str, Any], now: datetime
) -> Message:
    """The ``profiles`` message of a customer: traits, contact fields, locale, scores."""
    traits = profile.traits
    update = ProfileUpdate.model_construct(
        customer_id=profile.customer_id,
        version=version,
        traits=traits,
        email=_text(traits.get("email")),
        phone=_text(traits.get("phone")),
        timezone=profile.timezone,
        locale=profile.locale,
        first_seen_at=profile.first_seen_at,
        last_seen_at=profile.last_seen_at,
        computed=ComputedFields.model_construct(
            churn_risk=scores.get("churn_risk"),
            predicted_ltv=scores.get("predicted_ltv"),
            rfm_tier=scores.get("rfm_tier"),
            score_method=scores.get("score_method"),
        ),
        updated_at=now,
    )
    return Message(profiles_topic.TOPIC, update.key, update.to_bytes())


def deleted_profile_messages(versions: Mapping[str, int], now: datetime) -> list[Message]:
    """Tell profile consumers to forget these customers (merged away, or erased)."""
    return [
        Message(
            profiles_topic.TOPIC,
            customer_id.encode(),
            ProfileUpdate(
                customer_id=customer_id, version=version, deleted=True, updated_at=now
            ).to_bytes(),
        )
        for customer_id, version in versions.items()
    ]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
