"""The servers and scratch databases a database benchmark runs against.

:class:`BenchServers` starts an embedded PostgreSQL and broker unless the options name
running ones, makes a migrated database per scenario and cleans everything up.
:func:`copy_baseline` times the floor a bulk write is compared with: a plain ``COPY``
of the same rows into an unindexed table.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

import asyncpg

from shared.db.migrations import upgrade
from tenure.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    free_port,
    machine_sized_settings,
    uri_for_database,
)
from tenure.services import SERVICES


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style PostgreSQL URL as asyncpg takes it."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


async def migrated_database(server_url: str, name: str, service: str) -> str:
    """Create database ``name`` on the server and bring it to ``service``'s head
    revision; its SQLAlchemy-style URL."""
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = uri_for_database(server_url, name)
    await asyncio.to_thread(
        upgrade, script_location=SERVICES[service].migrations_dir, database_url=url
    )
    return url


def scratch_name(purpose: str) -> str:
    return f"bench_{purpose}_{uuid.uuid4().hex[:8]}"


async def embedded_postgres(state: Path) -> tuple[EmbeddedPostgres, str]:
    """An embedded PostgreSQL sized for this machine, started; and its admin URL."""
    postgres = EmbeddedPostgres(
        state / "postgres", database="tenure_bench", settings=machine_sized_settings()
    )
    return postgres, await asyncio.to_thread(postgres.start)


async def copy_baseline(url: str, *, select: str, create: str) -> tuple[float, int]:
    """Seconds to ``COPY`` the rows ``select`` reads into table ``copy_baseline`` (made
    by ``create``, unindexed), and how many rows."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(select)
        await conn.execute(create)
        records = [tuple(r) for r in rows]
        started = time.perf_counter()
        await conn.copy_records_to_table("copy_baseline", records=records)
        return time.perf_counter() - started, len(records)
    finally:
        await conn.close()


class BenchServers:
    """PostgreSQL and the broker: ``database_url`` and ``bootstrap_servers`` when given,
    else embedded ones started under ``state``; the scratch databases made on the server
    are dropped by :meth:`stop` (an embedded server goes away with them)."""

    def __init__(
        self,
        state: Path,
        *,
        database_url: str | None,
        bootstrap_servers: str | None,
        log: Callable[[str], None],
    ) -> None:
        self.state = state
        self.server_url = database_url or ""
        self.bootstrap = bootstrap_servers or ""
        self.postgres: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self._given_server = bool(database_url)
        self._log = log
        self._databases: list[str] = []

    async def start(self) -> None:
        if not self.server_url:
            self._log("starting the embedded PostgreSQL …")
            self.postgres, self.server_url = await embedded_postgres(self.state)
        if not self.bootstrap:
            self._log("starting the embedded broker …")
            self.broker = EmbeddedBroker(port=free_port(), log_path=self.state / "broker.log")
            await asyncio.to_thread(self.broker.start)
            self.bootstrap = self.broker.bootstrap_servers

    async def new_database(self, service: str, purpose: str) -> str:
        """A scratch database migrated to ``service``'s head; its SQLAlchemy-style URL."""
        name = scratch_name(f"{service}_{purpose}")
        self._databases.append(name)
        return await migrated_database(self.server_url, name, service)

    async def stop(self) -> None:
        if self._given_server:
            await drop_databases(self.server_url, self._databases)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
        shutil.rmtree(self.state, ignore_errors=True)


async def drop_databases(server_url: str, names: Iterable[str]) -> None:
    """Drop the databases, whoever is connected; a server gone already is fine."""
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def run_in_scratch(prefix: str, main: Callable[[Path], Coroutine[Any, Any, int]]) -> int:
    """``main(state)`` run to its exit code, ``state`` a new temporary directory that is
    removed after (an embedded server's files and logs)."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return asyncio.run(main(state))
    finally:
        shutil.rmtree(state, ignore_errors=True)


@contextlib.asynccontextmanager
async def embedded_database(state: Path, service: str, purpose: str) -> AsyncIterator[str]:
    """For the block: an embedded PostgreSQL under ``state`` with one database migrated to
    ``service``'s head; its SQLAlchemy-style URL."""
    postgres, server = await embedded_postgres(state)
    try:
        yield await migrated_database(server, scratch_name(purpose), service)
    finally:
        await asyncio.to_thread(postgres.stop)


Log = Callable[[str], None]


def log_to_stderr(line: str) -> None:
    """A benchmark's progress lines go to stderr (its figures to stdout)."""
    print(line, file=sys.stderr, flush=True)
