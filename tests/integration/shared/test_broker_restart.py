"""After a broker lost its topics: readiness says so, `tenure topics` reports and fixes counts.

Each test has a broker of its own, since it needs one without Tenure's topics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.ingest.app import create_app
from shared.events import ALL_TOPICS
from shared.events.customer_events import TOPIC
from shared.kafka.topics import (
    CannotFix,
    ensure_topics,
    fix_partition_count,
    partition_mismatches,
)
from shared.settings import KafkaSettings
from tenure.embedded import EmbeddedBroker, free_port
from tenure.topics import run_topics
from tests.integration.ingest.conftest import ingest_settings


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaSettings]:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "broker.log")
    broker.start()
    try:
        yield KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            partitions=6,
            request_timeout_ms=3_000,
            publish_timeout_s=3.0,
        )
    finally:
        broker.stop()


async def _partitions(kafka: KafkaSettings, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def _auto_create(kafka: KafkaSettings, topic: str) -> None:
    """What a producer does to a broker that lost the topic: auto-creates it."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"k")
    finally:
        await producer.stop()


async def test_readiness_needs_the_topics(own_broker: KafkaSettings) -> None:
    app = create_app(ingest_settings(own_broker))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            answer = await client.get("/readyz")
            assert answer.status_code == 503, answer.text
            assert (
                "topics missing on the broker: customer.events" in answer.json()["checks"]["broker"]
            )
            assert await run_topics(kafka=own_broker) == 0
            answer = await client.get("/readyz")
            assert answer.status_code == 200, answer.text


async def test_topics_reports_and_fixes_a_partition_count_that_differs(
    own_broker: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _auto_create(own_broker, TOPIC)
    auto = await _partitions(own_broker, TOPIC)
    assert auto != 6  # the broker's default, not ours

    assert await run_topics(kafka=own_broker) == 1
    out = capsys.readouterr().out
    assert f"partitions: {TOPIC} has {auto}, TENURE_KAFKA_PARTITIONS is 6" in out
    assert len(await partition_mismatches(own_broker, ALL_TOPICS)) == 1

    # the embedded broker cannot add partitions: --fix alone says so and changes nothing
    (mismatch,) = await partition_mismatches(own_broker, [TOPIC])
    with pytest.raises(CannotFix, match="--recreate"):
        await fix_partition_count(own_broker, mismatch, recreate=False)
    assert await run_topics(kafka=own_broker, fix=True) == 1
    assert await _partitions(own_broker, TOPIC) == auto

    assert await run_topics(kafka=own_broker, fix=True, recreate=True) == 0
    assert await _partitions(own_broker, TOPIC) == 6
    assert await partition_mismatches(own_broker, ALL_TOPICS) == []


async def test_a_service_runtime_is_ready_only_with_its_topics(own_broker: KafkaSettings) -> None:
    from shared.db.engine import create_engine
    from shared.errors import PublishError
    from shared.kafka.producer import EventPublisher
    from shared.runtime import ServiceRuntime
    from shared.settings import DatabaseSettings

    publisher = EventPublisher(own_broker, client_id="readiness-test")
    engine = create_engine(DatabaseSettings())  # never connected: only the broker check runs
    runtime = ServiceRuntime(
        "svc", engine=engine, publisher=publisher, topics=("svc.in", "svc.out")
    )
    await publisher.start()
    try:
        broker_ready = runtime.readiness_checks()["broker"]
        with pytest.raises(PublishError, match="topics missing on the broker: svc.in, svc.out"):
            await broker_ready()
        await ensure_topics(own_broker, ["svc.in", "svc.out"])
        await broker_ready()
    finally:
        await publisher.stop()
        await engine.dispose()
