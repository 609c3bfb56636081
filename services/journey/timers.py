"""Firing the runs' timers: waits that end, timeouts, goal windows that close.

Each round is one transaction (:func:`shared.db.timers.firing`): claim up to
``chunk`` due timers ``FOR UPDATE SKIP LOCKED`` and delete them, lock their runs
``SKIP LOCKED`` too, apply ``TimerFired`` to each through the machine, and write
runs, next timers and outbox messages. A run another writer holds (the consumer
applying an event to it) is not waited for: its timer is put back as it was and
fires next round, so the sweep never deadlocks with a writer that holds a run and
waits for its timer. Loops and replicas split the due timers between them, so each
fires once; a crash rolls the round back and the timers are due again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.journey import repository as repo
from services.journey.catalog import CatalogCache
from services.journey.machine import TimerFired
from services.journey.metrics import (
    SWEEP_SECONDS,
    TIMER_LAG_SECONDS,
    TIMERS_DEFERRED,
    TIMERS_FIRED,
)
from services.journey.models import run_timers
from services.journey.processing import WATCH_AFTER, UnknownVersion, Work, load_facts
from shared.db.timers import TimerSweep, firing, schedule


def timer_round(
    *,
    engine: AsyncEngine,
    catalogs: CatalogCache,
    clock: Callable[[], datetime],
    chunk: int,
    on_commit: Callable[[], None] = lambda: None,
    watch_after: timedelta = WATCH_AFTER,
) -> Callable[[], Awaitable[int]]:
    """One sweep round: returns how many timers it claimed."""

    async def fire(conn: AsyncConnection, rows: list[Row[Any]], now: datetime) -> None:
        started = time.perf_counter()
        catalog = await catalogs.current()
        due = {row.run_id: row.due_at for row in rows}
        locked = await repo.lock_runs(conn, run_ids=list(due), skip_locked=True)
        held = sorted(set(due) - {run.run_id for run in locked})
        if held:
            await schedule(conn, table=run_timers, rows=[(run_id, due[run_id]) for run_id in held])
            TIMERS_DEFERRED.inc(len(held))
        work = Work(catalog, now, watch_after)
        facts = await load_facts(conn, catalog, {run.customer_id for run in locked})
        try:
            for run in locked:
                if run.status == "active":
                    work.apply(run, TimerFired(), facts[run.customer_id])
        except UnknownVersion:
            catalogs.invalidate()  # published by another replica: the next round reloads
            raise
        await work.write(conn)
        # a run whose wait did not end (an early firing) keeps its timer as it was
        kept = [r for r in locked if r.run_id not in work.runs and r.wake_at is not None]
        if kept:
            await schedule(conn, table=run_timers, rows=[(r.run_id, r.wake_at) for r in kept])
        fired = len(locked) - len(kept)
        TIMERS_FIRED.inc(fired)
        for run in locked:
            TIMER_LAG_SECONDS.observe(max(0.0, (now - due[run.run_id]).total_seconds()))
        SWEEP_SECONDS.observe(time.perf_counter() - started)

    return firing(
        engine=engine, table=run_timers, fire=fire, clock=clock, chunk=chunk, on_commit=on_commit
    )


def timer_sweep(
    *,
    engine: AsyncEngine,
    catalogs: CatalogCache,
    clock: Callable[[], datetime],
    chunk: int,
    workers: int,
    interval_s: float,
    on_commit: Callable[[], None] = lambda: None,
    watch_after: timedelta = WATCH_AFTER,
) -> TimerSweep:
    return TimerSweep(
        timer_round(
            engine=engine,
            catalogs=catalogs,
            clock=clock,
            chunk=chunk,
            on_commit=on_commit,
            watch_after=watch_after,
        ),
        chunk=chunk,
        workers=workers,
        interval_s=interval_s,
        name="journey timer sweep",
    )
