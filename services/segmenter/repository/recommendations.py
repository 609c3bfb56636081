"""Reads and writes of the recommendation tables; none commits.

On the event path (:func:`add_interactions`, once per batch that has product events) two
statements: new products inserted with the first category seen (``ON CONFLICT DO
NOTHING`` locks nothing that exists; ``PUT /v1/products/{id}`` corrects a category),
then the customers' interaction rows upserted (rows of customers the batch already
holds). Both take rows in key order, so
two replicas' batches wait for each other but cannot deadlock over them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from services.segmenter.recommend.fold import BatchInteractions
from shared.db.driver import execute, fetch
from shared.db.engine import driver_connection

_INSERT_PRODUCTS = """
INSERT INTO segmenter.products (product_id, category)
SELECT product_id, category FROM unnest($1::text[], $2::text[]) AS t(product_id, category)
ORDER BY product_id
ON CONFLICT (product_id) DO NOTHING
"""
_UPSERT_INTERACTIONS = """
INSERT INTO segmenter.interactions AS i (customer_id, product_key, kind, count, last_at)
SELECT t.customer_id, p.product_key, t.kind, t.count, t.last_at
FROM unnest($1::text[], $2::text[], $3::int2[], $4::int4[], $5::timestamptz[])
     AS t(customer_id, product_id, kind, count, last_at)
JOIN segmenter.products p ON p.product_id = t.product_id
ORDER BY 1, 2, 3
ON CONFLICT (customer_id, product_key, kind) DO UPDATE
SET count = least(i.count::int8 + EXCLUDED.count, 2147483647)::int4,
    last_at = greatest(i.last_at, EXCLUDED.last_at)
"""


async def add_interactions(conn: AsyncConnection, *, batch: BatchInteractions) -> None:
    if not batch:
        return
    customers, product_ids, kinds, counts, times = batch.columns()
    distinct = sorted(set(product_ids))
    categories = [batch.categories.get(p) for p in distinct]
    await execute(conn, _INSERT_PRODUCTS, distinct, categories)
    await execute(conn, _UPSERT_INTERACTIONS, customers, product_ids, kinds, counts, times)


async def move_interactions(conn: AsyncConnection, *, from_id: str, to_id: str) -> None:
    """An alias merge: the anonymous id's interactions join the known customer's."""
    await execute(
        conn,
        """
        WITH moved AS (
            DELETE FROM segmenter.interactions WHERE customer_id = $1
            RETURNING product_key, kind, count, last_at
        )
        INSERT INTO segmenter.interactions AS i (customer_id, product_key, kind, count, last_at)
        SELECT $2, product_key, kind, count, last_at FROM moved ORDER BY 2, 3
        ON CONFLICT (customer_id, product_key, kind) DO UPDATE
        SET count = least(i.count::int8 + EXCLUDED.count, 2147483647)::int4,
            last_at = greatest(i.last_at, EXCLUDED.last_at)
        """,
        from_id,
        to_id,
    )
    await execute(conn, "DELETE FROM segmenter.recommendations WHERE customer_id = $1", from_id)


async def erase(conn: AsyncConnection, *, ids: Sequence[str]) -> None:
    """What an erasure removes: interactions, recommendations, loyalty ledger entries."""
    for table in ("interactions", "recommendations", "loyalty_ledger"):
        await execute(
            conn, f"DELETE FROM segmenter.{table} WHERE customer_id = ANY($1::text[])", list(ids)
        )


@dataclass(frozen=True)
class CatalogueRows:
    product_key: np.ndarray
    product_id: list[str]
    category: list[str | None]
    consumable: np.ndarray


async def read_catalogue(conn: AsyncConnection) -> CatalogueRows:
    rows = await fetch(
        conn,
        "SELECT product_key, product_id, category, consumable FROM segmenter.products "
        "ORDER BY product_key",
    )
    return CatalogueRows(
        product_key=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        product_id=[r[1] for r in rows],
        category=[r[2] for r in rows],
        consumable=np.fromiter((r[3] for r in rows), dtype=bool, count=len(rows)),
    )


@dataclass
class InteractionRows:
    """Interactions ordered by customer: ``customer`` codes index ``customer_ids``."""

    customer_ids: list[str]
    customer: np.ndarray
    product_key: np.ndarray
    kind: np.ndarray
    count: np.ndarray
    last_at: np.ndarray  # epoch seconds


async def read_interactions(conn: AsyncConnection, *, fetch_size: int = 100_000) -> InteractionRows:
    """Every interaction, in customer order, through a server-side cursor (call inside a
    transaction: a repeatable view of a table the consumer keeps writing)."""
    driver = await driver_connection(conn)
    ids: list[str] = []
    parts: list[tuple[np.ndarray, ...]] = []
    last: str | None = None
    cursor = await driver.cursor(
        "SELECT customer_id, product_key, kind, count, extract(epoch FROM last_at)::float8 "
        "FROM segmenter.interactions ORDER BY customer_id, product_key, kind"
    )
    while True:
        rows = await cursor.fetch(fetch_size)
        if not rows:
            break
        codes = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            customer = row[0]
            if customer != last:
                ids.append(customer)
                last = customer
            codes[i] = len(ids) - 1
        parts.append(
            (
                codes,
                np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
                np.fromiter((r[2] for r in rows), dtype=np.int8, count=len(rows)),
                np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
                np.fromiter((r[4] for r in rows), dtype=np.float64, count=len(rows)),
            )
        )
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return InteractionRows([], empty, empty, empty.astype(np.int8), empty, empty * 0.0)
    return InteractionRows(
        customer_ids=ids,
        customer=np.concatenate([p[0] for p in parts]),
        product_key=np.concatenate([p[1] for p in parts]),
        kind=np.concatenate([p[2] for p in parts]),
        count=np.concatenate([p[3] for p in parts]),
        last_at=np.concatenate([p[4] for p in parts]),
    )


async def write_recommendations(
    conn: AsyncConnection, *, rows: Sequence[tuple[str, bytes]], now: datetime
) -> list[str]:
    """Store each customer's list (JSON bytes); return the ids whose list changed.

    Only customers who still have a profile, whose rows it holds (``FOR KEY SHARE``) until
    the commit: an erasure, which takes the profile rows first, either removed the
    customer before (no list written) or waits and then removes the list too."""
    if not rows:
        return []
    await execute(
        conn,
        "CREATE TEMPORARY TABLE IF NOT EXISTS recommendation_updates "
        '(customer_id text COLLATE "C" PRIMARY KEY, items text) ON COMMIT DROP',
    )
    driver = await driver_connection(conn)
    await driver.copy_records_to_table(
        "recommendation_updates", records=[(c, items.decode()) for c, items in rows]
    )
    changed = await fetch(
        conn,
        """
        INSERT INTO segmenter.recommendations AS r (customer_id, items, computed_at)
        SELECT u.customer_id, u.items::jsonb, $1
        FROM recommendation_updates u JOIN segmenter.profiles p USING (customer_id)
        ORDER BY u.customer_id
        FOR KEY SHARE OF p
        ON CONFLICT (customer_id) DO UPDATE SET items = EXCLUDED.items, computed_at = $1
        WHERE r.items IS DISTINCT FROM EXCLUDED.items
        RETURNING customer_id
        """,
        now,
    )
    await execute(conn, "DROP TABLE recommendation_updates")
    return [r[0] for r in changed]


async def load_recommendations(
    conn: AsyncConnection, *, ids: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    rows = await fetch(
        conn,
        "SELECT customer_id, items::text FROM segmenter.recommendations "
        "WHERE customer_id = ANY($1::text[])",
        list(ids),
    )
    return {r[0]: orjson.loads(r[1]) for r in rows}


async def computed_at(conn: AsyncConnection, *, customer_id: str) -> datetime | None:
    """When the customer's stored list was computed (None: no list)."""
    rows = await fetch(
        conn,
        "SELECT computed_at FROM segmenter.recommendations WHERE customer_id = $1",
        customer_id,
    )
    return rows[0][0] if rows else None


async def customer_interactions(conn: AsyncConnection, *, customer_id: str) -> list[Any]:
    return list(
        await fetch(
            conn,
            """
            SELECT p.product_id, p.category, i.kind, i.count, i.last_at
            FROM segmenter.interactions i JOIN segmenter.products p USING (product_key)
            WHERE i.customer_id = $1 ORDER BY i.last_at DESC
            """,
            customer_id,
        )
    )


async def set_product(
    conn: AsyncConnection,
    *,
    product_id: str,
    category: str | None,
    consumable: bool,
    name: str | None,
) -> None:
    await execute(
        conn,
        """
        INSERT INTO segmenter.products (product_id, category, consumable, name)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (product_id) DO UPDATE SET
            category = coalesce(EXCLUDED.category, segmenter.products.category),
            consumable = EXCLUDED.consumable,
            name = coalesce(EXCLUDED.name, segmenter.products.name)
        """,
        product_id,
        category,
        consumable,
        name,
    )


async def get_product(conn: AsyncConnection, *, product_id: str) -> Any | None:
    rows = await fetch(
        conn,
        "SELECT product_id, category, consumable, name FROM segmenter.products "
        "WHERE product_id = $1",
        product_id,
    )
    return rows[0] if rows else None
