"""Time passing: re-evaluate customers whose membership timers are due.

The timers are a :mod:`shared.db.timers` table, one row per customer, swept by a
:class:`~shared.db.timers.TimerSweep` (``workers`` loops per replica). A round
here claims up to ``chunk`` due timers into the temp table ``scope`` (their row
addresses kept, see :func:`membership_sql.claim_due_timers`), applies every
time-dependent segment to them set-based, in dependency order, and sets their next
timers — all in one transaction (see :func:`membership_sql.apply_segments`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import membership_sql as msql
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.metrics import MEMBERSHIP_CHANGES, SWEEP_SECONDS, SWEPT_CUSTOMERS
from services.segmenter.models import membership_timers
from shared.db.engine import long_statements
from shared.db.timers import TimerSweep, Watched


@dataclass(kw_only=True, eq=False)
class MembershipSweep:
    """One round of the sweep, :meth:`sweep_once`."""

    engine: AsyncEngine
    catalogs: CatalogCache
    clock: Callable[[], datetime]
    chunk: int = 50_000
    on_commit: Callable[[], None] = lambda: None

    async def sweep_once(self) -> int:
        """Re-evaluate one chunk of due customers; return how many."""
        catalog = await self.catalogs.current()
        now = self.clock()
        started = time.perf_counter()
        async with self.engine.begin() as conn:
            await long_statements(conn)
            await msql.bound_plans_to_the_scope(conn)
            await msql.create_scope(conn)
            claimed = await msql.claim_due_timers(conn, now=now, limit=self.chunk)
            if not claimed:
                return 0
            await msql.analyze_scope(conn)
            applied = await msql.apply_segments(conn, catalog.time_dependent, now=now, cause="time")
            MEMBERSHIP_CHANGES.labels("entered").inc(applied.entered)
            MEMBERSHIP_CHANGES.labels("exited").inc(applied.exited)
        self.on_commit()
        SWEPT_CUSTOMERS.inc(claimed)
        SWEEP_SECONDS.observe(time.perf_counter() - started)
        return claimed


def membership_sweep(
    *,
    engine: AsyncEngine,
    catalogs: CatalogCache,
    clock: Callable[[], datetime],
    interval_s: float = 60.0,
    chunk: int = 50_000,
    workers: int = 1,
    on_commit: Callable[[], None] = lambda: None,
) -> TimerSweep:
    """The sweep loop: ``workers`` loops of :class:`MembershipSweep` rounds."""
    rounds = MembershipSweep(
        engine=engine, catalogs=catalogs, clock=clock, chunk=chunk, on_commit=on_commit
    )
    return TimerSweep(
        rounds.sweep_once,
        chunk=chunk,
        workers=workers,
        interval_s=interval_s,
        name="membership timer sweep",
        watched=Watched(engine, membership_timers, clock),
    )
