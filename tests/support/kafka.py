"""Read topics back in tests without joining a consumer group (joins are slow on Tansu)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


class TopicTail:
    """Reads every partition of ``topic`` from the beginning, in the background.

    ``wait_for(predicate)`` returns the first record matching it, waiting up to
    a timeout; ``records`` holds everything read so far.
    """

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Condition()

    async def start(self) -> TopicTail:
        await self._consumer.start()
        partitions = await self._wait_for_partitions()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())
        return self

    async def _wait_for_partitions(self) -> set[int]:
        for _ in range(100):
            partitions = self._consumer.partitions_for_topic(self.topic)
            if partitions:
                return set(partitions)
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.05)
        raise AssertionError(f"topic {self.topic} does not exist")

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            if batches:
                async with self._arrived:
                    for messages in batches.values():
                        self.records.extend(messages)
                    self._arrived.notify_all()

    async def wait_for(
        self, predicate: Callable[[ConsumerRecord[bytes, bytes]], bool], within_s: float = 10.0
    ) -> ConsumerRecord[bytes, bytes]:
        async def find() -> ConsumerRecord[bytes, bytes]:
            async with self._arrived:
                while True:
                    for record in self.records:
                        if predicate(record):
                            return record
                    await self._arrived.wait()

        return await asyncio.wait_for(find(), within_s)

    async def wait_for_text(
        self, text: str, within_s: float = 10.0
    ) -> ConsumerRecord[bytes, bytes]:
        """The first record whose JSON value holds the string ``text`` (a message id, say):
        the whole string, so that ``m-1`` does not find ``m-10``."""
        needle = orjson.dumps(text)
        return await self.wait_for(lambda record: needle in record.value, within_s)

    async def wait_for_count(
        self,
        predicate: Callable[[ConsumerRecord[bytes, bytes]], bool],
        count: int,
        within_s: float = 10.0,
    ) -> list[ConsumerRecord[bytes, bytes]]:
        async def collect() -> list[ConsumerRecord[bytes, bytes]]:
            async with self._arrived:
                while True:
                    found = [r for r in self.records if predicate(r)]
                    if len(found) >= count:
                        return found
                    await self._arrived.wait()

        return await asyncio.wait_for(collect(), within_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


def json_value(record: ConsumerRecord[bytes, bytes]) -> Any:
    return orjson.loads(record.value) if record.value else None
