"""Memberships and each customer's membership timer.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.models import membership_timers
from shared.db import timers as durable_timers
from shared.db.driver import fetch


async def load_memberships(conn: AsyncConnection, *, ids: Iterable[str]) -> dict[str, set[str]]:
    wanted = list(set(ids))
    found: dict[str, set[str]] = defaultdict(set)
    if not wanted:
        return found
    rows = await fetch(
        conn,
        "SELECT customer_id, segment_id FROM segmenter.memberships "
        "WHERE customer_id = ANY($1::text[])",
        wanted,
    )
    for customer_id, segment_id in rows:
        found[customer_id].add(segment_id)
    return found


async def add_memberships(
    conn: AsyncConnection, *, rows: Sequence[tuple[str, str, int, datetime]]
) -> set[tuple[str, str]]:
    """Insert ``(segment_id, customer_id, segment_version, entered_at)`` rows; return the
    ``(segment_id, customer_id)`` pairs really inserted, so a change is emitted once even
    when a backfill raced this transaction."""
    if not rows:
        return set()
    segment_ids, customer_ids, versions, entered = (
        list(column) for column in zip(*rows, strict=True)
    )
    inserted = await fetch(
        conn,
        """
        INSERT INTO segmenter.memberships (segment_id, customer_id, segment_version, entered_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[])
        ON CONFLICT DO NOTHING
        RETURNING segment_id, customer_id
        """,
        segment_ids,
        customer_ids,
        versions,
        entered,
    )
    return {(row[0], row[1]) for row in inserted}


async def remove_memberships(
    conn: AsyncConnection, *, rows: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Delete ``(segment_id, customer_id)`` rows; return the pairs really deleted."""
    if not rows:
        return set()
    deleted = await fetch(
        conn,
        """
        DELETE FROM segmenter.memberships m
        USING unnest($1::text[], $2::text[]) AS r(segment_id, customer_id)
        WHERE m.segment_id = r.segment_id AND m.customer_id = r.customer_id
        RETURNING m.segment_id, m.customer_id
        """,
        [segment_id for segment_id, _ in rows],
        [customer_id for _, customer_id in rows],
    )
    return {(row[0], row[1]) for row in deleted}


async def set_timers(conn: AsyncConnection, *, due: Mapping[str, datetime | None]) -> None:
    """Store each customer's next re-evaluation instant; None removes the timer."""
    await durable_timers.schedule(
        conn,
        table=membership_timers,
        rows=[(c, at) for c, at in due.items() if at is not None],
    )
    await durable_timers.cancel(
        conn, table=membership_timers, keys=[c for c, at in due.items() if at is None]
    )
