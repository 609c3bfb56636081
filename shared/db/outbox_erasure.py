"""An erasure reaches the outbox's kept copies too.

The relay keeps what it published for the replay window (``outbox_relayed``, for
``POST /v1/ops/replay``), so an erased customer's profile, runs and deliveries would
stay there, in clear, for up to that window. :func:`forget_in_relayed` drops every
kept message that names one of the erased ids, in the erasure's transaction; the
other messages of a pack stay, so a replay still republishes everyone else's.
Messages the erasure itself emits (the profile tombstone, the memberships it ends)
are queued after this runs and kept like any other: replaying them replays the
erasure.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.engine import driver_connection
from shared.db.outbox_pack import pack, unpack
from shared.kafka.producer import Message


def _needles(customer_ids: Iterable[str]) -> list[bytes]:
    """Each id as it appears in a key (raw UTF-8) and in a JSON value (escaped)."""
    found: set[bytes] = set()
    for customer_id in customer_ids:
        found.add(customer_id.encode())
        found.add(orjson.dumps(customer_id)[1:-1])
    return sorted(found)


def _names(message: Message, needles: list[bytes]) -> bool:
    return any(
        n in message.value or (message.key is not None and n in message.key) for n in needles
    )


async def forget_in_relayed(
    conn: AsyncConnection, relayed: Table, *, customer_ids: Iterable[str]
) -> int:
    """Drop the kept messages naming any of ``customer_ids``; returns how many."""
    needles = _needles(customer_ids)
    if not needles:
        return 0
    driver = await driver_connection(conn)
    rows = await driver.fetch(
        f"SELECT id, topic, key, value, packed FROM {relayed.fullname} t "
        "WHERE EXISTS (SELECT 1 FROM unnest($1::bytea[]) n "
        "WHERE position(n IN t.value) > 0 OR position(n IN coalesce(t.key, ''::bytea)) > 0) "
        "FOR UPDATE",
        needles,
    )
    dropped = 0
    for row in rows:
        if not row["packed"]:
            await driver.execute(f"DELETE FROM {relayed.fullname} WHERE id = $1", row["id"])
            dropped += 1
            continue
        messages = unpack(row["topic"], row["value"])
        kept = [m for m in messages if not _names(m, needles)]
        dropped += len(messages) - len(kept)
        if kept:
            await driver.execute(
                f"UPDATE {relayed.fullname} SET value = $2, messages = $3 WHERE id = $1",
                row["id"],
                pack(kept),
                len(kept),
            )
        else:
            await driver.execute(f"DELETE FROM {relayed.fullname} WHERE id = $1", row["id"])
    return dropped
