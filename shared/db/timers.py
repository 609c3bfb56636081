"""Durable timers: rows with a due instant, fired once by whichever replica claims them.

A timer table (:func:`timer_table`) has the service's key columns, ``due_at`` and,
if asked, a small JSON ``payload``. It fits one timer per entity (the segmenter:
a customer's next re-evaluation, keyed by ``customer_id``), several per entity
(a journey run's waits, keyed by ``run_id`` and a step), and deferred work (a
dispatch deferred to a send window, keyed by ``dispatch_id``).

Timers are written in the transaction that decides them (:func:`schedule`,
:func:`cancel`), and fired by a :class:`TimerSweep`: ``workers`` loops per replica,
each round one transaction that claims up to ``chunk`` due rows with
``FOR UPDATE SKIP LOCKED`` (so loops and replicas share the work and none fires a
timer twice) and fires them. A restart loses nothing: timers are rows; a round
that fails rolls back and its timers are due again. The clock is injected, so
tests move time instead of waiting.

The common round is :func:`firing`: claim and delete the due rows, call the
service's ``fire(conn, rows, now)`` in the same transaction (it may schedule new
timers, or the same keys again). A service with its own way of claiming (the
segmenter claims into a temp table, see ``membership_sql``) builds its claim on
:func:`due` and gives the sweep its own round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    Row,
    Select,
    String,
    Table,
    delete,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from shared.db.driver import execute
from shared.db.jsonb import json_text
from shared.stopping import StoppableLoop

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: fires claimed timers inside the claiming transaction
Fire = Callable[[AsyncConnection, list[Row[Any]], datetime], Awaitable[None]]


def timer_table(metadata: MetaData, name: str, *keys: Column[Any], payload: bool = False) -> Table:
    """A timer table: the ``keys`` (made the primary key), ``due_at``, an index on it,
    and with ``payload`` a ``jsonb`` column (``{}`` by default)."""
    columns: list[Any] = [*keys, Column("due_at", DateTime(timezone=True), nullable=False)]
    for key in keys:
        key.primary_key = True
        key.nullable = False
    if payload:
        columns.append(Column("payload", JSONB, nullable=False, server_default="{}"))
    return Table(name, metadata, *columns, Index(f"ix_{name}_due", "due_at"))


def _keys(table: Table) -> list[Column[Any]]:
    return list(table.primary_key.columns)


def _value_columns(table: Table) -> list[Column[Any]]:
    return [table.c.due_at, *([table.c.payload] if "payload" in table.c else [])]


def _array_of(column: Column[Any]) -> str:
    """The PostgreSQL array type that carries the column's values."""
    type_ = column.type
    if isinstance(type_, String):
        return "text[]"  # without the column's collation: a cast cannot carry it
    if isinstance(type_, DateTime):
        return "timestamptz[]" if type_.timezone else "timestamp[]"
    dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
    return f"{type_.compile(dialect=dialect).lower()}[]"


async def schedule(conn: AsyncConnection, *, table: Table, rows: Sequence[Sequence[Any]]) -> None:
    """Set timers, each row ``(*key, due_at)`` or ``(*key, due_at, payload)`` as the table
    has columns; a timer already set to the same value is not rewritten. Keys must be
    distinct. One statement with array parameters, in the caller's transaction."""
    if not rows:
        return
    columns = [*_keys(table), *_value_columns(table)]
    values: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
    if "payload" in table.c:
        values[-1] = [json_text(value) for value in values[-1]]
    names = ", ".join(c.name for c in columns)
    arrays = ", ".join(f"${i}::{_array_of(c)}" for i, c in enumerate(columns, start=1))
    updated = _value_columns(table)
    sets = ", ".join(f"{c.name} = excluded.{c.name}" for c in updated)
    if len(updated) == 1:
        changed = "t.due_at IS DISTINCT FROM excluded.due_at"
    else:
        ours = ", ".join(f"t.{c.name}" for c in updated)
        theirs = ", ".join(f"excluded.{c.name}" for c in updated)
        changed = f"ROW({ours}) IS DISTINCT FROM ROW({theirs})"
    await execute(
        conn,
        f"INSERT INTO {table.fullname} AS t ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(c.name for c in _keys(table))}) DO UPDATE SET {sets} "
        f"WHERE {changed}",
        *values,
    )


async def cancel(conn: AsyncConnection, *, table: Table, keys: Sequence[Any]) -> None:
    """Delete the timers of ``keys``: one tuple per timer, or the key values themselves
    when the key is one column."""
    if not keys:
        return
    key_columns = _keys(table)
    if len(key_columns) == 1:
        (column,) = key_columns
        flat = [k[0] if isinstance(k, tuple) else k for k in keys]
        await execute(
            conn,
            f"DELETE FROM {table.fullname} WHERE {column.name} = ANY($1::{_array_of(column)})",
            flat,
        )
        return
    arrays = ", ".join(f"${i}::{_array_of(c)}" for i, c in enumerate(key_columns, start=1))
    names = ", ".join(c.name for c in key_columns)
    match = " AND ".join(f"t.{c.name} = k.{c.name}" for c in key_columns)
    await execute(
        conn,
        f"DELETE FROM {table.fullname} t USING unnest({arrays}) AS k({names}) WHERE {match}",
        *(list(column) for column in zip(*keys, strict=True)),
    )


def due(
    table: Table,
    *,
    now: datetime,
    limit: int,
    columns: Sequence[ColumnElement[Any]] | None = None,
) -> Select[Any]:
    """The claim: up to ``limit`` timers due at ``now``, earliest first, locked
    ``FOR UPDATE SKIP LOCKED`` (rows another transaction holds are left to it)."""
    return (
        select(*(columns if columns is not None else table.c))
        .where(table.c.due_at <= now)
        .order_by(table.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def claim_due(
    conn: AsyncConnection, *, table: Table, now: datetime, limit: int, remove: bool = True
) -> list[Row[Any]]:
    """Claim up to ``limit`` due timers, earliest first, locked until the caller's
    transaction ends; with ``remove`` (the default) they are deleted in the same
    statement (a fired timer is done; a rollback brings it back)."""
    if not remove:
        return list(await conn.execute(due(table, now=now, limit=limit)))
    keys = _keys(table)
    claimed = due(table, now=now, limit=limit, columns=keys).subquery()
    rows = await conn.execute(
        delete(table).where(tuple_(*keys).in_(select(*claimed.c))).returning(*table.c)
    )
    return sorted(rows, key=lambda row: (row.due_at, *(row[i] for i in range(len(keys)))))


def firing(
    *,
    engine: AsyncEngine,
    table: Table,
    fire: Fire,
    clock: Clock,
    chunk: int,
    on_commit: Callable[[], None] = lambda: None,
) -> Callable[[], Awaitable[int]]:
    """The common round of a :class:`TimerSweep`: one transaction that claims (and
    removes) up to ``chunk`` due timers at ``clock()`` and calls ``fire(conn, rows, now)``;
    ``on_commit`` runs after it committed (say, to wake the outbox relay). Returns how
    many timers fired."""

    async def sweep_once() -> int:
        now = clock()
        async with engine.begin() as conn:
            rows = await claim_due(conn, table=table, now=now, limit=chunk)
            if rows:
                await fire(conn, rows, now)
        if rows:
            on_commit()
        return len(rows)

    return sweep_once


class TimerSweep(StoppableLoop):
    """``workers`` loops calling ``sweep_once`` (one round: a transaction claiming up to
    ``chunk`` timers, returning how many) until shutdown. A loop goes on at once while
    rounds come back full, and pauses ``interval_s`` otherwise; a failed round is logged
    and retried after the pause. Several workers, each on a connection of its own,
    share a large wave of due timers (``SKIP LOCKED``) over more than one core of
    PostgreSQL."""

    def __init__(
        self,
        sweep_once: Callable[[], Awaitable[int]],
        *,
        chunk: int,
        workers: int = 1,
        interval_s: float = 1.0,
        name: str = "timer sweep",
    ) -> None:
        self.sweep_once = sweep_once
        self._chunk = chunk
        self._workers = workers
        self._interval_s = interval_s
        self._name = name
        super().__init__()

    async def run(self) -> None:
        await asyncio.gather(*(self._loop() for _ in range(self._workers)))

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                swept = await self.sweep_once()
            except Exception:
                log.exception("%s failed; retrying", self._name)
                swept = 0
            if swept < self._chunk:
                await self._pause(self._interval_s)
