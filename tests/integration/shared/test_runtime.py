"""ServiceRuntime on the real broker and PostgreSQL: ordered start and stop, the relay
drained last, health of consumers and loops on ``/readyz``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine, service_metadata
from shared.db.outbox import OutboxRelay, enqueue, outbox_table
from shared.http.app import create_service_app
from shared.kafka.consumer import ConsumerRunner, Record
from shared.kafka.dlq import DeadLetterPolicy
from shared.kafka.producer import EventPublisher, Message
from shared.kafka.topics import ensure_topics
from shared.runtime import ServiceRuntime
from shared.settings import DatabaseSettings, KafkaSettings
from shared.stopping import StoppableLoop
from tests.conftest import NewDatabase
from tests.support.kafka import TopicTail


class Recorded(StoppableLoop):
    """A loop writing ``started`` / ``finished`` to a shared log; ``on_stop`` runs between
    the shutdown signal and the end (the last batch of a consumer, say)."""

    def __init__(self, name: str, log: list[str], on_stop: Any = None, fail: bool = False):
        super().__init__()
        self.name, self.log, self.on_stop, self.fail = name, log, on_stop, fail

    async def run(self) -> None:
        self.log.append(f"{self.name} started")
        if self.fail:
            raise RuntimeError(f"{self.name} broke")
        await self._stopping.wait()
        if self.on_stop is not None:
            await self.on_stop()
        self.log.append(f"{self.name} finished")


@pytest.fixture
async def database(new_database: NewDatabase) -> AsyncIterator[tuple[str, Table]]:
    url = await new_database()
    metadata = service_metadata("t_runtime")
    table = outbox_table(metadata)
    engine = create_engine(DatabaseSettings(url=url))
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE SCHEMA t_runtime")
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    yield url, table


@pytest.fixture
async def topic(kafka_settings: KafkaSettings) -> str:
    name = f"runtime-{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_settings, [name])
    return name


def engine_of(url: str) -> AsyncEngine:
    return create_engine(DatabaseSettings(url=url))


async def test_stop_finishes_consumers_and_loops_then_drains_the_relay_then_closes(
    database: tuple[str, Table], kafka_settings: KafkaSettings, topic: str
) -> None:
    url, table = database
    engine = engine_of(url)
    publisher = EventPublisher(kafka_settings, client_id="test-runtime")
    # a relay that would not look on its own for a minute: only the stop drains it
    relay = OutboxRelay(engine=engine, outbox=table, publisher=publisher, idle_poll_s=60)
    runtime = ServiceRuntime("test", engine=engine, publisher=publisher, relay=relay)
    log: list[str] = []

    async def last_batch() -> None:
        async with engine.begin() as conn:
            await enqueue(session=conn, outbox=table, messages=[Message(topic, b"k", b"last")])

    runtime.consumer("consumer", Recorded("consumer", log, on_stop=last_batch))
    runtime.loop("sweep", Recorded("sweep", log))

    async def close(name: str) -> None:
        assert not publisher.connected or publisher._closing
        log.append(f"{name} closed")

    runtime.closing("client a", lambda: close("client a"))
    runtime.closing("client b", lambda: close("client b"))
    background = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            background.set()

    tail = await TopicTail(kafka_settings.bootstrap_servers, topic).start()
    try:
        await runtime.start()
        assert publisher.connected
        runtime.in_background(forever())
        await asyncio.sleep(0.1)
        assert log == ["consumer started", "sweep started"]
        await runtime.stop()
        assert background.is_set()  # background work is cancelled
        # signalled together, the consumer and the loop finish in either order, and
        # what they do before the closers (last registered first)
        assert sorted(log[2:4]) == ["consumer finished", "sweep finished"]
        assert log[4:] == ["client b closed", "client a closed"]
        record = await tail.wait_for(lambda r: r.value == b"last")
        assert record.key == b"k"  # queued by the last batch, published by the drain
    finally:
        await tail.stop()


async def test_readyz_reports_each_part_and_a_loop_that_ended(
    database: tuple[str, Table],
) -> None:
    url, _ = database
    runtime = ServiceRuntime("test", engine=engine_of(url))
    log: list[str] = []
    runtime.consumer("consumer", Recorded("consumer", log))
    runtime.loop("sweep", Recorded("sweep", log, fail=True))
    with pytest.raises(ValueError, match="sweep"):
        runtime.loop("sweep", Recorded("again", log))
    app = create_service_app(title="t", description="t", version="1", lifespan=None)
    async with runtime.running(app):
        await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["consumer"] == "ok"
    assert "the sweep stopped" in checks["loops"] and "sweep broke" in checks["loops"]
    assert "broker" not in checks  # no publisher


async def test_a_real_consumer_runner_applies_and_is_healthy_until_stopped(
    database: tuple[str, Table], kafka_settings: KafkaSettings, topic: str, group_id: str
) -> None:
    """The consumer's batch enqueues into the outbox; the relay publishes it elsewhere."""
    url, table = database
    engine = engine_of(url)
    publisher = EventPublisher(kafka_settings, client_id="test-runtime")
    relay = OutboxRelay(engine=engine, outbox=table, publisher=publisher)
    runtime = ServiceRuntime("test", engine=engine, publisher=publisher, relay=relay)
    echoed = f"{topic}-echo"
    await ensure_topics(kafka_settings, [echoed])

    async def handler(records: Sequence[Record[bytes]]) -> None:
        async with engine.begin() as conn:
            await enqueue(
                session=conn,
                outbox=table,
                messages=[Message(echoed, r.key, r.value) for r in records],
            )
        relay.notify()

    runner = runtime.consumer(
        "consumer",
        ConsumerRunner(
            settings=kafka_settings,
            group_id=group_id,
            decoders={topic: bytes},
            handler=handler,
            dead_letters=DeadLetterPolicy(publisher),
        ),
    )
    tail = await TopicTail(kafka_settings.bootstrap_servers, echoed).start()
    try:
        await runtime.start()
        await asyncio.wait_for(runner.started.wait(), 30)
        await publisher.publish(Message(topic, b"k", b"hello"))
        record = await tail.wait_for(lambda r: r.value == b"hello", within_s=30)
        assert record.key == b"k"
        await runtime.check_consumers()
        await runtime.check_loops()
    finally:
        await runtime.stop()
        await tail.stop()


async def test_ready_only_once_each_consumer_joined_its_group_even_without_partitions(
    database: tuple[str, Table], kafka_settings: KafkaSettings, group_id: str
) -> None:
    """Ready means the consumer has its partitions; a member left without any (more
    members than partitions) knows it and is ready too."""
    url, _ = database
    one_partition = kafka_settings.model_copy(update={"partitions": 1})
    topic = f"ready-{uuid.uuid4().hex[:10]}"
    await ensure_topics(one_partition, [topic])

    async def handler(records: Sequence[Record[bytes]]) -> None:
        return None

    runtimes: list[ServiceRuntime] = []
    runners: list[ConsumerRunner] = []
    for _ in range(2):
        runtime = ServiceRuntime("test", engine=engine_of(url))
        runners.append(
            runtime.consumer(
                "consumer",
                ConsumerRunner(
                    settings=kafka_settings,
                    group_id=group_id,
                    decoders={topic: bytes},
                    handler=handler,
                    dead_letters=DeadLetterPolicy(EventPublisher(kafka_settings, client_id="t")),
                ),
            )
        )
        runtimes.append(runtime)
    try:
        await runtimes[0].start()
        with pytest.raises(RuntimeError, match="no partitions yet"):
            await runtimes[0].check_consumers()
        await _ready(runtimes[0])
        consumer = runners[0].consumer
        assert consumer is not None and len(consumer.assignment()) == 1
        await runtimes[1].start()
        await _ready(runtimes[1])
        await _ready(runtimes[0])
        assignments = [len(r.consumer.assignment()) for r in runners if r.consumer is not None]
        assert sorted(assignments) in ([0, 1], [1, 1])  # [1, 1]: mid-rebalance
    finally:
        for runtime in runtimes:
            await runtime.stop()


async def _ready(runtime: ServiceRuntime, within_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            await runtime.check_consumers()
            return
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
