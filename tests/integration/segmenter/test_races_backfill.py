"""Backfills that fail transiently, run twice at once, are left unfinished, or race
the deletion of their segment.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import text

from services.segmenter import repository as repo
from services.segmenter.backfill import backfill, resume_unfinished
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import EventBatchHandler
from tenure.bench.segmenter import save_segments
from tests.integration.segmenter.events import event, run_id
from tests.integration.segmenter.replicas import (
    NOW,
    Gate,
    Replicas,
    batch,
    pro_customer_and_segment,
    retire,
)
from tests.support.outbox import queued_payloads


async def cut_waiting_sessions(url: str) -> int:
    """End the sessions that wait on a lock (as a deadlock ends its victim's statement);
    return how many."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        cut: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    finally:
        await conn.close()
    return cut


async def test_a_backfill_that_fails_transiently_is_tried_again(replicas: Replicas) -> None:
    """A backfill holds every matching customer's rows, so it can be the victim of a
    deadlock with the event path or a sweep; here its connection is cut while it waits
    (the same kind of transient error). The segment must still be backfilled."""
    customer = f"u-{run_id()}"
    catalog = await pro_customer_and_segment(replicas, customer)
    applied, cut = await Gate.membership(replicas.url, "pro", customer).interleave(
        backfill(replicas.engines[1], catalog, [catalog.by_id["pro"]], now=NOW),
        cut_waiting_sessions(replicas.url),
    )

    assert cut == 1

    assert applied["pro"].entered == 1
    assert "pro" in await replicas.memberships(customer)
    async with replicas.engines[0].connect() as conn_:
        segment = await repo.get_segment(conn_, segment_id="pro")
    assert segment is not None and segment.backfilled_version == 1


async def test_two_processes_backfilling_one_segment_take_turns(replicas: Replicas) -> None:
    """Both replicas resume the same unfinished backfill: one does it, the other waits
    and finds it done; the customer enters once."""
    customer = f"u-{run_id()}"
    catalog = await pro_customer_and_segment(replicas, customer)
    segment = catalog.by_id["pro"]
    results = await asyncio.wait_for(
        asyncio.gather(*(backfill(e, catalog, [segment], now=NOW) for e in replicas.engines)),
        timeout=20,
    )

    assert sorted(len(result) for result in results) == [0, 1]
    assert "pro" in await replicas.memberships(customer)
    async with replicas.engines[0].connect() as conn:
        changes = await queued_payloads(conn, topic="segment.changes")
    assert [c["customerId"] for c in changes if c["segmentId"] == "pro"] == [customer]


async def test_an_unfinished_backfill_is_resumed_with_the_segments_reading_it(
    replicas: Replicas,
) -> None:
    customer = f"u-{run_id()}"
    await pro_customer_and_segment(replicas, customer)
    engine = replicas.engines[1]
    async with engine.begin() as conn:  # reads pro; backfilled when pro had no members
        await repo.save_segment_version(
            conn,
            segment_id="pro-readers",
            name="pro-readers",
            description="",
            definition={"kind": "segment", "segment_id": "pro"},
            version=1,
        )
        await conn.execute(
            text("UPDATE segmenter.segments SET backfilled_version = 1 WHERE id = 'pro-readers'")
        )
    assert await resume_unfinished(engine, CatalogCache(engine), now=NOW) == 1

    assert {"pro", "pro-readers"} <= set(await replicas.memberships(customer))
    async with engine.connect() as conn:
        assert await repo.unfinished_backfills(conn) == []
    assert await resume_unfinished(engine, CatalogCache(engine), now=NOW) == 0


async def test_deleting_a_segment_during_its_backfill(replicas: Replicas) -> None:
    """The deletion waits for the running backfill, then ends what it wrote."""
    customer = f"u-{run_id()}"
    catalog = await pro_customer_and_segment(replicas, customer)
    applied, left = await Gate.membership(replicas.url, "pro", customer).interleave(
        backfill(replicas.engines[1], catalog, [catalog.by_id["pro"]], now=NOW),
        retire(replicas, "pro"),
    )

    assert applied["pro"].entered == 1
    assert left == [customer]
    assert "pro" not in await replicas.memberships(customer)


async def test_a_backfill_that_waited_for_the_segment_s_deletion_does_nothing(
    replicas: Replicas,
) -> None:
    customer, member = f"u-{run_id()}", f"m-{run_id()}"
    catalog = await pro_customer_and_segment(replicas, customer)
    async with replicas.engines[0].begin() as conn:  # a member the deletion will end
        await repo.add_memberships(conn, rows=[("pro", member, 1, NOW)])
    left, applied = await Gate.member(replicas.url, "pro", member).interleave(
        retire(replicas, "pro"),  # the segment locked, stopped at the gate
        backfill(replicas.engines[1], catalog, [catalog.by_id["pro"]], now=NOW),
    )

    assert left == [member]
    assert applied == {}
    assert "pro" not in await replicas.memberships(customer)


async def test_a_backfill_and_a_batch_take_timers_and_memberships_in_the_same_order(
    replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch takes its customers' timers, then writes memberships. A backfill of a
    time-dependent segment writes memberships and earlier timers; were the memberships
    first, the two would each wait for the other (a deadlock, and a backfill run again)
    whenever the batch had taken a timer the backfill moves."""
    customer = f"u-{run_id()}"
    await replicas.first(
        batch(event("track", customer, NOW - timedelta(days=1), event="Signed In"))
    )
    await save_segments(
        replicas.engines[0],
        {"pro": {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"}},
        backfilled=True,
    )
    await save_segments(  # the customer is a member; its exit makes their timer earlier
        replicas.engines[0], {"recent-3d": {"kind": "first_seen", "newer_than_days": 3}}
    )
    engine = replicas.engines[0]
    handler = EventBatchHandler(engine=engine, catalogs=CatalogCache(engine), clock=lambda: NOW)
    catalog = await CatalogCache(engine).current()
    caplog.set_level(logging.WARNING, logger="services.segmenter.backfill")
    _, applied = await Gate.membership(replicas.url, "pro", customer).interleave(
        # the batch takes the timer, then stops at its first membership (pro)
        handler(batch(event("identify", customer, NOW, traits={"plan": "pro"}))),
        backfill(replicas.engines[1], catalog, [catalog.by_id["recent-3d"]], now=NOW),
    )

    assert not caplog.records  # no deadlock, no second attempt
    assert applied["recent-3d"].entered == 0  # the batch put the customer in first
    assert {"pro", "recent-3d"} <= set(await replicas.memberships(customer))
