"""The segmenter's event path as ``tenure bench segmenter`` runs it: replicas.

A replica is what one segmenter process runs beside its HTTP API (see
``services.segmenter.runtime.Runtime``): the ``customer.events`` consumer, the outbox
relay and the timer sweep on a :class:`~shared.runtime.ServiceRuntime`, on an engine
and a producer of its own, and the heap trimmer every service process runs
(``shared.memory``). The bench
runs one replica in its own process (where RSS is sampled and cProfile can
look) and, when asked for more, the others in processes of their own
(:func:`replica_process`), in the same consumer group, as ``TENURE_HTTP_WORKERS``
or more replicas would (:class:`ReplicaSet`). A child process reports the
partitions it holds and each committed batch (``(perf_counter(), records)``;
``perf_counter`` is the system-wide monotonic clock on Linux, so the parent can
compare) through a queue.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

from services.segmenter.catalog_cache import CatalogCache
from services.segmenter.consumer import event_batch_handler, is_transient
from services.segmenter.models import outbox, outbox_relayed
from services.segmenter.repository.loyalty import program_cache
from services.segmenter.settings import SegmenterGroup
from services.segmenter.sweeper import membership_sweep
from shared.clock import utc_now
from shared.collector import tuned_for_throughput
from shared.db.engine import create_engine
from shared.db.outbox import OutboxRelay
from shared.events.customer_events import TOPIC as CUSTOMER_EVENTS
from shared.events.customer_events import CustomerEvent
from shared.kafka.consumer import ConsumerRunner, Record
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher
from shared.memory import HeapTrimmer
from shared.runtime import ServiceRuntime
from shared.settings import (
    DEFAULT_MEMORY_TRIM_INTERVAL_S,
    DatabaseSettings,
    KafkaSettings,
    OutboxSettings,
)

BatchHandler = Callable[[Sequence[Record[CustomerEvent]]], Awaitable[None]]
#: a report from a replica process: ("batch", at, records), ("assigned", partitions, 0)
#: or ("failed", error, 0)
Report = tuple[str, Any, int]


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Everything a replica process needs, picklable."""

    bootstrap_servers: str
    partitions: int
    database_url: str
    group_id: str
    max_batch_records: int
    #: how long the relay keeps what it published (``TENURE_OUTBOX_REPLAY_WINDOW_S``)
    replay_window_s: float = OutboxSettings().replay_window_s


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
        self.relay = OutboxRelay(
            engine=self.engine,
            outbox=outbox,
            publisher=self.publisher,
            relayed=outbox_relayed,
            keep_for=timedelta(seconds=config.replay_window_s),
        )
        # built as the segmenter's runtime builds it (purchases, views, loyalty included)
        handler = event_batch_handler(
            group,
            engine=self.engine,
            catalogs=catalogs,
            loyalty=program_cache(self.engine),
            clock=utc_now,
            on_commit=self.relay.notify,
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
        self.service = ServiceRuntime(
            "bench-segmenter", engine=self.engine, publisher=self.publisher, relay=self.relay
        )
        self.service.consumer("consumer", self.runner)
        self.service.loop(
            "sweeper",
            membership_sweep(
                engine=self.engine,
                catalogs=catalogs,
                clock=utc_now,
                interval_s=group.sweep_interval_s,
                chunk=group.sweep_chunk,
                workers=group.sweep_workers,
                on_commit=self.relay.notify,
            ),
        )
        self.service.loop("heap trimmer", HeapTrimmer(DEFAULT_MEMORY_TRIM_INTERVAL_S))

    @property
    def assigned(self) -> int:
        """How many partitions this replica's consumer holds now."""
        consumer = self.runner.consumer
        return 0 if consumer is None else len(consumer.assignment())

    async def start(self) -> list[asyncio.Task[None]]:
        await self.service.start()
        return list(self.service.tasks.values())

    async def stop(self) -> None:
        """The consumer and sweeper finish their transactions, then the relay drains."""
        await self.service.stop()


def replica_process(
    config: ReplicaConfig, reports: Queue[Report], go: ProcessEvent, stopping: ProcessEvent
) -> None:
    """Entry point of a replica's process: run until ``stopping`` is set."""
    logging.basicConfig(level=logging.WARNING, format="replica: %(levelname)s %(name)s %(message)s")
    asyncio.run(_run_replica(config, reports, go, stopping))


async def _run_replica(
    config: ReplicaConfig, reports: Queue[Report], go: ProcessEvent, stopping: ProcessEvent
) -> None:
    async def gate() -> None:
        if not go.is_set():
            await asyncio.to_thread(go.wait)

    def reporting(handler: BatchHandler) -> BatchHandler:
        async def handle(records: Sequence[Record[CustomerEvent]]) -> None:
            await gate()
            await handler(records)
            reports.put(("batch", time.perf_counter(), len(records)))

        return handle

    replica = ConsumerReplica(config, wrap=reporting)
    tasks = await replica.start()
    with tuned_for_throughput():  # as the service's lifespan does
        await _watch(replica, tasks, reports, stopping)


async def _watch(
    replica: ConsumerReplica,
    tasks: list[asyncio.Task[None]],
    reports: Queue[Report],
    stopping: ProcessEvent,
) -> None:
    assigned = -1
    try:
        while not stopping.is_set():
            failed = next((t for t in tasks if t.done()), None)
            if failed is not None:
                error = None if failed.cancelled() else failed.exception()
                reports.put(("failed", f"{failed.get_name()} stopped: {error!r}", 0))
                return
            if replica.assigned != assigned:
                assigned = replica.assigned
                reports.put(("assigned", assigned, 0))
            await asyncio.sleep(0.1)
    finally:
        await replica.stop()


class ReplicaSet:
    """``count`` replicas in one consumer group: this process's and ``count - 1`` others.

    Started before the events are produced: :meth:`wait_until_assigned` waits for the
    group to settle (every replica holds partitions), and each replica's first batch
    waits for :meth:`go`, so the measured window has neither joins nor rebalances.
    """

    def __init__(
        self, config: ReplicaConfig, count: int, record: Callable[[int, float, int], None]
    ) -> None:
        self._config = config
        self._count = count
        self._record = record
        self._context = mp.get_context("spawn")
        self._go = self._context.Event()
        self._stopping = self._context.Event()
        self._local_go = asyncio.Event()
        self._assigned: dict[int, int] = {}
        self._children: list[BaseProcess] = []
        self.replica = ConsumerReplica(config, wrap=self._gated)
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> list[int]:
        return [os.getpid(), *(c.pid for c in self._children if c.pid is not None)]

    def _gated(self, handler: BatchHandler) -> BatchHandler:
        async def handle(records: Sequence[Record[CustomerEvent]]) -> None:
            await self._local_go.wait()
            await handler(records)
            self._record(0, time.perf_counter(), len(records))

        return handle

    async def start(self) -> None:
        for index in range(1, self._count):
            reports: Queue[Report] = self._context.Queue()
            child = self._context.Process(
                target=replica_process,
                args=(self._config, reports, self._go, self._stopping),
                name=f"bench-segmenter-replica-{index}",
                daemon=True,
            )
            child.start()
            self._children.append(child)
            self.tasks.append(
                asyncio.create_task(self._forward(reports, index), name=f"bench-replica-{index}")
            )
        self.tasks += await self.replica.start()

    async def wait_until_assigned(self, partitions: int, timeout_s: float) -> None:
        """Until the replicas hold ``partitions`` partitions between them, each some."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._assigned[0] = self.replica.assigned
            counts = [self._assigned.get(i, 0) for i in range(self._count)]
            if min(counts) > 0 and sum(counts) == partitions:
                return
            self.raise_if_stopped()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replicas hold {counts} of {partitions} partitions")
            await asyncio.sleep(0.1)

    def raise_if_stopped(self) -> None:
        """Raise when a replica stopped: a task of this process, or a child process."""
        for task in self.tasks:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"{task.get_name()} stopped")
        for child in self._children:
            if child.exitcode is not None:
                raise RuntimeError(f"{child.name} exited with status {child.exitcode}")

    def go(self) -> None:
        self._local_go.set()
        self._go.set()

    async def stop(self) -> None:
        self.go()
        self._stopping.set()
        await self.replica.stop()
        for task in self.tasks:
            task.cancel()
        for child in self._children:
            await asyncio.to_thread(child.join, 40)
            if child.is_alive():
                child.terminate()

    async def _forward(self, reports: Queue[Report], replica: int) -> None:
        """A child's reports: batches to ``record``, assignments to ``_assigned``;
        raise when it failed."""
        while True:
            try:
                kind, value, count = reports.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.05)
                continue
            if kind == "failed":
                raise RuntimeError(f"segmenter replica {replica}: {value}")
            if kind == "assigned":
                self._assigned[replica] = value
            else:
                self._record(replica, value, count)
