"""Async engine and session factory from a database URL in any usual spelling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import DatabaseSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata(schema: str) -> MetaData:
    """The metadata of one service's tables, all in its own Postgres schema."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` URLs become ``postgresql+asyncpg://``."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        async_url(settings.url.get_secret_value()),
        pool_size=settings.pool_size,
        pool_pre_ping=True,
        echo=settings.echo,
        connect_args={"server_settings": {"jit": "on" if settings.jit else "off"}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction whose statements all see one snapshot.

    Under the default READ COMMITTED each statement sees the latest commits, so a
    read made of several statements (a profile, then its aliases) can straddle a
    writer's commit and answer with half of it.
    """
    async with engine.connect() as conn:
        conn = await conn.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with conn.begin():
            yield conn


async def check_database(engine: AsyncEngine) -> None:
    """Raise unless the database answers a query now."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
