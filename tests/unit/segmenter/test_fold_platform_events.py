"""Events the platform sends about a customer are counted but are not activity."""

from __future__ import annotations

from datetime import timedelta

from services.segmenter.fold import apply_event, new_profile
from tests.unit.segmenter.test_fold import AT, NOTHING_TRACKED, _event


def test_a_coupon_issued_is_counted_but_does_not_make_the_customer_active() -> None:
    profile = new_profile("c1", AT - timedelta(days=40))
    apply_event(profile, _event("track", AT, event="Coupon Issued"), NOTHING_TRACKED)
    assert profile.last_seen_at == AT - timedelta(days=40)
    assert profile.stats["Coupon Issued"].count == 1
    apply_event(profile, _event("track", AT, event="Coupon Applied"), NOTHING_TRACKED)
    assert profile.last_seen_at == AT
