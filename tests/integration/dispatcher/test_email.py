"""The thin path end to end: a request on dispatch.requests → checks → a real email at
an SMTP server → ``sent`` on dispatch.outcomes; its links work; a duplicate sends once;
a send is recorded without waiting for the slower ones of its batch."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import orjson

from services.dispatcher.links import LinkPayload, Purpose
from shared.events import dispatch_requests
from shared.events.dispatch_requests import DispatchRequest
from shared.kafka.producer import Message
from tests.integration.dispatcher.conftest import ADMIN, Stack

CART = {
    "name": "Cart reminder",
    "subscription_topic": "offers",
    "variants": [
        {
            "channel": "email",
            "subject": "{{ customer.traits.first_name }}, your cart is waiting",
            "text": "Hi {{ customer.traits.first_name }}! {% for p in context.products %}"
            "{{ p.name }} {% endfor %}Unsubscribe: {{ unsubscribe_url }}",
            "html": "<html><body><p>Hi {{ customer.traits.first_name }}"
            "{% if customer.churn_risk > 0.5 %}, 10% off just for you{% endif %}</p>"
            '<a href="https://shop.example/cart?id={{ context.cartId }}">Back to your cart</a>'
            '<a href="{{ survey_url("nps", 9) }}">9</a></body></html>',
        },
        {
            "channel": "email",
            "locale": "fr",
            "subject": "{{ customer.traits.first_name }}, votre panier vous attend",
            "text": "Bonjour",
        },
    ],
}


async def test_a_request_becomes_a_personalised_email_with_working_links(stack: Stack) -> None:
    await stack.template("cart", **CART)
    await stack.profile(
        "ada",
        email="ada@example.com",
        traits={"first_name": "Ada"},
        timezone="UTC",
        computed={"churnRisk": 0.8, "rfmTier": "at_risk"},
    )
    await stack.contact_known("ada")
    before = stack.smtp.count
    request = await stack.request(
        customer_id="ada",
        template_id="cart",
        priority="high",
        context={"cartId": "c-981", "products": [{"name": "Trail shoes"}]},
        journey_id="abandoned-cart",
        journey_version=3,
        step_id="remind",
        run_id="r-1",
        variant="b",
    )
    sent = await stack.final(request.dispatch_id)
    assert sent["status"] == "sent"
    assert sent["channel"] == "email"
    assert sent["journeyId"] == "abandoned-cart" and sent["variant"] == "b"
    assert sent["templateVersion"] >= 1
    assert sent["providerMessageId"] == f"<{request.dispatch_id}@tenure.local>"

    mails = await stack.smtp.wait_for(before + 1)
    mail = next(m for m in mails if m["Message-ID"] == sent["providerMessageId"])
    assert mail["Subject"] == "Ada, your cart is waiting"
    assert mail["To"] == "ada@example.com"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.search(r"<(http://dispatcher\.test/t/u/[^>]+)>", mail["List-Unsubscribe"])
    assert unsubscribe is not None
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi Ada! Trail shoes" in text
    assert "10% off just for you" in html  # churn risk personalisation

    # the open pixel → Email Opened on customer.events, with the attribution
    pixel = re.search(r'<img src="http://dispatcher\.test(/t/o/[^"]+)"', html)
    assert pixel is not None
    answer = await stack.client.get(pixel.group(1))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    opened = await stack.event("Email Opened", request.dispatch_id)
    assert opened["userId"] == "ada"
    assert opened["properties"]["journeyId"] == "abandoned-cart"
    assert opened["properties"]["stepId"] == "remind"
    assert opened["properties"]["runId"] == "r-1"
    assert opened["properties"]["variant"] == "b"
    assert opened["properties"]["channel"] == "email"

    # the cart link was rewritten to a signed click link that redirects to it
    click = re.search(r'href="http://dispatcher\.test(/t/c/[^"]+)"', html)
    assert click is not None
    answer = await stack.client.get(click.group(1))
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://shop.example/cart?id=c-981"
    clicked = await stack.event("Email Link Clicked", request.dispatch_id)
    assert clicked["properties"]["url"] == "https://shop.example/cart?id=c-981"

    # the survey link: a page first (scanners prefetch), the answer on POST
    survey = re.search(r'href="http://dispatcher\.test(/t/s/[^"]+)"', html)
    assert survey is not None
    page = await stack.client.get(survey.group(1))
    assert page.status_code == 200 and "9" in page.text
    answer = await stack.client.post(survey.group(1), data={"comment": "great shoes"})
    assert answer.status_code == 200
    answered = await stack.event("Survey Answered", request.dispatch_id)
    assert answered["properties"]["surveyKind"] == "nps"
    assert answered["properties"]["score"] == 9
    assert answered["properties"]["comment"] == "great shoes"

    # one-click unsubscribe (RFC 8058): GET only shows a page, POST unsubscribes
    path = urlsplit(unsubscribe.group(1)).path
    assert (await stack.client.get(path)).status_code == 200
    answer = await stack.client.post(path, content=b"List-Unsubscribe=One-Click")
    assert answer.status_code == 200
    unsubscribed = await stack.event("Unsubscribed", request.dispatch_id)
    assert unsubscribed["properties"]["topic"] == "offers"
    prefs = (await stack.client.get("/v1/customers/ada/preferences", headers=ADMIN)).json()
    assert prefs["topics"] == {"offers": False}

    # the next message on that topic is suppressed, with an outcome
    again = await stack.request(customer_id="ada", template_id="cart", priority="critical")
    suppressed = await stack.final(again.dispatch_id)
    assert (suppressed["status"], suppressed["reason"]) == ("suppressed", "unsubscribed")


async def test_a_duplicate_request_sends_once(stack: Stack) -> None:
    await stack.template(
        "hello",
        name="hello",
        variants=[{"channel": "email", "subject": "Hello", "text": "Hello {{ customer.id }}"}],
    )
    await stack.profile("dup", email="dup@example.com")
    await stack.contact_known("dup")
    request = await stack.request(customer_id="dup", template_id="hello", priority="critical")
    await stack.final(request.dispatch_id)
    # the same request published again (an outbox redelivery, a replayed timer)
    from shared.events.dispatch_requests import TOPIC
    from shared.kafka.producer import Message

    await stack.publisher.publish(Message(TOPIC, request.key, request.to_bytes()))
    marker = await stack.request(customer_id="dup", template_id="hello", priority="critical")
    await stack.final(marker.dispatch_id)  # consumed after the duplicate (same partition)
    to_dup = [m for m in stack.smtp.messages if m["To"] == "dup@example.com"]
    assert len(to_dup) == 2  # the request once, and the marker
    outcomes = [
        orjson.loads(r.value)
        for r in stack.outcomes.records
        if orjson.loads(r.value)["dispatchId"] == request.dispatch_id
    ]
    # the duplicate sent nothing; its final outcome was published again, the same one
    # (a re-request recovers an outcome the broker lost; consumers keep one by its id)
    assert [o["status"] for o in outcomes] == ["sent", "sent"]
    assert outcomes[0] == outcomes[1]


async def test_tampered_and_foreign_links_are_refused(stack: Stack) -> None:
    signer = stack.runtime.signer
    token = signer.token(
        __import__("services.dispatcher.links").dispatcher.links.Purpose.OPEN,
        __import__("services.dispatcher.links").dispatcher.links.LinkPayload("x"),
    )
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (await stack.client.get(f"/t/o/{tampered}")).status_code == 404
    # a valid click token used as an unsubscribe token
    click = signer.token(Purpose.CLICK, LinkPayload("x", "https://a"))
    assert (await stack.client.post(f"/t/u/{click}")).status_code == 404


async def test_the_preference_page_reads_and_saves_choices(stack: Stack) -> None:
    await stack.client.put(
        "/v1/topics/tips", json={"name": "Tips & tricks", "default_subscribed": True}, headers=ADMIN
    )
    await stack.profile("pat", email="pat@example.com")
    await stack.contact_known("pat")
    request = await stack.request(customer_id="pat", template_id="hello", priority="critical")
    await stack.final(request.dispatch_id)
    path = urlsplit(stack.runtime.signer.preferences(request.dispatch_id)).path
    page = await stack.client.get(path)
    assert page.status_code == 200
    assert "Tips &amp; tricks" in page.text and 'name="topic:tips" value="on" checked' in page.text
    saved = await stack.client.post(path, data={"channel:email": "on", "channel:push": "on"})
    assert saved.status_code == 200
    prefs = (await stack.client.get("/v1/customers/pat/preferences", headers=ADMIN)).json()
    assert prefs["topics"]["tips"] is False
    assert prefs["channels"]["email"] is True and prefs["channels"]["whatsapp"] is False
    assert prefs["unsubscribed"] is False


async def test_a_send_is_recorded_without_waiting_for_a_slow_one(stack: Stack) -> None:
    """Each send is recorded as it finishes (services/dispatcher/recording.py): a message
    the server accepts at once gets its ``sent`` outcome while a slow one of the same
    batch is still with the server."""
    await stack.template(
        "quick",
        name="quick",
        variants=[{"channel": "email", "subject": "Hi", "text": "Hi {{ customer.id }}"}],
    )
    for customer in ("rec-slow", "rec-fast"):
        await stack.profile(customer, email=f"{customer}@example.com")
        await stack.contact_known(customer)
    stack.smtp.delay_for = lambda to: 4.0 if "rec-slow@example.com" in to else 0.0
    try:
        slow, fast = (
            DispatchRequest(
                dispatch_id=str(uuid.uuid4()),
                customer_id=customer,
                channels=["email"],
                template_id="quick",
                requested_at=stack.clock.now,
            )
            for customer in ("rec-slow", "rec-fast")
        )
        await stack.publisher.publish_many(
            Message(dispatch_requests.TOPIC, r.key, r.to_bytes()) for r in (slow, fast)
        )
        assert (await stack.final(fast.dispatch_id))["status"] == "sent"
        assert not [m for m in stack.smtp.messages if m["To"] == "rec-slow@example.com"]
        assert (await stack.final(slow.dispatch_id))["status"] == "sent"
    finally:
        stack.smtp.delay_for = None
