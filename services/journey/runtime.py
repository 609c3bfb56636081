"""The journey service's parts on a :class:`~shared.runtime.ServiceRuntime`: the
consumer of five topics, the run timer sweep, the watch of dispatch requests, the
claims cleanup and the outbox relay; and the one operation the API runs on runs (stopping them)."""

from __future__ import annotations

from datetime import timedelta

from services.journey import repository as repo
from services.journey.catalog import CatalogCache
from services.journey.consumer import DECODERS, JourneyBatchHandler, is_transient
from services.journey.machine import Facts, Run, Stop
from services.journey.models import outbox, outbox_relayed, processed_messages
from services.journey.processing import Work
from services.journey.references import ReferenceChecker
from services.journey.settings import JourneySettings
from services.journey.timers import timer_sweep
from services.journey.watch import watch_sweep
from shared.clock import Clock
from shared.runtime import OutboxParts


class Runtime:
    """What the lifespan builds and the routes use."""

    def __init__(self, settings: JourneySettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        group = settings.journey
        parts = OutboxParts.build("journey", settings, outbox, relayed=outbox_relayed, clock=clock)
        self.engine, self.publisher, self.relay = parts.engine, parts.publisher, parts.relay
        self.catalogs = CatalogCache(self.engine, poll_s=group.catalog_poll_s)
        self.references = ReferenceChecker(
            segmenter_url=group.segmenter_url,
            dispatcher_url=group.dispatcher_url,
            token=group.peer_token.get_secret_value(),
        )
        self.service = parts.service()
        self.watch_after = timedelta(seconds=group.outcome_wait_s)
        self.handler = JourneyBatchHandler(
            engine=self.engine,
            catalogs=self.catalogs,
            clock=clock,
            on_commit=self.relay.notify,
            watch_after=self.watch_after,
        )
        self.runner = self.service.kafka_consumer(
            kafka=settings.kafka,
            group=group,
            decoders=DECODERS,
            handler=self.handler,
            is_transient=is_transient,
            fetch_max_wait_ms=group.fetch_max_wait_ms,
        )
        self.sweep = self.service.loop(
            "timers",
            timer_sweep(
                engine=self.engine,
                catalogs=self.catalogs,
                clock=clock,
                chunk=group.sweep_chunk,
                workers=group.sweep_workers,
                interval_s=group.sweep_interval_s,
                on_commit=self.relay.notify,
                watch_after=self.watch_after,
            ),
        )
        self.service.loop(
            "dispatch watch",
            watch_sweep(
                engine=self.engine,
                clock=clock,
                first=self.watch_after,
                interval_s=group.watch_interval_s,
                on_commit=self.relay.notify,
            ),
        )
        self.service.claims_cleanup(
            processed_messages, clock=clock, retention_days=group.dedup_retention_days
        )

    async def apply_to_runs(self, run_ids: list[str], stop: Stop) -> list[Run]:
        """Stop runs (the API's stop and archive): lock, apply, write, in one transaction."""
        catalog = await self.catalogs.current()
        now = self.clock()
        async with self.engine.begin() as conn:
            locked = await repo.lock_runs(conn, run_ids=run_ids)
            work = Work(catalog, now, self.watch_after)
            stopped = [work.apply(run, stop, Facts()) for run in locked]
            await work.write(conn)
        self.relay.notify()
        return stopped
