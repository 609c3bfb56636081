"""Recompute every customer's loyalty balance and tier: points expire and leave the
qualifying window with time alone, and a changed program changes tiers. Customers whose
standing changed get a ``profiles`` message; then the segments that read the tier are
recomputed (tier changes as time passes are segment changes with cause ``score``).

One process at a time (a session advisory lock); chunks of customers, one transaction
each, whose profile rows are locked first (the consumer's order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter.backfill import backfill, with_dependents
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.repository import load_profiles
from services.segmenter.repository import loyalty as store
from services.segmenter.repository.outbox import publish_profiles
from services.segmenter.rules import LoyaltyTierRule, walk
from shared.db.engine import long_statements
from shared.db.locks import lock_name, session_lock
from shared.stopping import PeriodicJob

log = logging.getLogger(__name__)

LOYALTY_LOCK = lock_name("segmenter", "loyalty")


async def refresh_all(
    engine: AsyncEngine, *, catalogs: CatalogCache, now: datetime, chunk: int = 10_000
) -> int:
    """Refresh every standing; return how many changed (-1 when another process is at it)."""
    async with session_lock(engine, LOYALTY_LOCK) as held:
        if not held:
            return -1
        async with engine.connect() as conn:
            program = await store.get_program(conn)
        if program is None:
            return 0
        changed = 0
        after: str | None = None
        while True:
            async with engine.begin() as conn:
                await long_statements(conn)
                ids = await store.customers_with_points(conn, after=after, limit=chunk)
                if not ids:
                    break
                after = ids[-1]
                await load_profiles(conn, ids=ids)  # lock the rows, as a batch does
                moved = await store.refresh_standings(conn, program=program, ids=ids, now=now)
                await publish_profiles(conn, ids=sorted(moved), now=now)
            changed += len(moved)
        catalog = await catalogs.current()
        readers = [
            s.id
            for s in catalog.segments
            if any(isinstance(n, LoyaltyTierRule) for n in walk(s.rule))
        ]
        if changed and readers:
            await backfill(
                engine, catalog, with_dependents(catalog, readers), now=now, cause="score"
            )
        log.info("loyalty: %d standings changed", changed)
        return changed


def scheduled_refresh(
    *,
    engine: AsyncEngine,
    catalogs: CatalogCache,
    clock: Callable[[], datetime],
    interval_s: float,
    on_commit: Callable[[], None],
) -> PeriodicJob:
    async def run() -> None:
        if await refresh_all(engine, catalogs=catalogs, now=clock()) > 0:
            on_commit()

    return PeriodicJob(run, name="loyalty refresh", interval_s=interval_s)
