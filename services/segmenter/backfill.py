"""Compute the memberships of a new or edited segment, and of the segments reading it.

Set-based over every profile (see :mod:`membership_sql`): one transaction per
segment, in dependency order, so the segments that read this one see its new
memberships. Changes go out with cause ``segment_edit`` (``score`` after a refit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from services.segmenter import membership_sql as msql
from services.segmenter import repository as repo
from services.segmenter.catalog import ActiveSegment, SegmentCatalog
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.metrics import BACKFILL_SECONDS, MEMBERSHIP_CHANGES
from services.segmenter.models import Segment
from shared.db.tables import table_of
from shared.db.transient import is_transient_db_error

log = logging.getLogger(__name__)
segments_table = table_of(Segment)


def with_dependents(catalog: SegmentCatalog, roots: Iterable[str]) -> list[ActiveSegment]:
    """The ``roots`` and every segment reading them (transitively), in dependency order."""
    wanted = set(roots)
    for segment in catalog.segments:  # dependency order: readers come after what they read
        if segment.depends_on & wanted:
            wanted.add(segment.id)
    return [s for s in catalog.segments if s.id in wanted]


#: attempts at one segment's transaction when it fails transiently (a deadlock with the
#: event path or a sweep, a lost connection): it holds every matching customer's rows
BACKFILL_ATTEMPTS = 5


def _retrying(segment: ActiveSegment) -> AsyncRetrying:
    def warn(state: RetryCallState) -> None:
        outcome = state.outcome
        log.warning(
            "backfill of segment %s v%d failed (%r); attempt %d of %d in %.1fs",
            segment.id,
            segment.version,
            outcome.exception() if outcome is not None else None,
            state.attempt_number + 1,
            BACKFILL_ATTEMPTS,
            state.upcoming_sleep,
        )

    return AsyncRetrying(
        retry=retry_if_exception(is_transient_db_error),
        wait=wait_exponential(multiplier=0.5, max=30),
        stop=stop_after_attempt(BACKFILL_ATTEMPTS),
        before_sleep=warn,
        reraise=True,
    )


async def backfill(
    engine: AsyncEngine,
    catalog: SegmentCatalog,
    segments: Iterable[ActiveSegment],
    *,
    now: datetime,
    cause: str = "segment_edit",
    only_unfinished: bool = False,
) -> dict[str, msql.Applied]:
    """Apply each segment to every profile; return what changed per segment.

    Each segment is one transaction, tried again from the start when it fails
    transiently; the segment stays ``backfilling`` until one commits. Backfills of
    one segment take turns. With ``only_unfinished`` (resuming the backfill of the
    first segment, the others reading it), nothing is done when the first turns out
    to be backfilled at its version already: whoever did it did the others too. (A
    refit backfills segments again at the same version: their scores moved.)
    """
    results: dict[str, msql.Applied] = {}
    for index, segment in enumerate(segments):
        started = time.perf_counter()
        async for attempt in _retrying(segment):
            with attempt:
                applied = await _backfill_one(
                    engine,
                    segment,
                    now=now,
                    cause=cause,
                    if_unfinished=only_unfinished and not index,
                )
        if applied is None:
            log.info(
                "segment %s v%d: deleted, edited or backfilled meanwhile; not backfilled",
                segment.id,
                segment.version,
            )
            break
        MEMBERSHIP_CHANGES.labels("entered").inc(applied.entered)
        MEMBERSHIP_CHANGES.labels("exited").inc(applied.exited)
        BACKFILL_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "segment %s v%d: %d entered, %d exited",
            segment.id,
            segment.version,
            applied.entered,
            applied.exited,
        )
        results[segment.id] = applied
    return results


async def _backfill_one(
    engine: AsyncEngine, segment: ActiveSegment, *, now: datetime, cause: str, if_unfinished: bool
) -> msql.Applied | None:
    """One segment's backfill; None when the segment was deleted or edited meanwhile (the
    edit's own backfill follows), or ``if_unfinished`` and it is done already."""
    async with engine.begin() as conn:
        await repo.hold_off_erasures(conn)
        state = await repo.lock_segment_backfill(conn, segment_id=segment.id)
        if state is None or state.deleted or state.version != segment.version:
            return None
        if if_unfinished and state.backfilled_version >= segment.version:
            return None
        # Timers before memberships, the order of the event path and the sweep (a batch
        # holding a timer this moves would otherwise wait for a membership written here
        # while this waits for its timer); the next flips read no memberships.
        if segment.time_dependent:
            await msql.add_earlier_timers(conn, [segment], now=now)
        await msql.create_scope(conn)
        applied = await msql.apply_segment(conn, segment, now=now, cause=cause, everyone=True)
        await conn.execute(
            update(segments_table)
            .where(segments_table.c.id == segment.id, segments_table.c.version == segment.version)
            .values(backfilled_version=segment.version)
        )
    return applied


async def resume_unfinished(engine: AsyncEngine, catalogs: CatalogCache, *, now: datetime) -> int:
    """Backfill the segments whose current version was never backfilled (a process
    stopped during a backfill, or one gave up on transient errors); return how many."""
    async with engine.connect() as conn:
        unfinished = await repo.unfinished_backfills(conn)
    if not unfinished:
        return 0
    catalogs.invalidate()  # the versions to backfill are the stored ones
    catalog = await catalogs.current()
    log.info("resuming the backfill of %s", ", ".join(unfinished))
    resumed = 0
    for segment_id in unfinished:  # each with its readers, as the API backfills it
        done = await backfill(
            engine, catalog, with_dependents(catalog, [segment_id]), now=now, only_unfinished=True
        )
        resumed += segment_id in done
    return resumed
