"""``tenure bench e2e``'s lag probe reads the true highwater from the embedded broker,
whose ``end_offsets()`` stops at the last record batch's base offset after batched
produce (docs CONVENTIONS), and a group's committed offsets without joining it."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.kafka.topics import ensure_topics
from shared.settings import KafkaSettings
from tenure.bench.lag import LagProbe


async def test_the_lag_is_the_highwater_minus_the_committed_offsets(
    kafka_settings: KafkaSettings, group_id: str
) -> None:
    bootstrap = kafka_settings.bootstrap_servers
    topic = f"bench-lag-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:  # batched: many records per batch, as ingest publishes them
        sent = [await producer.send(topic, b"x" * 50, key=b"%d" % i) for i in range(3_000)]
        delivered = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    ends: dict[TopicPartition, int] = {}
    for record in delivered:
        tp = TopicPartition(topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    committed = {tp: end // 3 for tp, end in ends.items()}
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id)
    await group.start()
    try:
        group.assign(list(committed))
        await group.commit(committed)
    finally:
        await group.stop()

    probe = LagProbe(bootstrap, topics=[topic], groups=[group_id])
    await probe.start()
    try:
        assert await probe.discover() == [group_id]
        sample = await probe.sample()
        again = await probe.sample()  # a second look reads the same, not further
    finally:
        await probe.stop()
    assert sample.produced == again.produced == {group_id: sum(ends.values())}
    expected = sum(ends.values()) - sum(committed.values())
    assert sample.lag == again.lag == {group_id: expected}
