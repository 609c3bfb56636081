"""The outbox messages, built without validation, read back through the topic models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from services.segmenter.catalog import ActiveSegment, SegmentCatalog
from services.segmenter.consumer import membership_change_messages
from services.segmenter.fold import new_profile
from services.segmenter.messages import change_message, deleted_profile_messages, profile_message
from services.segmenter.metrics import MEMBERSHIP_CHANGES
from shared.events import profiles, segment_changes
from shared.events.profiles import ComputedFields, ProfileUpdate
from shared.events.segment_changes import Change, SegmentChange

NOW = datetime(2026, 11, 23, 12, 30, 15, 123456, tzinfo=UTC)


def test_a_change_message_is_a_valid_segment_change() -> None:
    message = change_message("vip", 3, "c-1", Change.EXITED, NOW, "time")
    assert (message.topic, message.key) == (segment_changes.TOPIC, b"c-1")
    parsed = SegmentChange.from_bytes(message.value)
    assert parsed == SegmentChange(
        change_id=f"vip:c-1:3:exited:{int(NOW.timestamp() * 1000)}",
        customer_id="c-1",
        segment_id="vip",
        segment_version=3,
        change=Change.EXITED,
        at=NOW,
        cause="time",
    )
    assert orjson.loads(message.value)["segmentVersion"] == 3  # camelCase on the wire


def test_a_profile_message_carries_traits_contact_fields_and_scores() -> None:
    profile = new_profile("c-2", NOW - timedelta(days=3))
    profile.traits = {"email": "ada@example.com", "phone": "", "plan": "pro", "seats": 12.5}
    profile.timezone, profile.locale = "Europe/Berlin", "de-DE"
    scores = {"churn_risk": 0.25, "predicted_ltv": 310.0, "rfm_tier": "loyal", "score_method": "x"}
    message = profile_message(profile, 7, scores, NOW)
    assert (message.topic, message.key) == (profiles.TOPIC, b"c-2")
    parsed = ProfileUpdate.from_bytes(message.value)
    assert parsed.version == 7 and parsed.customer_id == "c-2" and not parsed.deleted
    assert parsed.traits == profile.traits
    assert (parsed.email, parsed.phone) == ("ada@example.com", None)  # empty is no phone
    assert (parsed.timezone, parsed.locale) == ("Europe/Berlin", "de-DE")
    assert (parsed.first_seen_at, parsed.last_seen_at, parsed.updated_at) == (
        NOW - timedelta(days=3),
        NOW - timedelta(days=3),
        NOW,
    )
    assert parsed.computed == ComputedFields(
        churn_risk=0.25, predicted_ltv=310.0, rfm_tier="loyal", score_method="x"
    )
    wire = orjson.loads(message.value)
    assert "deleted" in wire and "churnRisk" in wire["computed"] and "phone" not in wire


def test_a_deleted_profile_message_says_deleted() -> None:
    [message] = deleted_profile_messages({"c-3": 4}, NOW)
    parsed = ProfileUpdate.from_bytes(message.value)
    assert (parsed.customer_id, parsed.version, parsed.deleted) == ("c-3", 4, True)


def test_the_event_path_queues_each_change_and_counts_it_once() -> None:
    catalog = SegmentCatalog(
        [ActiveSegment.compile("vip", 3, {"kind": "first_seen", "newer_than_days": 1})]
    )
    entered, exited = (MEMBERSHIP_CHANGES.labels(k)._value.get() for k in ("entered", "exited"))
    changes = [
        ("vip", "c-1", Change.ENTERED),
        ("vip", "c-2", Change.ENTERED),
        ("gone", "c-3", Change.EXITED),  # a segment deleted meanwhile: version 1
    ]
    messages = membership_change_messages(changes, catalog, NOW)
    parsed = [SegmentChange.from_bytes(m.value) for m in messages]
    assert [(p.segment_id, p.customer_id, p.change, p.segment_version) for p in parsed] == [
        ("vip", "c-1", Change.ENTERED, 3),
        ("vip", "c-2", Change.ENTERED, 3),
        ("gone", "c-3", Change.EXITED, 1),
    ]
    assert MEMBERSHIP_CHANGES.labels("entered")._value.get() == entered + 2
    assert MEMBERSHIP_CHANGES.labels("exited")._value.get() == exited + 1
