"""Aliases: an anonymous id merged into a known customer id (``profiles``
``mergedFrom`` / ``mergedInto``), kept by each service that re-keys its rows in a table
``(previous_id PRIMARY KEY, customer_id[, merged_at])`` of its schema.

Chains stay flat: recording ``old → new`` also points every id already merged into
``old`` at ``new``, so one look-up resolves any id. Both functions run inside the
caller's transaction; neither commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.driver import execute, fetch


async def resolve_aliases(conn: AsyncConnection, table: str, ids: Iterable[str]) -> dict[str, str]:
    """``previous_id -> customer_id`` for those of ``ids`` merged into another id
    (``table``: the aliases table's full name)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await fetch(
        conn,
        f"SELECT previous_id, customer_id FROM {table} WHERE previous_id = ANY($1::text[])",
        wanted,
    )
    return {row[0]: row[1] for row in rows}


async def record_alias(
    conn: AsyncConnection,
    table: str,
    *,
    previous_id: str,
    customer_id: str,
    merged_at: datetime | None = None,
) -> None:
    """Point ``previous_id``, and every id already merged into it, at ``customer_id``
    (``merged_at``: for a table that keeps when, else omitted)."""
    await execute(
        conn,
        f"UPDATE {table} SET customer_id = $2 WHERE customer_id = $1",
        previous_id,
        customer_id,
    )
    columns, values = "previous_id, customer_id", "$1, $2"
    params: list[object] = [previous_id, customer_id]
    if merged_at is not None:
        columns, values = f"{columns}, merged_at", f"{values}, $3"
        params.append(merged_at)
    await execute(
        conn,
        f"INSERT INTO {table} ({columns}) VALUES ({values}) "
        "ON CONFLICT (previous_id) DO UPDATE SET customer_id = EXCLUDED.customer_id",
        *params,
    )
