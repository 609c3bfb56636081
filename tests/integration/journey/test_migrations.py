"""The journey's migrations build exactly the tables its models describe, both ways."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.journey.models import metadata
from shared.db.engine import async_url
from shared.db.migrations import alembic_config, upgrade
from tenure.services import SERVICES
from tests.conftest import NewDatabase

MIGRATIONS = SERVICES["journey"].migrations_dir


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_name": lambda name, kind, _: kind != "schema" or name == "journey",
            "include_object": lambda obj, name, kind, *_: name != "alembic_version",
        },
    )
    return list(compare_metadata(context, metadata))


async def _compare(url: str) -> tuple[list[Any], Any]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            options = await conn.scalar(
                text("SELECT reloptions FROM pg_class WHERE oid = 'journey.runs'::regclass")
            )
            return differences, options
    finally:
        await engine.dispose()


async def test_head_matches_the_models_and_downgrades_cleanly(new_database: NewDatabase) -> None:
    url = await new_database()
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _compare(url) == ([], ["fillfactor=80"])
    config = alembic_config(script_location=MIGRATIONS, database_url=url)
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(upgrade, script_location=MIGRATIONS, database_url=url)
    assert await _compare(url) == ([], ["fillfactor=80"])
