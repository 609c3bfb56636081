"""Build and compile a large statement in a worker thread, then run it on the loop.

A rule of the maximum size (``MAX_RULE_SIZE``) takes about 0.8 s to turn into a
SQLAlchemy expression, 0.7 s to compile to SQL and 0.5 s more for SQLAlchemy's
cache key at each execution: seconds during which the event loop would answer
nothing else (health checks included). Here all of that runs in a thread, and
the loop only sends the finished SQL text and its parameters to asyncpg
(``exec_driver_sql``), so SQLAlchemy neither recompiles nor caches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable


def compile_for_driver(statement: Any, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    """The SQL text and positional parameters asyncpg takes for ``statement``."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    processors = compiled._bind_processors
    values = tuple(
        processors[name](params[name]) if name in processors else params[name]
        for name in compiled.positiontup or ()
    )
    return compiled.string, values


async def execute_off_loop(
    conn: AsyncConnection, build: Callable[[], Executable]
) -> CursorResult[Any]:
    """Run ``build()`` and its compilation in a thread; execute the result on ``conn``."""
    sql, values = await asyncio.to_thread(lambda: compile_for_driver(build(), conn.dialect))
    return await conn.exec_driver_sql(sql, values)
