"""The checks before a send: fallback, consent, caps, quiet hours, send time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.contacts import Contact, FcmAddress
from services.dispatcher.policy import (
    Action,
    Cap,
    Decision,
    Preferences,
    QuietHours,
    SendPolicy,
    Sent,
    Situation,
    cap_free_at,
    decide,
    not_before,
    quiet_hours_end,
)
from shared.events.channels import Channel
from shared.events.dispatch_requests import DispatchRequest

NOON = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # a Monday
POLICY = SendPolicy()
ALL = frozenset(Channel)


def request(**fields: Any) -> DispatchRequest:
    base: dict[str, Any] = {
        "dispatch_id": "d-1",
        "customer_id": "ada",
        "channels": ["email", "push"],
        "template_id": "t",
        "requested_at": NOON,
    }
    return DispatchRequest.model_validate({**base, **fields})


ADA = Contact("ada", email="ada@example.com", timezone="UTC", traits={"fcmToken": "tok"})


def situation(**fields: Any) -> Situation:
    base: dict[str, Any] = {
        "contact": ADA,
        "preferences": Preferences(),
        "recent": (),
        "template_channels": ALL,
        "topic": None,
    }
    return Situation(**{**base, **fields})


def test_sends_on_the_first_channel_with_an_address() -> None:
    assert decide(request(), situation(), POLICY, NOON) == Decision(
        Action.SEND, Channel.EMAIL, "ada@example.com"
    )


def test_falls_back_when_no_address_no_consent_or_no_variant() -> None:
    no_email = Contact("ada", traits={"fcmToken": "tok"})
    for s in (
        situation(contact=no_email),
        situation(preferences=Preferences(channels={"email": False})),
        situation(template_channels=frozenset({Channel.PUSH})),
    ):
        decision = decide(request(), s, POLICY, NOON)
        assert (decision.action, decision.channel) == (Action.SEND, Channel.PUSH)
        assert decision.address == FcmAddress("tok")


def test_suppressions() -> None:
    cases = [
        (situation(contact=Contact("ada", erased=True)), "erased"),
        (situation(contact=Contact("ada")), "no_contact"),
        (
            situation(preferences=Preferences(channels={"email": False, "push": False})),
            "no_consent",
        ),
        (situation(preferences=Preferences(unsubscribed=True)), "unsubscribed"),
        (
            situation(topic="offers", preferences=Preferences(topics={"offers": False})),
            "unsubscribed",
        ),
        (situation(topic="news", topic_defaults={"news": False}), "unsubscribed"),
    ]
    for s, reason in cases:
        assert decide(request(), s, POLICY, NOON) == Decision(Action.SUPPRESS, reason=reason)
    expired = request(expires_at=NOON - timedelta(seconds=1))
    assert decide(expired, situation(), POLICY, NOON).reason == "expired"


def test_no_variant_for_any_channel_fails() -> None:
    decision = decide(request(), situation(template_channels=frozenset()), POLICY, NOON)
    assert decision.action is Action.FAIL
    assert decision.reason is not None and decision.reason.startswith("template_error")


def test_frequency_cap_defers_until_the_budget_allows_and_critical_is_exempt() -> None:
    recent = [Sent(Channel.EMAIL, NOON - timedelta(hours=3))]
    decision = decide(request(), situation(recent=recent), POLICY, NOON)
    # the email cap (1 a day) frees at 09:00 next day, which is the end of quiet hours too
    assert decision == Decision(
        Action.DEFER, Channel.EMAIL, reason="frequency_cap", until=NOON + timedelta(hours=21)
    )
    assert decide(request(priority="critical"), situation(recent=recent), POLICY, NOON).action is (
        Action.SEND
    )
    # push has its own budget, within the total of 2 a day
    push = decide(request(channels=["push"]), situation(recent=recent), POLICY, NOON)
    assert push.action is Action.SEND


def test_a_deferral_past_expiry_is_dropped_with_an_outcome() -> None:
    recent = [Sent(Channel.EMAIL, NOON - timedelta(hours=3))]
    late = request(expires_at=NOON + timedelta(hours=2))
    assert decide(late, situation(recent=recent), POLICY, NOON) == Decision(
        Action.SUPPRESS, Channel.EMAIL, reason="expired"
    )


def test_quiet_hours_in_the_customers_timezone() -> None:
    tokyo = Contact("ada", email="ada@example.com", timezone="Asia/Tokyo")
    # 12:00 UTC is 21:00 in Tokyo: quiet until 09:00 Tokyo = 00:00 UTC next day
    decision = decide(request(), situation(contact=tokyo), POLICY, NOON)
    assert decision == Decision(
        Action.DEFER, Channel.EMAIL, reason="quiet_hours", until=datetime(2026, 6, 2, tzinfo=UTC)
    )
    assert decide(request(priority="critical"), situation(contact=tokyo), POLICY, NOON).action is (
        Action.SEND
    )


def test_local_time_and_weekdays() -> None:
    paris = Contact("ada", email="ada@example.com", timezone="Europe/Paris")
    # Monday 14:00 Paris; 09:30 on weekdays → Tuesday 09:30 Paris = 07:30 UTC
    req = request(send_time={"kind": "local_time", "at": "09:30", "weekdays": [2, 3]})
    at = not_before(req, paris, POLICY, {})
    assert at == datetime(2026, 6, 2, 7, 30, tzinfo=UTC)
    decision = decide(req, situation(contact=paris, not_before=at), POLICY, NOON)
    assert decision == Decision(Action.DEFER, Channel.EMAIL, reason="send_time", until=at)
    assert decide(req, situation(contact=paris, not_before=at), POLICY, at).action is Action.SEND


def test_best_time_learns_from_engagement_with_a_default() -> None:
    req = request(send_time={"kind": "best_time", "defaultHour": 10, "withinHours": 48})
    assert not_before(req, ADA, POLICY, {}) == datetime(2026, 6, 2, 10, tzinfo=UTC)
    assert not_before(req, ADA, POLICY, {18: 5, 7: 2}) == datetime(2026, 6, 1, 18, tzinfo=UTC)
    short = request(send_time={"kind": "best_time", "defaultHour": 10, "withinHours": 1})
    assert not_before(short, ADA, POLICY, {}) == NOON + timedelta(hours=1)


def test_quiet_hours_window_that_does_not_wrap() -> None:
    quiet = QuietHours(start=time(12), end=time(14))
    assert quiet_hours_end(quiet, ADA_ZONE, NOON) == NOON + timedelta(hours=2)
    assert quiet_hours_end(quiet, ADA_ZONE, NOON + timedelta(hours=2)) is None


ADA_ZONE = __import__("zoneinfo").ZoneInfo("UTC")
_FIRST = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
_LAST = datetime(2027, 1, 1, tzinfo=UTC).replace(tzinfo=None)


@given(
    st.lists(st.integers(min_value=0, max_value=24 * 14 * 60), max_size=30),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=1, max_value=24 * 7),
)
def test_cap_free_at_is_the_first_instant_the_cap_holds(
    minutes_ago: list[int], limit: int, window_hours: int
) -> None:
    recent = [Sent(Channel.EMAIL, NOON - timedelta(minutes=m)) for m in minutes_ago]
    cap = Cap(limit=limit, window_hours=window_hours)

    def count_at(at: datetime) -> int:
        return sum(1 for s in recent if at - timedelta(hours=window_hours) < s.at <= at)

    free = cap_free_at([cap], recent, Channel.EMAIL, NOON)
    if free is None:
        assert count_at(NOON) < limit
        return
    if limit == 0:
        return
    assert count_at(NOON) >= limit
    assert count_at(free) < limit  # one more fits then
    assert count_at(free - timedelta(microseconds=1)) >= limit or free <= NOON


@given(
    st.datetimes(min_value=_FIRST, max_value=_LAST),
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Apia"]),
)
def test_a_deferral_never_ends_inside_quiet_hours(now_naive: datetime, zone: str) -> None:
    now = now_naive.replace(tzinfo=UTC)
    contact = Contact("ada", email="ada@example.com", timezone=zone)
    recent = [Sent(Channel.EMAIL, now - timedelta(hours=1))]
    decision = decide(
        request(requested_at=now), situation(contact=contact, recent=recent), POLICY, now
    )
    assert decision.action is Action.DEFER and decision.until is not None
    from zoneinfo import ZoneInfo

    assert quiet_hours_end(POLICY.quiet_hours, ZoneInfo(zone), decision.until) is None
    assert decision.until > now
