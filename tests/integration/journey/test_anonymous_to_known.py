"""Anonymous → known, followed everywhere: a visitor starts a checkout anonymously and
signs in (an ``identify`` carrying both ids); the real segmenter announces the merge on
``profiles``, the journey re-keys the run and its wait, the real dispatcher emails the
known address once, the order placed after signing in ends the run, and the real
metrics service counts that run's conversion once, for the known customer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.metrics.app import create_app as create_metrics
from services.metrics.settings import MetricsGroup, MetricsSettings
from shared.auth import hash_token
from shared.db.migrations import upgrade
from shared.events import customer_events
from shared.events import profiles as profiles_topic
from shared.events.customer_events import CustomerEvent, EventType
from shared.events.profiles import ProfileUpdate
from shared.settings import DatabaseSettings
from tenure.embedded import EmbeddedBroker
from tenure.services import SERVICES
from tenure.sinks import SmtpSink
from tests.conftest import NewDatabase
from tests.integration.dispatcher.conftest import ADMIN as DISPATCHER_ADMIN
from tests.integration.journey.conftest import ADMIN_TOKEN, Stack, module_kafka
from tests.integration.journey.test_steps import customer, kinds, name
from tests.integration.journey.test_with_dispatcher import _projected, dispatcher  # noqa: F401
from tests.integration.journey.test_with_segmenter import segmenter  # noqa: F401

ORDER = "Order Completed"


@pytest.fixture
async def metrics(
    module_broker: EmbeddedBroker, new_database: NewDatabase, stack: Stack
) -> AsyncIterator[AsyncEngine]:
    """A metrics service on the journey stack's broker and clock; yields its engine."""
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["metrics"].migrations_dir, database_url=url
    )
    settings = MetricsSettings(
        kafka=module_kafka(module_broker),
        database=DatabaseSettings(url=url),
        metrics=MetricsGroup(
            admin_token_hashes=hash_token(ADMIN_TOKEN),
            consumer_group=f"metrics-{uuid.uuid4().hex[:8]}",
            evaluate_interval_s=0,
        ),
    )
    app = create_metrics(settings, clock=stack.clock)
    async with app.router.lifespan_context(app):
        await app.state.runtime.runner.started.wait()
        yield app.state.runtime.engine


def cart_journey(checkout: str) -> dict[str, Any]:
    """Checkout started → wait up to an hour for the order, else one reminder email;
    the order is the goal (it ends the run whenever it comes, within 3 days)."""
    return {
        "triggers": [{"kind": "event", "event": checkout}],
        "goal": {"event": ORDER, "within": "P3D"},
        "steps": [
            {
                "id": "wait_order",
                "type": "wait_for_event",
                "event": ORDER,
                "timeout": "PT1H",
                "next": "done",
                "on_timeout": "remind",
            },
            {
                "id": "remind",
                "type": "send",
                "channels": ["email"],
                "template_id": "cart-merge",
                "next": "done",
            },
            {"id": "done", "type": "exit"},
        ],
    }


def event(kind: EventType, at: Any, **fields: Any) -> CustomerEvent:
    return CustomerEvent(
        type=kind, message_id=f"m-{uuid.uuid4().hex}", timestamp=at, received_at=at, **fields
    )


async def test_a_visitor_who_signs_in_gets_one_reminder_and_converts_once(
    stack: Stack,
    segmenter: httpx.AsyncClient,  # noqa: F811
    dispatcher: tuple[httpx.AsyncClient, SmtpSink, Any],  # noqa: F811
    metrics: AsyncEngine,
) -> None:
    client, smtp, dispatcher_engine = dispatcher
    created = await client.post(
        "/v1/templates",
        json={
            "id": "cart-merge",
            "definition": {
                "name": "Cart",
                "variants": [{"channel": "email", "subject": "Your cart", "text": "Come back"}],
            },
        },
        headers=DISPATCHER_ADMIN,
    )
    assert created.status_code in (201, 409), created.text
    checkout = name("Checkout Started")
    journey_id = await stack.journey(cart_journey(checkout))
    anonymous, known = f"anon-{uuid.uuid4().hex[:8]}", customer()
    email = f"{known}@example.com"

    # an anonymous visitor starts a checkout: a run under the anonymous id
    await stack.send(
        customer_events.TOPIC,
        event(EventType.TRACK, stack.clock.now, anonymous_id=anonymous, event=checkout),
    )
    (entered, *_) = await stack.run_events(anonymous, 3)
    run_id = entered["runId"]

    # then signs in: the SDK's identify carries both ids, and the email
    await stack.send(
        customer_events.TOPIC,
        event(
            EventType.IDENTIFY,
            stack.clock.now,
            user_id=known,
            anonymous_id=anonymous,
            traits={"email": email},
        ),
    )
    (run,) = await stack.customer_runs(known, until=lambda runs: len(runs) == 1)
    assert run["run_id"] == run_id and run["status"] == "active"
    assert await stack.customer_runs(anonymous) == []
    await _projected(dispatcher_engine, "dispatcher", [known])

    # the wait runs out: the reminder goes to the known customer, once
    before = smtp.count
    stack.clock.advance(hours=1, seconds=1)
    (request,) = await stack.dispatches(known, 1, within_s=30)
    assert request["runId"] == run_id
    await smtp.wait_for(before + 1, within_s=30)
    for _ in range(100):  # the sink counts a message before it keeps it
        if len(smtp.messages) > before:
            break
        await asyncio.sleep(0.02)
    (mail,) = smtp.messages[before:]
    assert email in mail["To"]

    # metrics has the send, for the known customer (a goal is credited to a send
    # metrics already holds: see docs/services/metrics.md)
    for _ in range(300):
        async with metrics.connect() as conn:
            touched = await conn.scalar(
                text("SELECT customer_id FROM metrics.touches WHERE dispatch_id = :d"),
                {"d": request["dispatchId"]},
            )
        if touched is not None:
            break
        await asyncio.sleep(0.05)
    assert touched == known

    # the order placed after signing in ends the run
    stack.clock.advance(minutes=10)
    await stack.send(
        customer_events.TOPIC,
        event(
            EventType.TRACK,
            stack.clock.now,
            user_id=known,
            anonymous_id=anonymous,
            event=ORDER,
            properties={"revenue": 42},
        ),
    )
    (run,) = await stack.customer_runs(known, until=lambda runs: runs[0]["status"] == "exited")
    assert run["exit_reason"] == "goal" and run["converted_at"] is not None
    assert stack.dispatches_so_far(anonymous) == []
    assert len(stack.dispatches_so_far(known)) == 1

    # metrics: that run, for the known customer, converted once; the send converted once
    for _ in range(300):
        async with metrics.connect() as conn:
            runs = (
                await conn.execute(
                    text(
                        "SELECT run_id, customer_id, converted_at IS NOT NULL "
                        "FROM metrics.runs WHERE journey_id = :j"
                    ),
                    {"j": journey_id},
                )
            ).all()
            converted = await conn.scalar(
                text(
                    "SELECT coalesce(sum(count), 0) FROM metrics.funnel_daily "
                    "WHERE journey_id = :j AND metric = 'converted'"
                ),
                {"j": journey_id},
            )
        if runs and all(r[2] for r in runs) and converted:
            break
        await asyncio.sleep(0.05)
    assert [tuple(r) for r in runs] == [(run_id, known, True)]
    assert converted == 1
    sent = smtp.count
    stack.clock.advance(days=4)
    await asyncio.sleep(0.5)
    assert smtp.count == sent  # nothing more for anyone


async def test_a_run_the_known_customer_already_has_is_not_duplicated(stack: Stack) -> None:
    checkout = name("Checkout Started")
    await stack.journey(cart_journey(checkout))
    anonymous, known = f"anon-{uuid.uuid4().hex[:8]}", customer()
    await stack.track(known, checkout)  # on another device, signed in
    (known_entered, *_) = await stack.run_events(known, 3)
    await stack.send(
        customer_events.TOPIC,
        event(EventType.TRACK, stack.clock.now, anonymous_id=anonymous, event=checkout),
    )
    (anonymous_entered, *_) = await stack.run_events(anonymous, 3)
    # the merge, as the segmenter announces it: the tombstone first, then the known update
    now = stack.clock.now
    await stack.send(
        profiles_topic.TOPIC,
        ProfileUpdate(
            customer_id=anonymous, version=2, deleted=True, merged_into=known, updated_at=now
        ),
    )
    stopped = await stack.run_events(anonymous, 4)
    assert stopped[-1]["kind"] == "exited" and stopped[-1]["detail"] == f"merged into {known}"
    await stack.send(
        profiles_topic.TOPIC,
        ProfileUpdate(customer_id=known, version=3, merged_from=[anonymous], updated_at=now),
    )
    runs = await stack.customer_runs(known)
    assert [r["run_id"] for r in runs if r["status"] == "active"] == [known_entered["runId"]]
    # a late event of the anonymous id goes to the known customer's run
    stack.clock.advance(minutes=5)
    await stack.send(
        customer_events.TOPIC,
        event(EventType.TRACK, stack.clock.now, anonymous_id=anonymous, event=ORDER),
    )
    done = await stack.customer_runs(
        known,
        until=lambda runs: any(
            r["run_id"] == known_entered["runId"] and r["exit_reason"] == "goal" for r in runs
        ),
    )
    assert anonymous_entered["runId"] not in [r["run_id"] for r in done if r["status"] == "active"]
    stack.clock.advance(hours=2)
    await asyncio.sleep(0.5)
    assert stack.dispatches_so_far(known) == [] and stack.dispatches_so_far(anonymous) == []
    assert kinds(stopped)[-1] == "exited:wait_order"
