"""The engine's sessions: what every service's connections are set up with."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from shared.db.engine import create_engine, driver_connection, long_statements, snapshot
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


async def test_a_snapshot_read_does_not_see_a_commit_made_between_its_statements(
    new_database: NewDatabase,
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(await new_database())))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k int PRIMARY KEY, v text)"))
            await conn.execute(text("INSERT INTO t VALUES (1, 'before')"))
        async with snapshot(engine) as reader:
            first = await reader.scalar(text("SELECT v FROM t WHERE k = 1"))
            async with engine.begin() as writer:
                await writer.execute(text("UPDATE t SET v = 'after' WHERE k = 1"))
            second = await reader.scalar(text("SELECT v FROM t WHERE k = 1"))
        assert (first, second) == ("before", "before")
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT v FROM t WHERE k = 1")) == "after"
    finally:
        await engine.dispose()


async def test_a_snapshot_refuses_writes_and_leaves_the_pool_connection_writable(
    new_database: NewDatabase,
) -> None:
    url = await new_database()
    engine = create_engine(DatabaseSettings(url=SecretStr(url), pool_size=1))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k int PRIMARY KEY)"))
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with snapshot(engine) as reader:
                await reader.execute(text("INSERT INTO t VALUES (1)"))
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
            assert await conn.scalar(text("SHOW transaction_isolation")) == "read committed"
    finally:
        await engine.dispose()


class _Abort(Exception):
    pass


async def test_driver_statements_run_inside_the_callers_transaction(
    new_database: NewDatabase,
) -> None:
    """The first statement of a transaction may go straight to asyncpg: it must still be
    part of the transaction (rolled back with it), not committed on its own."""
    engine = create_engine(DatabaseSettings(url=SecretStr(await new_database()), pool_size=1))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k int PRIMARY KEY)"))
        with pytest.raises(_Abort):
            async with engine.begin() as conn:
                driver = await driver_connection(conn)
                await driver.execute("INSERT INTO t VALUES ($1)", 1)
                seen = await conn.scalar(text("SELECT count(*) FROM t"))
                assert seen == 1  # one transaction: SQLAlchemy sees the driver's row
                await driver.execute("INSERT INTO t VALUES ($1)", 2)
                raise _Abort
        async with engine.begin() as conn:
            driver = await driver_connection(conn)
            assert await driver.fetchval("SELECT count(*) FROM t") == 0
            await driver.execute("INSERT INTO t VALUES ($1)", 3)
        async with engine.connect() as conn:
            assert list(await conn.scalars(text("SELECT k FROM t"))) == [3]
    finally:
        await engine.dispose()


async def test_a_statement_past_the_timeout_is_cancelled(new_database: NewDatabase) -> None:
    """Issue 21: a query that would run for minutes (a date series to 9999) is cancelled
    by the server at the session's statement timeout; a job may ask for longer."""
    settings = DatabaseSettings(
        url=SecretStr(await new_database()),
        statement_timeout_ms=200,
        job_statement_timeout_ms=5_000,
    )
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "200ms"
            with pytest.raises(DBAPIError, match="statement timeout"):
                await conn.execute(text("SELECT pg_sleep(5)"))
        async with engine.connect() as conn, conn.begin():
            await long_statements(conn, settings)
            assert await conn.scalar(text("SELECT 1 FROM pg_sleep(0.4)")) == 1
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "200ms"
        # a job given only the engine gets the limit of the settings it was made from
        async with engine.begin() as conn:
            await long_statements(conn)
            assert await conn.scalar(text("SHOW statement_timeout")) == "5s"
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "200ms"
    finally:
        await engine.dispose()
