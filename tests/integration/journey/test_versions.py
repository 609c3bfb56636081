"""A run on a version another replica published a moment ago: the batch is retried
after the catalog reloads, never dead-lettered."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import insert

from services.journey import repository as repo
from services.journey.catalog import CatalogCache, load_catalog
from services.journey.consumer import JourneyBatchHandler, is_transient
from services.journey.definition import JourneyDefinition
from services.journey.machine import Facts, enter
from services.journey.processing import UnknownVersion, Work
from shared.db.engine import create_engine
from shared.events.customer_events import TOPIC
from shared.kafka.consumer import Record
from shared.settings import DatabaseSettings
from tests.conftest import NewDatabase
from tests.integration.journey.conftest import START, migrated_database, track

DOCUMENT = {
    "triggers": [{"kind": "event", "event": "Started"}],
    "steps": [
        {
            "id": "w",
            "type": "wait_for_event",
            "event": "Finished",
            "timeout": "P1D",
            "next": "x",
            "on_timeout": "x",
        },
        {"id": "x", "type": "exit"},
    ],
}


async def test_a_run_on_a_version_not_yet_loaded_is_retried(new_database: NewDatabase) -> None:
    url = await migrated_database(new_database)
    engine = create_engine(DatabaseSettings(url=SecretStr(url)))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(repo.journeys).values(
                    id="j", name="j", status="active", draft=DOCUMENT, version=1
                )
            )
            await conn.execute(
                insert(repo.versions).values(journey_id="j", version=1, definition=DOCUMENT)
            )
        catalogs = CatalogCache(engine, poll_s=3600)
        await catalogs.current()  # this replica knows version 1 only
        async with engine.begin() as conn:  # another replica publishes 2 and starts a run on it
            await conn.execute(
                insert(repo.versions).values(journey_id="j", version=2, definition=DOCUMENT)
            )
            await repo.set_journey(conn, journey_id="j", now=START, version=2)
            work = Work(await load_catalog(conn), START)
            work.took(
                enter(
                    JourneyDefinition.model_validate(DOCUMENT),
                    journey_id="j",
                    version=2,
                    customer_id="c1",
                    run_id=f"run-{uuid.uuid4().hex}",
                    trigger_event="Started",
                    trigger={},
                    now=START,
                    facts=Facts(),
                ),
                new=True,
            )
            await work.write(conn)
        handler = JourneyBatchHandler(engine=engine, catalogs=catalogs, clock=lambda: START)
        finished = [
            Record(TOPIC, 0, 0, b"c1", track("c1", "Finished", START + timedelta(hours=1)), 0)
        ]
        with pytest.raises(UnknownVersion) as caught:
            await handler(finished)
        assert is_transient(caught.value)  # the runner retries the batch, uncommitted
        await handler(finished)
        async with engine.connect() as conn:
            (run,) = await repo.list_runs(conn, customer_id="c1")
        assert run.status == "exited" and run.version == 2
    finally:
        await engine.dispose()


async def test_a_run_left_in_an_archived_journey_exits_at_its_timer(
    new_database: NewDatabase,
) -> None:
    """A replica whose catalog was a moment old entered a run after the archive's pass:
    its next firing ends it (``archived``) instead of walking on."""
    from sqlalchemy import select

    from services.journey.models import outbox
    from services.journey.timers import timer_round
    from shared.db.outbox_pack import unpack

    url = await migrated_database(new_database)
    engine = create_engine(DatabaseSettings(url=SecretStr(url)))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(repo.journeys).values(
                    id="j", name="j", status="archived", draft=DOCUMENT, version=1
                )
            )
            await conn.execute(
                insert(repo.versions).values(journey_id="j", version=1, definition=DOCUMENT)
            )
            work = Work(await load_catalog(conn), START)
            work.took(
                enter(
                    JourneyDefinition.model_validate(DOCUMENT),
                    journey_id="j",
                    version=1,
                    customer_id="c1",
                    run_id="late-run",
                    trigger_event="Started",
                    trigger={},
                    now=START,
                    facts=Facts(),
                ),
                new=True,
            )
            await work.write(conn)
            await conn.execute(outbox.delete())
        fire = timer_round(
            engine=engine,
            catalogs=CatalogCache(engine),
            clock=lambda: START + timedelta(days=2),
            chunk=10,
        )
        assert await fire() == 1
        async with engine.connect() as conn:
            (run,) = await repo.list_runs(conn, customer_id="c1")
            rows = (await conn.execute(select(outbox.c.topic, outbox.c.value))).all()
        assert run.status == "exited" and run.exit_reason is not None
        assert run.exit_reason.value == "archived"
        messages = [m for topic, value in rows for m in unpack(topic, value)]
        assert [m.topic for m in messages] == ["journey.runs"]  # the exit, nothing sent
    finally:
        await engine.dispose()
