"""EventPublisher against the real broker: acks, offsets, partitioning, failure isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.errors import PublishError
from shared.kafka.producer import Delivered, EventPublisher, Message
from shared.kafka.topics import ensure_topics
from shared.settings import KafkaSettings
from tests.support.kafka import TopicTail

TASKS = 50
PER_TASK = 200
CALLS_PER_TASK = 4  # each task publishes its messages in this many publish_many calls
KEYS_PER_TASK = 4


def new_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def publisher(kafka_settings: KafkaSettings) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(kafka_settings, client_id="test-publisher")
    await pub.start()
    try:
        assert pub.connected
        yield pub
    finally:
        await pub.stop()


async def tail_of(kafka_settings: KafkaSettings, topic: str) -> TopicTail:
    return await TopicTail(kafka_settings.bootstrap_servers, topic).start()


def java_partition(key: bytes, partitions: int) -> int:
    """Kafka's Java DefaultPartitioner: toPositive(murmur2(key)) % partitions."""
    chosen: int = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    return chosen


def test_partitioner_matches_javas_murmur2() -> None:
    # Signed murmur2 values from Kafka's own UtilsTest.testMurmur2.
    java_murmur2 = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in java_murmur2.items():
        for partitions in (3, 6, 7):
            assert java_partition(key, partitions) == (signed & 0x7FFFFFFF) % partitions, key


async def test_concurrent_publish_many_is_acked_once_and_read_back_once_in_key_order(
    kafka_settings: KafkaSettings, publisher: EventPublisher
) -> None:
    topic = new_topic("pub-many")
    await ensure_topics(kafka_settings, [topic])
    partitions = kafka_settings.partitions

    async def one_task(task: int) -> list[tuple[Message, Delivered]]:
        messages = [
            Message(
                topic=topic,
                key=f"t{task}-k{i % KEYS_PER_TASK}".encode(),
                value=f"{task}:{i}".encode(),
                headers=(("seq", str(i).encode()),),
            )
            for i in range(PER_TASK)
        ]
        step = PER_TASK // CALLS_PER_TASK
        out: list[tuple[Message, Delivered]] = []
        for start in range(0, PER_TASK, step):
            chunk = messages[start : start + step]
            delivered = await publisher.publish_many(chunk)
            assert len(delivered) == len(chunk)
            out.extend(zip(chunk, delivered, strict=True))
        return out

    results = [pair for part in await asyncio.gather(*map(one_task, range(TASKS))) for pair in part]
    total = TASKS * PER_TASK
    assert len(results) == total

    # Acknowledged once each, at distinct positions, in the partition Java would pick.
    by_position: dict[tuple[int, int], bytes] = {}
    for message, delivered in results:
        assert message.key is not None
        assert delivered.topic == topic
        assert delivered.partition == java_partition(message.key, partitions), message.key
        assert (delivered.partition, delivered.offset) not in by_position
        by_position[(delivered.partition, delivered.offset)] = message.value

    tail = await tail_of(kafka_settings, topic)
    try:
        await tail.wait_for_count(lambda _: True, total, within_s=30)
        await asyncio.sleep(0.5)  # anything duplicated would have arrived by now
        records = list(tail.records)
    finally:
        await tail.stop()

    assert len(records) == total
    assert Counter(r.value for r in records).most_common(1)[0][1] == 1
    # Delivered.offset is exactly where each record is read back.
    assert {(r.partition, r.offset): r.value for r in records} == by_position

    # Same key: one partition, offsets increasing with the sequence the caller sent.
    by_key: dict[bytes, list[tuple[int, int, int]]] = defaultdict(list)
    for r in records:
        assert r.key is not None and r.value is not None
        seq = int(r.value.split(b":")[1])
        assert dict(r.headers)["seq"] == str(seq).encode()
        by_key[r.key].append((r.offset, seq, r.partition))
    assert len(by_key) == TASKS * KEYS_PER_TASK
    for key, seen in by_key.items():
        assert {p for _, _, p in seen} == {java_partition(key, partitions)}
        seqs_in_offset_order = [seq for _, seq, _ in sorted(seen)]
        assert seqs_in_offset_order == sorted(seqs_in_offset_order), key


async def test_publish_after_stop_raises_publish_error(kafka_settings: KafkaSettings) -> None:
    topic = new_topic("pub-stop")
    await ensure_topics(kafka_settings, [topic])
    pub = EventPublisher(kafka_settings, client_id="test-publisher-stop")
    await pub.start()
    try:
        delivered = await pub.publish(Message(topic, b"k", b"before stop"))
        assert delivered.topic == topic
    finally:
        await pub.stop()
    with pytest.raises(PublishError):
        await pub.publish(Message(topic, b"k", b"after stop"))
    with pytest.raises(PublishError):
        await pub.publish_many([Message(topic, b"k", b"after stop, many")])


async def test_oversized_message_fails_alone(kafka_settings: KafkaSettings) -> None:
    settings = kafka_settings.model_copy(update={"max_batch_bytes": 16_384})
    topic = new_topic("pub-big")
    await ensure_topics(settings, [topic])
    pub = EventPublisher(settings, client_id="test-publisher-big")
    await pub.start()
    try:
        # Same key, so all three share one partition and one send cycle.
        small_before = Message(topic, b"same", b"small before")
        big = Message(topic, b"same", b"B" * 100_000)
        small_after = Message(topic, b"same", b"small after")
        results = await asyncio.gather(
            pub.publish(small_before),
            pub.publish(big),
            pub.publish(small_after),
            return_exceptions=True,
        )
        # The publisher still works afterwards.
        last = await pub.publish(Message(topic, b"same", b"later"))
    finally:
        await pub.stop()

    before, big_result, after = results
    assert isinstance(big_result, PublishError)
    assert "max_batch_bytes" in str(big_result)
    assert isinstance(before, Delivered)
    assert isinstance(after, Delivered)
    assert before.partition == after.partition == last.partition
    assert before.offset < after.offset < last.offset

    tail = await tail_of(settings, topic)
    try:
        await tail.wait_for(lambda r: r.value == b"later")
        records = {(r.partition, r.offset): r.value for r in tail.records}
    finally:
        await tail.stop()
    assert records == {
        (before.partition, before.offset): b"small before",
        (after.partition, after.offset): b"small after",
        (last.partition, last.offset): b"later",
    }
