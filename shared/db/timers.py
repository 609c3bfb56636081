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

An idle sweep sleeps: after a round that found less than a chunk it reads the
earliest ``due_at`` (:func:`next_due`, one index probe) and sleeps until then, at
most ``interval_s`` (the safety net; at most :data:`NOTIFY_HORIZON_S`). A timer set
for sooner than the sweep would wake wakes it: :func:`schedule` sends a PostgreSQL
``NOTIFY`` on the table's channel (:func:`channel`) when one of its timers is due
within :data:`NOTIFY_HORIZON_S`, delivered at commit to the sweep of every replica,
which listens on a connection of its own (given the table, :class:`Watched`).
In-process, :meth:`TimerSweep.notify` does the same. A failed round backs off
exponentially and logs one line per failure streak and interval
(:class:`~shared.retry.FailureStreak`).

The common round is :func:`firing`: claim and delete the due rows, call the
service's ``fire(conn, rows, now)`` in the same transaction (it may schedule new
timers, or the same keys again). A service with its own way of claiming (the
segmenter claims into a temp table, see ``membership_sql``) builds its claim on
:func:`due` and gives the sweep its own round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
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
    func,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from shared.db.driver import execute
from shared.db.jsonb import json_text
from shared.retry import FailureStreak
from shared.stopping import StoppableLoop

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: fires claimed timers inside the claiming transaction
Fire = Callable[[AsyncConnection, list[Row[Any]], datetime], Awaitable[None]]

#: :func:`schedule` notifies the sweeps of timers due sooner than this from now; a
#: sweep never sleeps longer, so it reads any later timer before it is due
NOTIFY_HORIZON_S = 60.0


def channel(table: Table) -> str:
    """The ``NOTIFY`` channel of a timer table."""
    return f"timers:{table.fullname}"


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
    soonest = min(row[len(_keys(table))] for row in rows)
    if utc_timestamp(soonest) - time.time() <= NOTIFY_HORIZON_S:
        # delivered at commit (and not at all on rollback); one per transaction and channel
        await execute(conn, "SELECT pg_notify($1, '')", channel(table))


async def next_due(conn: AsyncConnection, *, table: Table) -> datetime | None:
    """The earliest ``due_at`` of the table, None when it has no timer."""
    due_at: datetime | None = await conn.scalar(select(func.min(table.c.due_at)))
    return due_at


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


@dataclass(frozen=True)
class Watched:
    """The timer table a :class:`TimerSweep` fires, for it to sleep until the next
    timer and be woken by a new one."""

    engine: AsyncEngine
    table: Table
    clock: Clock


class FiringRound:
    """The common round of a :class:`TimerSweep` (see :func:`firing`)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        table: Table,
        fire: Fire,
        clock: Clock,
        chunk: int,
        on_commit: Callable[[], None],
    ) -> None:
        self.watched = Watched(engine, table, clock)
        self._fire = fire
        self._chunk = chunk
        self._on_commit = on_commit

    async def __call__(self) -> int:
        engine, table, clock = self.watched.engine, self.watched.table, self.watched.clock
        now = clock()
        async with engine.begin() as conn:
            rows = await claim_due(conn, table=table, now=now, limit=self._chunk)
            if rows:
                await self._fire(conn, rows, now)
        if rows:
            self._on_commit()
        return len(rows)


def firing(
    *,
    engine: AsyncEngine,
    table: Table,
    fire: Fire,
    clock: Clock,
    chunk: int,
    on_commit: Callable[[], None] = lambda: None,
) -> FiringRound:
    """The common round of a :class:`TimerSweep`: one transaction that claims (and
    removes) up to ``chunk`` due timers at ``clock()`` and calls ``fire(conn, rows, now)``;
    ``on_commit`` runs after it committed (say, to wake the outbox relay). Returns how
    many timers fired. It carries its table (``watched``), which the sweep reads."""
    return FiringRound(
        engine=engine, table=table, fire=fire, clock=clock, chunk=chunk, on_commit=on_commit
    )


class TimerSweep(StoppableLoop):
    """``workers`` loops calling ``sweep_once`` (one round: a transaction claiming up to
    ``chunk`` timers, returning how many) until shutdown. A loop goes on at once while
    rounds come back full; otherwise it sleeps until the next timer is due, at most
    ``interval_s``, woken early by :meth:`notify` or by a ``NOTIFY`` from
    :func:`schedule` (both only when it knows its table: ``watched``, or the
    ``watched`` of a :func:`firing` round; without it, it pauses ``interval_s``). A
    failed round backs off (one log line per failure streak and interval). Several
    workers, each on a connection of its own, share a large wave of due timers
    (``SKIP LOCKED``) over more than one core of PostgreSQL."""

    def __init__(
        self,
        sweep_once: Callable[[], Awaitable[int]],
        *,
        chunk: int,
        workers: int = 1,
        interval_s: float = NOTIFY_HORIZON_S,
        name: str = "timer sweep",
        watched: Watched | None = None,
    ) -> None:
        self.sweep_once = sweep_once
        self._chunk = chunk
        self._workers = workers
        self._watched = watched or getattr(sweep_once, "watched", None)
        self._interval_s = min(interval_s, NOTIFY_HORIZON_S)
        self._name = name
        super().__init__()
        self._wakeup = asyncio.Event()
        #: set while the sweep LISTENs for new timers (tests wait for it)
        self.listening = asyncio.Event()

    def notify(self) -> None:
        """A timer was just committed: look again now."""
        self._wakeup.set()

    def signal_shutdown(self) -> None:
        super().signal_shutdown()
        self._wakeup.set()

    async def run(self) -> None:
        listener = None
        if self._watched is not None:
            listener = asyncio.create_task(self._listen(self._watched), name=f"{self._name} listen")
        try:
            await asyncio.gather(*(self._loop() for _ in range(self._workers)))
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _loop(self) -> None:
        streak = FailureStreak(self._name, logger=log)
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                swept = await self.sweep_once()
                if swept >= self._chunk:
                    streak.succeeded()
                    continue
                pause = await self._until_next()
            except Exception as exc:
                await self._pause(streak.failed(exc))
                continue
            streak.succeeded()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=pause)

    async def _until_next(self) -> float:
        """Seconds until the next timer is due, at most ``interval_s``."""
        watched = self._watched
        if watched is None:
            return self._interval_s
        async with watched.engine.connect() as conn:
            due_at = await next_due(conn, table=watched.table)
        if due_at is None:
            return self._interval_s
        return max(0.0, min(self._interval_s, (due_at - watched.clock()).total_seconds()))

    async def _listen(self, watched: Watched) -> None:
        """LISTEN on the table's channel on a connection of its own, for as long as the
        sweep runs; reconnect (backing off) when the connection is lost."""
        url = watched.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        streak = FailureStreak(f"{self._name}: listening for new timers", logger=log)
        while not self._stopping.is_set():
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
            except Exception as exc:
                await self._pause(streak.failed(exc))
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(channel(watched.table), lambda *_: self.notify())
                streak.succeeded()
                self.listening.set()
                self.notify()  # a timer may have come while nobody listened
                await _first(lost.wait(), self._stopping.wait())
            except Exception as exc:
                await self._pause(streak.failed(exc))
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=5)
            if lost.is_set() and not self._stopping.is_set():
                streak.failed(ConnectionError("the listening connection was lost"))
                await self._pause(1.0)


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _: event.set()


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def utc_timestamp(when: datetime) -> float:
    """``when`` in seconds since the epoch (naive values are taken as UTC)."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
