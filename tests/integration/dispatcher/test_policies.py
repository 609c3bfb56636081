"""Consent, frequency caps, quiet hours, send time and erasure defer or suppress as
specified, with the clock moved by the tests; deferrals are durable timers that the
sweep fires."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.dispatcher.conftest import ADMIN, Stack

TEMPLATE = {
    "name": "Nudge",
    "variants": [
        {"channel": "email", "subject": "Nudge", "html": "<p>Hi {{ customer.id }}</p>"},
        {"channel": "push", "title": "Nudge", "text": "Hi"},
    ],
}


async def _customer(stack: Stack, name: str, **fields: Any) -> str:
    customer = f"{name}-{uuid.uuid4().hex[:6]}"
    await stack.profile(customer, email=f"{customer}@example.com", **fields)
    await stack.contact_known(customer)
    return customer


async def _statuses(stack: Stack, dispatch_id: str, count: int) -> list[tuple[str, Any]]:
    return [(o["status"], o.get("reason")) for o in await stack.outcomes_of(dispatch_id, count)]


async def test_quiet_hours_defer_to_the_customers_morning_and_the_timer_fires(
    stack: Stack,
) -> None:
    await stack.template("nudge", **TEMPLATE)
    assert stack.clock.now == datetime(2026, 6, 1, 12, tzinfo=UTC)  # 21:00 in Tokyo
    customer = await _customer(stack, "tokyo", timezone="Asia/Tokyo")
    request = await stack.request(customer_id=customer, template_id="nudge")
    (deferred,) = await stack.outcomes_of(request.dispatch_id)
    assert (deferred["status"], deferred["reason"]) == ("deferred", "quiet_hours")
    assert deferred["deferredUntil"] == "2026-06-02T00:00:00Z"  # 09:00 in Tokyo
    # a new version meanwhile: the deferred message keeps the version decided on arrival
    await stack.template(
        "nudge",
        **{
            **TEMPLATE,
            "variants": [{"channel": "email", "subject": "Nudge v2", "html": "<p>v2</p>"}],
        },
    )
    stack.clock.now = datetime(2026, 6, 2, 0, 0, 1, tzinfo=UTC)
    assert await _statuses(stack, request.dispatch_id, 2) == [
        ("deferred", "quiet_hours"),
        ("sent", None),
    ]
    mail = next(
        m for m in stack.smtp.messages if m["Message-ID"] == f"<{request.dispatch_id}@tenure.local>"
    )
    assert mail["Subject"] == "Nudge"
    await stack.template("nudge", **TEMPLATE)


async def test_at_22_utc_a_customer_whose_timezone_trait_is_in_daytime_gets_the_message(
    stack: Stack,
) -> None:
    """The README's walk-through at night in UTC: the ``timezone`` trait (an identify
    call's, no ``context.timezone`` on the events) puts the customer in their morning."""
    stack.clock.now = datetime(2026, 6, 3, 22, tzinfo=UTC)  # 07:00 the next day in Tokyo
    await stack.template("nudge", **TEMPLATE)
    policy = (await stack.client.get("/v1/policy", headers=ADMIN)).json()
    early = {**policy, "quiet_hours": {"enabled": True, "start": "21:00", "end": "07:00"}}
    assert (await stack.client.put("/v1/policy", json=early, headers=ADMIN)).status_code == 200
    try:
        day = await _customer(stack, "trait-day", traits={"timezone": "Asia/Tokyo"})
        sent = await stack.request(customer_id=day, template_id="nudge")
        assert (await stack.final(sent.dispatch_id))["status"] == "sent"
        # an invalid zone name is skipped: the policy's default (UTC) is night
        night = await _customer(stack, "trait-bad", traits={"timezone": "Mars/Base"})
        held = await stack.request(customer_id=night, template_id="nudge")
        (deferred,) = await stack.outcomes_of(held.dispatch_id)
        assert (deferred["status"], deferred["reason"]) == ("deferred", "quiet_hours")
    finally:
        assert (await stack.client.put("/v1/policy", json=policy, headers=ADMIN)).status_code
        stack.clock.now = datetime(2026, 6, 2, 14, tzinfo=UTC)


async def test_frequency_caps_across_journeys_defer_and_critical_goes_through(
    stack: Stack,
) -> None:
    stack.clock.now = datetime(2026, 6, 2, 14, tzinfo=UTC)  # 10:00 in New York
    customer = await _customer(
        stack, "capped", timezone="America/New_York", traits={"fcmToken": "t"}
    )
    first = await stack.request(customer_id=customer, template_id="nudge", journey_id="a")
    assert (await stack.final(first.dispatch_id))["status"] == "sent"
    second = await stack.request(customer_id=customer, template_id="nudge", journey_id="b")
    (deferred,) = await stack.outcomes_of(second.dispatch_id)
    assert (deferred["status"], deferred["reason"]) == ("deferred", "frequency_cap")
    assert deferred["deferredUntil"] == "2026-06-03T14:00:00Z"  # the email cap: 1 a day
    critical = await stack.request(
        customer_id=customer, template_id="nudge", priority="critical", journey_id="c"
    )
    assert (await stack.final(critical.dispatch_id))["status"] == "sent"
    # a message that cannot wait that long is dropped, with an outcome
    short = await stack.request(
        customer_id=customer,
        template_id="nudge",
        journey_id="d",
        expires_at=stack.clock.now + timedelta(hours=2),
    )
    assert (await stack.final(short.dispatch_id))["reason"] == "expired"
    # push has its own budget within the total cap (2 a day): the critical one counted
    push = await stack.request(
        customer_id=customer, template_id="nudge", channels=["push"], journey_id="e"
    )
    (deferred_push,) = await stack.outcomes_of(push.dispatch_id)
    assert (deferred_push["status"], deferred_push["reason"]) == ("deferred", "frequency_cap")
    stack.clock.now = datetime(2026, 6, 3, 14, 0, 1, tzinfo=UTC)
    assert (await stack.final(second.dispatch_id))["status"] == "sent"


async def test_consent_and_erasure(stack: Stack) -> None:
    stack.clock.now = datetime(2026, 6, 4, 12, tzinfo=UTC)
    customer = await _customer(stack, "consent", timezone="UTC", traits={"fcmToken": "t-1"})
    answer = await stack.client.patch(
        f"/v1/customers/{customer}/preferences", json={"channels": {"email": False}}, headers=ADMIN
    )
    assert answer.status_code == 200 and answer.json()["channels"] == {"email": False}
    fallback = await stack.request(
        customer_id=customer, template_id="nudge", channels=["email", "push"]
    )
    outcome = await stack.final(fallback.dispatch_id)
    assert (outcome["status"], outcome["channel"]) == ("sent", "push")
    only_email = await stack.request(customer_id=customer, template_id="nudge")
    assert (await stack.final(only_email.dispatch_id))["reason"] == "no_consent"
    await stack.client.patch(
        f"/v1/customers/{customer}/preferences", json={"unsubscribed": True}, headers=ADMIN
    )
    critical = await stack.request(customer_id=customer, template_id="nudge", priority="critical")
    assert (await stack.final(critical.dispatch_id))["reason"] == "unsubscribed"
    nobody = await stack.request(customer_id=f"unknown-{uuid.uuid4().hex}", template_id="nudge")
    assert (await stack.final(nobody.dispatch_id))["reason"] == "no_contact"

    # an erased customer: a deferred message ends suppressed at the erasure, not when
    # its timer would have fired (the clock stays in the quiet hours)
    erased = await _customer(stack, "erased", timezone="Asia/Tokyo")  # 21:00 there
    waiting = await stack.request(customer_id=erased, template_id="nudge")
    (deferred,) = await stack.outcomes_of(waiting.dispatch_id)
    assert deferred["status"] == "deferred"
    await stack.profile(erased, version=2, deleted=True)
    final = await stack.final(waiting.dispatch_id)
    assert (final["status"], final["reason"]) == ("suppressed", "erased")


async def test_local_time_and_best_time(stack: Stack) -> None:
    stack.clock.now = datetime(2026, 6, 8, 10, tzinfo=UTC)  # a Monday, 12:00 in Paris
    customer = await _customer(stack, "paris", timezone="Europe/Paris")
    at_nine = await stack.request(
        customer_id=customer,
        template_id="nudge",
        priority="critical",  # not capped: this test is about the send time
        send_time={"kind": "local_time", "at": "09:30", "weekdays": [3]},
    )
    (deferred,) = await stack.outcomes_of(at_nine.dispatch_id)
    assert (deferred["status"], deferred["reason"]) == ("deferred", "send_time")
    assert deferred["deferredUntil"] == "2026-06-10T07:30:00Z"  # Wednesday 09:30 Paris

    # learn a best hour from the customer's own opens, at 18:xx UTC
    sent = await stack.request(customer_id=customer, template_id="nudge", priority="critical")
    assert (await stack.final(sent.dispatch_id))["status"] == "sent"
    mail = next(
        m for m in stack.smtp.messages if m["Message-ID"] == f"<{sent.dispatch_id}@tenure.local>"
    )
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    pixel = re.search(r'src="http://dispatcher\.test(/t/o/[^"]+)"', html)
    assert pixel is not None
    for minute in (5, 20, 40):
        stack.clock.now = datetime(2026, 6, 8, 18, minute, tzinfo=UTC)
        assert (await stack.client.get(pixel.group(1))).status_code == 200
    stack.clock.now = datetime(2026, 6, 9, 8, tzinfo=UTC)
    best = await stack.request(
        customer_id=customer,
        template_id="nudge",
        priority="critical",
        send_time={"kind": "best_time", "defaultHour": 10, "withinHours": 48},
    )
    (deferred,) = await stack.outcomes_of(best.dispatch_id)
    assert deferred["deferredUntil"] == "2026-06-09T18:00:00Z"
    stack.clock.now = datetime(2026, 6, 9, 18, 0, 1, tzinfo=UTC)
    final = await stack.final(best.dispatch_id)
    assert final["status"] == "sent", final


async def test_nothing_is_recorded_about_an_erased_customer(stack: Stack) -> None:
    stack.clock.now = datetime(2026, 6, 12, 12, tzinfo=UTC)
    customer = await _customer(stack, "forgotten", timezone="UTC")
    request = await stack.request(customer_id=customer, template_id="nudge", priority="critical")
    assert (await stack.final(request.dispatch_id))["status"] == "sent"
    await stack.profile(customer, version=2, deleted=True)
    await stack.contact_known(customer, version=2)
    pixel = stack.runtime.signer.open_pixel(request.dispatch_id).removeprefix(
        "http://dispatcher.test"
    )
    assert (await stack.client.get(pixel)).status_code == 200
    import asyncio

    await asyncio.sleep(1.5)
    assert not [r for r in stack.events.records if customer.encode() == r.key], (
        "an engagement event was recorded for an erased customer"
    )
