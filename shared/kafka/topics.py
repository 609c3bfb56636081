"""Create the topics Tenure uses, with the configured partition count; report and fix counts."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, TopicAlreadyExistsError

from shared.events.registry import TOPICS
from shared.kafka.dlq import dlq_topic
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


def with_dead_letters(topics: Iterable[str]) -> list[str]:
    return [name for topic in topics for name in (topic, dlq_topic(topic))]


def registered_topics() -> list[str]:
    """Every topic of the registry (:mod:`shared.events.registry`), each with its DLQ."""
    return [name for topic in TOPICS for name in (topic.name, topic.dlq)]


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


@dataclass(frozen=True, slots=True)
class PartitionCount:
    """A topic whose partition count is not the configured one (``actual`` None: missing)."""

    topic: str
    actual: int | None
    expected: int


async def partition_mismatches(
    settings: KafkaSettings, topics: Iterable[str]
) -> list[PartitionCount]:
    """The topics missing or with a partition count other than ``settings.partitions``.

    A broker that lost its topics (the embedded one keeps them in memory) creates a
    topic on its first use with its own default count: 4 partitions instead of 6.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        wanted = list(dict.fromkeys(topics))
        existing = set(await admin.list_topics())
        counts = {
            t["topic"]: len(t["partitions"])
            for t in await admin.describe_topics([t for t in wanted if t in existing])
            if t["error_code"] == 0
        }
    finally:
        await admin.close()
    return [
        PartitionCount(topic, counts.get(topic), settings.partitions)
        for topic in wanted
        if counts.get(topic) != settings.partitions
    ]


class CannotFix(Exception):
    """The broker cannot add partitions (the embedded one): only recreating the topic would."""


async def fix_partition_count(
    settings: KafkaSettings, mismatch: PartitionCount, *, recreate: bool
) -> str:
    """Bring a topic with too few partitions to the configured count; say what was done.

    Partitions are added where the broker can (Apache Kafka): keys then hash to
    other partitions, so one customer's events before and after may be read out
    of order once. Where it cannot, ``recreate=True`` deletes the topic, with its
    messages, and creates it anew; without it :class:`CannotFix` is raised. A topic
    with more partitions than configured is left alone (Kafka cannot remove any).
    """
    if mismatch.actual is None or mismatch.actual >= mismatch.expected:
        return f"{mismatch.topic}: left as it is"
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.client_id}-admin"
    )
    await admin.start()
    try:
        try:
            await admin.create_partitions(
                {mismatch.topic: NewPartitions(total_count=mismatch.expected)}
            )
            return f"{mismatch.topic}: partitions added, {mismatch.actual} -> {mismatch.expected}"
        except (IncompatibleBrokerVersion, KafkaError) as exc:
            if not recreate:
                raise CannotFix(
                    f"{mismatch.topic}: the broker cannot add partitions ({exc!r}); "
                    "--recreate deletes the topic, with its messages, and creates it anew"
                ) from None
        await admin.delete_topics([mismatch.topic])
        await admin.create_topics(
            [NewTopic(mismatch.topic, mismatch.expected, settings.replication_factor)]
        )
        return f"{mismatch.topic}: recreated with {mismatch.expected} partitions (messages lost)"
    finally:
        await admin.close()
