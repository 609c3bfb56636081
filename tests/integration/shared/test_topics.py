"""ensure_topics against the real broker: creates what is missing, with our partition count."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka.dlq import dlq_topic
from shared.kafka.topics import ensure_topics, with_dead_letters
from shared.settings import KafkaSettings


@pytest.fixture
async def admin(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(topics)
    assert all(t["error_code"] == 0 for t in described), described
    return {t["topic"]: len(t["partitions"]) for t in described}


async def test_ensure_topics_creates_missing_topics_once_with_the_configured_partitions(
    kafka_settings: KafkaSettings, admin: AIOKafkaAdminClient
) -> None:
    # Not the session's 3, so the count cannot come from a broker default by chance.
    settings = kafka_settings.model_copy(update={"partitions": 5})
    suffix = uuid.uuid4().hex[:10]
    first, second = f"topics-a-{suffix}", f"topics-b-{suffix}"
    wanted = with_dead_letters([first, second])
    assert wanted == [first, dlq_topic(first), second, dlq_topic(second)]
    assert not set(wanted) & set(await admin.list_topics())

    assert sorted(await ensure_topics(settings, wanted + [first])) == sorted(wanted)
    assert set(wanted) <= set(await admin.list_topics())
    assert await partition_counts(admin, wanted) == dict.fromkeys(wanted, 5)

    # Idempotent: nothing to create the second time, nothing changed.
    assert await ensure_topics(settings, wanted) == []
    assert await partition_counts(admin, wanted) == dict.fromkeys(wanted, 5)

    # Only the missing one of a mixed list is created, with its own settings' count.
    third = f"topics-c-{suffix}"
    assert await ensure_topics(kafka_settings, [first, third]) == [third]
    assert await partition_counts(admin, [first, third]) == {
        first: 5,
        third: kafka_settings.partitions,
    }
