"""A benchmark's reader of a topic: an aiokafka consumer drained by a task of its own."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord


class TopicReader:
    """Hands every record the consumer fetches to :meth:`take`, from :meth:`start` until
    :meth:`stop`. A subclass keeps what it needs of each record; :meth:`prepare` runs
    once the consumer started (to assign partitions, seek)."""

    def __init__(self, consumer: AIOKafkaConsumer, *, poll_ms: int = 100) -> None:
        self._consumer = consumer
        self._poll_ms = poll_ms
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self.prepare()
        self._task = asyncio.create_task(self._read())

    async def prepare(self) -> None:
        return None

    def take(self, record: ConsumerRecord[bytes, bytes], arrived: float) -> None:
        """One record, fetched at ``arrived`` (``time.time()``)."""
        raise NotImplementedError

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=self._poll_ms, max_records=10_000)
            arrived = time.time()
            for records in batches.values():
                for record in records:
                    self.take(record, arrived)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
