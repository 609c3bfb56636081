"""Coupon pools: codes uploaded through the admin API, each drawn at most once, for one
dispatch. A draw is keyed by ``(pool, dispatch_id)``: a retried or redelivered dispatch
finds the code it already drew, so a retry never burns a second one. Concurrent draws
take different codes (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.driver import execute, fetch
from shared.db.engine import driver_connection
from shared.http.problems import Conflict, NotFound

SCHEMA = "dispatcher"


@dataclass(frozen=True)
class PoolStats:
    pool_id: str
    name: str
    low_water: int
    available: int
    issued: int
    created_at: datetime


async def create_pool(
    conn: AsyncConnection, *, pool_id: str, name: str, low_water: int, now: datetime
) -> bool:
    rows = await fetch(
        conn,
        f"INSERT INTO {SCHEMA}.coupon_pools (pool_id, name, low_water, created_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (pool_id) DO NOTHING RETURNING pool_id",
        pool_id,
        name,
        low_water,
        now,
    )
    return bool(rows)


async def add_codes(conn: AsyncConnection, *, pool_id: str, codes: Sequence[str]) -> int:
    """Add codes (duplicates of codes already in the pool are ignored); how many were new."""
    await execute(
        conn,
        'CREATE TEMPORARY TABLE IF NOT EXISTS coupon_upload (code text COLLATE "C") ON COMMIT DROP',
    )
    await execute(conn, "TRUNCATE coupon_upload")
    driver = await driver_connection(conn)
    await driver.copy_records_to_table("coupon_upload", records=[(c,) for c in codes])
    rows = await fetch(
        conn,
        f"INSERT INTO {SCHEMA}.coupons (pool_id, code) "
        "SELECT DISTINCT $1, code FROM coupon_upload ORDER BY 2 "
        "ON CONFLICT (pool_id, code) DO NOTHING RETURNING code",
        pool_id,
    )
    return len(rows)


async def draw(
    conn: AsyncConnection, *, wanted: Iterable[tuple[str, str, str]], now: datetime
) -> dict[tuple[str, str], str]:
    """Codes for ``(pool_id, dispatch_id, customer_id)``: the one already drawn for that
    dispatch, else a free one; a pool without free codes is missing from the answer."""
    out: dict[tuple[str, str], str] = {}
    for pool_id, dispatch_id, customer_id in sorted(set(wanted)):
        rows = await fetch(
            conn,
            f"""
            WITH held AS (
                SELECT code FROM {SCHEMA}.coupons WHERE pool_id = $1 AND dispatch_id = $2
            ), free AS (
                SELECT code FROM {SCHEMA}.coupons
                WHERE pool_id = $1 AND dispatch_id IS NULL AND NOT EXISTS (SELECT 1 FROM held)
                ORDER BY code LIMIT 1 FOR UPDATE SKIP LOCKED
            ), taken AS (
                UPDATE {SCHEMA}.coupons c SET dispatch_id = $2, customer_id = $3, issued_at = $4
                FROM free WHERE c.pool_id = $1 AND c.code = free.code
                RETURNING c.code
            )
            SELECT code FROM held UNION ALL SELECT code FROM taken
            """,
            pool_id,
            dispatch_id,
            customer_id,
            now,
        )
        if rows:
            out[(pool_id, dispatch_id)] = rows[0][0]
    return out


async def pool_stats(
    conn: AsyncConnection, *, pool_ids: Sequence[str] | None = None
) -> list[PoolStats]:
    rows = await fetch(
        conn,
        f"""
        SELECT p.pool_id, p.name, p.low_water, p.created_at,
               count(c.code) FILTER (WHERE c.dispatch_id IS NULL) AS available,
               count(c.code) FILTER (WHERE c.dispatch_id IS NOT NULL) AS issued
        FROM {SCHEMA}.coupon_pools p LEFT JOIN {SCHEMA}.coupons c USING (pool_id)
        WHERE $1::text[] IS NULL OR p.pool_id = ANY($1::text[])
        GROUP BY p.pool_id ORDER BY p.pool_id
        """,
        None if pool_ids is None else list(pool_ids),
    )
    return [
        PoolStats(
            pool_id=r["pool_id"],
            name=r["name"],
            low_water=r["low_water"],
            available=r["available"],
            issued=r["issued"],
            created_at=r["created_at"],
        )
        for r in rows
    ]


async def code_of(conn: AsyncConnection, *, code: str) -> Any | None:
    rows = await fetch(
        conn,
        f"SELECT pool_id, code, dispatch_id, customer_id, issued_at FROM {SCHEMA}.coupons "
        "WHERE code = $1",
        code,
    )
    return rows[0] if rows else None


# --- the admin API's operations, one transaction each ----------------------------------


async def create_pool_once(
    engine: AsyncEngine, *, pool_id: str, name: str, low_water: int, now: datetime
) -> PoolStats:
    """A new pool and its figures; ``Conflict`` when a pool has this id."""
    async with engine.begin() as conn:
        if not await create_pool(conn, pool_id=pool_id, name=name, low_water=low_water, now=now):
            raise Conflict(f"pool {pool_id!r} exists")
        (stats,) = await pool_stats(conn, pool_ids=[pool_id])
    return stats


async def one_pool(engine: AsyncEngine, *, pool_id: str) -> PoolStats:
    async with engine.connect() as conn:
        found = await pool_stats(conn, pool_ids=[pool_id])
    if not found:
        raise NotFound(f"no pool {pool_id!r}")
    return found[0]


async def upload_codes(
    engine: AsyncEngine, *, pool_id: str, codes: Sequence[str]
) -> tuple[int, PoolStats]:
    """Add codes to a pool: how many were new, and the pool's figures after."""
    async with engine.begin() as conn:
        if not await pool_stats(conn, pool_ids=[pool_id]):
            raise NotFound(f"no pool {pool_id!r}")
        added = await add_codes(conn, pool_id=pool_id, codes=codes)
        (stats,) = await pool_stats(conn, pool_ids=[pool_id])
    return added, stats
