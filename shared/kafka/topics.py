"""Create the topics Tenure uses, with the configured partition count."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.kafka.dlq import dlq_topic
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


def with_dead_letters(topics: Iterable[str]) -> list[str]:
    return [name for topic in topics for name in (topic, dlq_topic(topic))]


async def ensure_topics(settings: KafkaSettings, topics: Iterable[str]) -> list[str]:
    """Create each missing topic; return the names that were created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            t,
                            num_partitions=settings.partitions,
                            replication_factor=settings.replication_factor,
                        )
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process")
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()
