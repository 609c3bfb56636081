"""Two segmenter replicas on one database, and gates that stop a transaction inside.

The race tests make their interleavings deterministic with PostgreSQL's own locks:
a :class:`Gate` holds an uncommitted write of one row (a timer, a membership) that
another transaction's write of the same row waits on, so that transaction stops
there, before its commit, until the test opens the gate (rolls back). Every
profile gets a timer (the :data:`SEGMENTS` are time-dependent), so a timer gate
stops a batch after its profile, statistics and rollup writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.catalog import SegmentCatalog
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import EventBatchHandler
from shared.db.engine import create_engine
from shared.db.migrations import upgrade
from shared.events.customer_events import TOPIC, CustomerEvent
from shared.kafka.consumer import Record
from shared.settings import DatabaseSettings
from tenure.bench.segmenter import save_segments
from tenure.services import SERVICES
from tests.integration.segmenter.events import event

A = TypeVar("A")
B = TypeVar("B")

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


@asynccontextmanager
async def two_replicas(url: str) -> AsyncIterator[Replicas]:
    """Two handlers on a fresh segmenter database with :data:`SEGMENTS` backfilled."""
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["segmenter"].migrations_dir, database_url=url
    )
    engines = [create_engine(DatabaseSettings(url=SecretStr(url))) for _ in range(2)]
    await save_segments(engines[0], SEGMENTS, backfilled=True)
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


_WRITE_TIMER = (
    "INSERT INTO segmenter.membership_timers (customer_id, due_at) VALUES ($1, $2) "
    "ON CONFLICT (customer_id) DO UPDATE SET due_at = excluded.due_at"
)
_LOCK_MEMBERSHIP = (
    "UPDATE segmenter.memberships SET entered_at = entered_at "
    "WHERE segment_id = $1 AND customer_id = $2"
)
_INSERT_MEMBERSHIP = (
    "INSERT INTO segmenter.memberships (segment_id, customer_id, segment_version, entered_at) "
    "VALUES ($1, $2, 1, $3)"
)


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
        """Writes the customer's timer (inserted, or updated when there is one)."""
        return cls(url, _WRITE_TIMER, customer_id, NOW)

    @classmethod
    def member(cls, url: str, segment_id: str, customer_id: str) -> Gate:
        """Locks an existing membership row."""
        return cls(url, _LOCK_MEMBERSHIP, segment_id, customer_id)

    @classmethod
    def membership(cls, url: str, segment_id: str, customer_id: str) -> Gate:
        """Inserts a membership row that is not there yet."""
        return cls(url, _INSERT_MEMBERSHIP, segment_id, customer_id, NOW)

    async def close(self) -> None:
        self._conn = await asyncpg.connect(self._url)
        await self._conn.execute("BEGIN")
        await self._conn.execute(self._statement, *self._args)

    async def open(self) -> None:
        assert self._conn is not None
        await self._conn.execute("ROLLBACK")
        await self._conn.close()

    async def interleave(self, first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
        """Close the gate; run ``first`` until it waits at it, then ``second`` until it
        waits too (or ends: what a race allowed before its fix); open the gate; return
        both results."""
        await self.close()
        running = asyncio.ensure_future(first)
        await until_waiting(self._url, running)
        coming = asyncio.ensure_future(second)
        await until_waiting(self._url, coming, sessions=2)
        await self.open()
        return await asyncio.wait_for(asyncio.gather(running, coming), timeout=20)


async def until_waiting(url: str, task: asyncio.Future[Any], *, sessions: int = 1) -> None:
    """Until ``sessions`` sessions of the database wait on a lock, or ``task`` ended
    without having to (what a race allowed before its fix)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for _ in range(400):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if waiting >= sessions or task.done():
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


async def retire(replicas: Replicas, segment_id: str) -> list[str]:
    """What ``DELETE /v1/segments/{id}`` does to the tables."""
    async with replicas.engines[0].begin() as conn:
        return await repo.retire_segment(conn, segment_id=segment_id)


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
