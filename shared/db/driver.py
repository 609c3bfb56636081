"""Statements sent straight to asyncpg, whole columns as array parameters.

For the statements a consumer runs once per batch with thousands of rows: pass
each column as one PostgreSQL array (``= ANY($1::text[])``,
``unnest($1::text[], $2::timestamptz[], …)``) to asyncpg through
:func:`~shared.db.engine.driver_connection`: one statement text per function,
prepared once per connection, one execution per batch, rows read as asyncpg
``Record``s, and no per-row work in SQLAlchemy. (Expanding ``IN`` lists render a
new statement for every list length; ``executemany`` runs one execution per row.)
Errors come as asyncpg's (``asyncpg.PostgresError``);
:func:`shared.db.transient.is_transient_db_error` reads both kinds.
Both run inside the caller's transaction (``engine.begin()``); neither commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.engine import driver_connection


def columns_of(rows: Iterable[Any], *names: str) -> list[list[Any]]:
    """The attributes ``names`` of ``rows``, one list per name, in that order: a batch's
    columns as the array parameters of an ``unnest($1::text[], …)`` statement."""
    items = list(rows)
    return [[getattr(row, name) for row in items] for name in names]


async def fetch(conn: AsyncConnection, statement: str, *params: Any) -> Sequence[Any]:
    """The rows of ``statement`` (``$1``, ``$2``… parameters), as asyncpg ``Record``s."""
    driver = await driver_connection(conn)
    return await driver.fetch(statement, *params)  # type: ignore[no-any-return]


async def execute(conn: AsyncConnection, statement: str, *params: Any) -> None:
    driver = await driver_connection(conn)
    await driver.execute(statement, *params)
