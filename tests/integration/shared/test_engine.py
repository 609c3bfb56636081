"""The engine's sessions: what every service's connections are set up with."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.db.engine import create_engine
from shared.settings import DatabaseSettings
from tests.conftest import NewDatabase


@pytest.mark.parametrize(("jit", "shown"), [(False, "off"), (True, "on")])
async def test_jit_follows_the_setting(new_database: NewDatabase, jit: bool, shown: str) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(await new_database()), jit=jit))
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW jit")) == shown
    finally:
        await engine.dispose()


async def test_postgres_urls_in_any_spelling_reach_the_server(new_database: NewDatabase) -> None:
    url = await new_database()
    plain = url.replace("postgresql+asyncpg://", "postgres://", 1)
    engine = create_engine(DatabaseSettings(url=SecretStr(plain)))
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT current_database()")) == make_url(url).database
    finally:
        await engine.dispose()
