"""Message claims: each consumed message is applied once, however often it is delivered.

A consumer claims its batch's message ids in the transaction that applies the
batch (:func:`claim_messages`) and applies only the ids it claimed: a message
redelivered after a crash or a rebalance finds its id taken and is skipped; a
rolled-back batch releases its claims with everything else.

Ids are kept as ``md5(id)::uuid``: 16 bytes compared as bytes, where the text ids
were 30–40 bytes compared by the collation. Claims older than the retention are
forgotten by :func:`claims_cleanup`, a periodic job of the service's runtime
(a redelivery comes within minutes; a week is the default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Column, DateTime, MetaData, Table, Uuid, delete, func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.driver import fetch
from shared.stopping import PeriodicJob

#: how often :func:`claims_cleanup` forgets old claims
CLEANUP_INTERVAL_S = 600.0


def processed_messages_table(metadata: MetaData, name: str = "processed_messages") -> Table:
    """The claims table in the metadata's schema: ``message_key`` (``md5(id)::uuid``) and
    ``processed_at`` (indexed, for the cleanup)."""
    return Table(
        name,
        metadata,
        Column("message_key", Uuid, primary_key=True),
        Column(
            "processed_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.now(),
            index=True,
        ),
    )


async def claim_messages(
    conn: AsyncConnection, *, table: Table, message_ids: Sequence[str]
) -> set[str]:
    """Record message ids; return those not seen before (the ones to apply).

    Inserted in key order, so that a batch's inserts walk the index once. A
    concurrent transaction claiming the same id makes this one wait for it (the
    unique key), then skip the id if it committed.
    """
    if not message_ids:
        return set()
    rows = await fetch(
        conn,
        f"""
        WITH given AS (
            SELECT DISTINCT id, md5(id)::uuid AS key FROM unnest($1::text[]) AS id
        ), claimed AS (
            INSERT INTO {table.fullname} (message_key)
            SELECT key FROM given ORDER BY key
            ON CONFLICT DO NOTHING
            RETURNING message_key
        )
        SELECT given.id FROM given JOIN claimed ON claimed.message_key = given.key
        """,
        list(message_ids),
    )
    return {row[0] for row in rows}


async def forget_processed_before(conn: AsyncConnection, *, table: Table, before: datetime) -> int:
    """Drop the claims made before ``before``; return how many."""
    result = await conn.execute(delete(table).where(table.c.processed_at < before))
    return result.rowcount or 0


def claims_cleanup(
    *,
    engine: AsyncEngine,
    table: Table,
    clock: Callable[[], datetime],
    retention: timedelta,
    interval_s: float = CLEANUP_INTERVAL_S,
) -> PeriodicJob:
    """A periodic job forgetting the claims older than ``retention`` (by ``clock``)."""

    async def forget() -> int:
        async with engine.begin() as conn:
            return await forget_processed_before(conn, table=table, before=clock() - retention)

    return PeriodicJob(
        forget, name=f"forgetting old claims of {table.fullname}", interval_s=interval_s
    )
