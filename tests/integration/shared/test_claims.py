"""Message claims on real PostgreSQL: each id applied once, whoever delivers it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.claims import (
    claim_messages,
    claims_cleanup,
    forget_processed_before,
    processed_messages_table,
)
from shared.db.engine import service_metadata
from tests.conftest import NewDatabase
from tests.integration.shared.db import fresh_engine

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
async def claims(new_database: NewDatabase) -> AsyncIterator[tuple[AsyncEngine, Table]]:
    metadata = service_metadata("t_claims")
    table = processed_messages_table(metadata)
    async with fresh_engine(new_database, metadata) as engine:
        yield engine, table


async def test_an_id_is_claimed_once_across_batches_and_within_one(
    claims: tuple[AsyncEngine, Table],
) -> None:
    engine, table = claims
    async with engine.begin() as conn:
        assert await claim_messages(conn, table=table, message_ids=["a", "b", "a"]) == {"a", "b"}
    async with engine.begin() as conn:
        assert await claim_messages(conn, table=table, message_ids=["b", "c"]) == {"c"}
        assert await claim_messages(conn, table=table, message_ids=[]) == set()


async def test_a_rolled_back_batch_releases_its_claims(claims: tuple[AsyncEngine, Table]) -> None:
    engine, table = claims
    async with engine.connect() as conn, conn.begin() as transaction:
        assert await claim_messages(conn, table=table, message_ids=["a"]) == {"a"}
        await transaction.rollback()
    async with engine.begin() as conn:
        assert await claim_messages(conn, table=table, message_ids=["a"]) == {"a"}


async def test_a_concurrent_claim_waits_and_then_skips_what_the_other_committed(
    claims: tuple[AsyncEngine, Table],
) -> None:
    engine, table = claims
    async with engine.connect() as first:
        await first.begin()
        assert await claim_messages(first, table=table, message_ids=["a", "b"]) == {"a", "b"}

        async def second() -> set[str]:
            async with engine.begin() as conn:
                return await claim_messages(conn, table=table, message_ids=["b", "c"])

        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # "b" is being claimed by the first transaction
        await first.commit()
    assert await asyncio.wait_for(waiting, 10) == {"c"}


async def test_old_claims_are_forgotten_by_the_cleanup_job(
    claims: tuple[AsyncEngine, Table],
) -> None:
    engine, table = claims
    async with engine.begin() as conn:
        await claim_messages(conn, table=table, message_ids=["old", "new"])
        await conn.execute(
            update(table)
            .where(table.c.message_key == func.md5("old").cast(table.c.message_key.type))
            .values(processed_at=NOW - timedelta(days=8))
        )
        await conn.execute(
            update(table)
            .where(table.c.message_key == func.md5("new").cast(table.c.message_key.type))
            .values(processed_at=NOW - timedelta(days=1))
        )
    job = claims_cleanup(
        engine=engine, table=table, clock=lambda: NOW, retention=timedelta(days=7), interval_s=0.05
    )
    running = asyncio.create_task(job.run())
    for _ in range(100):
        async with engine.connect() as conn:
            left = await conn.scalar(select(func.count()).select_from(table))
        if left == 1:
            break
        await asyncio.sleep(0.05)
    job.signal_shutdown()
    await asyncio.wait_for(running, 10)
    async with engine.begin() as conn:
        assert await claim_messages(conn, table=table, message_ids=["old", "new"]) == {"old"}
        # "new" was claimed a day before NOW; "old", claimed again just now, stays
        assert await forget_processed_before(conn, table=table, before=NOW) == 1
