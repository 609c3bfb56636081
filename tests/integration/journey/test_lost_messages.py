"""A message the broker lost delays a final outcome, never drops it: a dispatch request
that never reached the dispatcher, and an outcome that never reached the journey, are
recovered by the journey's watch (the same ``dispatch_id`` requested again); the
message is sent once and the dispatch ends in one final outcome.

Losing a message is simulated in PostgreSQL: a trigger drops the outbox rows of one
topic (they are never published), as a broker that lost them after acknowledging."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text

from shared.events import customer_events as customer_events_topic
from shared.events import profiles as profiles_topic
from shared.events.base import Position
from shared.events.profiles import ProfileUpdate
from tenure.sinks import SmtpSink
from tests.integration.journey.conftest import Stack, track
from tests.integration.journey.test_steps import customer, kinds
from tests.integration.journey.test_with_dispatcher import (  # noqa: F401 (fixture)
    dispatcher,
    welcome_journey,
)


@asynccontextmanager
async def losing(engine: Any, schema: str, topic: str) -> AsyncIterator[None]:
    """While inside, the outbox rows of ``topic`` in ``schema`` are dropped on insert."""
    function = f"{schema}.drop_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RETURN NULL; END $$"
            )
        )
        await conn.execute(
            text(
                f"CREATE TRIGGER lose BEFORE INSERT ON {schema}.outbox FOR EACH ROW "
                f"WHEN (NEW.topic = '{topic}') EXECUTE FUNCTION {function}()"
            )
        )
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER lose ON {schema}.outbox"))
            await conn.execute(text(f"DROP FUNCTION {function}()"))


async def _scalar(engine: Any, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def _until(engine: Any, sql: str, expected: Any, within_s: float = 20, **params: Any) -> None:
    found = None
    for _ in range(int(within_s / 0.05)):
        found = await _scalar(engine, sql, **params)
        if found == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sql} gave {found!r}, not {expected!r}")


async def _signed_up(stack: Stack, trigger: str) -> tuple[str, str]:
    """A reachable customer signs up; returns them and their email."""
    who = customer()
    email = f"{who}@example.com"
    (delivered,) = await stack.send(
        customer_events_topic.TOPIC, track(who, trigger, stack.clock.now)
    )
    await stack.send(
        profiles_topic.TOPIC,
        ProfileUpdate(
            customer_id=who,
            version=1,
            email=email,
            updated_at=stack.clock.now,
            folded=Position(partition=delivered.partition, offset=delivered.offset),
        ),
    )
    return who, email


WATCHED = "SELECT count(*) FROM journey.dispatch_watch WHERE customer_id = :c"
FINALS = (
    "SELECT count(*) FROM dispatcher.outcomes WHERE customer_id = :c "
    "AND status IN ('sent', 'suppressed', 'failed')"
)


async def test_a_lost_request_is_requested_again_and_sent_once(
    stack: Stack,
    dispatcher: tuple[httpx.AsyncClient, SmtpSink, Any],  # noqa: F811
) -> None:
    client, smtp, dispatcher_engine = dispatcher
    journey_engine = stack.runtime.engine
    trigger = await welcome_journey(stack, client, on_failure="done", outcome_timeout="P2D")
    async with losing(journey_engine, "journey", "dispatch.requests"):
        who, email = await _signed_up(stack, trigger)
        await _until(journey_engine, WATCHED, 1, c=who)  # the run asked; nobody heard
    await asyncio.sleep(0.5)
    assert (
        await _scalar(
            dispatcher_engine,
            "SELECT count(*) FROM dispatcher.deliveries WHERE customer_id = :c",
            c=who,
        )
        == 0
    )
    # past the watch's bound the same dispatch is requested again, and sent
    stack.clock.advance(seconds=timedelta(minutes=16).total_seconds())
    await _until(dispatcher_engine, FINALS, 1, c=who)
    await _until(journey_engine, WATCHED, 0, c=who)  # its outcome settled the watch
    events = await stack.run_events(who, 5, within_s=20)
    assert kinds(events)[-2:] == ["step_reached:done", "exited:"]
    assert len([m for m in smtp.messages if m["To"] == email]) == 1


async def test_a_lost_outcome_is_recovered_and_nothing_is_sent_twice(
    stack: Stack,
    dispatcher: tuple[httpx.AsyncClient, SmtpSink, Any],  # noqa: F811
) -> None:
    client, smtp, dispatcher_engine = dispatcher
    journey_engine = stack.runtime.engine
    trigger = await welcome_journey(stack, client, on_failure="done", outcome_timeout="P2D")
    async with losing(dispatcher_engine, "dispatcher", "dispatch.outcomes"):
        who, email = await _signed_up(stack, trigger)
        await _until(dispatcher_engine, FINALS, 1, c=who)  # sent; its outcome is lost
    await asyncio.sleep(0.5)
    assert await _scalar(journey_engine, WATCHED, c=who) == 1
    assert kinds(stack.run_events_so_far(who))[-1].startswith("waiting")
    # the journey asks again; the dispatcher holds the delivery: it sends nothing and
    # publishes the final outcome again, which moves the run on
    stack.clock.advance(seconds=timedelta(minutes=16).total_seconds())
    await _until(journey_engine, WATCHED, 0, c=who)
    events = await stack.run_events(who, 5, within_s=20)
    assert kinds(events)[-2:] == ["step_reached:done", "exited:"]
    await asyncio.sleep(0.5)
    assert len([m for m in smtp.messages if m["To"] == email]) == 1
    assert await _scalar(dispatcher_engine, FINALS, c=who) == 1
