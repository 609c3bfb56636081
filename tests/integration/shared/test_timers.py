"""Durable timers on real PostgreSQL, in the three shapes the services use: one timer per
customer (segmenter), a run's numbered waits with a payload (journey), deferred
deliveries (dispatcher)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Row, Table, Text, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.engine import service_metadata
from shared.db.timers import (
    TimerSweep,
    cancel,
    claim_due,
    firing,
    schedule,
    timer_table,
)
from tests.conftest import NewDatabase
from tests.integration.shared.db import fresh_engine

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@dataclass
class Tables:
    engine: AsyncEngine
    customers: Table
    runs: Table
    deferred: Table

    async def keys(self, table: Table) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            return [tuple(row) for row in rows]


def shapes(metadata: MetaData) -> tuple[Table, Table, Table]:
    return (
        timer_table(metadata, "customer_timers", Column("customer_id", Text(collation="C"))),
        timer_table(
            metadata, "run_timers", Column("run_id", Text), Column("step", Integer), payload=True
        ),
        timer_table(metadata, "deferred_dispatches", Column("dispatch_id", Text), payload=True),
    )


@pytest.fixture
async def tables(new_database: NewDatabase) -> AsyncIterator[Tables]:
    metadata = service_metadata("t_timers")
    customers, runs, deferred = shapes(metadata)
    async with fresh_engine(new_database, metadata) as engine:
        yield Tables(engine, customers, runs, deferred)


def test_the_shape_is_the_keys_due_at_an_index_and_maybe_a_payload() -> None:
    customers, runs, _ = shapes(MetaData(schema="s"))
    assert [c.name for c in customers.primary_key.columns] == ["customer_id"]
    assert [c.name for c in runs.primary_key.columns] == ["run_id", "step"]
    assert [c.name for c in runs.c] == ["run_id", "step", "due_at", "payload"]
    assert "payload" not in customers.c
    assert {i.name for i in customers.indexes} == {"ix_customer_timers_due"}


async def test_schedule_sets_moves_and_cancel_removes_timers(tables: Tables) -> None:
    t = tables.customers
    async with tables.engine.begin() as conn:
        await schedule(conn, table=t, rows=[("a", NOW), ("b", NOW + timedelta(hours=1))])
    async with tables.engine.begin() as conn:
        xmin_b = await conn.scalar(
            text("SELECT xmin::text FROM t_timers.customer_timers WHERE customer_id = 'b'")
        )
        await schedule(
            conn, table=t, rows=[("a", NOW + timedelta(days=1)), ("b", NOW + timedelta(hours=1))]
        )
        await cancel(conn, table=t, keys=[])
    async with tables.engine.begin() as conn:
        # a timer set to the value it has is not rewritten
        assert xmin_b == await conn.scalar(
            text("SELECT xmin::text FROM t_timers.customer_timers WHERE customer_id = 'b'")
        )
    assert await tables.keys(t) == [("a", NOW + timedelta(days=1)), ("b", NOW + timedelta(hours=1))]
    async with tables.engine.begin() as conn:
        await cancel(conn, table=t, keys=["a", "nobody"])
    assert await tables.keys(t) == [("b", NOW + timedelta(hours=1))]


async def test_composite_keys_carry_a_payload_and_cancel_by_tuple(tables: Tables) -> None:
    t = tables.runs
    async with tables.engine.begin() as conn:
        await schedule(
            conn,
            table=t,
            rows=[
                ("run-1", 1, NOW, {"wait": "2d"}),
                ("run-1", 2, NOW + timedelta(days=2), {"wait": "reminder", "n": 2**70}),
                ("run-2", 1, NOW, {}),
            ],
        )
        await schedule(conn, table=t, rows=[("run-2", 1, NOW, {"changed": True})])
    assert await tables.keys(t) == [
        ("run-1", 1, NOW, {"wait": "2d"}),
        ("run-1", 2, NOW + timedelta(days=2), {"wait": "reminder", "n": 2**70}),
        ("run-2", 1, NOW, {"changed": True}),
    ]
    async with tables.engine.begin() as conn:
        await cancel(conn, table=t, keys=[("run-1", 2), ("run-2", 7)])
    assert [k[:2] for k in await tables.keys(t)] == [("run-1", 1), ("run-2", 1)]


async def test_a_claim_takes_the_earliest_due_ones_and_a_rollback_gives_them_back(
    tables: Tables,
) -> None:
    t = tables.deferred
    async with tables.engine.begin() as conn:
        await schedule(
            conn,
            table=t,
            rows=[(f"d{i}", NOW - timedelta(minutes=i), {"i": i}) for i in range(5)]
            + [("later", NOW + timedelta(seconds=1), {})],
        )
    async with tables.engine.connect() as conn, conn.begin() as transaction:
        rows = await claim_due(conn, table=t, now=NOW, limit=3)
        assert [row.dispatch_id for row in rows] == ["d4", "d3", "d2"]
        assert rows[0].payload == {"i": 4}
        await transaction.rollback()
    async with tables.engine.begin() as conn:
        rows = await claim_due(conn, table=t, now=NOW, limit=100)
    assert [row.dispatch_id for row in rows] == ["d4", "d3", "d2", "d1", "d0"]
    assert [k[0] for k in await tables.keys(t)] == ["later"]  # the claimed ones are removed


async def test_concurrent_claims_skip_each_others_rows(tables: Tables) -> None:
    t = tables.customers
    async with tables.engine.begin() as conn:
        await schedule(conn, table=t, rows=[(f"c{i:02}", NOW) for i in range(10)])
    async with tables.engine.connect() as first, tables.engine.connect() as second:
        await first.begin()
        await second.begin()
        mine = await claim_due(first, table=t, now=NOW, limit=6, remove=False)
        theirs = await claim_due(second, table=t, now=NOW, limit=6, remove=False)
        assert len(mine) == 6
        assert len(theirs) == 4  # the first transaction's rows are skipped, not waited for
        assert not {r.customer_id for r in mine} & {r.customer_id for r in theirs}
        await first.rollback()
        await second.rollback()
    assert len(await tables.keys(t)) == 10  # without ``remove`` the rows stay


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def test_a_sweep_fires_each_timer_once_with_several_workers_as_the_clock_moves(
    tables: Tables,
) -> None:
    """A journey's shape: each fired wait schedules the run's next step a day later."""
    t = tables.runs
    runs = [f"run-{uuid.uuid4().hex[:6]}" for _ in range(120)]
    async with tables.engine.begin() as conn:
        await schedule(conn, table=t, rows=[(r, 1, NOW, {"step": 1}) for r in runs])
    fired: list[tuple[str, int, datetime]] = []
    commits: list[int] = []
    clock = Clock()

    async def fire(conn: AsyncConnection, rows: list[Row[Any]], now: datetime) -> None:
        fired.extend((row.run_id, row.step, now) for row in rows)
        follow_ups: list[tuple[Any, ...]] = [
            (r.run_id, r.step + 1, now + timedelta(days=1), {}) for r in rows if r.step == 1
        ]
        await schedule(conn, table=t, rows=follow_ups)

    sweep = TimerSweep(
        firing(
            engine=tables.engine,
            table=t,
            fire=fire,
            clock=clock,
            chunk=25,
            on_commit=lambda: commits.append(1),
        ),
        chunk=25,
        workers=3,
        interval_s=0.02,
    )
    running = asyncio.create_task(sweep.run())
    try:
        await _until(lambda: len(fired) >= len(runs))
        await asyncio.sleep(0.2)  # the follow-ups are not due yet
        assert sorted(fired) == sorted((r, 1, NOW) for r in runs)
        clock.now = NOW + timedelta(days=1)
        await _until(lambda: len(fired) >= 2 * len(runs))
    finally:
        sweep.signal_shutdown()
        await asyncio.wait_for(running, 10)
    assert sorted(f for f in fired if f[1] == 2) == sorted((r, 2, clock.now) for r in runs)
    assert len(fired) == 2 * len(runs)
    assert len(commits) >= (2 * len(runs)) // 25
    assert await tables.keys(t) == []


async def test_a_failed_round_rolls_back_and_its_timers_fire_later(tables: Tables) -> None:
    t = tables.deferred
    async with tables.engine.begin() as conn:
        await schedule(conn, table=t, rows=[("d1", NOW, {}), ("d2", NOW, {})])
    attempts: list[list[str]] = []

    async def fire(conn: AsyncConnection, rows: list[Row[Any]], now: datetime) -> None:
        attempts.append([row.dispatch_id for row in rows])
        if len(attempts) == 1:
            raise RuntimeError("the first round fails")

    sweep = TimerSweep(
        firing(engine=tables.engine, table=t, fire=fire, clock=lambda: NOW, chunk=10),
        chunk=10,
        interval_s=0.02,
    )
    running = asyncio.create_task(sweep.run())
    try:
        await _until(lambda: len(attempts) >= 2)
    finally:
        sweep.signal_shutdown()
        await asyncio.wait_for(running, 10)
    assert attempts[:2] == [["d1", "d2"], ["d1", "d2"]]
    assert await tables.keys(t) == []


async def _until(condition: Any, within_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
