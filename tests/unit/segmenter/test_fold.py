"""Folding events into a working profile: what a batch marks as written or changed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from services.segmenter.fold import TrackedDimensions, WorkingProfile, apply_event, new_profile
from shared.events.customer_events import CustomerEvent

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
NOTHING_TRACKED = TrackedDimensions(())


def _stored(traits: dict[str, Any], set_at: datetime) -> WorkingProfile:
    times = {name: set_at.isoformat() for name in traits}
    return WorkingProfile(
        "c1",
        first_seen_at=set_at,
        last_seen_at=set_at,
        traits=dict(traits),
        stored_trait_times=orjson.dumps(times).decode(),
        stored=True,
    )


def _event(kind: str, at: datetime, **fields: Any) -> CustomerEvent:
    return CustomerEvent.model_validate(
        {
            "type": kind,
            "messageId": f"m-{kind}-{at}",
            "userId": "c1",
            "timestamp": at,
            "receivedAt": at,
            **fields,
        }
    )


def test_a_track_event_writes_no_trait() -> None:
    profile = _stored({"plan": "pro"}, AT - timedelta(days=1))
    apply_event(profile, _event("track", AT, event="Signed In"), NOTHING_TRACKED)
    assert (profile.traits_written, profile.changed) == (False, False)
    assert profile.last_seen_at == AT


def test_the_same_value_set_later_writes_its_time_but_changes_nothing() -> None:
    profile = _stored({"plan": "pro"}, AT - timedelta(days=1))
    apply_event(profile, _event("identify", AT, traits={"plan": "pro"}), NOTHING_TRACKED)
    assert (profile.traits_written, profile.changed) == (True, False)
    assert profile.trait_times == {"plan": AT.isoformat()}


def test_an_older_value_is_neither_written_nor_a_change() -> None:
    set_at = AT - timedelta(days=1)
    profile = _stored({"plan": "pro"}, set_at)
    older = _event("identify", set_at - timedelta(days=1), traits={"plan": "free"})
    apply_event(profile, older, NOTHING_TRACKED)
    assert (profile.traits_written, profile.changed) == (False, False)
    assert profile.traits == {"plan": "pro"}
    assert profile.trait_times == {"plan": set_at.isoformat()}


def test_a_new_value_is_written_and_changed() -> None:
    profile = _stored({"plan": "pro"}, AT - timedelta(days=1))
    apply_event(profile, _event("identify", AT, traits={"plan": "team"}), NOTHING_TRACKED)
    assert (profile.traits_written, profile.changed) == (True, True)
    assert profile.traits == {"plan": "team"}


def test_a_new_profile_is_written_whole() -> None:
    profile = new_profile("c2", AT)
    assert (profile.traits_written, profile.changed, profile.trait_times) == (True, True, {})


# --- rollup days are UTC days, whatever offset the client sent -----------------------------

_DAY_CASES = [
    # (timestamp as the client sent it, the UTC day it counts on)
    ("2026-11-12T22:00:00-05:00", "2026-11-13"),  # local evening, next UTC day
    ("2026-11-12T18:59:59-05:00", "2026-11-12"),  # local evening, same UTC day
    ("2026-11-13T01:30:00+09:00", "2026-11-12"),  # local early morning, previous UTC day
    ("2026-11-13T09:00:00+09:00", "2026-11-13"),  # local morning, same UTC day
    ("2026-11-12T23:59:59.999999+00:00", "2026-11-12"),
    ("2026-11-13T00:00:00+00:00", "2026-11-13"),
    ("2026-11-12T23:30:00-00:30", "2026-11-13"),
]


def test_rollup_days_are_utc_days_on_both_sides_of_midnight() -> None:
    for sent, utc_day in _DAY_CASES:
        at = datetime.fromisoformat(sent)
        profile = new_profile("c1", at)
        apply_event(
            profile,
            _event("track", at, event="Order Completed", properties={"revenue": 5}),
            NOTHING_TRACKED,
        )
        assert list(profile.rollups) == [("Order Completed", "", date.fromisoformat(utc_day))], sent


def test_one_utc_day_in_two_offsets_is_one_rollup_row() -> None:
    """The issue's case: 22:00-05:00 on the 12th and 10:00Z on the 13th are one UTC day."""
    evening = datetime.fromisoformat("2026-11-12T22:00:00-05:00")
    morning = datetime.fromisoformat("2026-11-13T10:00:00+00:00")
    profile = new_profile("c1", evening)
    for at, revenue in ((evening, 5), (morning, 25)):
        apply_event(
            profile,
            _event("track", at, event="Order Completed", properties={"revenue": revenue}),
            NOTHING_TRACKED,
        )
    assert {k: tuple(v) for k, v in profile.rollups.items()} == {
        ("Order Completed", "", date(2026, 11, 13)): (2, 30.0)
    }
