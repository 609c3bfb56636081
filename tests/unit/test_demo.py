"""``tenure demo``'s population and mail reading, without a stack."""

from __future__ import annotations

from datetime import UTC, datetime

from tenure.demo.catalog import JOURNEYS, SUBJECT_MARKERS, TEMPLATES
from tenure.demo.mail import parse
from tenure.demo.population import Population, daytime_zones

NOW = datetime(2026, 12, 7, 22, 0, tzinfo=UTC)


def test_the_same_seed_gives_the_same_calls_with_unique_message_ids() -> None:
    one, two = Population(200, 5, NOW), Population(200, 5, NOW)
    zones = daytime_zones(NOW)
    calls = [c for p in one.customers for c in one.history(p, zones) + one.today(p, zones)]
    again = [c for p in two.customers for c in two.history(p, zones) + two.today(p, zones)]
    assert calls == again
    ids = [c["messageId"] for c in calls]
    assert len(ids) == len(set(ids))
    assert {c.storyline for c in one.customers} == {
        "signup",
        "cart",
        "first_buyer",
        "tier_up",
        "lapsed",
        "regular",
    }
    other = Population(200, 6, NOW)
    assert not set(ids) & {c["messageId"] for p in other.customers for c in other.history(p, zones)}


def test_customers_live_where_it_is_daytime() -> None:
    from zoneinfo import ZoneInfo

    zones = daytime_zones(NOW)
    assert zones and all(10 <= NOW.astimezone(ZoneInfo(z)).hour < 19 for z in zones)


def test_every_template_a_journey_sends_exists_and_every_subject_is_recognised() -> None:
    sent = {
        s["template_id"]
        for _, definition in JOURNEYS.values()
        for s in definition["steps"]
        if s["type"] == "send"
    }
    assert sent == set(TEMPLATES)
    assert {t for _, _, t in SUBJECT_MARKERS} == set(TEMPLATES)


def test_an_email_is_read_like_a_mail_client_reads_it() -> None:
    raw = (
        b"From: shop@example.com\r\nTo: Ada <ada.1@demo5.example>\r\n"
        b"Subject: We miss you, Ada: 15% off, just for you\r\n"
        b"X-Tenure-Dispatch-Id: d-1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p>Your code: <b>NW15-00042</b></p><a href="http://t/t/c/abc?x=1&amp;y=2">go</a>'
        b'<a href="http://t/t/s/s0">0</a><a href="http://t/t/s/s1">1</a>'
        b'<img src="http://t/t/o/open" width="1">'
    )
    email = parse("k", raw)
    assert email.to == "ada.1@demo5.example"
    assert email.dispatch_id == "d-1"
    assert email.coupon == "NW15-00042"
    assert email.clicks == ["http://t/t/c/abc?x=1&y=2"]
    assert email.surveys == {0: "http://t/t/s/s0", 1: "http://t/t/s/s1"}
    assert email.opens == ["http://t/t/o/open"]
