"""Idle loops sleep, wake on new work, and a lost database costs a few log lines.

A timer sweep with nothing due sleeps until the next timer (or its cap) instead
of polling, and a timer committed on another connection wakes it through
PostgreSQL ``NOTIFY``. With the database cut (a proxy in front of PostgreSQL),
the sweep and a periodic job back off and log one line per failure streak, no
traceback; once it is back, one line says they recovered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Row, Table, Text, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.clock import utc_now
from shared.db.engine import create_engine, service_metadata
from shared.db.timers import TimerSweep, firing, schedule, timer_table
from shared.settings import DatabaseSettings
from shared.stopping import PeriodicJob
from tenure.embedded import free_port
from tests.conftest import NewDatabase
from tests.integration.shared.db import fresh_engine
from tests.support.proxy import TcpProxy


def _table() -> tuple[MetaData, Table]:
    metadata = service_metadata("t_idle")
    return metadata, timer_table(metadata, "wakes", Column("key", Text))


class Counted:
    """A firing round that counts its rounds and records when each timer fired."""

    def __init__(self, engine: AsyncEngine, table: Table) -> None:
        self.rounds = 0
        self.fired: dict[str, float] = {}
        loop = asyncio.get_running_loop()

        async def fire(conn: AsyncConnection, rows: list[Row[Any]], now: Any) -> None:
            for row in rows:
                self.fired[row.key] = loop.time()

        self._round = firing(engine=engine, table=table, fire=fire, clock=utc_now, chunk=100)
        self.watched = self._round.watched

    async def __call__(self) -> int:
        self.rounds += 1
        return await self._round()


@pytest.fixture
async def timers(new_database: NewDatabase) -> AsyncIterator[tuple[AsyncEngine, Table]]:
    metadata, table = _table()
    async with fresh_engine(new_database, metadata) as engine:
        yield engine, table


async def test_an_idle_sweep_sleeps_and_a_new_timer_wakes_it(
    timers: tuple[AsyncEngine, Table],
) -> None:
    engine, table = timers
    rounds = Counted(engine, table)
    sweep = TimerSweep(rounds, chunk=100, interval_s=60.0)
    running = asyncio.create_task(sweep.run())
    try:
        await asyncio.wait_for(sweep.listening.wait(), 10)
        await asyncio.sleep(2.0)
        assert rounds.rounds <= 3  # idle: not a round every fraction of a second
        # a timer due in 1 s, committed on another connection: NOTIFY wakes the sweep,
        # which then sleeps until it is due
        loop = asyncio.get_running_loop()
        async with engine.begin() as conn:
            await schedule(conn, table=table, rows=[("soon", utc_now() + timedelta(seconds=1))])
        due = loop.time() + 1.0
        await _until(lambda: "soon" in rounds.fired, within_s=5)
        assert rounds.fired["soon"] - due < 1.0
        # a timer already waiting: the sweep sleeps until it, not until its cap
        before = rounds.rounds
        async with engine.begin() as conn:
            await schedule(conn, table=table, rows=[("later", utc_now() + timedelta(seconds=2))])
        due = loop.time() + 2.0
        await _until(lambda: "later" in rounds.fired, within_s=6)
        assert rounds.fired["later"] - due < 1.0
        assert rounds.rounds - before <= 4
    finally:
        sweep.signal_shutdown()
        await asyncio.wait_for(running, 10)


async def test_a_lost_database_logs_a_line_per_streak_not_a_traceback_per_try(
    new_database: NewDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(await new_database())
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        # the embedded server listens on a unix socket only: the proxy forwards to it
        socket_path = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
        proxy = await TcpProxy(listen_port=free_port(), target_path=socket_path).start()
        url = url.difference_update_query(["host"])
    else:
        proxy = await TcpProxy(
            listen_port=free_port(), target_port=url.port or 5432, host=url.host or "127.0.0.1"
        ).start()
    metadata, table = _table()
    engine = create_engine(
        DatabaseSettings(
            url=url.set(host="127.0.0.1", port=proxy.listen_port).render_as_string(False)
        )
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {metadata.schema}"))
            await conn.run_sync(metadata.create_all)
        rounds = Counted(engine, table)
        sweep = TimerSweep(rounds, chunk=100, interval_s=0.05)  # would poll 20 times a second

        async def ping() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        job = PeriodicJob(ping, name="ping", interval_s=0.05)
        tasks = [asyncio.create_task(sweep.run()), asyncio.create_task(job.run())]
        await asyncio.wait_for(sweep.listening.wait(), 10)
        await asyncio.sleep(0.3)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            await proxy.cut()
            await asyncio.sleep(4.0)
            during = [r for r in caplog.records if r.name.startswith("shared")]
            await proxy.restore()
            await _until(
                lambda: sum("recovered" in r.getMessage() for r in caplog.records) >= 2, 20
            )
        sweep.signal_shutdown()
        job.signal_shutdown()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        await proxy.stop()
        await engine.dispose()
    warnings = [r for r in during if r.levelno >= logging.WARNING]
    # the sweep, its listener and the job: one line each at the first failure (the
    # next would come 30 s later), none with a traceback
    assert 2 <= len(warnings) <= 4, [r.getMessage() for r in warnings]
    assert all(r.exc_info is None for r in warnings)
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert {r.levelno for r in recovered} == {logging.INFO}


async def _until(condition: Any, within_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.02)
