"""Time passing: re-evaluate customers whose membership timers are due.

Each loop (``workers`` of them) claims up to ``chunk`` due timers with
``FOR UPDATE SKIP LOCKED`` (so loops and replicas share the work and none fires a
timer twice), applies every time-dependent segment to them set-based, in
dependency order, and sets their next timers — all in one transaction (see
:func:`membership_sql.apply_segments`).
A restart loses nothing: timers are rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import membership_sql as msql
from services.segmenter import repository as repo
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.metrics import MEMBERSHIP_CHANGES, SWEEP_SECONDS, SWEPT_CUSTOMERS
from shared.stopping import StoppableLoop

log = logging.getLogger(__name__)


class TimerSweeper(StoppableLoop):
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        catalogs: CatalogCache,
        clock: Callable[[], datetime],
        interval_s: float = 1.0,
        chunk: int = 50_000,
        workers: int = 1,
        dedup_retention: timedelta = timedelta(days=7),
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._catalogs = catalogs
        self._clock = clock
        self._interval_s = interval_s
        self._chunk = chunk
        self._workers = workers
        self._dedup_retention = dedup_retention
        self._on_commit = on_commit
        super().__init__()

    async def run(self) -> None:
        """Sweep until shutdown, ``workers`` loops at once: each chunk is a transaction of
        its own and ``SKIP LOCKED`` splits the due timers between the loops, as it does
        between replicas, so a large wave of due timers (windows move at UTC midnight)
        uses more than one core of PostgreSQL."""
        await asyncio.gather(*(self._loop(cleans=index == 0) for index in range(self._workers)))

    async def _loop(self, *, cleans: bool) -> None:
        last_cleanup = 0.0
        while not self._stopping.is_set():
            try:
                swept = await self.sweep_once()
                if cleans and time.monotonic() - last_cleanup > 600:
                    await self.forget_old_message_ids()
                    last_cleanup = time.monotonic()
            except Exception:
                log.exception("timer sweep failed; retrying")
                swept = 0
            if swept < self._chunk:
                await self._pause(self._interval_s)

    async def sweep_once(self) -> int:
        """Re-evaluate one chunk of due customers; return how many."""
        catalog = await self._catalogs.current()
        now = self._clock()
        started = time.perf_counter()
        async with self._engine.begin() as conn:
            await msql.bound_plans_to_the_scope(conn)
            await msql.create_scope(conn)
            claimed = await msql.claim_due_timers(conn, now=now, limit=self._chunk)
            if not claimed:
                return 0
            await msql.analyze_scope(conn)
            applied = await msql.apply_segments(conn, catalog.time_dependent, now=now, cause="time")
            MEMBERSHIP_CHANGES.labels("entered").inc(applied.entered)
            MEMBERSHIP_CHANGES.labels("exited").inc(applied.exited)
        self._on_commit()
        SWEPT_CUSTOMERS.inc(claimed)
        SWEEP_SECONDS.observe(time.perf_counter() - started)
        return claimed

    async def forget_old_message_ids(self) -> int:
        async with self._engine.begin() as conn:
            return await repo.forget_processed_before(
                conn, before=self._clock() - self._dedup_retention
            )
