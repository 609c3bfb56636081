"""Alembic, one environment per service, each in its own Postgres schema.

A service keeps its revisions in ``services/<name>/migrations/versions`` and an
``env.py`` that calls :func:`run_alembic_env`. The version table lives in the
service's schema, so services migrate independently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db.engine import async_url, service_metadata


def alembic_config(*, script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def upgrade(*, script_location: Path, database_url: str, revision: str = "head") -> None:
    """Bring one service's schema to ``revision``. Blocks; run it off the event loop."""
    command.upgrade(
        alembic_config(script_location=script_location, database_url=database_url), revision
    )


def run_alembic_env(*, target_metadata: MetaData, schema: str) -> None:
    """The body of a service's ``env.py``: migrate online with the async driver."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None, "sqlalchemy.url is not set"

    def migrate(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(migrate)
        await engine.dispose()

    asyncio.run(run())


def create_declared_table(schema: str, declare: Callable[[MetaData], Table]) -> None:
    """In a revision: create a table that a ``shared.db`` helper declares (the outbox,
    the claims, a timer table), with its keys and indexes, in ``schema``.

    The models declare the same table with the same helper, so the two cannot drift
    apart. Run online only (the revision's connection)."""
    declare(service_metadata(schema)).create(op.get_bind())
