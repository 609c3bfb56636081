"""StampedCache: reloads when the stamp changes, at most every ``poll_s``, at once after
``invalidate``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.stamped import StampedCache
from tests.conftest import NewDatabase
from tests.integration.shared.db import fresh_engine


@pytest.fixture
async def engine(new_database: NewDatabase) -> AsyncIterator[AsyncEngine]:
    async with fresh_engine(new_database) as engine:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE journeys (id text PRIMARY KEY, version int)"))
        yield engine


class Journeys:
    def __init__(self) -> None:
        self.loads = 0

    async def stamp(self, conn: AsyncConnection) -> object:
        return tuple(
            (await conn.execute(text("SELECT count(*), sum(version) FROM journeys"))).one()
        )

    async def load(self, conn: AsyncConnection) -> dict[str, int]:
        self.loads += 1
        return dict((await conn.execute(text("SELECT id, version FROM journeys"))).tuples().all())


async def edit(engine: AsyncEngine, statement: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement))


async def test_reloads_only_when_the_stamp_changes(engine: AsyncEngine) -> None:
    journeys = Journeys()
    cache: StampedCache[dict[str, int]] = StampedCache(
        engine, stamp=journeys.stamp, load=journeys.load, initial={}, poll_s=0
    )
    assert await cache.current() == {}
    assert await cache.current() == {}
    assert journeys.loads == 1
    await edit(engine, "INSERT INTO journeys VALUES ('welcome', 1)")
    assert await cache.current() == {"welcome": 1}
    assert journeys.loads == 2


async def test_edits_show_after_poll_s_or_at_once_after_invalidate(engine: AsyncEngine) -> None:
    journeys = Journeys()
    cache: StampedCache[dict[str, int]] = StampedCache(
        engine, stamp=journeys.stamp, load=journeys.load, initial={}, poll_s=0.3
    )
    assert await cache.current() == {}
    await edit(engine, "INSERT INTO journeys VALUES ('welcome', 1)")
    assert await cache.current() == {}  # checked less than poll_s ago
    await asyncio.sleep(0.35)
    assert await cache.current() == {"welcome": 1}
    await edit(engine, "UPDATE journeys SET version = 2")
    cache.invalidate()  # this process's own edit
    assert await cache.current() == {"welcome": 2}
