"""Read what waits in a service's outbox, packs unpacked, as the relay would send it;
read what was relayed back through the topic registry."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.outbox_pack import unpack
from shared.events import registry
from shared.kafka.producer import Message


async def queued_messages(conn: AsyncConnection, *, schema: str = "segmenter") -> list[Message]:
    rows = await conn.execute(
        text(f"SELECT topic, key, value, packed FROM {schema}.outbox ORDER BY id")
    )
    messages: list[Message] = []
    for topic, key, value, packed in rows:
        messages += unpack(topic, value) if packed else [Message(topic, key, value)]
    return messages


async def queued_payloads(
    conn: AsyncConnection, *, topic: str, schema: str = "segmenter"
) -> list[dict[str, Any]]:
    """The JSON payloads queued for ``topic``, in the order they would be sent."""
    return [
        orjson.loads(m.value)
        for m in await queued_messages(conn, schema=schema)
        if m.topic == topic
    ]


def read_back(record: ConsumerRecord[bytes, bytes]) -> Any:
    """The payload of a relayed message, decoded by the registry's decoder of its topic;
    asserts the topic's encoder writes the same JSON again (nothing missing, renamed or
    extra) and the key is the registered one."""
    registered = registry.topic(record.topic)
    payload = registered.decode(record.value)
    assert orjson.loads(registered.encode(payload)) == orjson.loads(record.value), record.value
    assert registered.key(payload) == record.key, record.value
    return payload
