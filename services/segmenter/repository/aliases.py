"""Aliases: an anonymous id merged into a known customer id, and the merge's moves.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.repository.tables import aliases as alias_table
from services.segmenter.repository.tables import event_rollups, event_stats
from shared.db import aliases
from shared.db.driver import fetch

_ALIASES = alias_table.fullname


async def resolve_aliases(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, str]:
    """``previous_id -> customer_id`` for the ids that were merged into another."""
    return await aliases.resolve_aliases(conn, _ALIASES, ids)


async def merged_or_suppressed(
    conn: AsyncConnection, *, ids: Iterable[str]
) -> tuple[dict[str, str], set[str]]:
    """Which of ``ids`` have been merged into another id (``previous_id -> customer_id``)
    and which are suppressed: one statement for the consumer's check under its locks."""
    wanted = list(set(ids))
    if not wanted:
        return {}, set()
    rows = await fetch(
        conn,
        """
        SELECT previous_id, customer_id FROM segmenter.aliases
        WHERE previous_id = ANY($1::text[])
        UNION ALL
        SELECT customer_id, NULL FROM segmenter.suppressions
        WHERE customer_id = ANY($1::text[])
        """,
        wanted,
    )
    moved = {row[0]: row[1] for row in rows if row[1] is not None}
    return moved, {row[0] for row in rows if row[1] is None}


async def record_alias(conn: AsyncConnection, *, previous_id: str, customer_id: str) -> None:
    """Point ``previous_id`` (and every id already merged into it) at ``customer_id``."""
    await aliases.record_alias(conn, _ALIASES, previous_id=previous_id, customer_id=customer_id)


async def reserve_profiles(conn: AsyncConnection, *, ids: Sequence[str]) -> set[str]:
    """Take the profile rows of ``ids``, inserting a placeholder where there is none;
    return the ids that got one (the caller deletes or overwrites it before commit).

    An alias merge does this before it reads the two profiles. A concurrent batch's
    uncommitted first insert of either id is then waited for (a unique-key
    conflict) instead of missed, and that batch's own insert waits for the merge.
    The placeholder's first and last seen (``infinity``, ``-infinity``) give way to
    any real instant in an upsert's ``LEAST`` / ``GREATEST``.
    """
    rows = await fetch(
        conn,
        """
        INSERT INTO segmenter.profiles AS p
            (customer_id, traits, trait_times, first_seen_at, last_seen_at, version)
        SELECT id, '{}', '{}', 'infinity', '-infinity', 0
        FROM unnest($1::text[]) AS id ORDER BY id
        ON CONFLICT (customer_id) DO NOTHING
        RETURNING customer_id
        """,
        sorted(set(ids)),
    )
    return {row[0] for row in rows}


async def move_activity(conn: AsyncConnection, *, from_id: str, to_id: str) -> None:
    """Add ``from_id``'s event statistics and rollups to ``to_id``'s, then drop them."""
    await conn.execute(
        text(
            """
            INSERT INTO segmenter.event_stats AS s
                (customer_id, event_name, count, value_sum, first_at, last_at)
            SELECT :to_id, event_name, count, value_sum, first_at, last_at
            FROM segmenter.event_stats WHERE customer_id = :from_id
            ON CONFLICT (customer_id, event_name) DO UPDATE SET
                count = s.count + excluded.count,
                value_sum = s.value_sum + excluded.value_sum,
                first_at = LEAST(s.first_at, excluded.first_at),
                last_at = GREATEST(s.last_at, excluded.last_at)
            """
        ),
        {"from_id": from_id, "to_id": to_id},
    )
    await conn.execute(
        text(
            """
            INSERT INTO segmenter.event_rollups AS r
                (customer_id, event_name, day, dimension, count, value_sum)
            SELECT :to_id, event_name, day, dimension, count, value_sum
            FROM segmenter.event_rollups WHERE customer_id = :from_id
            ON CONFLICT (customer_id, event_name, day, dimension) DO UPDATE SET
                count = r.count + excluded.count,
                value_sum = r.value_sum + excluded.value_sum
            """
        ),
        {"from_id": from_id, "to_id": to_id},
    )
    await conn.execute(delete(event_stats).where(event_stats.c.customer_id == from_id))
    await conn.execute(delete(event_rollups).where(event_rollups.c.customer_id == from_id))
