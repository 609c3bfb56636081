"""Segment definitions: admin reads and writes, the active set, backfill state and locks.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.repository.tables import (
    memberships,
    profiles,
    segment_versions,
    segments,
)
from shared.db.locks import lock_name, xact_lock


async def load_active_segments(conn: AsyncConnection) -> list[Any]:
    rows = await conn.execute(
        select(segments.c.id, segments.c.version, segments.c.definition)
        .where(segments.c.deleted_at.is_(None))
        .order_by(segments.c.id)
    )
    return list(rows)


async def unfinished_backfills(conn: AsyncConnection) -> list[str]:
    """Live segments whose current version has not been backfilled."""
    rows = await conn.execute(
        select(segments.c.id)
        .where(segments.c.deleted_at.is_(None), segments.c.backfilled_version < segments.c.version)
        .order_by(segments.c.id)
    )
    return list(rows.scalars())


@dataclass(frozen=True, slots=True)
class BackfillState:
    """A segment as stored, seen by a backfill holding its lock."""

    version: int
    backfilled_version: int
    deleted: bool
    #: the last customer id the current version's backfill has done (None: none)
    cursor: str | None = None


async def lock_segment_backfill(conn: AsyncConnection, *, segment_id: str) -> BackfillState | None:
    """Wait until no other transaction backfills or deletes the segment; return it as it
    is then (None if it does not exist): a backfill that waited may find its work done
    or further on, its version outdated by an edit, or the segment deleted."""
    await lock_segment(conn, segment_id=segment_id)
    row = (
        await conn.execute(
            select(
                segments.c.version,
                segments.c.backfilled_version,
                segments.c.deleted_at,
                segments.c.backfill_cursor,
            ).where(segments.c.id == segment_id)
        )
    ).one_or_none()
    if row is None:
        return None
    return BackfillState(
        row.version, row.backfilled_version, row.deleted_at is not None, row.backfill_cursor
    )


async def chunk_end(conn: AsyncConnection, *, after: str | None, size: int) -> str | None:
    """The last customer id of the ``size`` profiles after ``after`` in key order; None
    when fewer are left (the chunk runs to the end)."""
    query = select(profiles.c.customer_id).order_by(profiles.c.customer_id)
    if after is not None:
        query = query.where(profiles.c.customer_id > after)
    value: str | None = await conn.scalar(query.offset(size - 1).limit(1))
    return value


async def record_backfill_progress(
    conn: AsyncConnection, *, segment_id: str, version: int, cursor: str | None
) -> None:
    """The segment's backfill at ``version`` has done every customer up to ``cursor``
    (None: every customer: it is backfilled). Another backfill of the version may be
    further on already: the cursor never goes back."""
    current = (segments.c.id == segment_id) & (segments.c.version == version)
    if cursor is None:
        values: dict[str, Any] = {"backfilled_version": version, "backfill_cursor": None}
        await conn.execute(update(segments).where(current).values(**values))
        return
    await conn.execute(
        update(segments)
        .where(current, segments.c.backfilled_version < version)
        .values(backfill_cursor=func.greatest(segments.c.backfill_cursor, cursor))
    )


async def lock_segment(conn: AsyncConnection, *, segment_id: str) -> None:
    """The segment's transaction-scoped lock: backfills and deletion take turns."""
    await xact_lock(conn, lock_name("segmenter", "segment", item=segment_id))


async def segments_stamp(conn: AsyncConnection) -> tuple[Any, ...]:
    """Changes whenever a segment is created, edited or deleted (cheap to poll)."""
    row = (
        await conn.execute(
            select(func.count(), func.max(segments.c.updated_at), func.sum(segments.c.version))
            .select_from(segments)
            .where(segments.c.deleted_at.is_(None))
        )
    ).one()
    return tuple(row)


async def get_segment(conn: AsyncConnection, *, segment_id: str) -> Any | None:
    return (
        await conn.execute(
            select(segments).where(segments.c.id == segment_id, segments.c.deleted_at.is_(None))
        )
    ).one_or_none()


async def list_segments(
    conn: AsyncConnection, *, after: str | None = None, limit: int | None = None
) -> list[Any]:
    """Live segments by id: every one, or a page of ``limit`` after ``after``."""
    query = select(segments).where(segments.c.deleted_at.is_(None))
    if after is not None:
        query = query.where(segments.c.id > after)
    return list(await conn.execute(query.order_by(segments.c.id).limit(limit)))


async def member_counts(
    conn: AsyncConnection, *, segment_ids: Sequence[str] | None = None
) -> dict[str, int]:
    """Members per segment: of ``segment_ids`` only (a page), or of every segment."""
    query = select(memberships.c.segment_id, func.count()).group_by(memberships.c.segment_id)
    if segment_ids is not None:
        query = query.where(memberships.c.segment_id.in_(list(segment_ids)))
    rows = await conn.execute(query)
    return dict(rows.tuples().all())


async def segment_exists(conn: AsyncConnection, *, segment_id: str) -> bool:
    """Whether the id is taken, by a live segment or a deleted one (ids are never reused)."""
    found = await conn.scalar(select(func.count()).where(segments.c.id == segment_id))
    return bool(found)


async def save_segment_version(
    conn: AsyncConnection,
    *,
    segment_id: str,
    name: str,
    description: str,
    definition: dict[str, Any],
    version: int,
) -> Any:
    """Insert (version 1) or update the segment, and keep the version's definition."""
    values = {
        "name": name,
        "description": description,
        "definition": definition,
        "version": version,
        "backfill_cursor": None,
        "updated_at": func.now(),
    }
    if version == 1:
        await conn.execute(segments.insert().values(id=segment_id, **values))
    else:
        await conn.execute(update(segments).where(segments.c.id == segment_id).values(**values))
    await conn.execute(
        segment_versions.insert().values(
            segment_id=segment_id, version=version, definition=definition
        )
    )
    return await get_segment(conn, segment_id=segment_id)


async def segment_history(conn: AsyncConnection, *, segment_id: str) -> list[Any]:
    rows = await conn.execute(
        select(segment_versions)
        .where(segment_versions.c.segment_id == segment_id)
        .order_by(segment_versions.c.version)
    )
    return list(rows)


async def retire_segment(conn: AsyncConnection, *, segment_id: str) -> list[str]:
    """Soft-delete the segment and end its memberships; return the customers who left.

    A running backfill of the segment finishes first (its memberships end too); one
    that starts after finds the segment deleted.
    """
    await lock_segment(conn, segment_id=segment_id)
    await conn.execute(
        update(segments)
        .where(segments.c.id == segment_id)
        .values(deleted_at=func.now(), updated_at=func.now())
    )
    ended = await conn.execute(
        delete(memberships)
        .where(memberships.c.segment_id == segment_id)
        .returning(memberships.c.customer_id)
    )
    return sorted(row.customer_id for row in ended)


async def members_page(
    conn: AsyncConnection, *, segment_id: str, after: str | None, limit: int
) -> list[str]:
    stmt = select(memberships.c.customer_id).where(memberships.c.segment_id == segment_id)
    if after is not None:
        stmt = stmt.where(memberships.c.customer_id > after)
    rows = await conn.execute(stmt.order_by(memberships.c.customer_id).limit(limit))
    return [row.customer_id for row in rows]
