"""The current :class:`SegmentCatalog`, reloaded when segments change.

Replicas notice another replica's edit within ``poll_s``; the API of this
process invalidates the cache at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.catalog import ActiveSegment, SegmentCatalog

log = logging.getLogger(__name__)


class CatalogCache:
    def __init__(self, engine: AsyncEngine, *, poll_s: float = 1.0) -> None:
        self._engine = engine
        self._poll_s = poll_s
        self._catalog = SegmentCatalog([])
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._checked_at = float("-inf")
        self._catalog.stamp = None

    async def current(self) -> SegmentCatalog:
        if time.monotonic() - self._checked_at < self._poll_s:
            return self._catalog
        async with self._lock:
            if time.monotonic() - self._checked_at < self._poll_s:
                return self._catalog
            async with self._engine.connect() as conn:
                stamp = await repo.segments_stamp(conn)
                if stamp != self._catalog.stamp:
                    rows = await repo.load_active_segments(conn)
                    self._catalog = SegmentCatalog(
                        [ActiveSegment.compile(r.id, r.version, r.definition) for r in rows],
                        stamp=stamp,
                    )
                    log.info("loaded %d active segments", len(self._catalog.segments))
            self._checked_at = time.monotonic()
            return self._catalog
