"""Advisory locks under one key scheme, on real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.locks import (
    lock_name,
    release_session_lock,
    session_lock,
    take_session_lock,
    try_xact_lock,
    xact_lock,
)
from tests.conftest import NewDatabase
from tests.integration.shared.db import fresh_engine


@pytest.fixture
async def engine(new_database: NewDatabase) -> AsyncIterator[AsyncEngine]:
    async with fresh_engine(new_database) as engine:
        yield engine


def test_names_are_namespaced() -> None:
    assert lock_name("segmenter", "segment", item="vip") == "tenure.segmenter.segment:vip"
    assert lock_name("outbox", item="segmenter.outbox") == "tenure.outbox:segmenter.outbox"
    assert lock_name("segmenter", "refit") == "tenure.segmenter.refit"


async def test_the_key_is_the_names_hashtextextended(engine: AsyncEngine) -> None:
    """What ``pg_locks`` shows, so a person in psql finds the holder of a lock by name."""
    name = lock_name("test", "key")
    async with engine.begin() as conn:
        await xact_lock(conn, name)
        key = await conn.scalar(text("SELECT hashtextextended(:n, 0)"), {"n": name})
        held = await conn.scalar(
            text(
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
        )
    assert held == key


async def test_a_transaction_lock_excludes_others_until_the_transaction_ends(
    engine: AsyncEngine,
) -> None:
    name = lock_name("test", "xact")
    async with engine.connect() as other:
        async with engine.begin() as conn:
            assert await try_xact_lock(conn, name)
            async with other.begin():
                assert not await try_xact_lock(other, name)
            assert await try_xact_lock(conn, name)  # re-entrant in the holder
        async with other.begin():
            assert await try_xact_lock(other, name)
            assert await try_xact_lock(other, lock_name("test", "xact", item="2"))


async def test_shared_holders_coexist_and_an_exclusive_one_waits_for_them(
    engine: AsyncEngine,
) -> None:
    name = lock_name("test", "shared")
    order: list[str] = []
    async with engine.begin() as first, engine.begin() as second:
        await xact_lock(first, name, shared=True)
        await xact_lock(second, name, shared=True)

        async def exclusive() -> None:
            async with engine.begin() as conn:
                await xact_lock(conn, name)
                order.append("exclusive")

        waiting = asyncio.create_task(exclusive())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        order.append("shared released")
    await asyncio.wait_for(waiting, 10)
    assert order == ["shared released", "exclusive"]


async def test_a_session_lock_outlives_commits_and_is_released_at_the_end(
    engine: AsyncEngine,
) -> None:
    name = lock_name("test", "session")
    async with session_lock(engine, name) as held:
        assert held
        async with session_lock(engine, name) as again:
            assert not again  # another connection: refused, not waited for
        async with engine.connect() as other:
            assert not await take_session_lock(other, name)
    async with engine.connect() as other:
        assert await take_session_lock(other, name)
        await release_session_lock(other, name)


async def test_waiting_for_a_session_lock_returns_once_the_holder_releases(
    engine: AsyncEngine,
) -> None:
    name = lock_name("test", "session-wait")
    async with engine.connect() as holder:
        assert await take_session_lock(holder, name)

        async def wait_for_it() -> bool:
            async with session_lock(engine, name, wait=True) as held:
                return held

        waiting = asyncio.create_task(wait_for_it())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await release_session_lock(holder, name)
        assert await asyncio.wait_for(waiting, 10)
