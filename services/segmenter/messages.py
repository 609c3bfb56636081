"""The messages the segmenter puts in its outbox: membership changes and profiles.

Thousands are built per consumed batch from values the segmenter already holds in
the models' types (ids, aware UTC datetimes, JSON traits), so they are written by the
topic's one encoder from the values, without building the models
(:meth:`shared.events.registry.Topic.encode_values`); changes made set-based in SQL
are encoded by :func:`change_json_sql`. A test reads every message the segmenter
queues, whoever wrote it, back through the registry's decoder
(``tests/integration/segmenter/test_outbox_formats.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.segmenter.fold import WorkingProfile
from shared.events.profiles import ComputedFields, ProfileUpdate
from shared.events.registry import PROFILES, SEGMENT_CHANGES
from shared.events.segment_changes import Cause, Change
from shared.kafka.producer import Message


def change_id(segment_id: str, customer_id: str, version: int, change: str, at: datetime) -> str:
    """The id of one membership change; :mod:`membership_sql` builds the same string in SQL."""
    return f"{segment_id}:{customer_id}:{version}:{change}:{int(at.timestamp() * 1000)}"


def change_message(
    segment_id: str, version: int, customer_id: str, change: Change, at: datetime, cause: Cause
) -> Message:
    value = SEGMENT_CHANGES.encode_values(
        change_id=change_id(segment_id, customer_id, version, change.value, at),
        customer_id=customer_id,
        segment_id=segment_id,
        segment_version=version,
        change=change,
        at=at,
        cause=cause,
    )
    return Message(SEGMENT_CHANGES.name, customer_id.encode(), value)


def change_json_sql(
    *, sid: str, version: str, change: str, epoch_ms: str, at: str, cause: str
) -> str:
    """The SQL expression (``bytea``) of one ``SegmentChange`` as UTF-8 JSON, from SQL
    expressions of its values, for the set-based writers (:mod:`membership_sql`); the
    same bytes as :func:`change_message` up to key order (the JSON of ``jsonb``), its
    ``changeId`` made as :func:`change_id` makes it. A test decodes what every writer
    puts in the outbox with the registry's decoder."""
    return f"""
        convert_to(jsonb_build_object(
            'schemaVersion', 1,
            'changeId', concat_ws(':', {sid}, customer_id, {version}, {change}, {epoch_ms}),
            'customerId', customer_id,
            'segmentId', {sid},
            'segmentVersion', CAST({version} AS integer),
            'change', {change},
            'at', {at},
            'cause', {cause}
        )::text, 'UTF8')"""


def profile_message(
    profile: WorkingProfile,
    version: int,
    scores: Mapping[str, Any],
    now: datetime,
    recommendations: Sequence[Mapping[str, Any]] | None = None,
    merged_from: Sequence[str] | None = None,
) -> Message:
    """The ``profiles`` message of a customer: traits, contact fields, locale, scores,
    and their recommendations when they have some (every writer passes them: each
    message replaces the whole profile in the consumers' projections); ``merged_from``
    announces the ids this batch merged into the customer."""
    traits = profile.traits
    fields: dict[str, Any] = {
        "customer_id": profile.customer_id,
        "version": version,
        "traits": traits,
        "email": _text(traits.get("email")),
        "phone": _text(traits.get("phone")),
        "timezone": profile.timezone,
        "locale": profile.locale,
        "first_seen_at": profile.first_seen_at,
        "last_seen_at": profile.last_seen_at,
        "updated_at": now,
    }
    if merged_from:
        fields["merged_from"] = sorted(merged_from)
    computed = {
        alias: score for name, alias in _COMPUTED if (score := scores.get(name)) is not None
    }
    value = PROFILES.encode_values(**fields, computed=computed, recommendations=recommendations)
    return Message(PROFILES.name, profile.customer_id.encode(), value)


def deleted_profile_messages(
    versions: Mapping[str, int], now: datetime, merged_into: str | None = None
) -> list[Message]:
    """Tell profile consumers to forget these customers (merged away into
    ``merged_into``, or erased)."""
    return [
        PROFILES.message(
            ProfileUpdate(
                customer_id=customer_id,
                version=version,
                deleted=True,
                merged_into=merged_into,
                updated_at=now,
            )
        )
        for customer_id, version in versions.items()
    ]


#: the scores' attribute names and JSON names, in the model's order
_COMPUTED = tuple(
    (name, field.alias or name) for name, field in ComputedFields.model_fields.items()
)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
