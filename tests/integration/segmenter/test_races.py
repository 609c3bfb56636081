"""Writers of one customer's rows racing each other: a batch of events against an
alias merge applied by another replica, or against an erasure from the API.

``alias`` is keyed by the known id and the anonymous id's events by the anonymous
id, so the two land on different partitions and may be applied at the same time
by two replicas. Whichever commits first, the anonymous history must end up on
the known profile and nothing may stay behind under the anonymous id. An erasure
must leave nothing of the customer behind, and with suppression no later
profile either.

A set-based backfill locks no profile: an erasure waits for it (an advisory
lock), as it waits for a sweep by taking the customer's timer first.

The interleavings are made deterministic with PostgreSQL's own locks: the test
holds an uncommitted write of a ``membership_timers`` row that one transaction's
timer write will wait on (every profile gets a timer: the segment is
time-dependent), so that transaction stops there, before its commit, until the
test rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.backfill import backfill, resume_unfinished
from services.segmenter.catalog import SegmentCatalog
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import EventBatchHandler
from services.segmenter.membership_sql import Applied
from services.segmenter.metrics import BATCHES_RERUN
from services.segmenter.sweeper import TimerSweeper
from shared.db.engine import create_engine
from shared.db.migrations import upgrade
from shared.events.customer_events import TOPIC, CustomerEvent
from shared.kafka.consumer import Record
from shared.settings import DatabaseSettings
from tenure.services import SERVICES
from tests.conftest import NewDatabase
from tests.integration.segmenter.conftest import event, run_id

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SEGMENTS: dict[str, dict[str, Any]] = {
    "new-customers": {"kind": "first_seen", "newer_than_days": 30},
    "inactive-7d": {"kind": "last_event", "older_than_days": 7},
}


@dataclass
class Replicas:
    """Two segmenter handlers, each with its own connections, on one database."""

    url: str
    engines: list[AsyncEngine]
    first: EventBatchHandler
    second: EventBatchHandler

    async def stats(self, customer_id: str) -> dict[str, int]:
        async with self.engines[0].connect() as conn:
            rows = await repo.event_stats_of(conn, customer_id=customer_id)
        return {row.event_name: row.count for row in rows}

    async def memberships(self, customer_id: str) -> list[str]:
        async with self.engines[0].connect() as conn:
            rows = await repo.memberships_of(conn, customer_id=customer_id)
        return [row.segment_id for row in rows]

    async def profile_ids(self, *ids: str) -> set[str]:
        async with self.engines[0].connect() as conn:
            return set(await repo.load_profiles(conn, ids=ids, lock=False))


@pytest.fixture
async def replicas(new_database: NewDatabase) -> AsyncIterator[Replicas]:
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["segmenter"].migrations_dir, database_url=url
    )
    engines = [create_engine(DatabaseSettings(url=SecretStr(url))) for _ in range(2)]
    async with engines[0].begin() as conn:
        for segment_id, definition in SEGMENTS.items():
            await repo.save_segment_version(
                conn,
                segment_id=segment_id,
                name=segment_id,
                description="",
                definition=definition,
                version=1,
            )
        await conn.execute(text("UPDATE segmenter.segments SET backfilled_version = version"))
    handlers = [
        EventBatchHandler(engine=e, catalogs=CatalogCache(e), clock=lambda: NOW) for e in engines
    ]
    try:
        yield Replicas(url, engines, handlers[0], handlers[1])
    finally:
        for engine in engines:
            await engine.dispose()


def batch(*events: CustomerEvent) -> list[Record[CustomerEvent]]:
    return [Record(TOPIC, 0, offset, e.key, e, 0) for offset, e in enumerate(events)]


class Gate:
    """An uncommitted write of one row: a transaction writing the same row waits at it
    until :meth:`open` rolls it back."""

    def __init__(self, url: str, statement: str, *args: Any) -> None:
        self._url = url.replace("postgresql+asyncpg://", "postgresql://")
        self._statement = statement
        self._args = args
        self._conn: asyncpg.Connection | None = None

    @classmethod
    def timer(cls, url: str, customer_id: str) -> Gate:
        return cls(
            url,
            "INSERT INTO segmenter.membership_timers (customer_id, due_at) VALUES ($1, $2) "
            "ON CONFLICT (customer_id) DO UPDATE SET due_at = excluded.due_at",
            customer_id,
            NOW,
        )

    @classmethod
    def member(cls, url: str, segment_id: str, customer_id: str) -> Gate:
        """Holds the lock of an existing membership row."""
        return cls(
            url,
            "UPDATE segmenter.memberships SET entered_at = entered_at "
            "WHERE segment_id = $1 AND customer_id = $2",
            segment_id,
            customer_id,
        )

    @classmethod
    def membership(cls, url: str, segment_id: str, customer_id: str) -> Gate:
        return cls(
            url,
            "INSERT INTO segmenter.memberships (segment_id, customer_id, segment_version, "
            "entered_at) VALUES ($1, $2, 1, $3)",
            segment_id,
            customer_id,
            NOW,
        )

    async def close(self) -> None:
        self._conn = await asyncpg.connect(self._url)
        await self._conn.execute("BEGIN")
        await self._conn.execute(self._statement, *self._args)

    async def open(self) -> None:
        assert self._conn is not None
        await self._conn.execute("ROLLBACK")
        await self._conn.close()


async def waits_on_a_lock(url: str) -> bool:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    finally:
        await conn.close()
    return bool(waiting)


async def until_blocked(url: str, task: asyncio.Future[Any]) -> None:
    """Until some session waits on a lock, or ``task`` ended without having to."""
    for _ in range(400):
        if task.done() or await waits_on_a_lock(url):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the task neither ended nor waited on a lock")


async def test_a_merge_after_an_uncommitted_first_event_of_the_anonymous_id(
    replicas: Replicas,
) -> None:
    """The anonymous id's first event is written but not committed when the alias
    comes: the merge must wait for it and take it along."""
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await replicas.first(batch(event("identify", known, NOW, traits={"plan": "pro"})))
    gate = Gate.timer(replicas.url, anonymous)
    await gate.close()
    anonymous_batch = asyncio.ensure_future(
        replicas.second(
            batch(event("track", None, NOW, anonymousId=anonymous, event="Product Viewed"))
        )
    )
    await until_blocked(replicas.url, anonymous_batch)  # at the gate, profile written
    merge = asyncio.ensure_future(
        replicas.first(batch(event("alias", known, NOW, previousId=anonymous)))
    )
    await until_blocked_twice(replicas.url, merge)
    await gate.open()
    await asyncio.wait_for(asyncio.gather(anonymous_batch, merge), timeout=20)

    assert await replicas.stats(known) == {"Product Viewed": 1}
    assert await replicas.stats(anonymous) == {}
    assert await replicas.profile_ids(known, anonymous) == {known}


async def test_an_event_of_the_anonymous_id_during_an_uncommitted_merge(
    replicas: Replicas,
) -> None:
    """The merge is written but not committed when the anonymous id's event comes:
    the event must land on the known profile, not on a new anonymous one."""
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await replicas.first(batch(event("identify", known, NOW, traits={"plan": "pro"})))
    await replicas.second(
        batch(event("track", None, NOW, anonymousId=anonymous, event="Product Viewed"))
    )
    gate = Gate.timer(replicas.url, known)
    await gate.close()
    merge = asyncio.ensure_future(
        replicas.first(batch(event("alias", known, NOW, previousId=anonymous)))
    )
    await until_blocked(replicas.url, merge)  # at the gate, merge written
    reruns = BATCHES_RERUN._value.get()
    anonymous_batch = asyncio.ensure_future(
        replicas.second(
            batch(event("track", None, NOW, anonymousId=anonymous, event="Product Viewed"))
        )
    )
    await until_blocked_twice(replicas.url, anonymous_batch)
    await gate.open()
    await asyncio.wait_for(asyncio.gather(anonymous_batch, merge), timeout=20)

    assert await replicas.stats(known) == {"Product Viewed": 2}
    assert await replicas.stats(anonymous) == {}
    assert await replicas.profile_ids(known, anonymous) == {known}
    assert BATCHES_RERUN._value.get() == reruns + 1  # the anonymous batch, once


async def test_a_first_event_of_the_anonymous_id_during_an_uncommitted_merge(
    replicas: Replicas,
) -> None:
    """As above, when the anonymous id had no profile yet (no row to wait on)."""
    known, anonymous = f"u-{run_id()}", f"anon-{run_id()}"
    await replicas.first(batch(event("identify", known, NOW, traits={"plan": "pro"})))
    gate = Gate.timer(replicas.url, known)
    await gate.close()
    merge = asyncio.ensure_future(
        replicas.first(batch(event("alias", known, NOW, previousId=anonymous)))
    )
    await until_blocked(replicas.url, merge)
    anonymous_batch = asyncio.ensure_future(
        replicas.second(
            batch(event("track", None, NOW, anonymousId=anonymous, event="Product Viewed"))
        )
    )
    await until_blocked_twice(replicas.url, anonymous_batch)
    await gate.open()
    await asyncio.wait_for(asyncio.gather(anonymous_batch, merge), timeout=20)

    assert await replicas.stats(known) == {"Product Viewed": 1}
    assert await replicas.stats(anonymous) == {}
    assert await replicas.profile_ids(known, anonymous) == {known}


async def until_blocked_twice(url: str, task: asyncio.Future[Any]) -> None:
    """Until two sessions wait on locks (the gated one and ``task``'s), or ``task``
    ended without waiting (what the race allowed before the fix)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for _ in range(400):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if waiting >= 2 or task.done():
                return
            await asyncio.sleep(0.025)
    finally:
        await conn.close()
    raise AssertionError("the task neither ended nor waited on a lock")


async def erase(replicas: Replicas, customer_id: str, *, suppress: bool) -> None:
    """What ``DELETE /v1/profiles/{id}`` does to the tables, on a connection of its own."""
    async with replicas.engines[0].begin() as conn:
        ids, _, _ = await repo.erase_customer(conn, customer_id=customer_id)
        if suppress:
            await repo.suppress(conn, ids=ids, at=NOW, reason="erased")


async def test_an_erasure_during_an_uncommitted_batch_of_the_customer(
    replicas: Replicas,
) -> None:
    """The batch has written new statistics of the customer, uncommitted, when the
    erasure comes: the erasure must wait for them and delete them too."""
    customer = f"u-{run_id()}"
    await replicas.first(batch(event("identify", customer, NOW, traits={"plan": "pro"})))
    gate = Gate.timer(replicas.url, customer)
    await gate.close()
    purchase = asyncio.ensure_future(
        replicas.second(batch(event("track", customer, NOW, event="Order Completed")))
    )
    await until_blocked(replicas.url, purchase)  # at the gate, statistics written
    erasure = asyncio.ensure_future(erase(replicas, customer, suppress=False))
    await until_blocked_twice(replicas.url, erasure)
    await gate.open()
    await asyncio.wait_for(asyncio.gather(purchase, erasure), timeout=20)

    assert await replicas.stats(customer) == {}
    assert await replicas.profile_ids(customer) == set()


async def test_a_batch_of_the_customer_during_an_uncommitted_erasure_with_suppression(
    replicas: Replicas,
) -> None:
    """The erasure (with suppression) holds the customer's rows when the batch comes:
    the batch must not make a new profile of a suppressed id."""
    customer = f"u-{run_id()}"
    await replicas.first(batch(event("identify", customer, NOW, traits={"plan": "pro"})))
    gate = Gate.timer(replicas.url, customer)
    await gate.close()
    erasure = asyncio.ensure_future(erase(replicas, customer, suppress=True))
    await until_blocked(replicas.url, erasure)  # at the gate, profile locked
    reruns = BATCHES_RERUN._value.get()
    purchase = asyncio.ensure_future(
        replicas.second(batch(event("track", customer, NOW, event="Order Completed")))
    )
    await until_blocked_twice(replicas.url, purchase)
    await gate.open()
    await asyncio.wait_for(asyncio.gather(purchase, erasure), timeout=20)

    assert await replicas.stats(customer) == {}
    assert await replicas.profile_ids(customer) == set()
    assert BATCHES_RERUN._value.get() == reruns + 1


async def test_an_erasure_during_an_uncommitted_sweep_of_the_customer(
    replicas: Replicas,
) -> None:
    """Time made the customer enter a segment, in a sweep not yet committed when the
    erasure comes: the erasure must delete that membership too."""
    customer = f"u-{run_id()}"
    await replicas.first(
        batch(event("track", customer, NOW - timedelta(days=6), event="Signed In"))
    )
    assert await replicas.memberships(customer) == ["new-customers"]
    engine = replicas.engines[1]
    later = NOW + timedelta(days=2)  # 8 days without activity: inactive-7d
    sweeper = TimerSweeper(engine=engine, catalogs=CatalogCache(engine), clock=lambda: later)
    gate = Gate.membership(replicas.url, "inactive-7d", customer)
    await gate.close()
    sweep = asyncio.ensure_future(sweeper.sweep_once())
    await until_blocked(replicas.url, sweep)  # timer claimed, at the gate
    erasure = asyncio.ensure_future(erase(replicas, customer, suppress=False))
    await until_blocked_twice(replicas.url, erasure)
    await gate.open()
    swept, _ = await asyncio.wait_for(asyncio.gather(sweep, erasure), timeout=20)

    assert swept == 1
    assert await replicas.memberships(customer) == []
    assert await replicas.profile_ids(customer) == set()


async def pro_customer_and_segment(replicas: Replicas, customer: str) -> SegmentCatalog:
    """A customer on the pro plan and a new segment ``pro``, not backfilled yet."""
    await replicas.first(batch(event("identify", customer, NOW, traits={"plan": "pro"})))
    async with replicas.engines[0].begin() as conn:
        await repo.save_segment_version(
            conn,
            segment_id="pro",
            name="pro",
            description="",
            definition={"kind": "trait", "trait": "plan", "op": "eq", "value": "pro"},
            version=1,
        )
    return await CatalogCache(replicas.engines[0]).current()


async def start_gated_backfill(
    replicas: Replicas, customer: str
) -> tuple[Gate, asyncio.Future[dict[str, Applied]]]:
    """The customer on the pro plan, a new segment ``pro``, and its backfill, started
    and stopped at the customer's membership (the gate is closed)."""
    engine = replicas.engines[1]
    catalog = await pro_customer_and_segment(replicas, customer)
    gate = Gate.membership(replicas.url, "pro", customer)
    await gate.close()
    backfilling = asyncio.ensure_future(backfill(engine, catalog, [catalog.by_id["pro"]], now=NOW))
    await until_blocked(replicas.url, backfilling)
    return gate, backfilling


async def test_an_erasure_during_an_uncommitted_backfill(replicas: Replicas) -> None:
    """A new segment's backfill has made the customer a member, uncommitted, when the
    erasure comes: the erasure must wait for it and delete that membership too."""
    customer = f"u-{run_id()}"
    gate, backfilling = await start_gated_backfill(replicas, customer)
    erasure = asyncio.ensure_future(erase(replicas, customer, suppress=False))
    await until_blocked_twice(replicas.url, erasure)
    await gate.open()
    applied, _ = await asyncio.wait_for(asyncio.gather(backfilling, erasure), timeout=20)

    assert applied["pro"].entered == 1
    assert await replicas.memberships(customer) == []
    assert await replicas.profile_ids(customer) == set()


async def test_a_sweep_and_a_batch_of_the_same_customer_do_not_deadlock(
    replicas: Replicas,
) -> None:
    """A batch and a sweep both move the customer from one segment to another. The
    batch takes the customer's timer before it writes memberships, so a sweep either
    claimed the timer first (and the batch waits for it) or skips it; writing the
    memberships first let the sweep claim the timer in between, and each then
    waited for the other."""
    customer = f"u-{run_id()}"
    await replicas.first(
        batch(
            event("track", customer, NOW - timedelta(days=29), event="Signed In"),
            event("track", customer, NOW - timedelta(days=6), event="Signed In"),
        )
    )
    assert await replicas.memberships(customer) == ["new-customers"]
    later = NOW + timedelta(days=2)  # no longer new, 8 days inactive
    engine = replicas.engines[1]
    handler = EventBatchHandler(engine=engine, catalogs=CatalogCache(engine), clock=lambda: later)
    sweeper = TimerSweeper(
        engine=replicas.engines[0], catalogs=CatalogCache(replicas.engines[0]), clock=lambda: later
    )
    gate = Gate.member(replicas.url, "new-customers", customer)
    await gate.close()
    identify = asyncio.ensure_future(
        handler(batch(event("identify", customer, later, traits={"plan": "pro"})))
    )
    await until_blocked(replicas.url, identify)  # at its exit from new-customers
    sweep = asyncio.ensure_future(sweeper.sweep_once())
    await until_blocked_twice(replicas.url, sweep)
    await gate.open()
    await asyncio.wait_for(asyncio.gather(identify, sweep), timeout=20)

    assert await replicas.memberships(customer) == ["inactive-7d"]


async def test_a_backfill_that_fails_transiently_is_tried_again(replicas: Replicas) -> None:
    """A backfill holds every matching customer's rows, so it can be the victim of a
    deadlock with the event path or a sweep; here its connection is cut while it waits
    (the same kind of transient error). The segment must still be backfilled."""
    customer = f"u-{run_id()}"
    gate, backfilling = await start_gated_backfill(replicas, customer)
    conn = await asyncpg.connect(replicas.url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        cut = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    finally:
        await conn.close()
    assert cut == 1
    await gate.open()
    applied = await asyncio.wait_for(backfilling, timeout=20)

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
        asyncio.gather(
            *(
                backfill(e, catalog, [segment], now=NOW, only_unfinished=True)
                for e in replicas.engines
            )
        ),
        timeout=20,
    )

    assert sorted(len(result) for result in results) == [0, 1]
    assert "pro" in await replicas.memberships(customer)
    async with replicas.engines[0].connect() as conn:
        entered = await conn.scalar(
            text(
                "SELECT count(*) FROM segmenter.outbox WHERE topic = 'segment.changes' "
                "AND convert_from(value, 'UTF8')::jsonb ->> 'segmentId' = 'pro'"
            )
        )
    assert entered == 1


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


async def retire(replicas: Replicas, segment_id: str) -> list[str]:
    """What ``DELETE /v1/segments/{id}`` does to the tables."""
    async with replicas.engines[0].begin() as conn:
        return await repo.retire_segment(conn, segment_id=segment_id)


async def test_deleting_a_segment_during_its_backfill(replicas: Replicas) -> None:
    """The deletion waits for the running backfill, then ends what it wrote."""
    customer = f"u-{run_id()}"
    gate, backfilling = await start_gated_backfill(replicas, customer)
    deletion = asyncio.ensure_future(retire(replicas, "pro"))
    await until_blocked_twice(replicas.url, deletion)
    await gate.open()
    applied, left = await asyncio.wait_for(asyncio.gather(backfilling, deletion), timeout=20)

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
    gate = Gate.member(replicas.url, "pro", member)
    await gate.close()
    deletion = asyncio.ensure_future(retire(replicas, "pro"))
    await until_blocked(replicas.url, deletion)  # segment locked, at the gate
    engine = replicas.engines[1]
    backfilling = asyncio.ensure_future(backfill(engine, catalog, [catalog.by_id["pro"]], now=NOW))
    await until_blocked_twice(replicas.url, backfilling)
    await gate.open()
    left, applied = await asyncio.wait_for(asyncio.gather(deletion, backfilling), timeout=20)

    assert left == [member]
    assert applied == {}
    assert "pro" not in await replicas.memberships(customer)
