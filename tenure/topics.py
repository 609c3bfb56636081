"""``tenure topics``: create what is missing, report partition counts that differ, fix them.

The topics are the registry's (:mod:`shared.events.registry`), each with its DLQ."""

from __future__ import annotations

import sys

from shared.kafka.topics import (
    CannotFix,
    ensure_topics,
    fix_partition_count,
    partition_mismatches,
    registered_topics,
)
from shared.settings import KafkaSettings, ServiceSettings


async def run_topics(
    *, fix: bool = False, recreate: bool = False, kafka: KafkaSettings | None = None
) -> int:
    """0 when every topic exists with the configured partition count, else 1."""
    kafka = kafka or ServiceSettings().kafka
    topics = registered_topics()
    created = await ensure_topics(kafka, topics)
    print(f"created: {', '.join(created) or 'none (all exist)'}")
    mismatches = await partition_mismatches(kafka, topics)
    if not mismatches:
        print(f"partitions: every topic has {kafka.partitions}")
        return 0
    for mismatch in mismatches:
        print(
            f"partitions: {mismatch.topic} has {mismatch.actual}, "
            f"TENURE_KAFKA_PARTITIONS is {mismatch.expected}"
        )
    if not fix:
        print("run `tenure topics --fix` to add partitions (see docs/operations.md)")
        return 1
    code = 0
    for mismatch in mismatches:
        try:
            print(f"fixed: {await fix_partition_count(kafka, mismatch, recreate=recreate)}")
        except CannotFix as exc:
            print(f"not fixed: {exc}", file=sys.stderr)
            code = 1
    remaining = [
        m for m in await partition_mismatches(kafka, topics) if (m.actual or 0) < m.expected
    ]
    return 1 if remaining else code
