"""Exclusive offers end to end: a pool's unique code and a signed code in a real email,
one code per dispatch (a redelivery burns none), Coupon Issued events with the
attribution, an empty pool failing the message, the pool gauge; recommendations and
loyalty from the profile in the same template."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from services.dispatcher.offers import pools
from shared.db.migrations import upgrade
from shared.events import ALL_TOPICS, customer_events, dispatch_outcomes, dispatch_requests
from shared.kafka.producer import EventPublisher
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tenure.services import SERVICES
from tenure.sinks import HttpRecorder, SmtpSink
from tests.conftest import NewDatabase
from tests.integration.dispatcher.conftest import ADMIN, Stack, start_stack
from tests.support.kafka import TopicTail

OFFER_KEYS = "3:offer-key-for-tests-0123456789"

OFFER = {
    "name": "Comeback offer",
    "variants": [
        {
            "channel": "email",
            "subject": "A gift for you",
            "text": "Pool: {{ coupon('spring') }} "
            "Signed: {{ offer_code('percent', 15, days=14, prefix='BACK') }} "
            "Tier: {{ customer.loyalty_tier }} ({{ customer.loyalty_points }} points) "
            "Picks:{% for r in customer.recommendations %} {{ r.product_id }}"
            "{% if r.because %} (for {{ r.because[0] }}){% endif %}{% endfor %}",
        }
    ],
}


@pytest.fixture(scope="module")
async def stack(
    kafka_settings: KafkaSettings,
    bootstrap_servers: str,
    new_database: NewDatabase,
    smtp: SmtpSink,
    recorder: HttpRecorder,
) -> AsyncIterator[Stack]:
    await ensure_topics(kafka_settings, with_dead_letters(ALL_TOPICS))
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["dispatcher"].migrations_dir, database_url=url
    )
    app, keys, clock = await start_stack(
        kafka_settings=kafka_settings,
        url=url,
        smtp=smtp,
        recorder=recorder,
        offer_keys=OFFER_KEYS,
        offer_key_id=3,
    )
    publisher = EventPublisher(kafka_settings, client_id="test-offers")
    await publisher.start()
    outcomes = await TopicTail(bootstrap_servers, dispatch_outcomes.TOPIC).start()
    events = await TopicTail(bootstrap_servers, customer_events.TOPIC).start()
    dlq = await TopicTail(bootstrap_servers, dispatch_requests.DLQ_TOPIC).start()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dispatcher.test") as c:
            await app.state.runtime.runner.started.wait()
            yield Stack(c, clock, publisher, outcomes, events, dlq, smtp, recorder, keys, app, url)
    for tail in (outcomes, events, dlq):
        await tail.stop()
    await publisher.stop()


def text_of(mail: Any) -> str:
    return mail.get_body(("plain",)).get_content()  # type: ignore[no-any-return]


async def test_offers_in_a_message(stack: Stack) -> None:
    created = await stack.client.post(
        "/v1/coupon-pools", headers=ADMIN, json={"id": "spring", "name": "Spring", "low_water": 1}
    )
    assert created.status_code == 201, created.text
    again = await stack.client.post(
        "/v1/coupon-pools", headers=ADMIN, json={"id": "spring", "name": "Spring"}
    )
    assert again.status_code == 409
    upload = await stack.client.post(
        "/v1/coupon-pools/spring/codes", headers=ADMIN, json={"codes": ["SPR-1", "SPR-2", "SPR-1"]}
    )
    assert upload.json() == {"added": 2, "available": 2}
    bad = await stack.client.post(
        "/v1/coupon-pools/spring/codes", headers=ADMIN, json={"codes": ["has space"]}
    )
    assert bad.status_code == 422
    missing = await stack.client.post(
        "/v1/coupon-pools/nope/codes", headers=ADMIN, json={"codes": ["X"]}
    )
    assert missing.status_code == 404

    await stack.template("offer", **OFFER)
    await stack.profile(
        "grace",
        email="grace@example.com",
        timezone="UTC",
        computed={"loyaltyTier": "Gold", "loyaltyPoints": 2400},
        recommendations=[
            {"productId": "sku-socks", "score": 0.5, "because": ["sku-shoes"]},
            {"productId": "sku-lamp", "score": 0.2, "source": "popular"},
        ],
    )
    await stack.contact_known("grace")
    before = stack.smtp.count
    request = await stack.request(
        customer_id="grace",
        template_id="offer",
        journey_id="win-back",
        step_id="offer",
        run_id="r-9",
        variant="a",
    )
    sent = await stack.final(request.dispatch_id)
    assert sent["status"] == "sent", sent
    mails = await stack.smtp.wait_for(before + 1)
    mail = next(m for m in mails if m["Message-ID"] == sent["providerMessageId"])
    text = text_of(mail)
    assert "Tier: Gold (2400 points)" in text
    assert "Picks: sku-socks (for sku-shoes) sku-lamp" in text
    pool_code = re.search(r"Pool: (SPR-\d)", text)
    signed = re.search(r"Signed: (BACK-[0-9A-Z-]+)", text)
    assert pool_code and signed, text

    # a checkout verifies the signed code offline; the pool code is known to be issued
    checked = await stack.client.post(
        "/v1/offers/verify", headers=ADMIN, json={"code": signed.group(1).lower()}
    )
    assert checked.json()["valid"] and checked.json()["value"] == 15, checked.text
    issued = await stack.client.post(
        "/v1/offers/verify", headers=ADMIN, json={"code": pool_code.group(1)}
    )
    assert issued.json()["dispatch_id"] == request.dispatch_id
    assert issued.json()["kind"] == "pool" and issued.json()["issued"] is True
    forged = await stack.client.post(
        "/v1/offers/verify", headers=ADMIN, json={"code": signed.group(1)[:-1] + "0"}
    )
    assert forged.json()["valid"] is False

    # each code announced once, with the attribution
    for code in (pool_code.group(1), signed.group(1)):

        def announces(r: Any, code: str = code) -> bool:
            return bool(orjson.loads(r.value).get("properties", {}).get("coupon") == code)

        record = await stack.events.wait_for(announces, within_s=20)
        event = orjson.loads(record.value)
        assert event["event"] == "Coupon Issued"
        props = event["properties"]
        assert props["dispatchId"] == request.dispatch_id
        assert (props["journeyId"], props["variant"], props["stepId"]) == ("win-back", "a", "offer")

    # the same dispatch draws the same code again: a retry burns nothing
    async with stack.runtime.engine.begin() as conn:
        again_drawn = await pools.draw(
            conn, wanted=[("spring", request.dispatch_id, "grace")], now=stack.clock.now
        )
    assert again_drawn == {("spring", request.dispatch_id): pool_code.group(1)}
    stats = (await stack.client.get("/v1/coupon-pools/spring", headers=ADMIN)).json()
    assert (stats["available"], stats["issued"]) == (1, 1)

    # the last code goes to the next message; then the pool is empty and a message
    # drawing from it fails with a reason, never sends without its code (other customers:
    # the default frequency cap would defer a second message to grace today)
    for other in ("alan", "edsger"):
        await stack.profile(other, email=f"{other}@example.com", timezone="UTC")
        await stack.contact_known(other)
    second = await stack.request(customer_id="alan", template_id="offer")
    assert (await stack.final(second.dispatch_id))["status"] == "sent"
    third = await stack.request(customer_id="edsger", template_id="offer")
    failed = await stack.final(third.dispatch_id)
    assert failed["status"] == "failed"
    assert "no code left in pool 'spring'" in failed["reason"]
    metrics_text = (await stack.client.get("/metrics")).text
    assert 'tenure_dispatcher_coupons_available{pool="spring"} 0.0' in metrics_text
    assert 'tenure_dispatcher_coupon_pool_low_water{pool="spring"} 1.0' in metrics_text


async def test_bad_pools_and_codes_are_4xx_as_documented(stack: Stack) -> None:
    """Schemathesis found a low-water mark over int4 and a NUL in a name or a code
    failing in asyncpg with a 500."""
    huge = {"id": "big", "name": "Big", "low_water": 29718988267761816863235511905419264}
    for body in (huge, {"id": "nul", "name": "N\x00"}):
        answer = await stack.client.post("/v1/coupon-pools", json=body, headers=ADMIN)
        assert answer.status_code == 422, answer.text
    answer = await stack.client.post("/v1/offers/verify", json={"code": "A\x00"}, headers=ADMIN)
    assert answer.status_code == 422, answer.text
