"""PostgreSQL advisory locks under one key scheme: a namespaced name.

A lock is named by a string (``"tenure.<service>.<what>[:<id>]"``, see
:func:`lock_name`); PostgreSQL turns it into the 64-bit key with
``hashtextextended(name, 0)``, so every service, and a person in ``psql``, gets
the same key for the same name. Two names may collide (64 bits): the only cost is
that two unrelated holders wait for each other.

Transaction-scoped locks end with the caller's transaction. Session-scoped ones
(:func:`session_lock`) are held on a connection of their own, across the commits
of the work they guard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_KEY = "hashtextextended(CAST(:name AS text), 0)"


def lock_name(*parts: str, item: str | None = None) -> str:
    """``lock_name("segmenter", "segment", item="vip")`` is ``"tenure.segmenter.segment:vip"``."""
    name = ".".join(("tenure", *parts))
    return name if item is None else f"{name}:{item}"


async def xact_lock(conn: AsyncConnection, name: str, *, shared: bool = False) -> None:
    """Wait for the lock, held until the caller's transaction ends (``shared``: with other
    shared holders, excluding an exclusive one)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await conn.execute(text(f"SELECT {function}({_KEY})"), {"name": name})


async def xact_locks(conn: AsyncConnection, names: Iterable[str]) -> None:
    """Wait for every lock of ``names``, taken in sorted order in one statement (two
    callers locking overlapping sets never deadlock), held until the caller's
    transaction ends. For a batch that locks each of its customers."""
    ordered = sorted(set(names))
    if not ordered:
        return
    await conn.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(name, 0))) "
            "FROM (SELECT unnest(CAST(:names AS text[])) AS name ORDER BY 1) AS wanted"
        ),
        {"names": ordered},
    )


async def try_xact_lock(conn: AsyncConnection, name: str) -> bool:
    """Take the lock for the caller's transaction if nobody holds it; never waits."""
    held = await conn.scalar(text(f"SELECT pg_try_advisory_xact_lock({_KEY})"), {"name": name})
    return bool(held)


async def take_session_lock(conn: AsyncConnection, name: str, *, wait: bool = False) -> bool:
    """Take the lock for ``conn``'s session (until :func:`release_session_lock` or the
    connection closes); without ``wait``, only if nobody holds it. Commits ``conn``, so the
    connection does not sit idle in a transaction while the lock is held."""
    if wait:
        await conn.execute(text(f"SELECT pg_advisory_lock({_KEY})"), {"name": name})
        held = True
    else:
        held = bool(await conn.scalar(text(f"SELECT pg_try_advisory_lock({_KEY})"), {"name": name}))
    await conn.commit()
    return held


async def release_session_lock(conn: AsyncConnection, name: str) -> None:
    await conn.scalar(text(f"SELECT pg_advisory_unlock({_KEY})"), {"name": name})
    await conn.commit()


@asynccontextmanager
async def session_lock(
    engine: AsyncEngine, name: str, *, wait: bool = False
) -> AsyncIterator[bool]:
    """Hold the lock on a connection of its own for the body; yields whether it is held
    (always, with ``wait``). For work that commits several transactions."""
    async with engine.connect() as conn:
        held = await take_session_lock(conn, name, wait=wait)
        try:
            yield held
        finally:
            if held:
                await release_session_lock(conn, name)
