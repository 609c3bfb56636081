"""Durable timers: two replicas sweeping one backlog fire every run's timer once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta

import orjson
from pydantic import SecretStr
from sqlalchemy import insert, select

from services.journey import repository as repo
from services.journey.catalog import CatalogCache, load_catalog
from services.journey.definition import JourneyDefinition
from services.journey.machine import Facts, enter
from services.journey.models import outbox, run_timers
from services.journey.processing import Work
from services.journey.timers import timer_sweep
from shared.db.engine import create_engine
from shared.db.outbox_pack import unpack
from shared.events import dispatch_requests, journey_runs
from shared.settings import DatabaseSettings
from tests.conftest import NewDatabase
from tests.integration.journey.conftest import START, migrated_database

RUNS = 600
DOCUMENT = {
    "triggers": [{"kind": "event", "event": "Signed Up"}],
    "steps": [
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "mail"},
        {"id": "mail", "type": "send", "channels": ["email"], "template_id": "t", "next": "x"},
        {"id": "x", "type": "exit"},
    ],
}


async def seed_waiting_runs(engine: object, count: int) -> None:
    """A published journey and ``count`` runs waiting one hour from START."""
    definition = JourneyDefinition.model_validate(DOCUMENT)
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(
            insert(repo.journeys).values(
                id="j", name="j", status="active", draft=DOCUMENT, version=1
            )
        )
        await conn.execute(
            insert(repo.versions).values(journey_id="j", version=1, definition=DOCUMENT)
        )
        work = Work(await load_catalog(conn), START)
        for i in range(count):
            work.took(
                enter(
                    definition,
                    journey_id="j",
                    version=1,
                    customer_id=f"c{i}",
                    run_id=f"run-{i:05d}",
                    trigger_event="Signed Up",
                    trigger={},
                    now=START,
                    facts=Facts(),
                ),
                new=True,
            )
        await work.write(conn)
        await conn.execute(outbox.delete())  # only what the sweeps emit is counted


def counted(
    sweep_once: Callable[[], Awaitable[int]], fired_by: list[int], index: int
) -> Callable[[], Awaitable[int]]:
    async def sweep() -> int:
        fired = await sweep_once()
        fired_by[index] += fired
        return fired

    return sweep


async def test_two_replicas_fire_each_timer_once(new_database: NewDatabase) -> None:
    url = await migrated_database(new_database)
    engines = [create_engine(DatabaseSettings(url=SecretStr(url))) for _ in range(2)]
    try:
        await seed_waiting_runs(engines[0], RUNS)
        later = START + timedelta(hours=1, seconds=1)
        sweeps = [
            timer_sweep(
                engine=engine,
                catalogs=CatalogCache(engine),
                clock=lambda: later,
                chunk=50,
                workers=2,
                interval_s=0.02,
            )
            for engine in engines
        ]
        fired_by = [0, 0]
        for index, sweep in enumerate(sweeps):
            sweep.sweep_once = counted(sweep.sweep_once, fired_by, index)
        tasks = [asyncio.create_task(sweep.run()) for sweep in sweeps]
        try:
            for _ in range(400):
                async with engines[0].connect() as conn:
                    left = await conn.scalar(select(run_timers.c.run_id).limit(1))
                if left is None:
                    break
                await asyncio.sleep(0.05)
        finally:
            for sweep in sweeps:
                sweep.signal_shutdown()
            await asyncio.gather(*tasks)
        async with engines[0].connect() as conn:
            rows = (
                await conn.execute(select(outbox.c.topic, outbox.c.value, outbox.c.packed))
            ).all()
            active = await repo.list_runs(conn, status="active", limit=10)
        messages = [m for topic, value, packed in rows for m in unpack(topic, value)]
        requests = Counter(
            orjson.loads(m.value)["runId"] for m in messages if m.topic == dispatch_requests.TOPIC
        )
        exits = Counter(
            orjson.loads(m.value)["runId"]
            for m in messages
            if m.topic == journey_runs.TOPIC and orjson.loads(m.value)["kind"] == "exited"
        )
        assert active == []
        assert all(fired_by) and sum(fired_by) == RUNS, fired_by  # both replicas took a share
        assert len(requests) == RUNS and set(requests.values()) == {1}
        assert len(exits) == RUNS and set(exits.values()) == {1}
    finally:
        for engine in engines:
            await engine.dispose()
