"""The current :class:`SegmentCatalog`, reloaded when segments change (a
:class:`~shared.db.stamped.StampedCache` on :func:`repo.segments_stamp`).

Replicas notice another replica's edit within ``poll_s``; the API of this
process invalidates the cache at once.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.segmenter import repository as repo
from services.segmenter.catalog import ActiveSegment, SegmentCatalog
from shared.db.stamped import StampedCache

log = logging.getLogger(__name__)


async def _load(conn: AsyncConnection) -> SegmentCatalog:
    rows = await repo.load_active_segments(conn)
    catalog = SegmentCatalog([ActiveSegment.compile(r.id, r.version, r.definition) for r in rows])
    log.info("loaded %d active segments", len(catalog.segments))
    return catalog


class CatalogCache(StampedCache[SegmentCatalog]):
    def __init__(self, engine: AsyncEngine, *, poll_s: float = 1.0) -> None:
        super().__init__(
            engine, stamp=repo.segments_stamp, load=_load, initial=SegmentCatalog([]), poll_s=poll_s
        )
