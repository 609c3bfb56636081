"""The session's real servers answer: a produced message is consumed, a query runs."""

from __future__ import annotations

import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.settings import KafkaSettings
from tests.conftest import NewDatabase


async def test_broker_round_trip(kafka_settings: KafkaSettings, group_id: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_settings.bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await consumer.getone()
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"k", b"hello")


async def test_new_database_is_empty_and_writable(new_database: NewDatabase) -> None:
    url = await new_database()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE t (x int)")
        assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await conn.close()
