"""Erasing a customer (GDPR), and holding erasures off while a backfill writes.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.models import membership_timers, outbox_relayed
from services.segmenter.repository import recommendations as recommend_store
from services.segmenter.repository.profiles import load_profiles
from services.segmenter.repository.reads import aliases_of
from services.segmenter.repository.tables import (
    aliases,
    event_rollups,
    event_stats,
    memberships,
    profiles,
)
from shared.db import timers as durable_timers
from shared.db.locks import lock_name, xact_lock
from shared.db.outbox_erasure import forget_in_relayed

#: held shared by each backfill transaction, exclusively by an erasure (see
#: :func:`hold_off_erasures`)
ERASURE_LOCK = lock_name("segmenter", "erasure")


async def hold_off_erasures(conn: AsyncConnection) -> None:
    """Make erasures wait until this transaction ends.

    A backfill writes the memberships of every matching customer without locking
    their profiles (a million row locks), so an erasure could delete a customer's
    memberships before the backfill's insert of one commits. Erasures are rare and
    short; one waits at most for the backfill of one segment.
    """
    await xact_lock(conn, ERASURE_LOCK, shared=True)


async def erase_customer(
    conn: AsyncConnection, *, customer_id: str
) -> tuple[list[str], list[tuple[str, str]], int]:
    """Delete everything about a customer and the ids merged into them.

    Returns the erased ids, the ``(segment_id, customer_id)`` memberships that ended
    and the version the deletion message should carry.
    """
    await xact_lock(conn, ERASURE_LOCK)
    ids = [customer_id, *await aliases_of(conn, customer_id=customer_id)]
    await forget_in_relayed(conn, outbox_relayed, customer_ids=ids)
    # The profile rows first: a batch writing them (its stats, rollups, memberships
    # too) commits before the deletes below look, or waits and then finds them gone.
    # Then the timers: a sweep that claimed one commits its memberships first, and
    # a later sweep skips the locked row.
    await load_profiles(conn, ids=ids)
    await durable_timers.cancel(conn, table=membership_timers, keys=ids)
    version_row = (
        await conn.execute(
            select(func.max(profiles.c.version)).where(profiles.c.customer_id.in_(ids))
        )
    ).scalar()
    ended = await conn.execute(
        delete(memberships)
        .where(memberships.c.customer_id.in_(ids))
        .returning(memberships.c.segment_id, memberships.c.customer_id)
    )
    exited = sorted((row.segment_id, row.customer_id) for row in ended)
    await recommend_store.erase(conn, ids=ids)
    for table in (event_stats, event_rollups, profiles):
        await conn.execute(delete(table).where(table.c.customer_id.in_(ids)))
    await conn.execute(
        delete(aliases).where((aliases.c.customer_id.in_(ids)) | (aliases.c.previous_id.in_(ids)))
    )
    return ids, exited, (version_row or 0) + 1
