"""Suppressed customer ids: their events are dropped.

Every function runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.repository.tables import suppressions
from shared.db.driver import fetch


async def suppressed_among(conn: AsyncConnection, *, ids: Iterable[str]) -> set[str]:
    """The ids among ``ids`` that are suppressed."""
    wanted = list(set(ids))
    if not wanted:
        return set()
    rows = await fetch(
        conn,
        "SELECT customer_id FROM segmenter.suppressions WHERE customer_id = ANY($1::text[])",
        wanted,
    )
    return {row[0] for row in rows}


async def suppress(
    conn: AsyncConnection, *, ids: Sequence[str], at: datetime, reason: str
) -> list[str]:
    """Suppress ``ids``; return those that were not suppressed already."""
    if not ids:
        return []
    result = await conn.execute(
        pg_insert(suppressions)
        .values([{"customer_id": i, "suppressed_at": at, "reason": reason} for i in ids])
        .on_conflict_do_nothing()
        .returning(suppressions.c.customer_id)
    )
    return sorted(result.scalars())


async def suppression(conn: AsyncConnection, *, customer_id: str) -> Any | None:
    query = select(suppressions).where(suppressions.c.customer_id == customer_id)
    return (await conn.execute(query)).one_or_none()


async def lift_suppression(conn: AsyncConnection, *, customer_id: str) -> bool:
    result = await conn.execute(
        delete(suppressions).where(suppressions.c.customer_id == customer_id)
    )
    return bool(result.rowcount)


async def suppressions_page(conn: AsyncConnection, *, after: str | None, limit: int) -> list[Any]:
    query = select(suppressions).order_by(suppressions.c.customer_id).limit(limit)
    if after is not None:
        query = query.where(suppressions.c.customer_id > after)
    return list(await conn.execute(query))
