"""Erasure in metrics: a ``deleted`` profile moves the customer's rows to one pseudonym
(cohorts, retention and attribution still join them), logs the id, and the customer's
later messages are dropped (events) or counted under a pseudonym (the others). The
funnel keeps reason codes, never a provider's text."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg

from shared.events import customer_events, dispatch_outcomes, journey_runs
from shared.events import profiles as profiles_topic
from shared.events.dispatch_outcomes import Status
from shared.events.journey_runs import JourneyRunEvent, RunEventKind
from shared.events.profiles import ProfileUpdate
from tests.integration.metrics.conftest import Stack
from tests.integration.metrics.test_messaging import T0, _outcome, _track

TABLES = ("customers", "active_periods", "touches", "runs")


async def _rows(db: asyncpg.Connection, customer_id: str) -> dict[str, int]:
    found = {}
    for table in TABLES:
        found[table] = await db.fetchval(
            f"SELECT count(*) FROM metrics.{table} WHERE customer_id = $1", customer_id
        )
    return found


async def _until(db: asyncpg.Connection, query: str, *args: object) -> object:
    for _ in range(300):
        value = await db.fetchval(query, *args)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {query} {args}")


async def test_an_erasure_pseudonymises_the_customers_rows_and_later_messages(
    stack: Stack,
) -> None:
    tag = uuid.uuid4().hex[:8]
    who, journey = f"gone-{tag}", f"j-erasure-{tag}"
    address = f"{who}@example.com"
    run = f"run-{tag}"
    await stack.send(customer_events.TOPIC, _track(f"m-{tag}", who, "Order Completed", T0))
    await stack.send(
        journey_runs.TOPIC,
        JourneyRunEvent(
            event_id=f"{run}:0",
            kind=RunEventKind.ENTERED,
            seq=0,
            at=T0,
            run_id=run,
            customer_id=who,
            journey_id=journey,
            journey_version=1,
            entered_at=T0,
        ),
    )
    at = T0 + timedelta(minutes=5)
    await stack.send(
        dispatch_outcomes.TOPIC,
        _outcome(f"d1-{tag}", who, Status.SENT, at, journey=journey, variant=""),
        _outcome(
            f"d2-{tag}",
            who,
            Status.FAILED,
            at,
            journey=journey,
            variant="",
            reason=f"provider_error: smtp: 550 5.1.1 <{address}>: no such user",
        ),
    )
    db = await asyncpg.connect(stack.database_url.replace("+asyncpg", "", 1))
    try:
        for table in TABLES:
            await _until(db, f"SELECT 1 FROM metrics.{table} WHERE customer_id = $1", who)
        reasons = await db.fetch(
            "SELECT reason FROM metrics.funnel_daily WHERE journey_id = $1 AND metric = 'failed'",
            journey,
        )
        assert [r["reason"] for r in reasons] == ["provider_error"]

        await stack.send(
            profiles_topic.TOPIC,
            ProfileUpdate(customer_id=who, version=3, deleted=True, updated_at=T0),
        )
        await _until(db, "SELECT 1 FROM metrics.erasures WHERE customer_id = $1", who)
        assert await _rows(db, who) == dict.fromkeys(TABLES, 0)
        names = set()
        for table in TABLES:
            names |= {
                r["customer_id"]
                for r in await db.fetch(
                    f"SELECT customer_id FROM metrics.{table} WHERE customer_id LIKE 'erased-%'"
                )
            }
        assert len(names) == 1  # one pseudonym: the rows still join one another
        active = await db.fetchval("SELECT count(*) FROM metrics.active_periods")

        # later: an event (dropped) and a final outcome (counted, under a pseudonym)
        await stack.send(
            customer_events.TOPIC,
            _track(f"m2-{tag}", who, "Order Completed", T0 + timedelta(days=3)),
        )
        await stack.send(
            dispatch_outcomes.TOPIC,
            _outcome(
                f"d3-{tag}",
                who,
                Status.SUPPRESSED,
                at,
                journey=journey,
                variant="",
                reason="erased",
            ),
        )
        await _until(
            db,
            "SELECT 1 FROM metrics.funnel_daily WHERE journey_id = $1 AND reason = 'erased'",
            journey,
        )
        # the event and the outcome are on different topics: wait for the event's claim
        # (a hash of its message id is all that is kept of it)
        await _until(
            db,
            "SELECT 1 FROM metrics.processed_messages WHERE message_key = md5($1)::uuid",
            f"e:m2-{tag}",
        )
        assert await _rows(db, who) == dict.fromkeys(TABLES, 0)
        assert await db.fetchval("SELECT count(*) FROM metrics.active_periods") == active
    finally:
        await db.close()
