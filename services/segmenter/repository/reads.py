"""Reads for the API: a customer's rows, the profiles a rule matches.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from services.segmenter.offloop import execute_off_loop
from services.segmenter.repository.tables import (
    aliases,
    event_stats,
    memberships,
    profiles,
)


async def profile_row(conn: AsyncConnection, *, customer_id: str) -> Any | None:
    return (
        await conn.execute(select(profiles).where(profiles.c.customer_id == customer_id))
    ).one_or_none()


async def aliases_of(conn: AsyncConnection, *, customer_id: str) -> list[str]:
    rows = await conn.execute(
        select(aliases.c.previous_id)
        .where(aliases.c.customer_id == customer_id)
        .order_by(aliases.c.previous_id)
    )
    return [row.previous_id for row in rows]


async def memberships_of(conn: AsyncConnection, *, customer_id: str) -> list[Any]:
    rows = await conn.execute(
        select(memberships)
        .where(memberships.c.customer_id == customer_id)
        .order_by(memberships.c.segment_id)
    )
    return list(rows)


async def event_stats_of(conn: AsyncConnection, *, customer_id: str) -> list[Any]:
    rows = await conn.execute(
        select(event_stats)
        .where(event_stats.c.customer_id == customer_id)
        .order_by(event_stats.c.event_name)
    )
    return list(rows)


async def matching_profiles(
    conn: AsyncConnection, *, predicate: ColumnElement[bool], sample_size: int
) -> tuple[int, list[str]]:
    """How many profiles match ``predicate``, and the first ``sample_size`` ids of them.

    A rule's SQL can be large (thousands of bind parameters): it is compiled in a
    thread, not on the event loop."""
    count = await execute_off_loop(
        conn, lambda: select(func.count()).select_from(profiles).where(predicate)
    )
    sample = await execute_off_loop(
        conn,
        lambda: (
            select(profiles.c.customer_id)
            .where(predicate)
            .order_by(profiles.c.customer_id)
            .limit(sample_size)
        ),
    )
    return count.scalar() or 0, list(sample.scalars())
