"""OutboxRelay against real PostgreSQL and the real broker: order, exactly-once, failure."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine, service_metadata
from shared.db.outbox import OutboxRelay, enqueue, outbox_table
from shared.errors import PublishError
from shared.kafka.producer import Delivered, EventPublisher, Message
from shared.kafka.topics import ensure_topics
from shared.settings import DatabaseSettings, KafkaSettings
from tenure.embedded import free_port
from tests.conftest import NewDatabase
from tests.support.kafka import TopicTail


@dataclass
class Outbox:
    engine: AsyncEngine
    table: Table

    async def count(self) -> int:
        """Messages waiting (a row may hold a pack of them)."""
        async with self.engine.connect() as conn:
            total = await conn.scalar(select(func.sum(self.table.c.messages)))
            return int(total or 0)

    async def add(self, messages: list[Message]) -> None:
        async with self.engine.begin() as conn:
            await enqueue(session=conn, outbox=self.table, messages=messages)


@pytest.fixture
async def outbox(new_database: NewDatabase) -> AsyncIterator[Outbox]:
    engine = create_engine(DatabaseSettings(url=await new_database()))
    try:
        metadata = service_metadata("t_outbox")
        table = outbox_table(metadata)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE SCHEMA t_outbox"))
            await conn.run_sync(metadata.create_all)
        yield Outbox(engine, table)
    finally:
        await engine.dispose()


@pytest.fixture
async def topic(kafka_settings: KafkaSettings) -> str:
    name = f"outbox-{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_settings, [name])
    return name


@pytest.fixture
async def publisher(kafka_settings: KafkaSettings) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(kafka_settings, client_id="test-outbox")
    await pub.start()
    try:
        yield pub
    finally:
        await pub.stop()


@pytest.fixture
async def tail(kafka_settings: KafkaSettings, topic: str) -> AsyncIterator[TopicTail]:
    reader = await TopicTail(kafka_settings.bootstrap_servers, topic).start()
    try:
        yield reader
    finally:
        await reader.stop()


def by_key_in_offset_order(
    records: list[ConsumerRecord[bytes, bytes]],
) -> dict[bytes | None, list[bytes | None]]:
    out: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key].append(r.value)
    return out


async def test_committed_rows_are_relayed_in_id_order_and_deleted(
    outbox: Outbox, publisher: EventPublisher, topic: str, tail: TopicTail
) -> None:
    messages = [
        Message(topic, f"k{i % 3}".encode(), f"m{i}".encode(), (("n", str(i).encode()),))
        for i in range(25)
    ]
    await outbox.add(messages[:10])  # a pack each
    await outbox.add(messages[10:20])
    await outbox.add(messages[20:])
    assert await outbox.count() == 25

    relay = OutboxRelay(
        engine=outbox.engine, outbox=outbox.table, publisher=publisher, batch_size=10
    )
    assert [await relay.relay_once() for _ in range(4)] == [10, 10, 5, 0]
    assert await outbox.count() == 0

    records = await tail.wait_for_count(lambda _: True, 25)
    assert Counter(r.value for r in records) == Counter(m.value for m in messages)
    # Per key (so per partition), the topic holds the rows in id = enqueue order.
    expected: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for m in messages:
        assert m.key is not None
        expected[m.key].append(m.value)
    assert by_key_in_offset_order(records) == expected
    # Headers survive the JSONB round trip.
    assert all(dict(r.headers)["n"] == (r.value or b"")[1:] for r in records)


async def test_packs_and_single_rows_are_relayed_in_the_order_they_were_written(
    outbox: Outbox, publisher: EventPublisher, topic: str, tail: TopicTail
) -> None:
    """``enqueue`` writes packs; SQL (a sweep's changes) writes a row per message. One
    key's messages reach the topic in the order they were written, whatever the row;
    a pass takes the oldest rows until ``batch_size`` messages, a pack whole."""
    await outbox.add([Message(topic, b"k", f"p{i}".encode()) for i in range(3)])
    async with outbox.engine.begin() as conn:
        for value in (b"s0", b"s1"):
            await conn.execute(outbox.table.insert().values(topic=topic, key=b"k", value=value))
    await outbox.add([Message(topic, b"k", f"q{i}".encode()) for i in range(12)])
    relay = OutboxRelay(
        engine=outbox.engine, outbox=outbox.table, publisher=publisher, batch_size=4
    )

    # rows are taken while the messages before them number fewer than 4: the pack of 3
    # and s0; then s1 and the pack of 12, whole
    assert [await relay.relay_once() for _ in range(3)] == [4, 13, 0]

    records = await tail.wait_for_count(lambda _: True, 17)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == [
        *(f"p{i}".encode() for i in range(3)),
        b"s0",
        b"s1",
        *(f"q{i}".encode() for i in range(12)),
    ]


async def test_rows_of_a_rolled_back_transaction_are_never_published(
    outbox: Outbox, publisher: EventPublisher, topic: str, tail: TopicTail
) -> None:
    async with outbox.engine.connect() as conn:
        await conn.begin()
        await enqueue(session=conn, outbox=outbox.table, messages=[Message(topic, b"k", b"gone")])
        await conn.rollback()
    await outbox.add([Message(topic, b"k", b"kept")])

    relay = OutboxRelay(engine=outbox.engine, outbox=outbox.table, publisher=publisher)
    assert await relay.relay_once() == 1
    assert await outbox.count() == 0
    # Same key, so "gone" (lower id) would sit before "kept" on the partition.
    await tail.wait_for(lambda r: r.value == b"kept")
    assert [r.value for r in tail.records] == [b"kept"]


class CountingRelay(OutboxRelay):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.relayed = 0

    async def relay_once(self) -> int:
        n = await super().relay_once()
        self.relayed += n
        return n


class SlowPublisher(EventPublisher):
    """A replica with a slow way to the broker: each publish waits a while first."""

    async def publish_many(self, messages: Iterable[Message]) -> list[Delivered]:
        batch = list(messages)
        await asyncio.sleep(0.05)
        return await super().publish_many(batch)


async def test_two_relays_publish_each_row_once_in_key_order(
    kafka_settings: KafkaSettings, outbox: Outbox, topic: str, tail: TopicTail
) -> None:
    keys, per_key = 10, 120
    total = keys * per_key
    messages = [Message(topic, f"k{i % keys}".encode(), f"m{i}".encode()) for i in range(total)]

    # While the slow relay publishes one batch, the fast one must not overtake it
    # with the next rows (SKIP LOCKED alone would let it).
    publishers = [
        SlowPublisher(kafka_settings, client_id="test-relay-slow"),
        EventPublisher(kafka_settings, client_id="test-relay-fast"),
    ]
    relays = [
        CountingRelay(
            engine=outbox.engine, outbox=outbox.table, publisher=p, batch_size=20, idle_poll_s=0.01
        )
        for p in publishers
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        for p in publishers:
            await p.start()
        # Half the rows wait when the relays start, the rest arrive while they run.
        half = total // 2
        await outbox.add(messages[:half])
        tasks = [asyncio.create_task(r.run()) for r in relays]
        for start in range(half, total, 100):
            await outbox.add(messages[start : start + 100])
            for r in relays:
                r.notify()
        await tail.wait_for_count(lambda _: True, total, within_s=30)
        await asyncio.sleep(0.5)  # a row published twice would have arrived by now
    finally:
        for r in relays:
            r.signal_shutdown()
        await asyncio.gather(*tasks)
        for p in publishers:
            await p.stop()

    assert await outbox.count() == 0
    assert sum(r.relayed for r in relays) == total
    records = list(tail.records)
    assert len(records) == total
    assert Counter(r.value for r in records) == Counter(m.value for m in messages)
    expected: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for m in messages:
        assert m.key is not None
        expected[m.key].append(m.value)
    assert by_key_in_offset_order(records) == expected


async def test_relay_keeps_rows_while_the_broker_is_unreachable(
    kafka_settings: KafkaSettings,
    outbox: Outbox,
    publisher: EventPublisher,
    topic: str,
    tail: TopicTail,
) -> None:
    messages = [Message(topic, b"k", f"m{i}".encode()) for i in range(5)]
    await outbox.add(messages)

    nowhere = kafka_settings.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    unreachable = EventPublisher(nowhere, client_id="test-outbox-nowhere")
    await unreachable.start()  # does not fail: it keeps connecting in the background
    try:
        assert not unreachable.connected
        relay = OutboxRelay(engine=outbox.engine, outbox=outbox.table, publisher=unreachable)
        with pytest.raises(PublishError):
            await relay.relay_once()
        assert await outbox.count() == 5
    finally:
        await unreachable.stop()

    # Once a broker answers, the kept rows go out, in order, once.
    relay = OutboxRelay(engine=outbox.engine, outbox=outbox.table, publisher=publisher)
    assert await relay.relay_once() == 5
    assert await outbox.count() == 0
    records = await tail.wait_for_count(lambda _: True, 5)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == [m.value for m in messages]
