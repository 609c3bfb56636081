"""The segmenter's outbox: messages in, in the caller's transaction; none commits.

:func:`publish_profiles` is the one way the jobs and routes beside the consumer (the
recommendations recompute, the loyalty refresh and redemptions) announce a customer's
new state on ``profiles``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.messages import profile_message
from services.segmenter.models import outbox
from services.segmenter.repository.profiles import bump_versions, load_profiles, load_scores
from services.segmenter.repository.recommendations import load_recommendations
from shared.db.driver import fetch
from shared.db.outbox import enqueue as enqueue_in_outbox
from shared.kafka.producer import Message


async def enqueue(conn: AsyncConnection, *, messages: Sequence[Message]) -> None:
    """Insert messages into the segmenter's outbox, in order, in the caller's transaction."""
    await enqueue_in_outbox(session=conn, outbox=outbox, messages=messages)


async def publish_profiles(conn: AsyncConnection, *, ids: Sequence[str], now: datetime) -> None:
    """A new ``profiles`` message for each customer, with their stored recommendations."""
    if not ids:
        return
    versions = await bump_versions(conn, ids=ids)
    working = await load_profiles(conn, ids=ids, lock=False)
    scores = await load_scores(conn, ids=ids)
    lists = await load_recommendations(conn, ids=ids)
    messages = [
        profile_message(
            profile,
            versions[customer_id],
            scores.get(customer_id, {}),
            now,
            recommendations=lists.get(customer_id),
        )
        for customer_id, profile in working.items()
    ]
    await enqueue(conn, messages=messages)


async def profiles_changed_since(
    conn: AsyncConnection, *, since: datetime, after: str, limit: int
) -> list[str]:
    """Up to ``limit`` ids (in order, after ``after``) of profiles written at or after
    ``since``."""
    rows = await fetch(
        conn,
        "SELECT customer_id FROM segmenter.profiles WHERE updated_at >= $1 "
        "AND customer_id > $2 ORDER BY customer_id LIMIT $3",
        since,
        after,
        limit,
    )
    return [row[0] for row in rows]
