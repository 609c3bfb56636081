"""The timer sweeper's concurrent loops share a wave of due timers: each customer once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import text

from services.segmenter import repository as repo
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.sweeper import membership_sweep
from shared.db.engine import create_engine
from shared.db.migrations import upgrade
from shared.settings import DatabaseSettings
from tenure.services import SERVICES
from tests.conftest import NewDatabase

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CUSTOMERS = 450


async def test_concurrent_sweep_loops_change_each_member_once(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    await asyncio.to_thread(
        upgrade, script_location=SERVICES["segmenter"].migrations_dir, database_url=url
    )
    engine = create_engine(DatabaseSettings(url=SecretStr(url)))
    try:
        async with engine.begin() as conn:
            await repo.save_segment_version(
                conn,
                segment_id="fresh",
                name="fresh",
                description="",
                definition={"kind": "first_seen", "newer_than_days": 1},
                version=1,
            )
            await conn.execute(text("UPDATE segmenter.segments SET backfilled_version = version"))
            # members from when they were new; their timers fell due when they stopped being
            await conn.execute(
                text(
                    """
                    INSERT INTO segmenter.profiles
                        (customer_id, traits, trait_times, first_seen_at, last_seen_at, version)
                    SELECT 'c' || i, '{}', '{}', :first, :first, 1
                    FROM generate_series(1, :n) AS i;
                    """
                ),
                {"first": NOW - timedelta(days=2), "n": CUSTOMERS},
            )
            await conn.execute(
                text(
                    "INSERT INTO segmenter.memberships "
                    "(segment_id, customer_id, segment_version, entered_at) "
                    "SELECT 'fresh', customer_id, 1, first_seen_at FROM segmenter.profiles"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO segmenter.membership_timers (customer_id, due_at) "
                    "SELECT customer_id, first_seen_at + interval '1 day' FROM segmenter.profiles"
                )
            )
        sweeper = membership_sweep(
            engine=engine,
            catalogs=CatalogCache(engine),
            clock=lambda: NOW,
            interval_s=0.05,
            chunk=100,
            workers=2,
        )
        swept_by: list[int] = []
        sweep_once = sweeper.sweep_once

        async def counted() -> int:
            claimed = await sweep_once()
            if claimed:
                swept_by.append(claimed)
            return claimed

        sweeper.sweep_once = counted
        running = asyncio.create_task(sweeper.run())
        async with engine.connect() as conn:
            for _ in range(200):
                left = await conn.scalar(text("SELECT count(*) FROM segmenter.membership_timers"))
                await conn.commit()
                if left == 0:
                    break
                await asyncio.sleep(0.05)
        sweeper.signal_shutdown()
        await asyncio.wait_for(running, timeout=10)

        async with engine.connect() as conn:
            exits = (
                await conn.execute(
                    text(
                        "SELECT convert_from(key, 'UTF8'), "
                        "convert_from(value, 'UTF8')::jsonb ->> 'change' "
                        "FROM segmenter.outbox"
                    )
                )
            ).all()
            members = await conn.scalar(text("SELECT count(*) FROM segmenter.memberships"))
        assert sorted(key for key, _ in exits) == sorted(f"c{i}" for i in range(1, CUSTOMERS + 1))
        assert {change for _, change in exits} == {"exited"}
        assert members == 0
        assert sum(swept_by) == CUSTOMERS and max(swept_by) <= 100
    finally:
        await engine.dispose()
