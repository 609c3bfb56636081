"""The segmenter's migrations build exactly the tables its models describe, both ways."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.segmenter.models import Base, processed_messages
from shared.db.claims import claim_messages
from shared.db.engine import async_url
from shared.db.migrations import alembic_config, upgrade
from tenure.services import SERVICES
from tests.conftest import NewDatabase

MIGRATIONS = SERVICES["segmenter"].migrations_dir


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_name": lambda name, kind, _: kind != "schema" or name == "segmenter",
            "include_object": lambda obj, name, kind, *_: name != "alembic_version",
        },
    )
    return list(compare_metadata(context, Base.metadata))


async def _compare(url: str) -> list[Any]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_differences)
    finally:
        await engine.dispose()


async def test_head_matches_the_models_and_downgrades_cleanly(new_database: NewDatabase) -> None:
    url = await new_database()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _compare(url) == []

    config = alembic_config(script_location=MIGRATIONS, database_url=url)
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _compare(url) == []


async def test_message_ids_processed_before_the_key_migration_stay_processed(
    new_database: NewDatabase,
) -> None:
    """0004 turns stored ids into keys the consumer's claim computes the same way."""
    url = await new_database()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url, revision="0003")
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO segmenter.processed_messages (message_id) VALUES ('m-before')")
            )
        await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
        async with engine.begin() as conn:
            fresh = await claim_messages(
                conn, table=processed_messages, message_ids=["m-before", "m-after"]
            )
            again = await claim_messages(
                conn, table=processed_messages, message_ids=["m-after", "m-later"]
            )
    finally:
        await engine.dispose()
    assert (fresh, again) == ({"m-after"}, {"m-later"})


async def test_0008_moves_rollups_filed_on_a_local_day_to_the_utc_day(
    new_database: NewDatabase,
) -> None:
    """A one-day history is moved (merged with a row already on the UTC day); a history
    spread over several UTC days cannot be placed exactly and stays."""
    url = await new_database()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url, revision="0007")
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO segmenter.event_stats
                        (customer_id, event_name, count, value_sum, first_at, last_at)
                    VALUES ('one-day', 'Order Completed', 2, 30,
                            '2026-11-12T22:00-05:00', '2026-11-13T10:00Z'),
                           ('spread', 'Order Completed', 2, 30,
                            '2026-11-10T22:00-05:00', '2026-11-13T10:00Z')
                    """
                )
            )
            await conn.execute(
                text(
                    """
                    INSERT INTO segmenter.event_rollups
                        (customer_id, event_name, day, dimension, count, value_sum)
                    VALUES ('one-day', 'Order Completed', '2026-11-12', '', 1, 5),
                           ('one-day', 'Order Completed', '2026-11-13', '', 1, 25),
                           ('one-day', 'Order Completed', '2026-11-12', 'sku="a"', 1, 5),
                           ('spread', 'Order Completed', '2026-11-10', '', 1, 5),
                           ('spread', 'Order Completed', '2026-11-13', '', 1, 25)
                    """
                )
            )
        await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT customer_id, day::text, dimension, count, value_sum "
                        "FROM segmenter.event_rollups ORDER BY 1, 2, 3"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("one-day", "2026-11-13", "", 2, 30.0),
        ("one-day", "2026-11-13", 'sku="a"', 1, 5.0),
        ("spread", "2026-11-10", "", 1, 5.0),
        ("spread", "2026-11-13", "", 1, 25.0),
    ]
