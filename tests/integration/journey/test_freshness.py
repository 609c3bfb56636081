"""Freshness end to end: a welcome email triggered by ``Signed Up`` sent in one batch
with the ``identify`` that carries the email, while the dispatcher's profiles lag
behind (the segmenter starts late): the request waits for the profile copy to fold its
trigger, and the email is sent, not ``no_contact``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from services.segmenter.app import create_app as create_segmenter
from services.segmenter.settings import SegmenterGroup, SegmenterSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import customer_events as customer_events_topic
from shared.events.customer_events import CustomerEvent, EventType
from shared.settings import DatabaseSettings
from tenure.embedded import EmbeddedBroker
from tenure.services import SERVICES
from tenure.sinks import SmtpSink
from tests.conftest import NewDatabase
from tests.integration.journey.conftest import ADMIN_TOKEN, Stack, module_kafka, track
from tests.integration.journey.test_steps import customer
from tests.integration.journey.test_with_dispatcher import (  # noqa: F401 (fixture)
    dispatcher,
    welcome_journey,
)


async def _delivery(engine: Any, customer_id: str) -> tuple[str, str | None] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, reason FROM dispatcher.deliveries WHERE customer_id = :c"),
                {"c": customer_id},
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def test_a_request_waits_for_the_profile_of_its_trigger_then_sends(
    stack: Stack,
    dispatcher: tuple[httpx.AsyncClient, SmtpSink, Any],  # noqa: F811
    module_broker: EmbeddedBroker,
    new_database: NewDatabase,
) -> None:
    client, smtp, dispatcher_engine = dispatcher
    trigger = await welcome_journey(stack, client)
    who = customer()
    email = f"{who}@example.com"
    identify = CustomerEvent(
        type=EventType.IDENTIFY,
        message_id=f"m-{uuid.uuid4()}",
        user_id=who,
        timestamp=stack.clock.now,
        received_at=stack.clock.now,
        traits={"email": email},
    )
    # one batch, as the Segment and RudderStack SDKs send it: identify, then the track
    await stack.send(customer_events_topic.TOPIC, identify, track(who, trigger, stack.clock.now))

    # no segmenter yet: the dispatcher holds the request, waiting, and decides nothing
    for _ in range(300):
        if await _delivery(dispatcher_engine, who) is not None:
            break
        await asyncio.sleep(0.05)
    assert await _delivery(dispatcher_engine, who) == ("deferred", "profile_behind")
    stack.clock.advance(seconds=5)  # a few looks again: still behind, still waiting
    await asyncio.sleep(1.5)
    assert await _delivery(dispatcher_engine, who) == ("deferred", "profile_behind")
    assert not [m for m in smtp.messages if m["To"] == email]

    # the segmenter starts late, folds the batch and publishes the profile with the
    # trigger's position: the waiting request is woken and sent
    kafka = module_kafka(module_broker)
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["segmenter"].migrations_dir, database_url=url
    )
    settings = SegmenterSettings(
        kafka=kafka,
        database=DatabaseSettings(url=url),
        segmenter=SegmenterGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"segmenter-{uuid.uuid4().hex[:8]}",
            refit_interval_s=0,
        ),
    )
    app = create_segmenter(settings, clock=stack.clock)
    async with app.router.lifespan_context(app):
        await app.state.runtime.runner.started.wait()
        for _ in range(400):
            if await _delivery(dispatcher_engine, who) == ("sent", None):
                break
            await asyncio.sleep(0.05)
    assert await _delivery(dispatcher_engine, who) == ("sent", None)
    assert len([m for m in smtp.messages if m["To"] == email]) == 1


async def test_past_the_bound_a_no_contact_says_the_profile_never_caught_up(
    stack: Stack,
    dispatcher: tuple[httpx.AsyncClient, SmtpSink, Any],  # noqa: F811
) -> None:
    client, smtp, dispatcher_engine = dispatcher
    trigger = await welcome_journey(stack, client)
    who = customer()
    await stack.track(who, trigger)
    for _ in range(300):
        if await _delivery(dispatcher_engine, who) is not None:
            break
        await asyncio.sleep(0.05)
    assert await _delivery(dispatcher_engine, who) == ("deferred", "profile_behind")
    # no profile ever comes: past the bound (10 minutes) it is decided on what is held
    stack.clock.advance(seconds=timedelta(minutes=11).total_seconds())
    found = None
    for _ in range(300):
        found = await _delivery(dispatcher_engine, who)
        if found is not None and found[0] == "suppressed":
            break
        await asyncio.sleep(0.05)
    assert found is not None and found[0] == "suppressed"
    assert found[1] is not None
    assert found[1].startswith("no_contact: ") and "profile_behind" in found[1]
