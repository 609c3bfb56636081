"""Backfills walk the customers in chunks of ids, one transaction per chunk."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from services.segmenter import repository as repo
from services.segmenter.backfill import backfill, resume_unfinished, with_dependents
from services.segmenter.catalog import SegmentCatalog
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import EventBatchHandler
from tenure.bench.segmenter import save_segments
from tests.integration.segmenter.events import event
from tests.integration.segmenter.replicas import (
    NOW,
    Gate,
    Replicas,
    batch,
    retire,
    until_waiting,
)
from tests.support.outbox import queued_payloads

#: mixed case and punctuation: byte order ("B-2" < "a-1") is not a linguistic collation's
PLANS = {"a-1": "pro", "B-2": "pro", "a_3": "free", "b-4": "pro", "A-5": "free", "c-6": "pro"}
PRO = {customer for customer, plan in PLANS.items() if plan == "pro"}


def definitions(suffix: str) -> dict[str, dict[str, Any]]:
    """``pro``, and ``pro-new`` reading it (time-dependent: it sets timers)."""
    return {
        f"pro{suffix}": {"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
        f"pro-new{suffix}": {
            "kind": "all",
            "rules": [
                {"kind": "segment", "segment_id": f"pro{suffix}"},
                {"kind": "first_seen", "newer_than_days": 3},
            ],
        },
    }


async def customers_on_plans(replicas: Replicas) -> None:
    await replicas.first(
        batch(*(event("identify", c, NOW, traits={"plan": p}) for c, p in PLANS.items()))
    )


async def members(replicas: Replicas, segment_id: str) -> set[str]:
    async with replicas.engines[0].connect() as conn:
        return set(await repo.members_page(conn, segment_id=segment_id, after=None, limit=100))


async def queued_changes(replicas: Replicas, segment_id: str) -> list[tuple[str, str]]:
    async with replicas.engines[0].connect() as conn:
        changes = await queued_payloads(conn, topic="segment.changes")
    return sorted((c["customerId"], c["change"]) for c in changes if c["segmentId"] == segment_id)


async def timer_rows(replicas: Replicas) -> list[tuple[Any, ...]]:
    async with replicas.engines[0].connect() as conn:
        rows = await conn.execute(
            text("SELECT customer_id, due_at FROM segmenter.membership_timers ORDER BY 1")
        )
        return [tuple(row) for row in rows]


async def restore_timers(replicas: Replicas, rows: list[tuple[Any, ...]]) -> None:
    async with replicas.engines[0].begin() as conn:
        await conn.execute(text("DELETE FROM segmenter.membership_timers"))
        for customer_id, due_at in rows:
            await conn.execute(
                text("INSERT INTO segmenter.membership_timers VALUES (:c, :d)"),
                {"c": customer_id, "d": due_at},
            )


async def add_member(replicas: Replicas, segment_id: str, customer_id: str) -> None:
    async with replicas.engines[0].begin() as conn:
        await repo.add_memberships(conn, rows=[(segment_id, customer_id, 1, NOW)])


async def catalog_of(replicas: Replicas) -> SegmentCatalog:
    return await CatalogCache(replicas.engines[0]).current()


async def test_a_backfill_in_chunks_writes_what_a_single_pass_writes(
    replicas: Replicas,
) -> None:
    """Two copies of the same segments, one backfilled two customers at a time, the
    other in one chunk: the same members, changes and timers. Stale members leave in
    both, also those without a profile, before the first id and after the last."""
    await customers_on_plans(replicas)
    await save_segments(replicas.engines[0], definitions("") | definitions("-copy"))
    for segment_id in ("pro", "pro-copy"):
        for stale in ("0-erased", "a_3", "zz-erased"):
            await add_member(replicas, segment_id, stale)
    catalog = await catalog_of(replicas)
    timers_before = await timer_rows(replicas)

    chunked = await backfill(
        replicas.engines[1], catalog, with_dependents(catalog, ["pro"]), now=NOW, chunk=2
    )
    timers_chunked = await timer_rows(replicas)
    await restore_timers(replicas, timers_before)
    whole = await backfill(
        replicas.engines[1], catalog, with_dependents(catalog, ["pro-copy"]), now=NOW, chunk=1000
    )

    assert await members(replicas, "pro") == PRO
    assert chunked["pro"].entered == len(PRO) and chunked["pro"].exited == 3
    assert await members(replicas, "pro-new") == PRO  # all first seen at NOW
    for segment_id in ("pro", "pro-new"):
        assert chunked[segment_id] == whole[f"{segment_id}-copy"]
        assert await members(replicas, segment_id) == await members(replicas, f"{segment_id}-copy")
        assert await queued_changes(replicas, segment_id) == await queued_changes(
            replicas, f"{segment_id}-copy"
        )
    assert timers_chunked == await timer_rows(replicas)
    assert timers_chunked != timers_before  # pro-new's exits are earlier than the timers
    async with replicas.engines[0].connect() as conn:
        assert await repo.unfinished_backfills(conn) == []


async def test_a_backfill_cut_short_resumes_after_its_last_chunk(replicas: Replicas) -> None:
    """The cursor says the first three customers in key order are done: the resumed
    backfill starts after them. A pro customer among them is left out, as the cursor
    claims it was done; the later pro customers enter, and a stale member leaves."""
    await customers_on_plans(replicas)
    await save_segments(replicas.engines[0], {"pro": definitions("")["pro"]})
    await add_member(replicas, "pro", "zz-erased")
    async with replicas.engines[0].begin() as conn:
        order = await conn.scalar(
            text("SELECT array_agg(customer_id ORDER BY customer_id) FROM segmenter.profiles")
        )
        assert order == sorted(PLANS)  # byte order: Python's, which the walk relies on
        done, rest = set(order[:3]), set(order[3:])
        assert done & PRO and rest & PRO
        await conn.execute(
            text("UPDATE segmenter.segments SET backfill_cursor = :c"), {"c": order[2]}
        )

    engine = replicas.engines[1]
    assert await resume_unfinished(engine, CatalogCache(engine), now=NOW, chunk=1) == 1

    assert await members(replicas, "pro") == rest & PRO
    assert await queued_changes(replicas, "pro") == sorted(
        [(c, "entered") for c in rest & PRO] + [("zz-erased", "exited")]
    )
    async with engine.connect() as conn:
        segment = await repo.get_segment(conn, segment_id="pro")
        assert segment is not None
        assert (segment.backfilled_version, segment.backfill_cursor) == (1, None)


async def test_a_batch_waits_for_one_chunk_of_a_backfill_not_for_the_segment(
    replicas: Replicas,
) -> None:
    """The backfill stops in its last chunk (``c-6``'s membership is held); ``a-1``, whose
    chunk is committed, leaves the plan meanwhile: the batch does not wait for the rest
    of the backfill (in one transaction, it would until the backfill committed)."""
    await customers_on_plans(replicas)
    await save_segments(replicas.engines[0], {"pro": definitions("")["pro"]})
    catalog = await catalog_of(replicas)
    engine = replicas.engines[0]
    handler = EventBatchHandler(engine=engine, catalogs=CatalogCache(engine), clock=lambda: NOW)
    gate = Gate.membership(replicas.url, "pro", "c-6")
    await gate.close()
    running = asyncio.ensure_future(
        backfill(replicas.engines[1], catalog, [catalog.by_id["pro"]], now=NOW, chunk=1)
    )
    try:
        await until_waiting(replicas.url, running)
        leaving = batch(event("identify", "a-1", NOW, traits={"plan": "free"}))
        await asyncio.wait_for(handler(leaving), timeout=10)
        assert not running.done()
    finally:
        await gate.open()
    applied = await asyncio.wait_for(running, timeout=20)

    assert applied["pro"].entered == len(PRO)
    assert await members(replicas, "pro") == PRO - {"a-1"}


async def test_deleting_a_segment_between_chunks_stops_its_backfill(replicas: Replicas) -> None:
    """The deletion waits for the chunk in progress, ends every membership, and the
    backfill's next chunk finds the segment deleted."""
    await customers_on_plans(replicas)
    await save_segments(replicas.engines[0], {"pro": definitions("")["pro"]})
    catalog = await catalog_of(replicas)
    applied, left = await Gate.membership(replicas.url, "pro", "b-4").interleave(
        backfill(replicas.engines[1], catalog, [catalog.by_id["pro"]], now=NOW, chunk=1),
        retire(replicas, "pro"),
    )

    assert applied == {}
    async with replicas.engines[0].connect() as conn:
        order = await conn.scalar(
            text("SELECT array_agg(customer_id ORDER BY customer_id) FROM segmenter.profiles")
        )
    assert set(left) == PRO & set(order[: order.index("b-4") + 1])  # the chunks done
    assert await members(replicas, "pro") == set()
