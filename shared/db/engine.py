"""Async engine from a database URL in any usual spelling, snapshot reads, the driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
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
    """The service's engine. Every connection has ``statement_timeout`` set to
    ``settings.statement_timeout_ms`` (``TENURE_DATABASE_STATEMENT_TIMEOUT_MS``): a
    statement past it is cancelled by the server (SQLSTATE 57014, a ``DBAPIError``),
    which frees the backend even when the client has gone."""
    server_settings = {
        "jit": "on" if settings.jit else "off",
        "statement_timeout": str(settings.statement_timeout_ms),
    }
    engine = create_async_engine(
        async_url(settings.url.get_secret_value()),
        pool_size=settings.pool_size,
        pool_pre_ping=True,
        echo=settings.echo,
        connect_args={"server_settings": server_settings},
    )
    _JOB_TIMEOUT_MS[engine.sync_engine] = settings.job_statement_timeout_ms
    return engine


#: each engine's limit for background jobs, so that a job given only the engine can ask
_JOB_TIMEOUT_MS: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()


async def long_statements(conn: AsyncConnection, settings: DatabaseSettings | None = None) -> None:
    """Lets the statements of ``conn``'s current transaction run up to
    ``settings.job_statement_timeout_ms`` (``SET LOCAL``: back to the session's limit at
    commit or rollback); without ``settings``, the limit of the settings ``conn``'s engine
    was made from (:func:`create_engine`). For background jobs (a refit, a backfill, an
    evaluation) and the admin routes that run one, never for a request's reads."""
    if settings is not None:
        ms = settings.job_statement_timeout_ms
    else:
        ms = _JOB_TIMEOUT_MS.get(
            conn.engine.sync_engine,
            DatabaseSettings.model_fields["job_statement_timeout_ms"].default,
        )
    await conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(ms)})


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


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside ``conn``'s transaction.

    For statements run thousands of rows at a time on the event path: asyncpg
    returns its own ``Record``s, where SQLAlchemy builds a ``Row`` for each one
    (most of the client's time in a read of 5,000 rows). What differs: asyncpg's
    exceptions come unwrapped (``asyncpg.PostgresError`` with ``sqlstate``), and
    the caller must hold ``conn`` inside ``begin()``.

    SQLAlchemy's adapter opens the database transaction lazily, at the first
    statement it runs; a statement sent to the driver before that would run on its
    own, committed at once. So when the adapter has not opened it yet, a no-op
    statement through SQLAlchemy does.
    """
    raw = await conn.get_raw_connection()
    if not getattr(raw.dbapi_connection, "_started", False):
        await conn.exec_driver_sql("SELECT 1")
    return raw.driver_connection


async def check_database(engine: AsyncEngine) -> None:
    """Raise unless the database answers a query now."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
