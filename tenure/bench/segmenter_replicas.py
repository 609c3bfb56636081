"""The segmenter's event path as ``tenure bench segmenter`` runs it: replicas.

A replica is what one segmenter process runs beside its HTTP API (see
``services.segmenter.app.Runtime``): the ``customer.events`` consumer, the outbox
relay and the timer sweeper, on an engine and a producer of its own. The bench
runs one replica in its own process (where RSS is sampled and cProfile can
look) and, when asked for more, the others in processes of their own
(:func:`replica_process`), in the same consumer group, as ``TENURE_HTTP_WORKERS``
or more replicas would. A child process reports each committed batch
(``(perf_counter(), records)``; ``perf_counter`` is the system-wide monotonic
clock on Linux, so the parent can compare) through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import EventBatchHandler, is_transient, utc_now
from services.segmenter.models import outbox
from services.segmenter.settings import SegmenterGroup
from services.segmenter.sweeper import TimerSweeper
from shared.db.engine import create_engine
from shared.db.outbox import OutboxRelay
from shared.events.customer_events import TOPIC as CUSTOMER_EVENTS
from shared.events.customer_events import CustomerEvent
from shared.kafka.consumer import ConsumerRunner, Record
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher
from shared.settings import DatabaseSettings, KafkaSettings

BatchHandler = Callable[[Sequence[Record[CustomerEvent]]], Awaitable[None]]
#: a report from a replica process: ("batch", at, records) or ("failed", error, 0)
Report = tuple[str, Any, int]


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Everything a replica process needs, picklable."""

    bootstrap_servers: str
    partitions: int
    database_url: str
    group_id: str
    max_batch_records: int


class ConsumerReplica:
    """The consumer, relay and sweeper of one segmenter process, as its lifespan runs them."""

    def __init__(
        self,
        config: ReplicaConfig,
        *,
        wrap: Callable[[BatchHandler], BatchHandler] = lambda handler: handler,
    ) -> None:
        kafka = KafkaSettings(
            bootstrap_servers=config.bootstrap_servers, partitions=config.partitions
        )
        group = SegmenterGroup(max_batch_records=config.max_batch_records)
        self.engine = create_engine(DatabaseSettings(url=config.database_url))
        self.publisher = EventPublisher(kafka, client_id="bench-segmenter")
        catalogs = CatalogCache(self.engine)
        self.relay = OutboxRelay(engine=self.engine, outbox=outbox, publisher=self.publisher)
        handler = EventBatchHandler(
            engine=self.engine, catalogs=catalogs, clock=utc_now, on_commit=self.relay.notify
        )
        self.runner = ConsumerRunner(
            settings=kafka,
            group_id=config.group_id,
            decoders={CUSTOMER_EVENTS: CustomerEvent.from_bytes},
            handler=wrap(handler),
            dead_letters=DeadLetterPolicy(self.publisher),
            is_transient=is_transient,
            max_records=group.max_batch_records,
        )
        self.sweeper = TimerSweeper(
            engine=self.engine,
            catalogs=catalogs,
            clock=utc_now,
            interval_s=group.sweep_interval_s,
            chunk=group.sweep_chunk,
            workers=group.sweep_workers,
            on_commit=self.relay.notify,
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> list[asyncio.Task[None]]:
        await self.publisher.start()
        self.tasks = [
            asyncio.create_task(self.runner.run(), name="bench-consumer"),
            asyncio.create_task(self.relay.run(), name="bench-relay"),
            asyncio.create_task(self.sweeper.run(), name="bench-sweeper"),
        ]
        return self.tasks

    async def stop(self) -> None:
        """The consumer and sweeper finish their transactions, then the relay drains."""
        self.runner.signal_shutdown()
        self.sweeper.signal_shutdown()
        for task in self.tasks[:1] + self.tasks[2:]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
        self.relay.signal_shutdown()
        if len(self.tasks) > 1:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tasks[1], timeout=30)
        await self.publisher.stop()
        await self.engine.dispose()


def replica_process(config: ReplicaConfig, reports: Queue[Report], stopping: ProcessEvent) -> None:
    """Entry point of a replica's process: run until ``stopping`` is set."""
    asyncio.run(_run_replica(config, reports, stopping))


async def _run_replica(
    config: ReplicaConfig, reports: Queue[Report], stopping: ProcessEvent
) -> None:
    def reporting(handler: BatchHandler) -> BatchHandler:
        async def handle(records: Sequence[Record[CustomerEvent]]) -> None:
            await handler(records)
            reports.put(("batch", time.perf_counter(), len(records)))

        return handle

    replica = ConsumerReplica(config, wrap=reporting)
    tasks = await replica.start()
    try:
        while not stopping.is_set():
            failed = next((t for t in tasks if t.done()), None)
            if failed is not None:
                error = None if failed.cancelled() else failed.exception()
                reports.put(("failed", f"{failed.get_name()} stopped: {error!r}", 0))
                return
            await asyncio.sleep(0.2)
    finally:
        await replica.stop()


async def forward_reports(
    reports: Queue[Report], record: Callable[[int, float, int], None], replica: int
) -> None:
    """Hand a replica process's batch reports to ``record(replica, at, records)``;
    raise when the replica reports that it failed."""
    while True:
        try:
            kind, value, count = reports.get_nowait()
        except queue.Empty:
            await asyncio.sleep(0.05)
            continue
        if kind == "failed":
            raise RuntimeError(f"segmenter replica {replica}: {value}")
        record(replica, value, count)
