"""The segmenter's outbox.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.models import outbox
from shared.db.outbox import enqueue as enqueue_in_outbox
from shared.kafka.producer import Message


async def enqueue(conn: AsyncConnection, *, messages: Sequence[Message]) -> None:
    """Insert messages into the segmenter's outbox, in order, in the caller's transaction."""
    await enqueue_in_outbox(session=conn, outbox=outbox, messages=messages)
