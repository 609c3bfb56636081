"""``xact_locks``: many advisory locks in one statement, held to the end of the
transaction, taken in one order (overlapping sets wait, never deadlock)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db.engine import async_url
from shared.db.locks import try_xact_lock, xact_locks
from tests.conftest import NewDatabase


async def test_locks_are_held_until_commit_and_overlapping_sets_wait(
    new_database: NewDatabase,
) -> None:
    engine = create_async_engine(async_url(await new_database()))
    try:
        async with engine.begin() as first:
            await xact_locks(first, ["b", "a", "c", "a"])
            async with engine.begin() as other:
                assert not await try_xact_lock(other, "a")
                assert not await try_xact_lock(other, "c")
                assert await try_xact_lock(other, "d")

        async def take(names: list[str], hold_s: float) -> None:
            async with engine.begin() as conn:
                await xact_locks(conn, names)
                await asyncio.sleep(hold_s)

        # reversed overlapping sets: sorted order means one waits for the other
        await asyncio.wait_for(
            asyncio.gather(take(["x", "y", "z"], 0.2), take(["z", "y", "x"], 0.2)), 10
        )
        async with engine.begin() as conn:
            await xact_locks(conn, [])
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
