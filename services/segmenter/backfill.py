"""Compute the memberships of a new or edited segment, and of the segments reading it.

Set-based over every profile (see :mod:`membership_sql`), one segment after the
other in dependency order, so the segments that read this one see its new
memberships; each segment in chunks of customer ids, one transaction per chunk.
A chunk locks the memberships it writes until it commits, so a batch writing one
of them, or an erasure, waits for one chunk, not for the whole segment. Changes go
out with cause ``segment_edit`` (``score`` after a refit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying

from services.segmenter import membership_sql as msql
from services.segmenter import repository as repo
from services.segmenter.catalog import ActiveSegment, SegmentCatalog
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.metrics import BACKFILL_SECONDS, MEMBERSHIP_CHANGES
from shared.db.engine import long_statements
from shared.db.transient import is_transient_db_error
from shared.retry import retrying

log = logging.getLogger(__name__)


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
    return retrying(
        what=f"backfill of segment {segment.id} v{segment.version}",
        retry_on=is_transient_db_error,
        first_s=0.5,
        max_s=30.0,
        attempts=BACKFILL_ATTEMPTS,
        logger=log,
    )


#: profiles per backfill transaction (``TENURE_SEGMENTER_BACKFILL_CHUNK``)
DEFAULT_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class Pass:
    """How one segment of a backfill run is walked."""

    segment: ActiveSegment
    cause: str
    #: the first backfill of the segment's version: it may start where another backfill
    #: of the version got to, and records how far it got; a pass that re-evaluates a
    #: backfilled segment (its inputs changed) walks every customer
    first_of_version: bool


async def backfill(
    engine: AsyncEngine,
    catalog: SegmentCatalog,
    segments: Iterable[ActiveSegment],
    *,
    now: datetime,
    cause: str = "segment_edit",
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, msql.Applied]:
    """Apply each segment to every profile; return what changed per segment.

    Each segment is walked in chunks of ``chunk`` customer ids, one transaction each,
    tried again from the start of the chunk when it fails transiently; the segment
    stays ``backfilling`` until its last chunk commits. A chunk of one segment and
    its deletion take turns. A segment whose version is being backfilled for the
    first time (``segment_edit``, reading none of the run's earlier segments) goes on
    from where any backfill of that version got to, and records its progress. When
    it turns out to be done, or the segment was deleted or edited meanwhile, the run
    stops there: whoever finished it did the segments reading it too, and an edit
    brings a backfill of its own. The segments reading an earlier segment of the run,
    and refits (``score``), walk every customer again.
    """
    results: dict[str, msql.Applied] = {}
    earlier: set[str] = set()
    for segment in segments:
        first_of_version = cause == "segment_edit" and not segment.depends_on & earlier
        earlier.add(segment.id)
        started = time.perf_counter()
        applied, finished = await _walk(
            engine, Pass(segment, cause, first_of_version), now=now, chunk=chunk
        )
        MEMBERSHIP_CHANGES.labels("entered").inc(applied.entered)
        MEMBERSHIP_CHANGES.labels("exited").inc(applied.exited)
        if not finished:
            log.info(
                "segment %s v%d: deleted, edited or backfilled meanwhile; not backfilled",
                segment.id,
                segment.version,
            )
            break
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


async def _walk(
    engine: AsyncEngine, walk: Pass, *, now: datetime, chunk: int
) -> tuple[msql.Applied, bool]:
    """Every chunk of one segment; what changed, and whether this walk finished it."""
    total = msql.Applied(0, 0)
    after: str | None = None
    while True:
        async for attempt in _retrying(walk.segment):
            with attempt:
                step = await _backfill_chunk(engine, walk, after=after, now=now, size=chunk)
        if step is None:
            return total, False
        applied, after = step
        total += applied
        if after is None:
            return total, True


async def _backfill_chunk(
    engine: AsyncEngine, walk: Pass, *, after: str | None, now: datetime, size: int
) -> tuple[msql.Applied, str | None] | None:
    """The customers of one chunk after ``after``: what changed and where the walk goes
    on (None: it is finished); None when the segment was deleted or edited meanwhile,
    or (a first backfill of its version) found finished when the walk starts."""
    segment = walk.segment
    async with engine.begin() as conn:
        await long_statements(conn)
        await repo.hold_off_erasures(conn)
        state = await repo.lock_segment_backfill(conn, segment_id=segment.id)
        if state is None or state.deleted or state.version != segment.version:
            return None
        if walk.first_of_version:
            if state.backfilled_version >= segment.version:
                return None if after is None else (msql.Applied(0, 0), None)
            after = later(after, state.cursor)
        through = await repo.chunk_end(conn, after=after, size=size)
        over = msql.KeyRange(after, through)
        # Timers before memberships, the order of the event path and the sweep (a batch
        # holding a timer this moves would otherwise wait for a membership written here
        # while this waits for its timer); the next flips read no memberships.
        if segment.time_dependent:
            await msql.add_earlier_timers(conn, [segment], now=now, over=over)
        await msql.create_scope(conn)
        await msql.bound_plans_to_the_scope(conn)
        applied = await msql.apply_segment(conn, segment, now=now, cause=walk.cause, over=over)
        await repo.record_backfill_progress(
            conn, segment_id=segment.id, version=segment.version, cursor=through
        )
    return applied, through


def later(first: str | None, second: str | None) -> str | None:
    """The later of two customer ids in key order (None: before every id). Keys are
    compared byte by byte (``COLLATE "C"``), which for UTF-8 text is the order of
    code points, Python's."""
    return max((i for i in (first, second) if i is not None), default=None)


async def resume_unfinished(
    engine: AsyncEngine, catalogs: CatalogCache, *, now: datetime, chunk: int = DEFAULT_CHUNK
) -> int:
    """Backfill the segments whose current version was never backfilled (a process
    stopped during a backfill, or one gave up on transient errors), each from where
    its backfill got to; return how many."""
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
            engine, catalog, with_dependents(catalog, [segment_id]), now=now, chunk=chunk
        )
        resumed += segment_id in done
    return resumed
