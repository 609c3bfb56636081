"""ConsumerRunner against the real broker: decode, apply, dead-letter, commit, stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError

from shared.errors import DeadLetterLimitExceeded
from shared.events.base import EventModel
from shared.kafka.consumer import ConsumerRunner, Record
from shared.kafka.dlq import DeadLetter, DeadLetterPolicy, dlq_topic
from shared.kafka.producer import Delivered, EventPublisher, Message
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings
from tests.support.kafka import TopicTail

JOIN_S = 20.0  # a new group joins in 3-5 s on the embedded broker


class Item(EventModel):
    n: int


class Transient(Exception):
    pass


class RecordingPolicy(DeadLetterPolicy):
    """The real policy, remembering what it sent."""

    def __init__(self, publisher: EventPublisher, **kwargs: Any) -> None:
        super().__init__(publisher, **kwargs)
        self.sent: list[DeadLetter] = []

    async def send(self, letters: list[DeadLetter]) -> None:
        await super().send(letters)
        self.sent.extend(letters)


class Applied:
    """A handler that applies a batch atomically: all of it or, on error, none of it."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.calls: list[list[tuple[int, int]]] = []
        self.changed = asyncio.Event()

    def apply(self, records: Sequence[Record[Item]]) -> None:
        self.values.extend(r.value.n for r in records)
        self.changed.set()

    async def wait_for_count(self, count: int, within_s: float = JOIN_S) -> None:
        async def wait() -> None:
            while len(self.values) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), within_s)


@pytest.fixture
def topic() -> str:
    return f"runner-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def publisher(kafka_settings: KafkaSettings, topic: str) -> AsyncIterator[EventPublisher]:
    await ensure_topics(kafka_settings, with_dead_letters([topic]))
    pub = EventPublisher(kafka_settings, client_id="test-runner")
    await pub.start()
    try:
        yield pub
    finally:
        await pub.stop()


@pytest.fixture
async def probe(kafka_settings: KafkaSettings, group_id: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer in the runner's group that never subscribes: it only reads commits."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def running(runner: ConsumerRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        runner.signal_shutdown()
        await asyncio.wait_for(task, 15)


def item(n: int) -> bytes:
    return Item(n=n).to_bytes()


async def publish(publisher: EventPublisher, topic: str, payloads: list[bytes]) -> list[Delivered]:
    return await publisher.publish_many(
        Message(topic, f"k{i % 5}".encode(), payload) for i, payload in enumerate(payloads)
    )


def end_offsets(delivered: list[Delivered]) -> dict[TopicPartition, int]:
    ends: dict[TopicPartition, int] = {}
    for d in delivered:
        tp = TopicPartition(d.topic, d.partition)
        ends[tp] = max(ends.get(tp, 0), d.offset + 1)
    return ends


async def committed(probe: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[Any, int | None]:
    return {tp: await probe.committed(tp) for tp in tps}


async def wait_committed(
    probe: AIOKafkaConsumer, expected: dict[TopicPartition, int], within_s: float = 10.0
) -> None:
    deadline = time.monotonic() + within_s
    while (got := await committed(probe, list(expected))) != expected:
        assert time.monotonic() < deadline, f"committed {got}, expected {expected}"
        await asyncio.sleep(0.1)


async def read_dlq(kafka_settings: KafkaSettings, topic: str, count: int) -> list[Any]:
    tail = await TopicTail(kafka_settings.bootstrap_servers, dlq_topic(topic)).start()
    try:
        await tail.wait_for_count(lambda _: True, count)
        await asyncio.sleep(0.3)  # a surplus dead letter would have arrived by now
        return list(tail.records)
    finally:
        await tail.stop()


def assert_dead_letter(
    record: Any, *, topic: str, delivered: Delivered, key: bytes, payload: bytes, error: str
) -> None:
    headers = dict(record.headers)
    assert headers["tenure.original_topic"] == topic.encode()
    assert headers["tenure.original_partition"] == str(delivered.partition).encode()
    assert headers["tenure.original_offset"] == str(delivered.offset).encode()
    assert error in headers["tenure.error"].decode()
    assert record.key == key
    assert record.value == payload


async def test_every_record_handled_once_and_committed_only_after_the_handler_returned(
    kafka_settings: KafkaSettings,
    publisher: EventPublisher,
    probe: AIOKafkaConsumer,
    group_id: str,
    topic: str,
) -> None:
    total = 300
    delivered = await publish(publisher, topic, [item(n) for n in range(total)])
    ends = end_offsets(delivered)
    tps = sorted(ends)
    assert len(tps) == kafka_settings.partitions

    applied = Applied()
    gate = asyncio.Event()
    entered = asyncio.Event()
    uncommitted_at_entry: list[bool] = []

    async def handler(records: Sequence[Record[Item]]) -> None:
        entered.set()
        await gate.wait()
        # Nothing of this batch may be committed while the handler runs.
        for tp in {TopicPartition(r.topic, r.partition) for r in records}:
            first = min(r.offset for r in records if r.partition == tp.partition)
            done = await probe.committed(tp)
            uncommitted_at_entry.append(done is None or done <= first)
        applied.apply(records)

    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=RecordingPolicy(publisher),
        max_records=50,
    )
    async with running(runner):
        try:
            await asyncio.wait_for(entered.wait(), JOIN_S)
            await asyncio.sleep(0.3)  # time enough for a premature commit to land
            assert await committed(probe, tps) == dict.fromkeys(tps)
        finally:
            gate.set()  # so that the runner can stop, whatever happened
        await applied.wait_for_count(total)
        await wait_committed(probe, ends)

    assert len(applied.values) == total
    assert Counter(applied.values) == Counter(range(total))
    assert len(uncommitted_at_entry) >= total // 50  # one per batch and partition at least
    assert all(uncommitted_at_entry)
    assert runner.consumer is not None
    with pytest.raises(ConsumerStoppedError):
        await runner.consumer.getmany(timeout_ms=10)


async def test_undecodable_payloads_are_dead_lettered_and_neighbours_handled(
    kafka_settings: KafkaSettings,
    publisher: EventPublisher,
    probe: AIOKafkaConsumer,
    group_id: str,
    topic: str,
) -> None:
    bad = {3: b"not json {", 8: b'{"n": "eight"}'}
    payloads = [bad.get(n, item(n)) for n in range(12)]
    delivered = await publish(publisher, topic, payloads)

    applied = Applied()

    async def handler(records: Sequence[Record[Item]]) -> None:
        applied.apply(records)

    policy = RecordingPolicy(publisher)
    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=policy,
    )
    async with running(runner):
        await applied.wait_for_count(len(payloads) - len(bad))
        await wait_committed(probe, end_offsets(delivered))

    assert sorted(applied.values) == [n for n in range(12) if n not in bad]
    letters = await read_dlq(kafka_settings, topic, len(bad))
    assert len(letters) == len(bad)
    by_offset = {(d.partition, d.offset): n for n, d in enumerate(delivered)}
    for letter in letters:
        headers = dict(letter.headers)
        n = by_offset[
            (int(headers["tenure.original_partition"]), int(headers["tenure.original_offset"]))
        ]
        assert n in bad
        assert_dead_letter(
            letter,
            topic=topic,
            delivered=delivered[n],
            key=f"k{n % 5}".encode(),
            payload=bad[n],
            error="undecodable",
        )
    assert len(policy.sent) == len(bad)


async def test_a_failing_record_is_dead_lettered_and_the_rest_applied(
    kafka_settings: KafkaSettings,
    publisher: EventPublisher,
    probe: AIOKafkaConsumer,
    group_id: str,
    topic: str,
) -> None:
    poison = 7
    # The poison payload carries a field Item does not know: the DLQ must keep it.
    poison_payload = orjson.dumps({"n": poison, "source": "upstream-v2"})
    payloads = [poison_payload if n == poison else item(n) for n in range(12)]
    delivered = await publish(publisher, topic, payloads)

    applied = Applied()

    async def handler(records: Sequence[Record[Item]]) -> None:
        if any(r.value.n == poison for r in records):
            raise ValueError(f"cannot apply item {poison}")
        applied.apply(records)

    policy = RecordingPolicy(publisher)
    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=policy,
    )
    async with running(runner):
        await applied.wait_for_count(len(payloads) - 1)
        await wait_committed(probe, end_offsets(delivered))

    assert Counter(applied.values) == Counter(n for n in range(12) if n != poison)
    (letter,) = await read_dlq(kafka_settings, topic, 1)
    assert_dead_letter(
        letter,
        topic=topic,
        delivered=delivered[poison],
        key=f"k{poison % 5}".encode(),
        payload=poison_payload,
        error=f"handler failed: ValueError('cannot apply item {poison}')",
    )


async def test_transient_errors_are_retried_then_applied_once(
    kafka_settings: KafkaSettings,
    publisher: EventPublisher,
    probe: AIOKafkaConsumer,
    group_id: str,
    topic: str,
) -> None:
    total = 30
    delivered = await publish(publisher, topic, [item(n) for n in range(total)])

    applied = Applied()
    failures_left = 2

    async def handler(records: Sequence[Record[Item]]) -> None:
        nonlocal failures_left
        applied.calls.append([(r.partition, r.offset) for r in records])
        if failures_left:
            failures_left -= 1
            raise Transient("database restarting")
        applied.apply(records)

    policy = RecordingPolicy(publisher)
    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=policy,
        is_transient=lambda exc: isinstance(exc, Transient),
    )
    async with running(runner):
        await applied.wait_for_count(total)
        await wait_committed(probe, end_offsets(delivered))

    assert Counter(applied.values) == Counter(range(total))
    # The very same batch was retried, not split up nor skipped.
    assert applied.calls[0] == applied.calls[1] == applied.calls[2]
    assert policy.sent == []


async def test_mostly_invalid_topic_stops_the_runner_without_draining_it(
    kafka_settings: KafkaSettings,
    publisher: EventPublisher,
    probe: AIOKafkaConsumer,
    group_id: str,
    topic: str,
) -> None:
    payloads = [item(n) if n % 9 == 0 else b"garbage" for n in range(45)]
    # One key: one partition, one produced batch, so one fetched batch.
    delivered = await publisher.publish_many(Message(topic, b"one", p) for p in payloads)
    tp = TopicPartition(topic, delivered[0].partition)

    handled: list[int] = []

    async def handler(records: Sequence[Record[Item]]) -> None:
        handled.extend(r.value.n for r in records)

    policy = RecordingPolicy(publisher, max_invalid_ratio=0.5, min_seen=20)
    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=policy,
    )
    with pytest.raises(DeadLetterLimitExceeded) as raised:
        await asyncio.wait_for(runner.run(), JOIN_S)

    assert raised.value.topic == topic
    assert raised.value.seen >= 20
    assert raised.value.invalid / raised.value.seen > 0.5
    # Stopped instead of draining the topic into its DLQ: nothing sent, handled, committed.
    assert policy.sent == []
    assert handled == []
    assert await probe.committed(tp) is None
    assert runner.consumer is not None
    with pytest.raises(ConsumerStoppedError):
        await runner.consumer.getmany(timeout_ms=10)


async def test_signal_shutdown_while_idle_returns_promptly_and_stops_the_consumer(
    kafka_settings: KafkaSettings, publisher: EventPublisher, group_id: str, topic: str
) -> None:
    async def handler(records: Sequence[Record[Item]]) -> None:
        raise AssertionError(f"nothing was published, got {records}")

    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=RecordingPolicy(publisher),
    )
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        consumer = runner.consumer
        assert consumer is not None

        async def joined() -> None:
            while not consumer.assignment():  # noqa: ASYNC110 (aiokafka has no event for it)
                await asyncio.sleep(0.05)

        await asyncio.wait_for(joined(), JOIN_S)
        await asyncio.sleep(0.5)  # idle: polling an empty topic
        assert not task.done()

        started = time.monotonic()
        runner.signal_shutdown()
        await asyncio.wait_for(task, 5)
        elapsed = time.monotonic() - started
    finally:
        runner.signal_shutdown()
        if not task.done():
            await asyncio.wait_for(task, 15)

    assert elapsed < 2.0
    assert task.result() is None
    with pytest.raises(ConsumerStoppedError):
        await consumer.getmany(timeout_ms=10)


async def test_an_idle_runner_lets_fetches_wait_longer_and_still_wakes_on_data(
    kafka_settings: KafkaSettings, publisher: EventPublisher, topic: str, group_id: str
) -> None:
    """After ``idle_after_s`` without records the broker may hold fetches for the idle
    wait; a record still arrives (within that wait) and brings the short wait back;
    a shutdown does not wait for the long poll."""
    got: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(records: Sequence[Record[Item]]) -> None:
        got.extend(loop.time() for _ in records)

    runner = ConsumerRunner(
        settings=kafka_settings,
        group_id=group_id,
        decoders={topic: Item.from_bytes},
        handler=handler,
        dead_letters=DeadLetterPolicy(publisher),
        poll_timeout_ms=60_000,
        fetch_max_wait_ms=100,
        idle_fetch_max_wait_ms=1_500,
        idle_after_s=0.5,
    )

    def fetch_wait() -> int:
        consumer = runner.consumer
        assert consumer is not None
        return int(consumer._fetcher._fetch_max_wait_ms)

    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.assigned.wait(), JOIN_S)
        await asyncio.sleep(1.0)
        await publish(publisher, topic, [item(1)])  # ends the first long poll
        await _until(lambda: len(got) == 1)
        await asyncio.sleep(2.5)
        assert fetch_wait() == 1_500  # idle again
        sent = loop.time()
        await publish(publisher, topic, [item(2)])
        await _until(lambda: len(got) == 2)
        assert got[1] - sent < 1.5 + 0.5
        await asyncio.sleep(0.1)
        assert fetch_wait() == 100  # records flow: short waits
        await asyncio.sleep(1.0)  # the runner is in a 60 s getmany now
        stopped = loop.time()
    finally:
        runner.signal_shutdown()
        await asyncio.wait_for(task, 15)
    assert loop.time() - stopped < 5


async def _until(condition: Any, within_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.02)
