"""An engine on a fresh database, with a schema for a test's tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from shared.settings import DatabaseSettings
from tests.conftest import NewDatabase


@asynccontextmanager
async def fresh_engine(
    new_database: NewDatabase, metadata: MetaData | None = None
) -> AsyncIterator[AsyncEngine]:
    """An engine on a new database where ``metadata``'s schema and tables exist."""
    engine = create_engine(DatabaseSettings(url=await new_database()))
    try:
        if metadata is not None:
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE SCHEMA {metadata.schema}"))
                await conn.run_sync(metadata.create_all)
        yield engine
    finally:
        await engine.dispose()
