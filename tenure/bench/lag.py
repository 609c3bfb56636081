"""Every consumer group's lag on a broker: the highwater minus the committed offset,
summed over the partitions the group has committed on.

The embedded broker answers ``ListOffsets`` (``end_offsets()``) with the base offset
of a partition's last record batch after batched produce (docs CONVENTIONS), so the
highwater is read from a fetch instead: a group-less consumer seeks each partition to
that answer, fetches the last batch, and takes the fetch response's highwater (and the
last offset it read, plus one). It reads one batch per partition per sample, not the
stream. The admin client's ``OffsetFetch`` for a whole group is garbled by the same
broker, so committed offsets come from a consumer per group (never subscribed: it
does not join the group), one partition at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import ALL_TOPICS

_FETCH_WAIT_S = 1.5


@dataclass(frozen=True, slots=True)
class LagSample:
    at: float
    #: group -> messages behind, over the partitions it has committed on
    lag: dict[str, int]
    #: group -> the summed highwater of those partitions (its input so far)
    produced: dict[str, int]


class LagProbe:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topics: Sequence[str] = ALL_TOPICS,
        groups: Sequence[str] | None = None,
        ignore_prefix: str = "bench-",
    ) -> None:
        """Watch ``groups`` (default: every group the broker lists, but those whose id
        starts with ``ignore_prefix``) on ``topics``."""
        self._bootstrap = bootstrap_servers
        self._topics = topics
        self._only = groups
        self._ignore = ignore_prefix
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        self._tail = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_partition_fetch_bytes=64 * 1024,
        )
        self._groups: dict[str, AIOKafkaConsumer] = {}
        #: group -> the partitions it has committed on (found by :meth:`discover`)
        self._committed_on: dict[str, list[TopicPartition]] = {}
        self._tps: list[TopicPartition] = []

    async def start(self) -> None:
        await self._admin.start()
        await self._tail.start()
        for topic in self._topics:
            partitions = self._tail.partitions_for_topic(topic) or set()
            self._tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        self._tail.assign(self._tps)
        self._tail.pause(*self._tps)

    async def stop(self) -> None:
        for consumer in self._groups.values():
            await consumer.stop()
        await self._tail.stop()
        await self._admin.close()

    async def discover(self) -> list[str]:
        """Find the groups and the partitions each has committed on (a full scan)."""
        if self._only is not None:
            listed = list(self._only)
        else:
            listed = [group for group, _ in await self._admin.list_consumer_groups()]
        for group in listed:
            if group.startswith(self._ignore) or group in self._groups:
                continue
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=group, enable_auto_commit=False
            )
            await consumer.start()
            self._groups[group] = consumer
        for group, consumer in self._groups.items():
            offsets = await asyncio.gather(*(consumer.committed(tp) for tp in self._tps))
            found = {tp.topic for tp, offset in zip(self._tps, offsets, strict=True) if offset}
            self._committed_on[group] = [tp for tp in self._tps if tp.topic in found]
        return sorted(g for g, tps in self._committed_on.items() if tps)

    async def sample(self) -> LagSample:
        highwater = await self._highwater()
        lag: dict[str, int] = {}
        produced: dict[str, int] = {}
        for group, tps in self._committed_on.items():
            if not tps:
                continue
            consumer = self._groups[group]
            offsets = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
            lag[group] = sum(
                max(0, highwater.get(tp, 0) - (offset or 0))
                for tp, offset in zip(tps, offsets, strict=True)
            )
            produced[group] = sum(highwater.get(tp, 0) for tp in tps)
        return LagSample(time.monotonic(), lag, produced)

    async def _highwater(self) -> dict[TopicPartition, int]:
        wanted = sorted({tp for tps in self._committed_on.values() for tp in tps})
        if not wanted:
            return {}
        ends = await self._tail.end_offsets(wanted)
        highwater = {tp: int(ends.get(tp, 0)) for tp in wanted}
        pending = {tp for tp in wanted if highwater[tp] > 0}
        for tp in pending:
            self._tail.seek(tp, highwater[tp])
        self._tail.resume(*pending)
        deadline = time.monotonic() + _FETCH_WAIT_S
        try:
            while pending and time.monotonic() < deadline:
                batches = await self._tail.getmany(*pending, timeout_ms=200)
                for tp, records in batches.items():
                    if records:
                        highwater[tp] = max(highwater[tp], records[-1].offset + 1)
                        pending.discard(tp)
                for tp in list(pending):
                    seen = self._tail.highwater(tp)
                    if seen is not None and seen > highwater[tp]:
                        highwater[tp] = seen
        finally:
            self._tail.pause(*wanted)
        for tp in wanted:
            seen = self._tail.highwater(tp)
            if seen is not None:
                highwater[tp] = max(highwater[tp], seen)
        return highwater
