"""The segmenter's moving parts on a :class:`~shared.runtime.ServiceRuntime`: the
``customer.events`` consumer, the membership timer sweep, the claims cleanup, the
score refits, the resumption of unfinished backfills and the outbox relay; and the
work the API starts (refits, backfills).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from datetime import date
from typing import Any

from services.segmenter.backfill import backfill, resume_unfinished, with_dependents
from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import DECODERS, event_batch_handler, is_transient
from services.segmenter.errors import RefitRunning
from services.segmenter.loyalty_job import scheduled_refresh
from services.segmenter.models import outbox, outbox_relayed, processed_messages
from services.segmenter.recommend_job import scheduled_recompute
from services.segmenter.repository.loyalty import program_cache
from services.segmenter.schemas import FitReport
from services.segmenter.scoring_job import last_fit_at, refit_lock, refit_options, refit_scores
from services.segmenter.settings import SegmenterSettings
from services.segmenter.sweeper import membership_sweep
from shared.clock import Clock
from shared.events import profiles, segment_changes
from shared.events.customer_events import TOPIC as CUSTOMER_EVENTS
from shared.runtime import OutboxParts
from shared.stopping import PeriodicJob

log = logging.getLogger(__name__)


class Runtime:
    """What the lifespan builds and the routes use: the segmenter's parts, started and
    stopped by a :class:`~shared.runtime.ServiceRuntime`, and the work routes start."""

    def __init__(self, settings: SegmenterSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        parts = OutboxParts.build(
            "segmenter", settings, outbox, relayed=outbox_relayed, clock=clock
        )
        self.engine, self.publisher, self.relay = parts.engine, parts.publisher, parts.relay
        self.catalogs = CatalogCache(self.engine)
        self.service = parts.service(
            topics=(CUSTOMER_EVENTS, segment_changes.TOPIC, profiles.TOPIC)
        )
        group = settings.segmenter
        self.loyalty = program_cache(self.engine)
        self.runner = self.service.kafka_consumer(
            kafka=settings.kafka,
            group=group,
            decoders=DECODERS,
            handler=event_batch_handler(
                group,
                engine=self.engine,
                catalogs=self.catalogs,
                loyalty=self.loyalty,
                clock=clock,
                on_commit=self.relay.notify,
            ),
            is_transient=is_transient,
        )
        self.service.loop(
            "sweeper",
            membership_sweep(
                engine=self.engine,
                catalogs=self.catalogs,
                clock=clock,
                interval_s=group.sweep_interval_s,
                chunk=group.sweep_chunk,
                workers=group.sweep_workers,
                on_commit=self.relay.notify,
            ),
        )
        self.service.claims_cleanup(
            processed_messages, clock=clock, retention_days=group.dedup_retention_days
        )
        self.service.loop(
            "refit",
            PeriodicJob(
                self.scheduled_refit, name="score refit", interval_s=group.refit_interval_s
            ),
        )
        self.service.loop(
            "recommendations",
            scheduled_recompute(
                engine=self.engine, group=group, clock=clock, on_commit=self.relay.notify
            ),
        )
        self.service.loop(
            "loyalty",
            scheduled_refresh(
                engine=self.engine,
                catalogs=self.catalogs,
                clock=clock,
                interval_s=group.loyalty_refresh_interval_s,
                on_commit=self.relay.notify,
            ),
        )
        self.service.loop(
            "backfills",
            PeriodicJob(
                self.resume_backfills,
                name="resuming unfinished backfills",
                interval_s=group.backfill_resume_interval_s,
                at_start=True,
            ),
        )

    def in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.service.in_background(coro)

    async def refit(self, *, as_of: date | None = None) -> FitReport:
        """Refit now (scoring as of the end of ``as_of`` when given); :class:`RefitRunning`
        when another process is refitting."""
        async with refit_lock(self.engine) as held:
            if not held:
                raise RefitRunning
            return await self._refit(as_of)

    async def scheduled_refit(self) -> FitReport | None:
        """The periodic refit: skipped while another process refits, or when
        one refitted within the last half interval (every replica and worker runs a
        loop, and they start together)."""
        async with refit_lock(self.engine) as held:
            if not held:
                log.info("scheduled refit skipped: another process is refitting")
                return None
            last = await last_fit_at(self.engine)
            interval = self.settings.segmenter.refit_interval_s
            if last is not None and (self.clock() - last).total_seconds() < interval / 2:
                log.info("scheduled refit skipped: the last fit is from %s", last.isoformat())
                return None
            return await self._refit()

    async def _refit(self, as_of: date | None = None) -> FitReport:
        catalog = await self.catalogs.current()
        group = self.settings.segmenter
        report = await refit_scores(
            self.engine,
            catalog,
            now=self.clock(),
            options=refit_options(group),
            as_of=as_of,
            backfill_chunk=group.backfill_chunk,
        )
        self.relay.notify()
        return report

    async def resume_backfills(self) -> None:
        chunk = self.settings.segmenter.backfill_chunk
        if await resume_unfinished(self.engine, self.catalogs, now=self.clock(), chunk=chunk):
            self.relay.notify()

    async def backfill(self, segment_ids: list[str]) -> None:
        self.catalogs.invalidate()
        catalog = await self.catalogs.current()
        await backfill(
            self.engine,
            catalog,
            with_dependents(catalog, segment_ids),
            now=self.clock(),
            chunk=self.settings.segmenter.backfill_chunk,
        )
        self.relay.notify()
